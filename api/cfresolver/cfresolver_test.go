package cfresolver_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// The world: org "org" with space "dev" (app "myapp": web instances 0 and
// 2 running on two cells, 1 crashed, 3 starting; app "stopped" with no
// instances; app "twoproc" with a worker process) and space "other".
const (
	orgGUID        = "0b000000-0000-4000-8000-000000000001"
	devSpace       = "5b000000-0000-4000-8000-000000000001"
	otherSpace     = "5b000000-0000-4000-8000-000000000002"
	appGUID        = "ab000000-0000-4000-8000-000000000001"
	stoppedGUID    = "ab000000-0000-4000-8000-000000000002"
	otherAppGUID   = "ab000000-0000-4000-8000-000000000003"
	agentPort      = 9494
	cell0, cell1   = "10.0.16.10", "10.0.16.11"
	instance0GUID  = "1b000000-0000-4000-8000-000000000000"
	instance2GUID  = "1b000000-0000-4000-8000-000000000002"
	workerInstance = "1b000000-0000-4000-8000-0000000000a0"
)

var userIDs = map[string]string{
	"developer":  "db000000-0000-4000-8000-000000000001",
	"auditor":    "db000000-0000-4000-8000-000000000002",
	"supporter":  "db000000-0000-4000-8000-000000000003",
	"spacemgr":   "db000000-0000-4000-8000-000000000004",
	"orgmanager": "db000000-0000-4000-8000-000000000005",
	"otherdev":   "db000000-0000-4000-8000-000000000006",
	"admin":      "db000000-0000-4000-8000-000000000007",
	"noread":     "db000000-0000-4000-8000-000000000008",
	"adminro":    "db000000-0000-4000-8000-000000000009",
	"auditorg":   "db000000-0000-4000-8000-00000000000a",
}

type world struct {
	UAA *fakeuaa.Server
	CC  *cc.Server
}

