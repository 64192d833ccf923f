package boshcli_test

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/bosh/boshcli"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	fakedirector "code.cloudfoundry.org/pcap/integration/fakes/director"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor/frontdoortest"
)

const directorUUID = "d1rec70r-0000-4000-8000-0000000000cc"

// world is a director and its UAA (HTTPS on loopback), a UAA of another
// director, and a fake pcap-api front door that records what it is sent.
type world struct {
	authority *ca.Authority
	uaa       *fakeuaa.Server
	otherUAA  *fakeuaa.Server
	dir       *fakedirector.Server
	http      *http.Client
	api       *frontdoortest.Server
}

func newWorld(t *testing.T) *world {
	t.Helper()
	cleanEnv(t)
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{authority: authority}
	w.http = &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}, Timeout: 10 * time.Second}
	t.Cleanup(w.http.CloseIdleConnections)
	startUAA := func() *fakeuaa.Server {
		tlsConf, err := authority.ServerConfig()
		if err != nil {
			t.Fatal(err)
		}
		u := fakeuaa.StartForTest(t, fakeuaa.Options{TLS: tlsConf,
			Users: []fakeuaa.User{
				{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "bosh.admin"}},
				{Username: "reader", Password: "reader-pw", Scopes: []string{"openid", "bosh.read"}},
			},
			Clients: append(fakeuaa.DefaultClients(), fakeuaa.Client{
				ID: "ops", Secret: "ops-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"},
			}, fakeuaa.Client{
				ID: "pcap_ssh", Secret: "pcap-ssh-secret", AuthorizedGrantTypes: []string{"authorization_code"}, RedirectURI: "/login",
			}),
		})
		return u
	}
	w.uaa, w.otherUAA = startUAA(), startUAA()
	d := fakedirector.StartForTest(t, fakedirector.Options{
		Name: "test-bosh", UUID: directorUUID, UAAURL: w.uaa.URL(), Verifier: w.uaa.Verifier(w.http), CA: authority,
		Deployments: []fakedirector.Deployment{{Name: "cf", Instances: []fakedirector.Instance{
			{Job: "router", Index: 0, ID: "r0", IPs: []string{"10.0.0.10"}},
			{Job: "router", Index: 1, ID: "r1", IPs: []string{"10.0.0.11"}},
			{Job: "router", Index: 2, ID: "r2", IPs: []string{"10.0.0.12"}},
			{Job: "errand", Index: 0, ID: "e0", State: "detached"},
		}}},
	})
	w.dir = d
	w.api = startFakeAPI(t)
	return w
}

// cleanEnv unsets the variables pcap-bosh reads, for the test.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, v := range []string{"BOSH_ENVIRONMENT", "BOSH_CONFIG", "BOSH_CA_CERT", "BOSH_CLIENT", "BOSH_CLIENT_SECRET",
		"BOSH_NON_INTERACTIVE", "PCAP_API", "PCAP_API_HOST_KEY_FINGERPRINT"} {
		t.Setenv(v, "")
		os.Unsetenv(v)
	}
}

