// Package director is a protocol-faithful fake of the BOSH director API,
// enough for the real bosh CLI (`alias-env`, `log-in`, `deployments`,
// `instances`, `vms`) and for pcap's BOSH resolver: GET /info
// (unauthenticated, naming the UAA), deployments, instances (plain and as
// a task with ?format=full), VMs and tasks. Bearer tokens must verify
// against the (fake) UAA's published key; the director's scope rules apply
// (bosh.admin, bosh.<uuid>.admin, bosh.read, bosh.<uuid>.read and team
// admin scopes bosh.teams.<team>.admin for the team's deployments).
// It serves HTTPS, since the bosh CLI talks to directors over HTTPS only.
package director

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/internal/fakeid"
	"code.cloudfoundry.org/pcap/integration/fakes/internal/listen"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// TokenVerifier verifies a UAA access token; *uaa.Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*uaa.Claims, error)
}

// Deployment is a deployment and its instances.
type Deployment struct {
	Name      string        `json:"name"`
	Teams     []string      `json:"teams,omitempty"`
	Releases  []NameVersion `json:"releases,omitempty"`
	Stemcells []NameVersion `json:"stemcells,omitempty"`
	Manifest  string        `json:"manifest,omitempty"`
	Instances []Instance    `json:"instances"`
}

// NameVersion names a release or stemcell version.
type NameVersion struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// Instance is one instance of an instance group ("job").
type Instance struct {
	// Job is the instance group name; ID the instance UUID (derived when
	// empty).
	Job   string `json:"job"`
	Index int    `json:"index"`
	ID    string `json:"id,omitempty"`
	AZ    string `json:"az,omitempty"`
	// IPs may be empty (an instance with no address).
	IPs []string `json:"ips"`
	// AgentID and VMCID are derived when empty, unless the instance has
	// no VM.
	AgentID string `json:"agent_id,omitempty"`
	VMCID   string `json:"cid,omitempty"`
	// State is "started" (default), "stopped" or "detached"; detached
	// instances have no VM and expects_vm false.
	State string `json:"state,omitempty"`
	// ProcessState is job_state in instance details: "running" (default),
	// "failing", "stopped", "unresponsive agent".
	ProcessState string `json:"process_state,omitempty"`
	VMType       string `json:"vm_type,omitempty"`
	Bootstrap    bool   `json:"bootstrap,omitempty"`
	// VMCreatedAt is RFC 3339; the server's start time when empty.
	VMCreatedAt string `json:"vm_created_at,omitempty"`
}

// HasVM reports whether the instance has a VM.
func (i Instance) HasVM() bool { return i.State != "detached" }

// Options configure a Server.
type Options struct {
	// URL is the base URL; Start sets it.
	URL string
	// Name, UUID, Version and CPI appear in /info. Defaults:
	// "fake-director", a UUID derived from Name, "282.0.0 (00000000)",
	// "warden_cpi".
	Name    string
	UUID    string
	Version string
	CPI     string
	// UAAURL is user_authentication.options.url.
	UAAURL string
	// Verifier checks bearer tokens. Required.
	Verifier TokenVerifier
	// Deployments is the initial content.
	Deployments []Deployment
	// TLS is the server configuration for Start. When nil, Start issues a
	// certificate from CA (a new CA when CA is nil too).
	TLS *tls.Config
	CA  *ca.Authority
	// Now is the clock; time.Now when nil.
	Now func() time.Time
}

// Server is a fake BOSH director. It is safe for concurrent use.
type Server struct {
	opts    Options
	started string

	mu          sync.Mutex
	deployments []Deployment
	tasks       map[int]*task
	nextTask    int
	// ServeHTTP, Requests, Start, StartOn, Close, URL. Start and StartOn
	// serve HTTPS; without Options.TLS, StartOn's certificate is issued for
	// the listener's IP.
	listen.Served
}

// New returns a fake director.
func New(opts Options) (*Server, error) {
	if opts.Verifier == nil {
		return nil, errors.New("director: options: Verifier is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Name == "" {
		opts.Name = "fake-director"
	}
	if opts.UUID == "" {
		opts.UUID = fakeid.GUID("director/" + opts.Name)
	}
	if opts.Version == "" {
		opts.Version = "282.0.0 (00000000)"
	}
	if opts.CPI == "" {
		opts.CPI = "warden_cpi"
	}
	s := &Server{
		opts:     opts,
		started:  opts.Now().UTC().Format(time.RFC3339),
		tasks:    map[int]*task{},
		nextTask: 1,
	}
	deps, err := s.normalize(opts.Deployments)
	if err != nil {
		return nil, err
	}
	s.deployments = deps
	s.Served.InitTLS("director", s.routes(), s.tlsConfig, strings.TrimRight(opts.URL, "/"))
	return s, nil
}

// ParseDeployments decodes a JSON array of deployments.
func ParseDeployments(r io.Reader) ([]Deployment, error) {
	var deps []Deployment
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&deps); err != nil {
		return nil, fmt.Errorf("director: decode deployments: %w", err)
	}
	return deps, nil
}

// LoadDeployments reads a JSON array of deployments from a file.
func LoadDeployments(path string) ([]Deployment, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("director: load deployments: %w", err)
	}
	defer f.Close()
	return ParseDeployments(f)
}