func startWorld(t *testing.T, ccTLS *ca.Authority) *world {
	t.Helper()
	var users []fakeuaa.User
	var ccUsers []cc.User
	for name, id := range userIDs {
		scopes := []string{"openid", "cloud_controller.read", "cloud_controller.write"}
		switch name {
		case "admin":
			scopes = append(scopes, "cloud_controller.admin")
		case "adminro":
			scopes = append(scopes, "cloud_controller.admin_read_only")
		case "auditorg":
			scopes = append(scopes, "cloud_controller.global_auditor")
		case "noread":
			scopes = []string{"openid", "cloud_controller.write"}
		}
		users = append(users, fakeuaa.User{Username: name, Password: name + "-pw", ID: id, Scopes: scopes})
		ccUsers = append(ccUsers, cc.User{GUID: id, Username: name})
	}
	clients := append(fakeuaa.DefaultClients(),
		fakeuaa.Client{ID: "monitor", Secret: "monitor-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"cloud_controller.read"}},
		fakeuaa.Client{ID: "other", Secret: "other-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"uaa.none"}})
	u, err := fakeuaa.New(fakeuaa.Options{Users: users, Clients: clients})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })

	role := func(typ, user, org, space string) cc.Role {
		return cc.Role{Type: typ, User: userIDs[user], Organization: org, Space: space}
	}
	opts := cc.Options{
		Verifier: u.Verifier(nil),
		UAAURL:   u.URL(),
		World: cc.World{
			Users: ccUsers,
			Organizations: []cc.Org{{GUID: orgGUID, Name: "org", Spaces: []cc.Space{
				{GUID: devSpace, Name: "dev", Apps: []cc.App{
					{GUID: appGUID, Name: "myapp", Processes: []cc.Process{
						{Type: "web", Instances: []cc.Instance{
							{Index: 0, State: "RUNNING", Host: cell0, InstanceGUID: instance0GUID, InternalIP: internal0},
							{Index: 1, State: "CRASHED", Host: cell0, InstanceGUID: "1b000000-0000-4000-8000-000000000001"},
							{Index: 2, State: "RUNNING", Host: cell1, InstanceGUID: instance2GUID},
							{Index: 3, State: "STARTING", Host: cell1, InstanceGUID: "1b000000-0000-4000-8000-000000000003"},
						}},
						{Type: "worker", Instances: []cc.Instance{
							{Index: 0, State: "RUNNING", Host: cell1, InstanceGUID: workerInstance},
							{Index: 1, State: "DOWN"},
						}},
					}},
					{GUID: stoppedGUID, Name: "stopped", State: "STOPPED", Processes: []cc.Process{{Type: "web"}}},
				}},
				{GUID: otherSpace, Name: "other", Apps: []cc.App{
					{GUID: otherAppGUID, Name: "theirs", Processes: []cc.Process{{Type: "web", Instances: []cc.Instance{{Index: 0, Host: cell0}}}}},
				}},
			}}},
			Roles: []cc.Role{
				role(cc.RoleOrgUser, "developer", orgGUID, ""), role(cc.RoleSpaceDeveloper, "developer", "", devSpace),
				role(cc.RoleOrgUser, "auditor", orgGUID, ""), role(cc.RoleSpaceAuditor, "auditor", "", devSpace),
				role(cc.RoleOrgUser, "supporter", orgGUID, ""), role(cc.RoleSpaceSupporter, "supporter", "", devSpace),
				role(cc.RoleOrgUser, "spacemgr", orgGUID, ""), role(cc.RoleSpaceManager, "spacemgr", "", devSpace),
				role(cc.RoleOrgManager, "orgmanager", orgGUID, ""),
				role(cc.RoleOrgUser, "otherdev", orgGUID, ""), role(cc.RoleSpaceDeveloper, "otherdev", "", otherSpace),
				role(cc.RoleOrgUser, "noread", orgGUID, ""), role(cc.RoleSpaceDeveloper, "noread", "", devSpace),
			},
		},
	}
	if ccTLS != nil {
		conf, err := ccTLS.ServerConfig("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		opts.TLS = conf
	}
	c, err := cc.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &world{UAA: u, CC: c}
}

func (w *world) resolver() *cfresolver.Resolver {
	return &cfresolver.Resolver{
		CCURL: w.CC.URL(), ClientID: "ssh-proxy", ClientSecret: "ssh-proxy-secret",
		AgentPort: agentPort, HTTP: &http.Client{Timeout: 5 * time.Second},
	}
}

// identity authenticates user with a fresh access token.
func (w *world) identity(t *testing.T, r *cfresolver.Resolver, user string) *api.Identity {
	t.Helper()
	tok, err := w.UAA.MintToken(user, 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.AuthPassword(t.Context(), tok)
	if err != nil {
		t.Fatalf("AuthPassword(%s's token): %v", user, err)
	}
	return id
}

// internal0 is web/0's container IP (instance_internal_ip); the other
// instances' stats give none.
const internal0 = "10.255.0.10"

func target(index, host, guid string) api.Target {
	t := api.Target{
		Name:        "web/" + index,
		Agent:       host + ":9494",
		Capture:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: guid},
		Description: "app myapp instance " + index + " on " + host,
	}
	if index == "0" {
		t.Address = netip.MustParseAddr(internal0)
	}
	return t
}

func paths(w *world) []string {
	var out []string
	for _, e := range w.CC.Requests().Entries() {
		p := e.Path
		if e.RawQuery != "" {
			p += "?" + e.RawQuery
		}
		out = append(out, p)
	}
	return out
}

// TestResolveReadSensitiveData: with cf.policy read_sensitive_data, who
// may read the app's sensitive data may capture it.
func TestResolveReadSensitiveData(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	r.Policy = api.CFPolicyReadSensitiveData
	all := []api.Target{target("0", cell0, instance0GUID), target("2", cell1, instance2GUID)}
	notRunning := []api.Skipped{{Name: "web/1", Reason: "instance is CRASHED"}, {Name: "web/3", Reason: "instance is STARTING"}}
	fullLookup := []string{"/v3/apps/" + appGUID, "/v3/apps/" + appGUID + "/permissions",
		"/v3/apps/" + appGUID + "/processes?types=web", "/v3/processes/" + appGUID + "/stats"}
	permissionOnly := fullLookup[:2]
	notAllowed := "you may not capture app myapp: it takes the space developer role in its space (or admin)"

	cases := []struct {
		name        string
		user        string
		req         capturecmd.Request
		targets     []api.Target
		skipped     []api.Skipped
		code, msg   string
		wantCCPaths []string // nil: not checked
	}{
		{name: "space developer, all instances", user: "developer", req: capturecmd.Request{App: appGUID},
			targets: all, skipped: notRunning, wantCCPaths: fullLookup},
		{name: "admin, all instances", user: "admin", req: capturecmd.Request{App: appGUID},
			targets: all, skipped: notRunning, wantCCPaths: fullLookup},
		{name: "indexes picked, sorted and deduplicated", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{2, 0, 2, 0}},
			targets: all},
		{name: "one index", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{2}},
			targets: all[1:]},
		{name: "crashed instance asked for", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{1, 0}},
			targets: all[:1], skipped: notRunning[:1]},
		{name: "only a crashed instance", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{1}},
			skipped: notRunning[:1]},
		{name: "worker process", user: "developer", req: capturecmd.Request{App: appGUID, Process: "worker"},
			targets: []api.Target{{Name: "worker/0", Agent: cell1 + ":9494",
				Capture:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: workerInstance},
				Description: "app myapp instance 0 on " + cell1}},
			skipped: []api.Skipped{{Name: "worker/1", Reason: "instance is DOWN"}}},

		{name: "space auditor", user: "auditor", req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notAllowed, wantCCPaths: permissionOnly},
		{name: "space supporter", user: "supporter", req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notAllowed, wantCCPaths: permissionOnly},
		{name: "space manager", user: "spacemgr", req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notAllowed, wantCCPaths: permissionOnly},
		{name: "org manager", user: "orgmanager", req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notAllowed, wantCCPaths: permissionOnly},
		{name: "developer of another space", user: "otherdev", req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeTargetNotFound, msg: "app " + appGUID + " not found, or not visible to you", wantCCPaths: fullLookup[:1]},
		{name: "read-only admin (with its scope)", user: "adminro", req: capturecmd.Request{App: appGUID},
			targets: all, skipped: notRunning, wantCCPaths: fullLookup},

		{name: "app not found", user: "admin", req: capturecmd.Request{App: "ab000000-0000-4000-8000-0000000000ff"},
			code: tunnel.CodeTargetNotFound, msg: "app ab000000-0000-4000-8000-0000000000ff not found, or not visible to you"},
		{name: "stopped app", user: "developer", req: capturecmd.Request{App: stoppedGUID},
			code: tunnel.CodeTargetNotFound, msg: "app stopped has no web instances (is it stopped?)"},
		{name: "no such process type", user: "developer", req: capturecmd.Request{App: appGUID, Process: "clock"},
			code: tunnel.CodeTargetNotFound, msg: `app myapp has no process of type "clock"`},
		{name: "index out of range", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{0, 7}},
			code: tunnel.CodeTargetNotFound, msg: "app myapp has no web instance 7 (it has 4: 0..3)"},
		{name: "indexes out of range", user: "developer", req: capturecmd.Request{App: appGUID, Instances: []int{9, 7, 1}},
			code: tunnel.CodeTargetNotFound, msg: "app myapp has no web instance 7, 9 (it has 4: 0..3)"},
		{name: "bad guid", user: "developer", req: capturecmd.Request{App: "../../v2/info"},
			code: tunnel.CodeBadRequest, msg: `app guid "../../v2/info" is not valid`, wantCCPaths: []string{}},
		{name: "guid with a query", user: "developer", req: capturecmd.Request{App: appGUID + "?x=1"},
			code: tunnel.CodeBadRequest, msg: `app guid "` + appGUID + `?x=1" is not valid`, wantCCPaths: []string{}},
		{name: "no app", user: "developer", req: capturecmd.Request{},
			code: tunnel.CodeBadRequest, msg: "--app GUID is required", wantCCPaths: []string{}},
		{name: "filter split into words", user: "developer", req: capturecmd.Request{App: appGUID, Filter: "udp", Targets: []string{"dst", "port", "9000"}},
			code: tunnel.CodeBadRequest, msg: `unexpected argument(s) "dst port 9000": cf captures take --app GUID (and --type, --instance); quote a filter that has spaces, e.g. -f 'tcp port 8080'`,
			wantCCPaths: []string{}},
		{name: "deployment", user: "developer", req: capturecmd.Request{App: appGUID, Deployment: "cf"},
			code: tunnel.CodeBadRequest, msg: "-d is for BOSH deployments: cf captures take --app GUID (and --type, --instance)", wantCCPaths: []string{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := w.identity(t, r, tc.user)
			w.CC.Requests().Reset()
			// The Cloud Controller itself fetches /token_keys; anything else
			// would be the resolver's.
			uaaCalls := func() int { return w.UAA.Requests().Len() - w.UAA.Requests().Count("/token_keys") }
			uaaBefore := uaaCalls()
			targets, skipped, err := r.Resolve(t.Context(), id, tc.req)
			if tc.code != "" {
				var re *tunnel.RejectError
				if !errors.As(err, &re) {
					t.Fatalf("Resolve = %v, %v, %v; want a refusal", targets, skipped, err)
				}
				if re.Code != tc.code || re.Message != tc.msg {
					t.Errorf("refusal = %s: %q\n            want %s: %q", re.Code, re.Message, tc.code, tc.msg)
				}
				if targets != nil || skipped != nil {
					t.Errorf("a refusal came with targets %v and skipped %v", targets, skipped)
				}
			} else {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if !reflect.DeepEqual(targets, tc.targets) {
					t.Errorf("targets = %+v\n   want %+v", targets, tc.targets)
				}
				if !reflect.DeepEqual(skipped, tc.skipped) {
					t.Errorf("skipped = %+v, want %+v", skipped, tc.skipped)
				}
			}
			if tc.wantCCPaths != nil {
				got := paths(w)
				if len(got) == 0 {
					got = []string{}
				}
				if !reflect.DeepEqual(got, tc.wantCCPaths) {
					t.Errorf("Cloud Controller requests = %q, want %q", got, tc.wantCCPaths)
				}
			}
			if n := uaaCalls(); n != uaaBefore {
				t.Errorf("Resolve made %d requests to UAA, want none", n-uaaBefore)
			}
		})
	}
}