func (w *world) mint(t *testing.T, u *fakeuaa.Server, m fakeuaa.Mint) string {
	t.Helper()
	tok, err := u.Mint(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// passwordGrant logs in like `bosh log-in` does (client bosh_cli).
func (w *world) passwordGrant(t *testing.T, user string) *uaa.Token {
	t.Helper()
	tok, err := (&uaa.Client{URL: w.uaa.URL(), HTTP: w.http}).Grant(context.Background(), "bosh_cli", "",
		url.Values{"grant_type": {"password"}, "username": {user}, "password": {user + "-pw"}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// configEnv is one environment of ~/.bosh/config as the bosh CLI writes it.
type configEnv struct {
	URL             string `yaml:"url"`
	CACert          string `yaml:"ca_cert,omitempty"`
	Alias           string `yaml:"alias,omitempty"`
	AccessToken     string `yaml:"access_token,omitempty"`
	AccessTokenType string `yaml:"access_token_type,omitempty"`
	RefreshToken    string `yaml:"refresh_token,omitempty"`
}

// writeConfig writes a bosh config with one environment "fake" and
// returns its path.
func (w *world) writeConfig(t *testing.T, access, refresh string) string {
	t.Helper()
	cfg := map[string]any{"environments": []configEnv{{
		URL: w.dir.URL(), CACert: string(w.authority.CertPEM()), Alias: "fake",
		AccessToken: access, AccessTokenType: "bearer", RefreshToken: refresh,
	}}}
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "config")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// startFakeAPI starts the fake front door the clients' tests share, for
// user "bosh", answering captures with a few bytes on stdout.
func startFakeAPI(t *testing.T) *frontdoortest.Server {
	t.Helper()
	return frontdoortest.Start(t, &frontdoortest.Server{User: "bosh", Stdout: "pcapng bytes\n"})
}

// exchange trades a one-time code for a token as pcap-api does (client
// pcap_ssh), and returns its verified claims.
func (w *world) exchange(t *testing.T, code string) *uaa.Claims {
	t.Helper()
	u := &uaa.Client{URL: w.uaa.URL(), HTTP: w.http}
	tok, err := u.ExchangeCode(context.Background(), "pcap_ssh", "pcap-ssh-secret", code)
	if err != nil {
		t.Fatalf("exchange the code: %v", err)
	}
	claims, err := u.Verify(context.Background(), tok.AccessToken)
	if err != nil {
		t.Fatalf("the code's token does not verify: %v", err)
	}
	return claims
}

type result struct {
	status         int
	stdout, stderr string
}

func run(stdin string, terminal bool, args ...string) result {
	var out, errb bytes.Buffer
	st := boshcli.Run(boshcli.IO{Stdin: strings.NewReader(stdin), Stdout: &out, Stderr: &errb, StdinTerminal: terminal}, args)
	return result{st, out.String(), errb.String()}
}

func TestResolveEnv(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	token := w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"})
	cfg := w.writeConfig(t, token, "")
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caFile, w.authority.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	noCert := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(noCert, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yml")
	if err := os.WriteFile(bad, []byte("environments: {"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		o        boshcli.EnvOptions
		err      string // exact, or prefix when it ends in "…"
		wantURL  string
		reachTLS bool // the director answers over TLS with the resolved CA
	}{
		{name: "alias", o: boshcli.EnvOptions{Environment: "fake", ConfigPath: cfg}, wantURL: w.dir.URL(), reachTLS: true},
		{name: "URL in the config", o: boshcli.EnvOptions{Environment: w.dir.URL() + "/", ConfigPath: cfg}, wantURL: w.dir.URL(), reachTLS: true},
		{name: "URL with client credentials, CA PEM", o: boshcli.EnvOptions{Environment: w.dir.URL(), ConfigPath: cfg,
			Client: "ops", ClientSecret: "ops-secret", CACert: string(w.authority.CertPEM())}, wantURL: w.dir.URL(), reachTLS: true},
		{name: "URL, CA path", o: boshcli.EnvOptions{Environment: w.dir.URL(), ConfigPath: cfg, CACert: caFile}, wantURL: w.dir.URL(), reachTLS: true},
		{name: "given config missing", o: boshcli.EnvOptions{Environment: w.dir.URL(), ConfigPath: filepath.Join(dir, "none"), Client: "ops"},
			err: "read bosh config: open " + filepath.Join(dir, "none") + ": no such file or directory"},
		{name: "missing environment", o: boshcli.EnvOptions{ConfigPath: cfg},
			err: "no environment: give -e ALIAS|URL or set BOSH_ENVIRONMENT"},
		{name: "unknown alias", o: boshcli.EnvOptions{Environment: "prod", ConfigPath: cfg},
			err: `environment "prod" is not in ` + cfg + " (bosh alias-env, or give its URL)"},
		{name: "not logged in", o: boshcli.EnvOptions{Environment: "https://10.0.0.6:25555", ConfigPath: cfg},
			err: "not logged in to https://10.0.0.6:25555: run bosh log-in, or set BOSH_CLIENT and BOSH_CLIENT_SECRET"},
		{name: "CA path missing", o: boshcli.EnvOptions{Environment: "fake", ConfigPath: cfg, CACert: filepath.Join(dir, "nope.pem")},
			err: "read CA certificate: open " + filepath.Join(dir, "nope.pem") + ": no such file or directory"},
		{name: "CA file without a certificate", o: boshcli.EnvOptions{Environment: "fake", ConfigPath: cfg, CACert: noCert},
			err: "the CA certificate holds no certificate"},
		{name: "CA PEM without a certificate", o: boshcli.EnvOptions{Environment: "fake", ConfigPath: cfg, CACert: "-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n"},
			err: "the CA certificate holds no certificate"},
		{name: "bad config", o: boshcli.EnvOptions{Environment: "fake", ConfigPath: bad},
			err: "read bosh config " + bad + ": yaml: …"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, err := boshcli.ResolveEnv(tc.o)
			if tc.err != "" {
				if err == nil {
					t.Fatalf("no error, want %q", tc.err)
				}
				if p, ok := strings.CutSuffix(tc.err, "…"); ok && strings.HasPrefix(err.Error(), p) {
					return
				}
				if err.Error() != tc.err {
					t.Fatalf("err = %q, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if env.URL != tc.wantURL {
				t.Errorf("URL = %q, want %q", env.URL, tc.wantURL)
			}
			info, err := env.Director.Info(ctx)
			if tc.reachTLS && (err != nil || info.UUID != directorUUID) {
				t.Errorf("director info over TLS: %v, %v", info, err)
			}
		})
	}
	t.Run("default config in HOME", func(t *testing.T) {
		home := t.TempDir()
		if err := os.MkdirAll(filepath.Join(home, ".bosh"), 0o700); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(home, ".bosh", "config"), b, 0o600); err != nil {
			t.Fatal(err)
		}
		t.Setenv("HOME", home)
		env, err := boshcli.ResolveEnv(boshcli.EnvOptions{Environment: "fake"})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := env.Token(ctx)
		if err != nil || tok != token {
			t.Errorf("token from ~/.bosh/config: %v (same: %v)", err, tok == token)
		}
	})
	t.Run("client credentials, no config, CA path", func(t *testing.T) {
		t.Setenv("HOME", t.TempDir()) // no ~/.bosh/config
		env, err := boshcli.ResolveEnv(boshcli.EnvOptions{Environment: w.dir.URL(), Client: "ops", ClientSecret: "ops-secret", CACert: caFile})
		if err != nil {
			t.Fatal(err)
		}
		if info, err := env.Director.Info(ctx); err != nil || info.UUID != directorUUID {
			t.Errorf("director info over TLS: %v, %v", info, err)
		}
	})
	t.Run("no CA: the system roots do not know the director", func(t *testing.T) {
		t.Setenv("HOME", t.TempDir())
		env, err := boshcli.ResolveEnv(boshcli.EnvOptions{Environment: w.dir.URL(), Client: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := env.Director.Info(ctx); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
			t.Errorf("err = %v, want an unknown authority", err)
		}
	})
}

// TestTokenRefresh: an expired access token in the config is refreshed in
// memory, the fresh one is what pcap-api gets, and the config file is left
// as it was.
func TestTokenRefresh(t *testing.T) {
	w := newWorld(t)
	login := w.passwordGrant(t, "admin")
	if login.RefreshToken == "" {
		t.Fatal("the password grant gave no refresh token")
	}
	expired := w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin", ClientID: "bosh_cli", Lifetime: -time.Hour})
	cfg := w.writeConfig(t, expired, login.RefreshToken)
	before, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stBefore, _ := os.Stat(cfg)
	grants := w.uaa.Requests().Count("/oauth/token")

	authorize := w.uaa.Requests().Count("/oauth/authorize")
	out := filepath.Join(t.TempDir(), "out.pcapng")
	r := run("", false, append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-n", "-o", out}, w.api.Flags()...)...)
	if r.status != 0 {
		t.Fatalf("capture: status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
	}
	_, passwords, commands := w.api.Seen()
	if len(passwords) != 1 || len(commands) != 1 {
		t.Fatalf("pcap-api saw passwords %d, commands %q", len(passwords), commands)
	}
	if uaa.LooksLikeToken(passwords[0]) || strings.Contains(passwords[0], login.AccessToken) || passwords[0] == expired {
		t.Fatal("pcap-api got a token, not a one-time code")
	}
	if n := w.uaa.Requests().Count("/oauth/token") - grants; n != 1 {
		t.Errorf("%d token requests, want 1 refresh", n)
	}
	if n := w.uaa.Requests().Count("/oauth/authorize") - authorize; n != 1 {
		t.Errorf("%d authorize requests, want 1 (one code)", n)
	}
	// The code was asked for with the refreshed token: it is admin's.
	if claims := w.exchange(t, passwords[0]); claims.UserName != "admin" || claims.ClientID != "pcap_ssh" || !claims.HasScope("bosh.admin") {
		t.Errorf("the code's token claims = %+v", claims)
	}
	after, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stAfter, _ := os.Stat(cfg)
	if !bytes.Equal(before, after) || !stAfter.ModTime().Equal(stBefore.ModTime()) {
		t.Error("the bosh config was rewritten")
	}

	t.Run("Token refreshes once", func(t *testing.T) {
		env, err := boshcli.ResolveEnv(boshcli.EnvOptions{Environment: "fake", ConfigPath: cfg})
		if err != nil {
			t.Fatal(err)
		}
		n := w.uaa.Requests().Count("/oauth/token")
		a, err := env.Token(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		b, err := env.Token(context.Background())
		if err != nil || a != b || a == expired {
			t.Errorf("second Token: err %v, same %v", err, a == b)
		}
		if got := w.uaa.Requests().Count("/oauth/token") - n; got != 1 {
			t.Errorf("%d token requests for two Token calls, want 1", got)
		}
	})

	t.Run("a token expiring within a minute is refreshed", func(t *testing.T) {
		soon := w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin", ClientID: "bosh_cli", Lifetime: 30 * time.Second})
		env, err := boshcli.ResolveEnv(boshcli.EnvOptions{Environment: "fake", ConfigPath: w.writeConfig(t, soon, login.RefreshToken)})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := env.Token(context.Background())
		if err != nil || tok == soon {
			t.Errorf("err %v, refreshed %v", err, tok != soon)
		}
	})

	t.Run("expired without refresh token", func(t *testing.T) {
		cfg := w.writeConfig(t, expired, "")
		conns, _, _ := w.api.Seen()
		r := run("", false, append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-o", filepath.Join(t.TempDir(), "x.pcapng")}, w.api.Flags()...)...)
		want := "pcap-bosh: get a token for " + w.dir.URL() + ": the access token has expired and there is no refresh token: run bosh log-in\n"
		if r.status != 1 || r.stderr != want {
			t.Errorf("status %d, stderr %q; want 1, %q", r.status, r.stderr, want)
		}
		if now, _, _ := w.api.Seen(); now != conns {
			t.Error("pcap-api was contacted")
		}
	})
}

// TestClientCredentials: BOSH_CLIENT/BOSH_CLIENT_SECRET log in without
// any bosh config file, and none is written.
func TestClientCredentials(t *testing.T) {
	w := newWorld(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	t.Setenv("BOSH_ENVIRONMENT", w.dir.URL())
	t.Setenv("BOSH_CA_CERT", string(w.authority.CertPEM()))
	t.Setenv("BOSH_CLIENT", "ops")
	t.Setenv("BOSH_CLIENT_SECRET", "ops-secret")
	t.Setenv("PCAP_API", w.api.Addr)
	t.Setenv("PCAP_API_HOST_KEY_FINGERPRINT", w.api.Fingerprint)
	out := filepath.Join(t.TempDir(), "out.pcapng")
	r := run("", false, "-d", "cf", "router/1", "-o", out)
	if r.status != 0 {
		t.Fatalf("status %d, stderr %q", r.status, r.stderr)
	}
	_, passwords, commands := w.api.Seen()
	if len(passwords) != 1 {
		t.Fatalf("passwords: %d", len(passwords))
	}
	claims, err := (&uaa.Client{URL: w.uaa.URL(), HTTP: w.http}).Verify(context.Background(), passwords[0])
	if err != nil {
		t.Fatal(err)
	}
	if claims.ClientID != "ops" || claims.GrantType != "client_credentials" || claims.UserName != "" {
		t.Errorf("claims = %+v, want a client_credentials token of ops", claims)
	}
	if want := "capture --deployment cf -- router/1"; len(commands) != 1 || commands[0] != want {
		t.Errorf("commands %q, want %q", commands, want)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != w.api.Stdout {
		t.Errorf("output %q, %v", b, err)
	}
	if ents, _ := os.ReadDir(home); len(ents) != 0 {
		t.Errorf("HOME holds %v, want nothing", ents)
	}

	// Its token goes only to a host whose key is pinned or recorded.
	t.Setenv("PCAP_API_HOST_KEY_FINGERPRINT", "")
	_, before, _ := w.api.Seen()
	r = run("", false, "-d", "cf", "router/1", "-o", out+"-tofu", "--trust-on-first-use")
	if want := "the token of client ops is not sent to a pcap-api trusted on first use"; r.status != 1 || !strings.Contains(r.stderr, want) {
		t.Errorf("client credentials, first use: status %d, stderr %q; want 1, %q", r.status, r.stderr, want)
	}
	if _, after, _ := w.api.Seen(); len(after) != len(before) {
		t.Error("the client token was sent to a host trusted on first use")
	}
	if _, err := os.Stat(filepath.Join(home, ".bosh", "pcap_known_hosts")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("known hosts: %v, want none", err)
	}
	t.Setenv("PCAP_API_HOST_KEY_FINGERPRINT", w.api.Fingerprint)

	t.Setenv("BOSH_CLIENT_SECRET", "wrong")
	r = run("", false, "-d", "cf", "router/1", "-o", out+"2")
	if want := "pcap-bosh: get a token for " + w.dir.URL() + ": uaa: token request refused (401 Unauthorized): unauthorized Bad credentials\n"; r.status != 1 || r.stderr != want {
		t.Errorf("wrong secret: status %d, stderr %q; want %q", r.status, r.stderr, want)
	}
}

// TestInterspersed: flags may follow the instance selectors, as in
// `bosh pcap`, and reach pcap-api as one quoted command.
func TestInterspersed(t *testing.T) {
	w := newWorld(t)
	cfg := w.writeConfig(t, w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}), "")
	out := filepath.Join(t.TempDir(), "edge.pcapng")
	args := append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-f", "udp port 7000",
		"router/r1", "-i", "eth1", "--duration", "5s", "-c", "10", "-n", "-s", "128", "-o", out}, w.api.Flags()...)
	r := run("", false, args...)
	if r.status != 0 {
		t.Fatalf("status %d, stderr %q", r.status, r.stderr)
	}
	_, _, commands := w.api.Seen()
	want := "capture --deployment cf --interface eth1 --filter 'udp port 7000' --snaplen 128 --duration 5s --count 10 -- router router/r1"
	if len(commands) != 1 || commands[0] != want {
		t.Errorf("commands %q, want %q", commands, want)
	}
	if b, err := os.ReadFile(out); err != nil || string(b) != w.api.Stdout {
		t.Errorf("output %q, %v", b, err)
	}

	t.Run("an app next to the groups", func(t *testing.T) {
		app := "aa000000-0000-4000-8000-0000000000f1"
		r := run("", false, append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "--app", app, "--instance", "0,1", "-n", "-o", "-"}, w.api.Flags()...)...)
		if r.status != 0 {
			t.Fatalf("status %d, stderr %q", r.status, r.stderr)
		}
		_, _, commands := w.api.Seen()
		if want := "capture --deployment cf --app " + app + " --instance 0,1 -- router"; commands[len(commands)-1] != want {
			t.Errorf("command %q, want %q", commands[len(commands)-1], want)
		}
	})

	t.Run("-- keeps what follows positional", func(t *testing.T) {
		r := run("", false, append(append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "-n", "-o", "-"}, w.api.Flags()...), "--", "router/0")...)
		if r.status != 0 || r.stdout != w.api.Stdout {
			t.Fatalf("status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	w := newWorld(t)
	cfg := w.writeConfig(t, w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}), "")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no deployment", []string{"router", "-o", "x"}, "pcap-bosh: no deployment given: -d DEPLOYMENT, or set BOSH_DEPLOYMENT\n"},
		{"instance without app", []string{"-d", "cf", "router", "--instance", "0", "-o", "x"}, "pcap-bosh: --type and --instance pick the instances of --app GUID; name VMs as GROUP/INDEX or GROUP/ID\n"},
		{"no output", []string{"-d", "cf", "router"}, "pcap-bosh: no output given: -o FILE, or -o - to write the capture to stdout\n"},
		{"rotate to stdout", []string{"-d", "cf", "router", "-o", "-", "--rotate-size", "1MB"},
			"pcap-bosh: rotation: rotating needs -o FILE (the files are named FILE_00001_TIMESTAMP.pcapng, …)\n"},
		{"rotate pcap", []string{"-d", "cf", "router", "-o", "x", "--format", "pcap", "--rotate-every", "1m"},
			"pcap-bosh: rotation: rotating writes pcapng files only, not --format pcap\n"},
		{"rotate files alone", []string{"-d", "cf", "router", "-o", "x", "--rotate-files", "3"},
			"pcap-bosh: rotation: --rotate-files needs --rotate-size or --rotate-every\n"},
		{"zero rotate size", []string{"-d", "cf", "router", "-o", "x", "--rotate-size", "0"},
			"pcap-bosh: --rotate-size: rotation: a size of 0 never rotates; leave the flag out\n"},
		{"no pcap-api", []string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-o", "x"},
			"pcap-bosh: no pcap-api address: give --pcap-api HOST[:PORT] or set PCAP_API\n"},
		{"unknown instance", append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router/7", "nope", "-o", "x"}, w.api.Flags()...),
			"pcap-bosh: no such instance group or instance: router/7, nope (groups: errand, router)\n"},
		{"unknown deployment", append([]string{"-e", "fake", "--config", cfg, "-d", "nope", "router", "-o", "x"}, w.api.Flags()...),
			"pcap-bosh: list instances of nope: director: /deployments/nope/instances: not found\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := run("", false, tc.args...)
			if r.status != 1 || r.stderr != tc.want {
				t.Errorf("status %d, stderr %q; want 1, %q", r.status, r.stderr, tc.want)
			}
		})
	}
	if conns, _, _ := w.api.Seen(); conns != 0 {
		t.Errorf("pcap-api was contacted %d times", conns)
	}
}

// TestConfirm: more VMs than --confirm-over need a yes on a terminal or
// -n; otherwise the list is shown and pcap-api is never contacted.
func TestConfirm(t *testing.T) {
	w := newWorld(t)
	cfg := w.writeConfig(t, w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}), "")
	list := "  router/r0 (10.0.0.10)\n  router/r1 (10.0.0.11)\n  router/r2 (10.0.0.12)\n"
	for _, tc := range []struct {
		name      string
		args      []string
		terminal  bool
		stdin     string
		status    int
		stderr    string
		contacted bool
	}{
		{name: "not a terminal", args: []string{"router", "errand", "--confirm-over", "2"},
			status: 1, stderr: "pcap-bosh: capturing on 3 VMs needs confirmation; run with -n to capture on all of them:\n" + list},
		{name: "terminal, no", args: []string{"router", "--confirm-over", "2"}, terminal: true, stdin: "n\n",
			status: 1, stderr: "Capture on these 3 VMs of cf?\n" + list + "Continue? [yN]: pcap-bosh: stopped: not confirmed\n"},
		{name: "terminal, nothing", args: []string{"router", "--confirm-over", "2"}, terminal: true, stdin: "",
			status: 1, stderr: "Capture on these 3 VMs of cf?\n" + list + "Continue? [yN]: pcap-bosh: stopped: not confirmed\n"},
		{name: "terminal, yes", args: []string{"router", "--confirm-over", "2"}, terminal: true, stdin: "yes\n",
			stderr: "Capture on these 3 VMs of cf?\n" + list + "Continue? [yN]: ", contacted: true},
		{name: "-n", args: []string{"router", "--confirm-over", "2", "-n"}, contacted: true},
		{name: "at the limit", args: []string{"router", "--confirm-over", "3"}, contacted: true},
		{name: "default limit is 10", args: []string{"router"}, contacted: true},
		{name: "whole deployment, not a terminal", args: []string{"--confirm-over", "2"},
			status: 1, stderr: "pcap-bosh: capturing on 3 VMs needs confirmation; run with -n to capture on all of them:\n" + list},
		{name: "whole deployment, terminal, yes", args: []string{"--confirm-over", "2"}, terminal: true, stdin: "y\n",
			stderr: "Capture on these 3 VMs of cf?\n" + list + "Continue? [yN]: ", contacted: true},
		{name: "whole deployment under the limit", args: nil, contacted: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := w.api.Seen()
			out := filepath.Join(t.TempDir(), "out.pcapng")
			args := append(append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "-o", out}, tc.args...), w.api.Flags()...)
			r := run(tc.stdin, tc.terminal, args...)
			if r.status != tc.status || r.stderr != tc.stderr {
				t.Errorf("status %d, stderr %q; want %d, %q", r.status, r.stderr, tc.status, tc.stderr)
			}
			after, _, _ := w.api.Seen()
			if contacted := after > before; contacted != tc.contacted {
				t.Errorf("pcap-api contacted: %v, want %v", contacted, tc.contacted)
			}
			if _, err := os.Stat(out); (err == nil) != tc.contacted {
				t.Errorf("output file exists: %v, want %v", err == nil, tc.contacted)
			}
		})
	}
}

// TestRefusalExplained: when pcap-api refuses the login, pcap-bosh says
// why from the token's claims and the director.
func TestRefusalExplained(t *testing.T) {
	w := newWorld(t)
	w.api.SetAccept(func(string) bool { return false })
	prefix := "pcap-bosh: pcap-api at " + w.api.Addr + " refused the login: "
	noCode := "pcap-bosh: the director's UAA issued no one-time code: "
	for _, tc := range []struct {
		name  string
		token string
		// sshCode is ssh-code's error ("" when UAA issues a code), capture
		// the capture's.
		sshCode, capture string
	}{
		{name: "no admin scope", token: w.mint(t, w.uaa, fakeuaa.Mint{Username: "reader"}),
			capture: prefix + "reader has no bosh admin scope (bosh.admin, bosh." + directorUUID + ".admin or bosh.teams.<team>.admin), only: openid bosh.read"},
		{name: "another director's token", token: w.mint(t, w.otherUAA, fakeuaa.Mint{Username: "admin"}),
			sshCode: noCode + "the token of admin was issued by " + w.otherUAA.Issuer() + ", not by the UAA of director test-bosh (" + w.uaa.Issuer() + "): log in to this director with bosh log-in"},
		{name: "forged signature", token: w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin", Forged: true}),
			sshCode: noCode + "the token of admin is refused by the UAA of director test-bosh: token is not valid: signature does not verify: run bosh log-in"},
		{name: "client token", token: w.mint(t, w.uaa, fakeuaa.Mint{ClientID: "ops", Scopes: []string{"bosh.admin"}}),
			sshCode: "pcap-bosh: one-time codes are for users, and the token is client ops's: run bosh log-in as a user, or set BOSH_CLIENT and BOSH_CLIENT_SECRET"},
		{name: "token the API should take", token: w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}),
			capture: prefix + "the token of admin is for this director and has an admin scope; is pcap-api set up for director test-bosh?"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := w.writeConfig(t, tc.token, "")
			out := filepath.Join(t.TempDir(), "x.pcapng")
			_, before, _ := w.api.Seen()
			r := run("", false, "-e", "fake", "--config", cfg, "ssh-code")
			if tc.sshCode == "" {
				if r.status != 0 || strings.TrimSpace(r.stdout) == "" || r.stderr != "" {
					t.Errorf("ssh-code: status %d, stdout %q, stderr %q; want a code", r.status, r.stdout, r.stderr)
				}
			} else if r.status != 1 || r.stdout != "" || r.stderr != tc.sshCode+"\n" {
				t.Errorf("ssh-code: status %d, stdout %q, stderr %q; want 1, %q", r.status, r.stdout, r.stderr, tc.sshCode+"\n")
			}
			capture := tc.capture
			if capture == "" {
				capture = tc.sshCode
			}
			r = run("", false, append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-n", "-o", out}, w.api.Flags()...)...)
			if r.status != 1 || r.stderr != capture+"\n" {
				t.Errorf("capture: status %d, stderr %q; want 1, %q", r.status, r.stderr, capture+"\n")
			}
			if strings.Contains(r.stderr, tc.token[len(tc.token)-16:]) {
				t.Error("the message holds the token")
			}
			_, after, _ := w.api.Seen()
			for _, p := range after[len(before):] {
				if uaa.LooksLikeToken(p) {
					t.Error("pcap-api was sent a token")
				}
			}
			if tc.capture == "" && len(after) != len(before) {
				t.Errorf("pcap-api got %d passwords without a code to send", len(after)-len(before))
			}
			if _, err := os.Stat(out); err == nil {
				t.Error("a refused capture left its output file")
			}
		})
	}
}

