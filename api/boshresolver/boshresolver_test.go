package boshresolver_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	fakedirector "code.cloudfoundry.org/pcap/integration/fakes/director"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

const directorUUID = "d1rec70r-0000-4000-8000-0000000000bb"

// clock is a settable clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// world is a director and its UAA (HTTPS on loopback), a second UAA of
// another director, and a resolver configured like pcap-api does it.
type world struct {
	uaa, otherUAA *fakeuaa.Server
	dir           *fakedirector.Server
	r             *boshresolver.Resolver
	clock         *clock
	operator      ssh.Signer
	cfg           api.BOSHConfig
}

var users = []fakeuaa.User{
	{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "bosh.admin"}},
	{Username: "director-admin", Password: "pw", Scopes: []string{"openid", "bosh." + directorUUID + ".admin"}},
	{Username: "team-cf", Password: "pw", Scopes: []string{"openid", "bosh.teams.cf-team.admin"}},
	{Username: "team-other", Password: "pw", Scopes: []string{"openid", "bosh.teams.other.admin"}},
	{Username: "reader", Password: "pw", Scopes: []string{"openid", "bosh.read"}},
	{Username: "other-director-admin", Password: "pw", Scopes: []string{"openid", "bosh.99999999-0000-4000-8000-000000000000.admin"}},
}