// TestResolveUsesTheUsersToken: a token the Cloud Controller refuses is
// not replaced by anything of the API's own.
func TestResolveUsesTheUsersToken(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	id := w.identity(t, r, "developer")
	expired, err := w.UAA.MintToken("developer", -time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	id.Token = expired // expired while the capture was being set up
	_, _, err = r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID})
	re := tunnel.AsReject(err)
	want := "the Cloud Controller refused your token: Invalid Auth Token (401 CF-InvalidAuthToken)"
	if re.Code != tunnel.CodeNotAllowed || re.Message != want {
		t.Errorf("refusal = %s: %q, want %s: %q", re.Code, re.Message, tunnel.CodeNotAllowed, want)
	}
	if strings.Contains(re.Message, expired) {
		t.Error("the refusal contains the token")
	}
}

func TestResolveCloudControllerDown(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	id := w.identity(t, r, "developer")
	w.CC.Close()
	_, _, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID})
	re := tunnel.AsReject(err)
	if re.Code != tunnel.CodeInternal || !strings.HasPrefix(re.Message, "check SSH access: Cloud Controller unreachable: ") {
		t.Errorf("refusal = %s: %q, want internal: check SSH access: Cloud Controller unreachable: …", re.Code, re.Message)
	}
	if strings.Contains(re.Message, id.Token) {
		t.Error("the refusal contains the token")
	}
}