// TestSSHCodeFlags: ssh-code prints a one-time code of the director's
// UAA; the common flags work before and after "ssh-code", and given ones
// beat the environment variables.
func TestSSHCodeFlags(t *testing.T) {
	w := newWorld(t)
	cfg := w.writeConfig(t, w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}), "")
	api := w.api.Flags()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
	}{
		{"flags before", nil, append([]string{"-e", "fake", "--config", cfg, "ssh-code"}, api...)},
		{"flags after", nil, append([]string{"ssh-code", "-e", "fake", "--config", cfg}, api...)},
		{"flags around", nil, append([]string{"-e", "fake", "ssh-code", "--config", cfg}, api...)},
		{"environment variables", map[string]string{"BOSH_ENVIRONMENT": "fake", "BOSH_CONFIG": cfg, "PCAP_API": w.api.Addr,
			"PCAP_API_HOST_KEY_FINGERPRINT": w.api.Fingerprint}, []string{"ssh-code"}},
		{"flag before beats variable", map[string]string{"BOSH_ENVIRONMENT": "prod", "PCAP_API": "127.0.0.1:1"},
			append([]string{"-e", "fake", "--config", cfg, "ssh-code"}, api...)},
		{"flag after beats variable", map[string]string{"BOSH_ENVIRONMENT": "prod", "PCAP_API": "127.0.0.1:1"},
			append([]string{"ssh-code", "-e", "fake", "--config", cfg}, api...)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			conns, _, _ := w.api.Seen()
			r := run("", false, tc.args...)
			if r.status != 0 || r.stderr != "" {
				t.Fatalf("status %d, stdout %q, stderr %q", r.status, r.stdout, r.stderr)
			}
			// A code of the director's UAA for admin; pcap-api is not
			// involved (any instance exchanges it).
			if claims := w.exchange(t, strings.TrimSuffix(r.stdout, "\n")); claims.UserName != "admin" {
				t.Errorf("the code is %s's", claims.UserName)
			}
			if now, _, _ := w.api.Seen(); now != conns {
				t.Error("ssh-code contacted pcap-api")
			}
			for k := range tc.env {
				os.Unsetenv(k)
			}
		})
	}
}

