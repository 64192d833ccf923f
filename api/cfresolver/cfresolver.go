// Package cfresolver lets Cloud Foundry app developers capture their
// apps' instances. Users authenticate with a UAA access token or a
// `cf ssh-code` one-time code (both become the same identity); the Cloud
// Controller is asked with the user's own token whether they may SSH to
// each instance (as Diego's ssh-proxy asks it, which also leaves an audit
// event), or, by the operator's choice, whether they may read the app's
// sensitive data; and where its instances run.
package cfresolver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/internal/httpjson"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// maxBody bounds a Cloud Controller response.
const maxBody = 8 << 20

// Resolver implements api.Resolver for user name "cf".
type Resolver struct {
	// CCURL is the Cloud Controller's base URL.
	CCURL string
	// UAAURL is UAA's base URL; empty means the one the Cloud Controller's
	// root document names.
	UAAURL string
	// ClientID and ClientSecret are the API's UAA client for one-time codes.
	ClientID, ClientSecret string
	// AgentPort is where agents listen on the cells.
	AgentPort int
	// HTTP is the client for the Cloud Controller and UAA
	// (http.DefaultClient when nil).
	HTTP *http.Client
	// Policy is api.CFPolicySSH (when empty) or
	// api.CFPolicyReadSensitiveData.
	Policy string
	// AdminsOnly refuses users without the cloud_controller.admin scope.
	AdminsOnly bool
	// AllowedClients are UAA clients whose own tokens are accepted.
	AllowedClients []string

	mu  sync.Mutex
	uaa *uaa.Client
}