func TestAuthPassword(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver() // UAA is found through the Cloud Controller's root

	tok, err := w.UAA.MintToken("developer", 0)
	if err != nil {
		t.Fatal(err)
	}
	id, err := r.AuthPassword(t.Context(), tok)
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	if id.Name != "developer" || id.Resolver != "cf" || id.Token != tok || id.String() != "cf:developer" {
		t.Errorf("identity = %+v", id)
	}
	if w.CC.Requests().Count("/") != 1 {
		t.Errorf("the Cloud Controller's root was read %d times, want 1", w.CC.Requests().Count("/"))
	}

	// A one-time code is exchanged with the API's client, once.
	code, err := w.UAA.MintCode("auditor", "ssh-proxy")
	if err != nil {
		t.Fatal(err)
	}
	id, err = r.AuthPassword(t.Context(), code)
	if err != nil {
		t.Fatalf("code: %v", err)
	}
	if id.Name != "auditor" || id.Token == "" || id.Token == code {
		t.Errorf("identity from a code = name %q token set %v", id.Name, id.Token != "")
	}
	if _, err := r.AuthPassword(t.Context(), code); !errors.Is(err, uaa.ErrBadCode) {
		t.Errorf("code used twice: %v, want ErrBadCode", err)
	}

	must := minted(t)
	refused := []struct {
		name, password string
		sentry         error
		message        string
	}{
		{"expired", must(w.UAA.MintToken("developer", -time.Minute)), uaa.ErrExpired, "uaa: token has expired"},
		{"forged", must(w.UAA.MintForgedToken("developer", 0)), uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"wrong issuer", must(w.UAA.MintTokenWithIssuer("developer", 0, "https://uaa.example.com/oauth/token")), uaa.ErrInvalidToken,
			"uaa: token is not valid: issued by another UAA"},
		{"unknown code", "ABCDEFGHJK", uaa.ErrBadCode,
			"uaa: one-time code was refused: uaa: token request refused (400 Bad Request): invalid_grant Invalid authorization code: [code]"},
		{"no cloud_controller.read", must(w.UAA.MintToken("noread", 0)), uaa.ErrRefused,
			"uaa: token refused: it has neither cloud_controller.read nor cloud_controller.admin scope (scopes openid cloud_controller.write)"},
		{"another audience", must(w.UAA.Mint(fakeuaa.Mint{Username: "developer", Scopes: []string{"openid", "uaa.user"}})), uaa.ErrRefused,
			"uaa: token refused: it is not for the Cloud Controller (audience openid uaa cf)"},
		{"client of another resource", must(w.UAA.MintClientToken("other", 0)), uaa.ErrRefused,
			`uaa: token refused: it is a token of client "other" for itself (grant client_credentials), not of a user; an operator may allow the client with cf.allowed_clients`},
		{"client not allowed", must(w.UAA.MintClientToken("monitor", 0)), uaa.ErrRefused,
			`uaa: token refused: it is a token of client "monitor" for itself (grant client_credentials), not of a user; an operator may allow the client with cf.allowed_clients`},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			id, err := r.AuthPassword(t.Context(), tc.password)
			if err == nil {
				t.Fatalf("accepted: %+v", id)
			}
			if !errors.Is(err, tc.sentry) || err.Error() != tc.message {
				t.Errorf("error = %q, want %q", err, tc.message)
			}
			if strings.Contains(err.Error(), tc.password) {
				t.Error("the error contains the password")
			}
		})
	}
	// An allowed client's own token is accepted.
	r.AllowedClients = []string{"monitor"}
	if id, err := r.AuthPassword(t.Context(), must(w.UAA.MintClientToken("monitor", 0))); err != nil || id.Name != "client:monitor" {
		t.Errorf("allowed client: %+v, %v", id, err)
	}
	if _, err := r.AuthKey(t.Context(), nil); !errors.Is(err, api.ErrNoAuth) {
		t.Errorf("AuthKey = %v, want ErrNoAuth", err)
	}
}