// TestBadProxyContactsNothing: a BOSH_ALL_PROXY pcap-bosh cannot use is
// one clear error, and neither the director, its UAA nor pcap-api is
// contacted (directly, around the proxy).
func TestBadProxyContactsNothing(t *testing.T) {
	w := newWorld(t)
	cfg := w.writeConfig(t, w.mint(t, w.uaa, fakeuaa.Mint{Username: "admin"}), "")
	for value, want := range map[string]string{
		"http://proxy:3128":                           `pcap-bosh: BOSH_ALL_PROXY: unsupported scheme "http"; use socks5:// or ssh+socks5://`,
		"socks5://u:s3cret@proxy:x":                   "pcap-bosh: BOSH_ALL_PROXY: not a URL (socks5://…); use socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE",
		"ssh+socks5://jumpbox@10.0.0.5:22":            "pcap-bosh: BOSH_ALL_PROXY: ssh+socks5:// needs ?private-key=FILE (the jumpbox's private key)",
		"ssh+socks5://jumpbox@10.0.0.5?private-key=k": "pcap-bosh: BOSH_ALL_PROXY: ssh+socks5:// needs the jumpbox's port: ssh+socks5://USER@10.0.0.5:22?private-key=FILE",
	} {
		t.Run(value, func(t *testing.T) {
			t.Setenv("BOSH_ALL_PROXY", value)
			dirBefore, uaaBefore := w.dir.Requests().Len(), w.uaa.Requests().Len()
			apiBefore, _, _ := w.api.Seen()
			for _, args := range [][]string{
				append([]string{"-e", "fake", "--config", cfg, "-d", "cf", "router", "-o", filepath.Join(t.TempDir(), "x")}, w.api.Flags()...),
				{"-e", "fake", "--config", cfg, "ssh-code"},
			} {
				r := run("", false, args...)
				if r.status != 1 || r.stderr != want+"\n" {
					t.Errorf("%v: status %d, stderr %q; want 1, %q", args, r.status, r.stderr, want)
				}
			}
			apiAfter, _, _ := w.api.Seen()
			if w.dir.Requests().Len() != dirBefore || w.uaa.Requests().Len() != uaaBefore || apiAfter != apiBefore {
				t.Error("something was contacted")
			}
		})
	}
}