// normalize copies deps, fills in defaults and returns every problem.
func (s *Server) normalize(in []Deployment) ([]Deployment, error) {
	b, err := json.Marshal(in)
	if err != nil {
		return nil, fmt.Errorf("director: copy deployments: %w", err)
	}
	var deps []Deployment
	if err := json.Unmarshal(b, &deps); err != nil {
		return nil, fmt.Errorf("director: copy deployments: %w", err)
	}
	var errs []error
	names := map[string]bool{}
	for di := range deps {
		d := &deps[di]
		if d.Name == "" {
			errs = append(errs, fmt.Errorf("director: deployment %d has no name", di))
		}
		if names[d.Name] {
			errs = append(errs, fmt.Errorf("director: deployment %q twice", d.Name))
		}
		names[d.Name] = true
		if d.Manifest == "" {
			d.Manifest = "name: " + d.Name + "\n"
		}
		seen := map[string]bool{}
		for ii := range d.Instances {
			in := &d.Instances[ii]
			slug := fmt.Sprintf("%s/%s/%d", d.Name, in.Job, in.Index)
			if in.Job == "" {
				errs = append(errs, fmt.Errorf("director: deployment %q: instance %d has no job", d.Name, ii))
			}
			if seen[in.Job+"/"+fmt.Sprint(in.Index)] {
				errs = append(errs, fmt.Errorf("director: %s twice", slug))
			}
			seen[in.Job+"/"+fmt.Sprint(in.Index)] = true
			if in.ID == "" {
				in.ID = fakeid.GUID("instance/" + slug)
			}
			switch in.State {
			case "":
				in.State = "started"
			case "started", "stopped", "detached":
			default:
				errs = append(errs, fmt.Errorf("director: %s: bad state %q", slug, in.State))
			}
			if in.ProcessState == "" {
				in.ProcessState = "running"
				if in.State != "started" {
					in.ProcessState = "stopped"
				}
			}
			if in.IPs == nil {
				in.IPs = []string{}
			}
			if in.VMType == "" {
				in.VMType = "default"
			}
			if in.HasVM() {
				if in.AgentID == "" {
					in.AgentID = fakeid.GUID("agent/" + slug)
				}
				if in.VMCID == "" {
					in.VMCID = fakeid.GUID("vm/" + slug)
				}
				if in.VMCreatedAt == "" {
					in.VMCreatedAt = s.started
				}
			} else {
				in.AgentID, in.VMCID, in.VMCreatedAt = "", "", ""
			}
		}
	}
	return deps, errors.Join(errs...)
}

// Update applies fn to a copy of the deployments and makes the result
// current if it is valid.
func (s *Server) Update(fn func([]Deployment) []Deployment) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cur, err := s.normalize(s.deployments)
	if err != nil {
		return err
	}
	next, err := s.normalize(fn(cur))
	if err != nil {
		return err
	}
	s.deployments = next
	return nil
}

// Deployments returns a copy of the current, normalized deployments.
func (s *Server) Deployments() []Deployment {
	s.mu.Lock()
	defer s.mu.Unlock()
	deps, _ := s.normalize(s.deployments) // already valid
	return deps
}

// StartForTest makes a server with opts, serves it on 127.0.0.1:0 and
// closes it when the test ends; an error fails the test.
func StartForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	return listen.StartForTest(t, New, opts)
}

// StartWithUAAForTest starts, for a test, a fake UAA with uaaOpts serving
// HTTPS with a certificate from a new CA, and a director with opts that
// uses the same CA (the bosh CLI takes one CA for both) and verifies tokens
// with that UAA. It returns both servers and a client that trusts the CA;
// they close when the test ends.
func StartWithUAAForTest(t testing.TB, uaaOpts uaa.Options, opts Options) (*uaa.Server, *Server, *http.Client) {
	t.Helper()
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	uaaOpts.TLS, err = authority.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	u := uaa.StartForTest(t, uaaOpts)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}}
	t.Cleanup(client.CloseIdleConnections)
	opts.UAAURL, opts.Verifier, opts.CA = u.URL(), u.Verifier(client), authority
	return u, StartForTest(t, opts), client
}

// tlsConfig is Options.TLS, or a certificate from Options.CA (made when
// missing) for hosts.
func (s *Server) tlsConfig(hosts ...string) (*tls.Config, error) {
	if s.opts.TLS != nil {
		return s.opts.TLS, nil
	}
	if s.opts.CA == nil {
		authority, err := ca.New()
		if err != nil {
			return nil, fmt.Errorf("director: %w", err)
		}
		s.opts.CA = authority
	}
	conf, err := s.opts.CA.ServerConfig(hosts...)
	if err != nil {
		return nil, fmt.Errorf("director: %w", err)
	}
	return conf, nil
}

// UUID is the director's UUID (as in bosh.<uuid>.admin).
func (s *Server) UUID() string { return s.opts.UUID }

// CA is the authority that signed the server certificate (nil when
// Options.TLS was given).
func (s *Server) CA() *ca.Authority { return s.opts.CA }

// CACertPEM is the PEM of CA(), for `bosh alias-env --ca-cert`; nil when
// Options.TLS was given.
func (s *Server) CACertPEM() []byte {
	if s.opts.CA == nil {
		return nil
	}
	return s.opts.CA.CertPEM()
}