// minted fails t when minting failed.
func minted(t *testing.T) func(string, error) string {
	return func(tok string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
}

// TestNewTrustsOnlyTheGivenCA: with ca_cert_file the Cloud Controller's
// certificate must come from that CA.
func TestNewTrustsOnlyTheGivenCA(t *testing.T) {
	auth, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	w := startWorld(t, auth)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, auth.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	tok := minted(t)(w.UAA.MintToken("developer", 0))
	id := &api.Identity{Name: "developer", Resolver: "cf", Token: tok}

	r, err := cfresolver.New(api.CFConfig{APIURL: w.CC.URL() + "/", UAAURL: w.UAA.URL(), CACertFile: caFile, Timeout: 5 * time.Second}, agentPort)
	if err != nil {
		t.Fatal(err)
	}
	targets, _, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID, Instances: []int{0}})
	if err != nil || len(targets) != 1 || targets[0].Agent != cell0+":9494" {
		t.Fatalf("Resolve over TLS with the CA = %v, %v", targets, err)
	}

	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	otherFile := filepath.Join(t.TempDir(), "other.pem")
	if err := os.WriteFile(otherFile, other.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = cfresolver.New(api.CFConfig{APIURL: w.CC.URL(), CACertFile: otherFile}, agentPort)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID})
	re := tunnel.AsReject(err)
	if re.Code != tunnel.CodeInternal || !strings.Contains(re.Message, "Cloud Controller unreachable: tls: failed to verify certificate") {
		t.Errorf("Resolve with another CA: %s: %q, want a certificate failure", re.Code, re.Message)
	}

	if _, err := cfresolver.New(api.CFConfig{APIURL: w.CC.URL(), CACertFile: filepath.Join(t.TempDir(), "missing.pem")}, agentPort); err == nil ||
		!strings.HasPrefix(err.Error(), "cfresolver: read CA: ") {
		t.Errorf("missing CA file: %v", err)
	}
	junk := filepath.Join(t.TempDir(), "junk.pem")
	os.WriteFile(junk, []byte("not a certificate"), 0o600)
	if _, err := cfresolver.New(api.CFConfig{APIURL: w.CC.URL(), CACertFile: junk}, agentPort); err == nil ||
		err.Error() != "cfresolver: "+junk+" holds no certificate" {
		t.Errorf("junk CA file: %v", err)
	}
}

