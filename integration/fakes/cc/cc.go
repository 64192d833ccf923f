// Package cc is a protocol-faithful fake of the Cloud Controller v3 API,
// enough for the real cf CLI (`cf api`, `cf auth`, `cf target`, `cf curl`,
// `cf ssh-code`, `cf oauth-token`) and for pcap's CF resolver: the root and
// info documents, organizations, spaces, apps and their permissions,
// processes and process stats, roles and users, with v3's pagination
// envelope and error bodies. Every request but the root and info documents
// needs a bearer token that verifies against the (fake) UAA's published
// key; what a token sees follows the CC's role rules.
package cc

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/listen"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// TokenVerifier verifies a UAA access token; *uaa.Verifier implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, token string) (*uaa.Claims, error)
}

// Options configure a Server.
type Options struct {
	// URL is the API's base URL for links; Start sets it.
	URL string
	// World is the initial content; it is normalized (see
	// World.Normalize) and copied.
	World World
	// Verifier checks bearer tokens. Required.
	Verifier TokenVerifier
	// UAAURL is links.uaa; LoginURL is links.login (UAAURL when empty).
	UAAURL   string
	LoginURL string
	// AppSSHEndpoint is links.app_ssh.href (host:port), by default the
	// API's host with port 2222. AppSSHHostKeyFingerprint and
	// AppSSHOAuthClient ("ssh-proxy" when empty) are its meta.
	AppSSHEndpoint           string
	AppSSHHostKeyFingerprint string
	AppSSHOAuthClient        string
	// LoggingURL and LogCacheURL are links.logging and links.log_cache;
	// omitted when empty.
	LoggingURL  string
	LogCacheURL string
	// TLS makes Start serve HTTPS.
	TLS *tls.Config
	// Now stamps process stats usage; time.Now when nil.
	Now func() time.Time
	// V3Version and V2Version are the API versions in the root document;
	// "3.195.0" and "2.260.0" when empty.
	V3Version string
	V2Version string
	// DisallowAppSSHAccess turns off the CC's global allow_app_ssh_access
	// (on by default, as in the CC's job spec); SetAllowAppSSHAccess
	// changes it live.
	DisallowAppSSHAccess bool
}

// Server is a fake Cloud Controller. It is safe for concurrent use.
type Server struct {
	opts Options

	mu            sync.RWMutex
	ix            *index
	listen.Served // ServeHTTP, Requests, Start, StartOn, Close, URL

	sshAllowed atomic.Bool
	eventsMu   sync.Mutex
	events     []AuditEvent
}

// New returns a fake Cloud Controller.
func New(opts Options) (*Server, error) {
	if opts.Verifier == nil {
		return nil, fmt.Errorf("cc: options: Verifier is required")
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.LoginURL == "" {
		opts.LoginURL = opts.UAAURL
	}
	if opts.AppSSHOAuthClient == "" {
		opts.AppSSHOAuthClient = "ssh-proxy"
	}
	if opts.AppSSHHostKeyFingerprint == "" {
		opts.AppSSHHostKeyFingerprint = "SHA256:fakefakefakefakefakefakefakefakefakefakefak"
	}
	if opts.V3Version == "" {
		opts.V3Version = "3.195.0"
	}
	if opts.V2Version == "" {
		opts.V2Version = "2.260.0"
	}
	w, err := copyWorld(opts.World)
	if err != nil {
		return nil, err
	}
	if err := w.Normalize(); err != nil {
		return nil, err
	}
	s := &Server{opts: opts, ix: newIndex(w)}
	s.sshAllowed.Store(!opts.DisallowAppSSHAccess)
	s.Served.Init("cc", s.routes(), opts.TLS, strings.TrimRight(opts.URL, "/"))
	return s, nil
}

func copyWorld(w World) (World, error) {
	b, err := json.Marshal(w)
	if err != nil {
		return World{}, fmt.Errorf("cc: copy world: %w", err)
	}
	var out World
	if err := json.Unmarshal(b, &out); err != nil {
		return World{}, fmt.Errorf("cc: copy world: %w", err)
	}
	return out, nil
}

// World returns a copy of the current, normalized world (with every
// defaulted GUID filled in).
func (s *Server) World() World {
	s.mu.RLock()
	ix := s.ix
	s.mu.RUnlock()
	w, _ := copyWorld(ix.world) // a normalized world always round-trips
	return w
}

// Update applies fn to a copy of the world and, if the result normalizes
// without error, makes it current: tests use it to crash an instance or
// change a role while clients are connected.
func (s *Server) Update(fn func(*World)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := copyWorld(s.ix.world)
	if err != nil {
		return err
	}
	fn(&w)
	if err := w.Normalize(); err != nil {
		return err
	}
	s.ix = newIndex(w)
	return nil
}

func (s *Server) index() *index {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.ix
}

// StartForTest makes a server with opts, serves it on 127.0.0.1:0 and
// closes it when the test ends; an error fails the test.
func StartForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	return listen.StartForTest(t, New, opts)
}

func (s *Server) appSSHEndpoint() string {
	if s.opts.AppSSHEndpoint != "" {
		return s.opts.AppSSHEndpoint
	}
	host := "127.0.0.1"
	if u, err := url.Parse(s.URL()); err == nil && u.Hostname() != "" {
		host = u.Hostname()
	}
	return net.JoinHostPort(host, "2222")
}