// New builds a resolver from the API's cf config.
func New(cfg api.CFConfig, agentPort int) (*Resolver, error) {
	hc, err := httpClient(cfg.CACertFile, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	return &Resolver{
		CCURL: strings.TrimRight(cfg.APIURL, "/"), UAAURL: strings.TrimRight(cfg.UAAURL, "/"),
		ClientID: cfg.UAAClientID, ClientSecret: cfg.UAAClientSecret,
		AgentPort: agentPort, HTTP: hc,
		Policy: cfg.Policy, AdminsOnly: cfg.AdminsOnly, AllowedClients: cfg.AllowedClients,
	}, nil
}

// httpClient trusts caFile (in addition to nothing else) when given.
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("cfresolver: read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("cfresolver: %s holds no certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

// Name implements api.Resolver.
func (r *Resolver) Name() string { return "cf" }

// AuthKey implements api.Resolver: cf users have no keys.
func (r *Resolver) AuthKey(context.Context, ssh.PublicKey) (*api.Identity, error) {
	return nil, api.ErrNoAuth
}

// AuthPassword implements api.Resolver: the password is a UAA access
// token, or a one-time code that is exchanged for one.
func (r *Resolver) AuthPassword(ctx context.Context, password string) (*api.Identity, error) {
	u, err := r.uaaClient(ctx)
	if err != nil {
		return nil, err
	}
	token, method := password, api.MethodToken
	if !uaa.LooksLikeToken(password) {
		method = api.MethodCode
		t, err := u.ExchangeCode(ctx, r.ClientID, r.ClientSecret, password)
		if err != nil {
			return nil, err
		}
		token = t.AccessToken
	}
	claims, err := u.Verify(ctx, token)
	if err != nil {
		return nil, err
	}
	id, err := r.identity(claims, token)
	if err != nil {
		return nil, err
	}
	id.Method = method
	return id, nil
}

// identity checks the claims of a verified token and builds the user's
// identity. Tokens and one-time codes end here alike: what the user may
// do next does not depend on the door they came through.
func (r *Resolver) identity(claims *uaa.Claims, token string) (*api.Identity, error) {
	if err := uaa.CheckCF(claims, r.AllowedClients); err != nil {
		return nil, err
	}
	return &api.Identity{Name: claims.Who(), Resolver: r.Name(), Token: token, Scopes: claims.Scope, Subject: claims.StableID()}, nil
}

// uaaClient finds UAA (from the CC root document when not configured).
func (r *Resolver) uaaClient(ctx context.Context) (*uaa.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.uaa != nil {
		return r.uaa, nil
	}
	base := r.UAAURL
	if base == "" {
		var root struct {
			Links map[string]struct {
				Href string `json:"href"`
			} `json:"links"`
		}
		if err := r.get(ctx, "", "/", &root); err != nil {
			return nil, fmt.Errorf("cfresolver: find UAA from the Cloud Controller: %w", err)
		}
		base = strings.TrimRight(root.Links["uaa"].Href, "/")
		if base == "" {
			return nil, errors.New("cfresolver: the Cloud Controller names no UAA")
		}
	}
	r.uaa = &uaa.Client{URL: base, HTTP: r.HTTP}
	return r.uaa, nil
}

// ccError is a Cloud Controller error response: v3's errors list, or the
// v2-style body of its /internal endpoints.
type ccError struct {
	Status int                   `json:"-"`
	resp   *httpjson.StatusError // the response it came in
	Errors []struct {
		Code   int    `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	} `json:"errors"`
	Code        int    `json:"code"`
	Description string `json:"description"`
	ErrorCode   string `json:"error_code"`
}

func (e *ccError) Error() string {
	switch {
	case len(e.Errors) > 0:
		return fmt.Sprintf("%s (%d %s)", e.Errors[0].Detail, e.Status, e.Errors[0].Title)
	case e.ErrorCode != "":
		return fmt.Sprintf("%s (%d %s)", e.Description, e.Status, e.ErrorCode)
	}
	if e.resp != nil {
		return e.resp.Error() // which request, and the status line
	}
	return fmt.Sprintf("Cloud Controller answered %d", e.Status)
}

func (e *ccError) Unwrap() error { return e.resp }

// title is the CF error name, e.g. "CF-NotAuthorized".
func (e *ccError) title() string {
	if len(e.Errors) > 0 {
		return e.Errors[0].Title
	}
	return e.ErrorCode
}

// get fetches path with the user's token ("" for none) into v.
func (r *Resolver) get(ctx context.Context, token, path string, v any) error {
	hj := httpjson.Client{Name: "Cloud Controller", HTTP: r.HTTP, MaxBody: maxBody}
	err := hj.Get(ctx, r.CCURL+path, token, v)
	var se *httpjson.StatusError
	if errors.As(err, &se) {
		e := &ccError{Status: se.Status, resp: se}
		json.Unmarshal(se.Body, e)
		return e
	}
	return err
}

var guidRe = regexp.MustCompile(`^[0-9a-fA-F-]{1,64}$`)

type app struct {
	GUID string `json:"guid"`
	Name string `json:"name"`
}

type process struct {
	GUID string `json:"guid"`
	Type string `json:"type"`
}

type instance struct {
	Type         string `json:"type"`
	Index        int    `json:"index"`
	State        string `json:"state"`
	Host         string `json:"host"`
	InstanceGUID string `json:"instance_guid"`
	InternalIP   string `json:"instance_internal_ip"`
}

// Follows implements api.Follower: a capture of all of a process's
// instances (no --instance) follows the process as it scales, restarts
// and moves.
func (r *Resolver) Follows(req capturecmd.Request) bool {
	return req.App != "" && req.Instances == nil
}

// Resolve implements api.Resolver.
func (r *Resolver) Resolve(ctx context.Context, id *api.Identity, req capturecmd.Request) ([]api.Target, []api.Skipped, error) {
	switch {
	case len(req.Targets) > 0:
		// Often a filter split by a shell or by ssh, which joins the
		// words of a remote command with spaces.
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("unexpected argument(s) %q: cf captures take --app GUID (and --type, --instance); quote a filter that has spaces, e.g. -f 'tcp port 8080'", strings.Join(req.Targets, " ")))
	case req.Deployment != "":
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "-d is for BOSH deployments: cf captures take --app GUID (and --type, --instance)")
	case req.App == "":
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "--app GUID is required")
	case !guidRe.MatchString(req.App):
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("app guid %q is not valid", req.App))
	}
	ptype := req.Process
	if ptype == "" {
		ptype = "web"
	}
	fail := failFor(req.App, "you", "your token")

	if r.AdminsOnly && !slices.Contains(id.Scopes, uaa.ScopeCCAdmin) {
		return nil, nil, tunnel.Reject(tunnel.CodeNotAllowed, "app captures are for admins only here (the operator set cf.admins_only): your token has no "+uaa.ScopeCCAdmin+" scope")
	}
	if r.Policy == api.CFPolicyReadSensitiveData {
		return r.resolveReadSensitive(ctx, id, req, ptype, fail)
	}
	return r.resolveSSH(ctx, id, req, ptype, fail)
}

// resolveReadSensitive allows whoever may read the app's sensitive data
// (cf.policy read_sensitive_data).
func (r *Resolver) resolveReadSensitive(ctx context.Context, id *api.Identity, req capturecmd.Request, ptype string, fail func(string, error) error) ([]api.Target, []api.Skipped, error) {
	var a app
	if err := r.get(ctx, id.Token, "/v3/apps/"+req.App, &a); err != nil {
		return nil, nil, fail("look up app", err)
	}
	var perm struct {
		ReadSensitive bool `json:"read_sensitive_data"`
	}
	if err := r.get(ctx, id.Token, "/v3/apps/"+req.App+"/permissions", &perm); err != nil {
		return nil, nil, fail("check permissions", err)
	}
	if !perm.ReadSensitive {
		return nil, nil, tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("you may not capture app %s: it takes the space developer role in its space (or admin)", a.Name))
	}
	return r.appTargets(ctx, id, a, ptype, req.Instances, fail)
}

// process looks up the app's process of type ptype.
func (r *Resolver) process(ctx context.Context, id *api.Identity, a app, ptype string, fail func(string, error) error) (process, error) {
	var procs struct {
		Resources []process `json:"resources"`
	}
	if err := r.get(ctx, id.Token, "/v3/apps/"+a.GUID+"/processes?types="+url.QueryEscape(ptype), &procs); err != nil {
		return process{}, fail("look up processes", err)
	}
	if len(procs.Resources) == 0 {
		return process{}, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("app %s has no process of type %q", a.Name, ptype))
	}
	return procs.Resources[0], nil
}

// instances are the process's instances as its stats report them.
func (r *Resolver) instances(ctx context.Context, id *api.Identity, p process, fail func(string, error) error) ([]instance, error) {
	var stats struct {
		Resources []instance `json:"resources"`
	}
	if err := r.get(ctx, id.Token, "/v3/processes/"+p.GUID+"/stats", &stats); err != nil {
		return nil, fail("look up instances", err)
	}
	return stats.Resources, nil
}

// pick picks the asked instances: running ones become targets, the
// others are skipped with their state; unknown indexes are an error.
func (r *Resolver) pick(a app, ptype string, all []instance, want []int) ([]api.Target, []api.Skipped, error) {
	byIndex := make(map[int]instance, len(all))
	for _, in := range all {
		byIndex[in.Index] = in
	}
	if len(all) == 0 {
		return nil, nil, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("app %s has no %s instances (is it stopped?)", a.Name, ptype))
	}
	if want == nil {
		for _, in := range all {
			want = append(want, in.Index)
		}
	}
	sort.Ints(want)
	var unknown []string
	for _, i := range want {
		if _, ok := byIndex[i]; !ok {
			unknown = append(unknown, strconv.Itoa(i))
		}
	}
	if len(unknown) > 0 {
		return nil, nil, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("app %s has no %s instance %s (it has %d: 0..%d)", a.Name, ptype, strings.Join(unknown, ", "), len(all), len(all)-1))
	}
	var targets []api.Target
	var skipped []api.Skipped
	seen := map[int]bool{}
	for _, i := range want {
		if seen[i] {
			continue
		}
		seen[i] = true
		in := byIndex[i]
		name := fmt.Sprintf("%s/%d", ptype, i)
		switch {
		case in.State != "RUNNING":
			skipped = append(skipped, api.Skipped{Name: name, Reason: "instance is " + in.State})
		case in.Host == "" || in.InstanceGUID == "":
			skipped = append(skipped, api.Skipped{Name: name, Reason: "the Cloud Controller gives no host or instance guid for it"})
		default:
			targets = append(targets, api.Target{
				Name:        name,
				Agent:       net.JoinHostPort(in.Host, strconv.Itoa(r.AgentPort)),
				Capture:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: in.InstanceGUID},
				Description: fmt.Sprintf("app %s instance %d on %s", a.Name, i, in.Host),
				Address:     api.HostAddr(in.InternalIP),
			})
		}
	}
	return targets, skipped, nil
}