// TestResolverZeroHTTP: a Resolver built without an HTTP client uses the
// default one.
func TestResolverZeroHTTP(t *testing.T) {
	w := startWorld(t, nil)
	r := &cfresolver.Resolver{CCURL: w.CC.URL(), AgentPort: agentPort}
	id := w.identity(t, r, "developer")
	targets, _, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID, Instances: []int{2}})
	if err != nil || len(targets) != 1 || targets[0].Name != "web/2" {
		t.Errorf("Resolve = %v, %v", targets, err)
	}
}

// TestResolveCloudControllerError: a status with no CF error document (a
// router's HTML page) names the request that failed and its status line,
// and neither the token nor the page.
func TestResolveCloudControllerError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
		w.Write([]byte("<html>502 Bad Gateway: registered endpoint failed to handle the request</html>"))
	}))
	defer srv.Close()
	r := &cfresolver.Resolver{CCURL: srv.URL, AgentPort: agentPort}
	id := &api.Identity{Name: "developer", Resolver: "cf", Token: "the-users-token"}
	_, _, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID})
	re := tunnel.AsReject(err)
	want := "check SSH access: Cloud Controller: GET " + srv.URL + "/internal/apps/" + appGUID + "/ssh_access/0: 502 Bad Gateway"
	if re.Code != tunnel.CodeInternal || re.Message != want {
		t.Errorf("refusal = %s: %q, want %s: %q", re.Code, re.Message, tunnel.CodeInternal, want)
	}
	if strings.Contains(re.Message, id.Token) || strings.Contains(re.Message, "html") {
		t.Error("the refusal contains the token or the page")
	}
}