func newWorld(t *testing.T) *world {
	t.Helper()
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, authority.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now()}
	startUAA := func() *fakeuaa.Server {
		tlsConf, err := authority.ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		u, err := fakeuaa.New(fakeuaa.Options{TLS: tlsConf, Users: users, Now: clk.Now, Clients: append(fakeuaa.DefaultClients(),
			fakeuaa.Client{ID: "pcap_ssh", Secret: "pcap-ssh-secret", AuthorizedGrantTypes: []string{"authorization_code"}, RedirectURI: "/login"},
			fakeuaa.Client{ID: "pcap-api", Secret: "pcap-api-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"}},
			fakeuaa.Client{ID: "ops", Secret: "ops-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"}},
		)})
		if err != nil {
			t.Fatal(err)
		}
		if err := u.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { u.Close() })
		return u
	}
	w := &world{uaa: startUAA(), otherUAA: startUAA(), clock: clk}
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	d, err := fakedirector.New(fakedirector.Options{
		UUID: directorUUID, UAAURL: w.uaa.URL(), Verifier: w.uaa.Verifier(hc), CA: authority,
		Deployments: []fakedirector.Deployment{
			{Name: "cf", Teams: []string{"cf-team"}, Instances: []fakedirector.Instance{
				{Job: "router", Index: 0, ID: "r0", IPs: []string{"10.0.0.10"}},
				{Job: "router", Index: 1, ID: "r1", IPs: []string{"10.0.0.11"}},
				{Job: "worker", Index: 0, ID: "w0"}, // a VM without an IP
				{Job: "errand", Index: 0, ID: "e0", State: "detached"},
			}},
			{Name: "other", Teams: []string{"other"}, Instances: []fakedirector.Instance{
				{Job: "db", Index: 0, ID: "d0", IPs: []string{"10.0.5.10"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w.dir = d

	op, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	w.operator = op
	keys := filepath.Join(dir, "operators")
	if err := os.WriteFile(keys, ssh.MarshalAuthorizedKey(op.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	w.cfg = api.BOSHConfig{
		DirectorURL: d.URL(), CACertFile: caFile, OperatorKeysFile: keys,
		UAAClientID: "pcap-api", UAAClientSecret: "pcap-api-secret",
		CodeClientID: "pcap_ssh", CodeClientSecret: "pcap-ssh-secret",
		Timeout: 10 * time.Second,
	}
	w.r = w.resolver(t, w.cfg)
	return w
}

// resolver is another resolver (another pcap-api instance) with cfg.
func (w *world) resolver(t *testing.T, cfg api.BOSHConfig) *boshresolver.Resolver {
	t.Helper()
	r, err := boshresolver.New(cfg, 9494)
	if err != nil {
		t.Fatal(err)
	}
	r.Now = w.clock.Now
	t.Cleanup(r.HTTP.CloseIdleConnections)
	return r
}

func (w *world) mint(t *testing.T, m fakeuaa.Mint) string {
	t.Helper()
	tok, err := w.uaa.Mint(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func (w *world) login(t *testing.T, user string) *api.Identity {
	t.Helper()
	id, err := w.r.AuthPassword(context.Background(), w.mint(t, fakeuaa.Mint{Username: user}))
	if err != nil {
		t.Fatalf("%s: %v", user, err)
	}
	return id
}

func targetNames(ts []api.Target) []string {
	out := []string{}
	for _, t := range ts {
		out = append(out, t.Name)
	}
	return out
}

// wantReject checks err is a rejection with this code and message.
func wantReject(t *testing.T, err error, code, msg string) {
	t.Helper()
	var re *tunnel.RejectError
	if !errors.As(err, &re) {
		t.Fatalf("err = %v (%T), want a rejection %s: %q", err, err, code, msg)
	}
	if re.Code != code || re.Message != msg {
		t.Errorf("rejection = %s: %q, want %s: %q", re.Code, re.Message, code, msg)
	}
}

// wantBanner checks that err is shown to ssh clients as msg.
func wantBanner(t *testing.T, err error, msg string) {
	t.Helper()
	var be *ssh.BannerError
	if !errors.As(err, &be) {
		t.Fatalf("err = %v (%T), want an ssh banner", err, err)
	}
	if be.Message != msg {
		t.Errorf("banner = %q, want %q", be.Message, msg)
	}
}

func TestScopes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	req := capturecmd.Request{Deployment: "cf", Targets: []string{"router"}}
	for _, tc := range []struct {
		user      string
		authErr   error
		code, msg string // Resolve's rejection
	}{
		{user: "admin"},
		{user: "director-admin"},
		{user: "team-cf"},
		{user: "team-other", code: tunnel.CodeNotAllowed,
			msg: `you are not an admin of deployment "cf" (needs bosh.admin or admin of a team owning it)`},
		{user: "reader", authErr: boshresolver.ErrNotAdmin},
		{user: "other-director-admin", authErr: boshresolver.ErrNotAdmin},
	} {
		t.Run(tc.user, func(t *testing.T) {
			id, err := w.r.AuthPassword(ctx, "bearer "+w.mint(t, fakeuaa.Mint{Username: tc.user}))
			if tc.authErr != nil {
				if !errors.Is(err, tc.authErr) {
					t.Fatalf("auth: err = %v, want %v", err, tc.authErr)
				}
				wantBanner(t, err, "pcap-api: refused: token has no bosh admin scope (bosh.admin, bosh.<director-uuid>.admin or bosh.teams.<team>.admin)\n")
				return
			}
			if err != nil {
				t.Fatalf("auth: %v", err)
			}
			if id.Name != tc.user || id.Resolver != "bosh" || strings.HasPrefix(id.Token, "bearer") || id.Token == "" {
				t.Errorf("identity = %+v", id)
			}
			targets, skipped, err := w.r.Resolve(ctx, id, req)
			if tc.code != "" {
				wantReject(t, err, tc.code, tc.msg)
				return
			}
			if err != nil {
				t.Fatalf("resolve: %v", err)
			}
			want := []api.Target{
				{Name: "router/r0", Agent: "10.0.0.10:9494", Capture: agentproto.Target{Kind: agentproto.TargetHost}, Description: "deployment cf, router/0, 10.0.0.10", Address: netip.MustParseAddr("10.0.0.10")},
				{Name: "router/r1", Agent: "10.0.0.11:9494", Capture: agentproto.Target{Kind: agentproto.TargetHost}, Description: "deployment cf, router/1, 10.0.0.11", Address: netip.MustParseAddr("10.0.0.11")},
			}
			if !reflect.DeepEqual(targets, want) || len(skipped) != 0 {
				t.Errorf("targets = %+v, skipped = %+v; want %+v", targets, skipped, want)
			}
		})
	}
	t.Run("team admin of the other deployment", func(t *testing.T) {
		targets, _, err := w.r.Resolve(ctx, w.login(t, "team-other"), capturecmd.Request{Deployment: "other", Targets: []string{"db"}})
		if err != nil || !reflect.DeepEqual(targetNames(targets), []string{"db/d0"}) {
			t.Errorf("targets = %v, err = %v", targetNames(targets), err)
		}
	})
}

func TestRefusedTokens(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	other, err := w.otherUAA.Mint(fakeuaa.Mint{Username: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		token  string
		is     error
		banner string
	}{
		{"forged", w.mint(t, fakeuaa.Mint{Username: "admin", Forged: true}), uaa.ErrInvalidToken,
			"pcap-api: refused: token is not valid: signature does not verify; log in again: bosh -e ENVIRONMENT log-in\n"},
		{"expired", w.mint(t, fakeuaa.Mint{Username: "admin", Lifetime: -time.Hour}), uaa.ErrExpired,
			"pcap-api: refused: token has expired; log in again: bosh -e ENVIRONMENT log-in\n"},
		{"other director's UAA", other, uaa.ErrInvalidToken,
			"pcap-api: refused: token is not valid: signature does not verify; log in again: bosh -e ENVIRONMENT log-in\n"},
		{"our key, other issuer", w.mint(t, fakeuaa.Mint{Username: "admin", Issuer: w.otherUAA.Issuer()}), uaa.ErrInvalidToken,
			"pcap-api: refused: token is not valid: issued by another UAA; log in again: bosh -e ENVIRONMENT log-in\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := w.r.AuthPassword(ctx, tc.token)
			if !errors.Is(err, tc.is) || id != nil {
				t.Fatalf("id = %v, err = %v; want %v", id, err, tc.is)
			}
			wantBanner(t, err, tc.banner)
			if strings.Contains(err.Error(), tc.token[len(tc.token)-20:]) {
				t.Error("the error holds the token")
			}
		})
	}
	t.Run("token cut by OpenSSH", func(t *testing.T) {
		long := w.mint(t, fakeuaa.Mint{Username: "admin", Scopes: manyScopes()})
		if len(long) <= boshresolver.OpenSSHMaxPassword {
			t.Fatalf("token is %d bytes, want more than 1023", len(long))
		}
		openssh := api.WithClientVersion(ctx, "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13")
		_, err := w.r.AuthPassword(openssh, long[:boshresolver.OpenSSHMaxPassword])
		if !errors.Is(err, boshresolver.ErrTruncatedToken) {
			t.Fatalf("err = %v, want ErrTruncatedToken", err)
		}
		wantBanner(t, err, "pcap-api: refused: the password is a UAA token cut at 1023 bytes, as OpenSSH does; use a one-time code (pcap-bosh ssh-code)\n")
		// From another client, 1023 bytes are what it sent: not refused
		// as cut by OpenSSH (this one, cut, is then no token at all).
		_, err = w.r.AuthPassword(api.WithClientVersion(ctx, "SSH-2.0-Go"), long[:boshresolver.OpenSSHMaxPassword])
		if err == nil || errors.Is(err, boshresolver.ErrTruncatedToken) {
			t.Errorf("cut token from a Go client: err = %v, want a refusal other than ErrTruncatedToken", err)
		}
		// The whole token is fine (the Go clients send it).
		if _, err := w.r.AuthPassword(openssh, long); err != nil {
			t.Errorf("whole token: %v", err)
		}
	})
}

// TestWholeTokenOf1023Bytes: a client that is not OpenSSH may send a whole
// token of exactly 1023 bytes, and logs in with it; from OpenSSH, whose
// limit it is, it is refused as cut.
func TestWholeTokenOf1023Bytes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	// A client's token (a user's is longer than 1023 bytes already),
	// padded with scopes that appear in two and three claims.
	var tok string
	for pad2 := 0; pad2 < 4 && len(tok) != boshresolver.OpenSSHMaxPassword; pad2++ {
		for pad3 := 0; pad3 < 60; pad3++ {
			tok = w.mint(t, fakeuaa.Mint{ClientID: "ops", Scopes: []string{"bosh.admin",
				"bosh." + strings.Repeat("y", pad2), "x" + strings.Repeat("y", pad3)}})
			if len(tok) >= boshresolver.OpenSSHMaxPassword {
				break
			}
		}
	}
	if len(tok) != boshresolver.OpenSSHMaxPassword {
		t.Fatalf("token is %d bytes, want 1023", len(tok))
	}
	id, err := w.r.AuthPassword(api.WithClientVersion(ctx, "SSH-2.0-Go"), tok)
	if err != nil || id.Name != "client:ops" {
		t.Errorf("whole 1023-byte token from a Go client: %v, %v", id, err)
	}
	_, err = w.r.AuthPassword(api.WithClientVersion(ctx, "SSH-2.0-OpenSSH_9.6"), tok)
	if !errors.Is(err, boshresolver.ErrTruncatedToken) {
		t.Errorf("1023-byte token from OpenSSH: err = %v, want ErrTruncatedToken", err)
	}
}

// manyScopes makes a token longer than OpenSSH's 1023 bytes of password.
func manyScopes() []string {
	s := []string{"openid", "bosh.admin"}
	for i := range 40 {
		s = append(s, "bosh.teams.team-"+strings.Repeat("x", 8)+string(rune('a'+i%26))+".admin")
	}
	return s
}

func TestResolve(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	admin := w.login(t, "admin")
	teamCF := w.login(t, "team-cf")
	for _, tc := range []struct {
		name      string
		id        *api.Identity
		req       capturecmd.Request
		code, msg string
		targets   []string
		skipped   []api.Skipped
	}{
		{name: "unknown deployment", id: admin, req: capturecmd.Request{Deployment: "nope", Targets: []string{"router"}},
			code: tunnel.CodeTargetNotFound, msg: `deployment "nope" not found`},
		{name: "unknown deployment, team admin", id: teamCF, req: capturecmd.Request{Deployment: "nope", Targets: []string{"router"}},
			code: tunnel.CodeTargetNotFound, msg: `deployment "nope" not found`},
		{name: "unknown group and instance", id: admin, req: capturecmd.Request{Deployment: "cf", Targets: []string{"router/1", "nope", "router/9"}},
			code: tunnel.CodeTargetNotFound, msg: "no such instance group or instance: nope, router/9 (groups: errand, router, worker)"},
		{name: "no group: the whole deployment, the detached errand left out", id: teamCF, req: capturecmd.Request{Deployment: "cf"},
			targets: []string{"router/r0", "router/r1"},
			skipped: []api.Skipped{{Name: "worker/w0", Reason: "instance has no IP address"}}},
		{name: "no group of another team's deployment", id: teamCF, req: capturecmd.Request{Deployment: "other"},
			code: tunnel.CodeNotAllowed, msg: `you are not an admin of deployment "other" (needs bosh.admin or admin of a team owning it)`},
		{name: "no deployment", id: admin, req: capturecmd.Request{Targets: []string{"router"}},
			code: tunnel.CodeBadRequest, msg: "-d DEPLOYMENT is required"},
		{name: "app without a Cloud Controller client", id: admin, req: capturecmd.Request{Deployment: "cf", App: "x", Targets: []string{"router"}},
			code: tunnel.CodeNotAllowed, msg: "this pcap-api has no Cloud Controller client (bosh.cf_client), so it cannot capture app instances"},
		{name: "instance without app", id: admin, req: capturecmd.Request{Deployment: "cf", Instances: []int{0}, Targets: []string{"router"}},
			code: tunnel.CodeBadRequest, msg: "--instance picks instances of the app of --app GUID; name VMs as GROUP/ID"},
		{name: "by index and uuid", id: teamCF, req: capturecmd.Request{Deployment: "cf", Targets: []string{"router/1", "router/r0", "router/r1"}},
			targets: []string{"router/r1", "router/r0"}},
		{name: "without IP or VM", id: admin, req: capturecmd.Request{Deployment: "cf", Targets: []string{"worker", "router/0", "errand"}},
			targets: []string{"router/r0"},
			skipped: []api.Skipped{{Name: "worker/w0", Reason: "instance has no IP address"}, {Name: "errand/e0", Reason: "instance has no VM"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, skipped, err := w.r.Resolve(ctx, tc.id, tc.req)
			if tc.code != "" {
				wantReject(t, err, tc.code, tc.msg)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := targetNames(targets); !reflect.DeepEqual(got, tc.targets) {
				t.Errorf("targets %v, want %v", got, tc.targets)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
		})
	}
	t.Run("the director is asked with the user's token", func(t *testing.T) {
		// A token the director refuses (here: expired since login) fails
		// at Resolve even with bosh.admin.
		id := *admin
		id.Token = w.mint(t, fakeuaa.Mint{Username: "admin", Lifetime: -time.Hour})
		_, _, err := w.r.Resolve(ctx, &id, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}})
		wantReject(t, err, tunnel.CodeNotAllowed, "director refused the token for /deployments/cf/instances (401 Unauthorized): unauthorized")
	})
}

// TestOneTimeCodes: codes are the director's UAA's (authorization codes
// for the code client); the API exchanges them and keeps no state, so UAA
// makes them single use and short lived, and any API instance takes them.
func TestOneTimeCodes(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	admin := w.login(t, "admin")

	t.Run("works once", func(t *testing.T) {
		code, err := w.r.MintCode(admin)
		if err != nil {
			t.Fatal(err)
		}
		if code == "" || uaa.LooksLikeToken(code) {
			t.Errorf("code %q: want a short one-time code", code)
		}
		id, err := w.r.AuthPassword(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		if id.Name != "admin" || id.Method != api.MethodCode || id.Resolver != "bosh" || !reflect.DeepEqual(id.Scopes, admin.Scopes) || id.Token == "" || id.Token == admin.Token {
			t.Errorf("identity = %+v; want admin by one-time code with a token of its own and scopes %v", *id, admin.Scopes)
		}
		// One user, one quota: the code login counts as the token's.
		if !strings.HasPrefix(admin.Subject, "user:") || id.Subject != admin.Subject || id.Key() != admin.Key() {
			t.Errorf("keys: code %q, token %q; want one user id", id.Key(), admin.Key())
		}
		// The code's user captures with the token UAA issued for the code.
		if targets, _, err := w.r.Resolve(ctx, id, capturecmd.Request{Deployment: "cf", Targets: []string{"router/0"}}); err != nil || len(targets) != 1 {
			t.Errorf("resolve with code identity: %v, %v", targets, err)
		}
		_, err = w.r.AuthPassword(ctx, code)
		if !errors.Is(err, boshresolver.ErrBadCode) || !errors.Is(err, uaa.ErrBadCode) {
			t.Fatalf("second use: err = %v, want ErrBadCode (UAA refused it)", err)
		}
		if strings.Contains(err.Error(), code) {
			t.Errorf("the error names the code: %v", err)
		}
		wantBanner(t, err, "pcap-api: refused: one-time code is unknown, used or expired; get a new one with: pcap-bosh -e ENVIRONMENT ssh-code\n")
		if want := "boshresolver: one-time code is unknown, used or expired: uaa: one-time code was refused: uaa: token request refused (400 Bad Request): invalid_grant Invalid authorization code: [code]"; err.Error() != want {
			t.Errorf("logged error %q, want %q", err, want)
		}
		if _, err := w.r.MintCode(id); err == nil || err.Error() != "a one-time code cannot mint another; log in with a token" {
			t.Errorf("mint from a code login: err = %v", err)
		}
	})

	t.Run("another API instance exchanges it", func(t *testing.T) {
		code, err := w.r.MintCode(admin)
		if err != nil {
			t.Fatal(err)
		}
		other := w.resolver(t, w.cfg)
		if id, err := other.AuthPassword(ctx, code); err != nil || id.Name != "admin" || id.Method != api.MethodCode {
			t.Fatalf("second instance: %v, %v", id, err)
		}
		if _, err := w.r.AuthPassword(ctx, code); !errors.Is(err, boshresolver.ErrBadCode) {
			t.Errorf("first instance after the second used it: err = %v, want ErrBadCode", err)
		}
	})

	t.Run("expires", func(t *testing.T) {
		// UAA's code lifetime (the fake's default, UAA's: 5 minutes).
		code, err := w.r.MintCode(admin)
		if err != nil {
			t.Fatal(err)
		}
		w.clock.Add(5*time.Minute + time.Second)
		if _, err := w.r.AuthPassword(ctx, code); !errors.Is(err, boshresolver.ErrBadCode) {
			t.Fatalf("expired code: err = %v, want ErrBadCode", err)
		}
		admin = w.login(t, "admin") // a token of the new time
		code, err = w.r.MintCode(admin)
		if err != nil {
			t.Fatal(err)
		}
		w.clock.Add(5*time.Minute - time.Second)
		if _, err := w.r.AuthPassword(ctx, code); err != nil {
			t.Errorf("code at the end of its time: %v", err)
		}
	})

	t.Run("bound to the code client", func(t *testing.T) {
		code, err := w.uaa.MintCode("admin", "ssh-proxy")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.r.AuthPassword(ctx, code); !errors.Is(err, boshresolver.ErrBadCode) {
			t.Errorf("a code of another client: err = %v, want ErrBadCode", err)
		}
	})

	t.Run("no code client configured", func(t *testing.T) {
		cfg := w.cfg
		cfg.CodeClientSecret = ""
		r := w.resolver(t, cfg)
		code, err := w.r.MintCode(admin)
		if err != nil {
			t.Fatal(err)
		}
		before := w.uaa.Requests().Count("/oauth/token")
		_, err = r.AuthPassword(ctx, code)
		if !errors.Is(err, boshresolver.ErrNoCodes) {
			t.Errorf("err = %v, want ErrNoCodes", err)
		}
		if n := w.uaa.Requests().Count("/oauth/token") - before; n != 0 {
			t.Errorf("refusing the code took %d token requests, want none", n)
		}
	})

	t.Run("unknown", func(t *testing.T) {
		if _, err := w.r.AuthPassword(ctx, "aaaabbbbccccddddeeeeffffgggghhhh"); !errors.Is(err, boshresolver.ErrBadCode) {
			t.Errorf("err = %v, want ErrBadCode", err)
		}
		if _, err := w.r.AuthPassword(ctx, ""); !errors.Is(err, boshresolver.ErrBadCode) {
			t.Errorf("empty password: err = %v, want ErrBadCode", err)
		}
	})

	t.Run("codes are bound to their user", func(t *testing.T) {
		team := w.login(t, "team-other")
		code, err := w.r.MintCode(team)
		if err != nil {
			t.Fatal(err)
		}
		id, err := w.r.AuthPassword(ctx, code)
		if err != nil {
			t.Fatal(err)
		}
		_, _, err = w.r.Resolve(ctx, id, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}})
		wantReject(t, err, tunnel.CodeNotAllowed, `you are not an admin of deployment "cf" (needs bosh.admin or admin of a team owning it)`)
	})

	t.Run("key users cannot mint", func(t *testing.T) {
		id, err := w.r.AuthKey(ctx, w.operator.PublicKey())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := w.r.MintCode(id); err == nil || err.Error() != "one-time codes are for token users; log in with a token" {
			t.Errorf("err = %v", err)
		}
	})
}

func TestBreakGlassKey(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	id, err := w.r.AuthKey(ctx, w.operator.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	if want := "key:" + ssh.FingerprintSHA256(w.operator.PublicKey()); id.Name != want || !strings.HasPrefix(id.Name, "key:SHA256:") {
		t.Errorf("name = %q, want %q", id.Name, want)
	}
	// The token is the API's own client's.
	claims, err := (&uaa.Client{URL: w.uaa.URL(), HTTP: w.r.HTTP}).Verify(ctx, id.Token)
	if err != nil {
		t.Fatal(err)
	}
	if claims.ClientID != "pcap-api" || claims.GrantType != "client_credentials" || claims.UserName != "" {
		t.Errorf("token claims = %+v", claims)
	}
	targets, _, err := w.r.Resolve(ctx, id, capturecmd.Request{Deployment: "other", Targets: []string{"db"}})
	if err != nil || !reflect.DeepEqual(targetNames(targets), []string{"db/d0"}) {
		t.Errorf("targets = %v, err = %v", targetNames(targets), err)
	}

	stranger, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.r.AuthKey(ctx, stranger.PublicKey()); !errors.Is(err, tunnel.ErrUnauthorizedKey) {
		t.Errorf("stranger's key: err = %v, want ErrUnauthorizedKey", err)
	}

	// Without operator keys, keys are not offered.
	none := &boshresolver.Resolver{Director: w.r.Director, ClientID: "pcap-api", ClientSecret: "pcap-api-secret"}
	if _, err := none.AuthKey(ctx, w.operator.PublicKey()); !errors.Is(err, api.ErrNoAuth) {
		t.Errorf("no operators: err = %v, want api.ErrNoAuth", err)
	}
}

func TestBadClientSecret(t *testing.T) {
	w := newWorld(t)
	w.r.ClientSecret = "wrong"
	_, err := w.r.AuthKey(context.Background(), w.operator.PublicKey())
	if want := "boshresolver: token for key user: uaa: token request refused (401 Unauthorized): unauthorized Bad credentials"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}

func TestDirectorUnreachable(t *testing.T) {
	r, err := boshresolver.New(api.BOSHConfig{DirectorURL: "https://127.0.0.1:1", Timeout: 2 * time.Second}, 9494)
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.AuthPassword(context.Background(), "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")
	if err == nil || !strings.HasPrefix(err.Error(), "boshresolver: director info: director unreachable: ") {
		t.Errorf("err = %v", err)
	}
}

// TestTokenAudiences: a token must carry one of the configured audiences:
// by default bosh_cli or bosh (any token with a bosh.* scope); with
// ["bosh_cli"] only tokens of the bosh CLI's client.
func TestTokenAudiences(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	cli := w.mint(t, fakeuaa.Mint{Username: "admin", ClientID: "bosh_cli"})
	other := w.mint(t, fakeuaa.Mint{Username: "admin", ClientID: "cf"})
	for _, tok := range []string{cli, other} {
		if _, err := w.r.AuthPassword(ctx, tok); err != nil {
			t.Errorf("default audiences: %v", err)
		}
	}
	w.r.TokenAudiences = []string{"bosh_cli"}
	if _, err := w.r.AuthPassword(ctx, cli); err != nil {
		t.Errorf("bosh CLI token: %v", err)
	}
	id, err := w.r.AuthPassword(ctx, other)
	if !errors.Is(err, uaa.ErrRefused) || id != nil {
		t.Fatalf("id = %v, err = %v; want ErrRefused", id, err)
	}
	wantBanner(t, err, "pcap-api: refused: token refused: it is not for the BOSH director (audience openid bosh cf, want one of bosh_cli); log in with the bosh CLI: bosh -e ENVIRONMENT log-in\n")
}
