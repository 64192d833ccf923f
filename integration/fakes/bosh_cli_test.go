package fakes_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/fakes/fakeclock"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

type boshEnv struct {
	uaa    *uaa.Server
	dir    *director.Server
	clk    *fakeclock.Clock
	caFile string
	client *http.Client
}

func startBOSH(t *testing.T) *boshEnv {
	t.Helper()
	clk := fakeclock.New(time.Now())
	u, d, client := director.StartWithUAAForTest(t, uaa.Options{
		Now: clk.Now,
		Users: []uaa.User{
			{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "bosh.admin"}},
			{Username: "reader", Password: "reader-pw", Scopes: []string{"openid", "bosh.read"}},
			{Username: "team-a", Password: "team-a-pw", Scopes: []string{"openid", "bosh.teams.a.admin"}},
		},
		Clients: append(uaa.DefaultClients(), uaa.Client{
			ID: "ops", Secret: "ops-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"},
		}),
	}, director.Options{
		Name: "fake-bosh",
		Deployments: []director.Deployment{
			{Name: "cf", Releases: []director.NameVersion{{Name: "cf", Version: "40.0.0"}},
				Stemcells: []director.NameVersion{{Name: "ubuntu-jammy", Version: "1.500"}},
				Instances: []director.Instance{
					{Job: "router", ID: "3f2a0000-0000-4000-8000-000000000001", AZ: "z1", IPs: []string{"10.0.2.10"}},
					{Job: "diego-cell", ID: "3f2a0000-0000-4000-8000-000000000002", AZ: "z1", IPs: []string{"10.0.1.10"}},
					{Job: "errand", ID: "3f2a0000-0000-4000-8000-000000000003", State: "detached"},
				}},
			{Name: "team-a-dep", Teams: []string{"a"}, Releases: []director.NameVersion{{Name: "x", Version: "1"}},
				Instances: []director.Instance{{Job: "web", IPs: []string{"10.0.3.1"}}}},
		},
	})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, d.CACertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	return &boshEnv{uaa: u, dir: d, clk: clk, caFile: caFile, client: client}
}

// aliased returns a bosh CLI with environment "fake" aliased.
func (e *boshEnv) aliased(t *testing.T) *cli {
	t.Helper()
	bosh := newCLI(t, tool(t, "bosh"))
	out := bosh.must("alias-env", "fake", "-e", e.dir.URL(), "--ca-cert", e.caFile)
	for _, want := range []string{"fake-bosh", e.dir.UUID(), "not logged in"} {
		if !strings.Contains(out, want) {
			t.Errorf("alias-env output lacks %q:\n%s", want, out)
		}
	}
	return bosh
}

// logIn answers the UAA prompts (username, then password) on stdin. (Off
// a terminal the CLI prints no success line; the exit status tells.)
func logIn(t *testing.T, bosh *cli, user, password string) {
	t.Helper()
	r := bosh.run(user+"\n"+password+"\n", nil, "-e", "fake", "log-in")
	if r.err != nil || strings.Contains(r.stderr, "Failed") {
		t.Fatalf("bosh log-in as %s: %v\n%s", user, r.err, r)
	}
}

// boshConfig reads the environment's tokens from ~/.bosh/config (YAML,
// read line by line: the keys sit at the start of their lines).
func boshConfig(t *testing.T, bosh *cli) map[string]string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(bosh.home, ".bosh", "config"))
	if err != nil {
		t.Fatal(err)
	}
	conf := map[string]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		line = strings.TrimPrefix(strings.TrimSpace(line), "- ")
		if k, v, ok := strings.Cut(line, ": "); ok {
			conf[k] = v
		}
	}
	return conf
}

// tableRows runs a bosh command with --json and returns the first table's
// rows.
func tableRows(t *testing.T, bosh *cli, env []string, args ...string) []map[string]string {
	t.Helper()
	r := bosh.run("", env, append([]string{"--json"}, args...)...)
	if r.err != nil {
		t.Fatalf("bosh %s: %v\n%s", strings.Join(args, " "), r.err, r)
	}
	var out struct {
		Tables []struct {
			Rows []map[string]string
		}
	}
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Tables) == 0 {
		t.Fatalf("bosh %s: bad JSON (%v):\n%s", strings.Join(args, " "), err, r)
	}
	return out.Tables[0].Rows
}

func column(rows []map[string]string, key string) []string {
	var out []string
	for _, r := range rows {
		out = append(out, r[key])
	}
	sort.Strings(out)
	return out
}

func TestBOSHCLIUserLogIn(t *testing.T) {
	e := startBOSH(t)
	bosh := e.aliased(t)
	logIn(t, bosh, "admin", "admin-pw")

	conf := boshConfig(t, bosh)
	if conf["alias"] != "fake" || conf["url"] != e.dir.URL() || conf["access_token_type"] != "bearer" || conf["refresh_token"] == "" {
		t.Errorf("~/.bosh/config = %v", conf)
	}
	claims, err := e.uaa.Verifier(e.client).Verify(t.Context(), conf["access_token"])
	if err != nil {
		t.Fatalf("saved access token: %v", err)
	}
	if claims.UserName != "admin" || claims.ClientID != "bosh_cli" || !claims.HasScope("bosh.admin") {
		t.Errorf("claims = %+v", claims)
	}

	deps := tableRows(t, bosh, nil, "-e", "fake", "deployments")
	if got := strings.Join(column(deps, "name"), ","); got != "cf,team-a-dep" {
		t.Errorf("deployments = %v", deps)
	}
	insts := tableRows(t, bosh, nil, "-e", "fake", "-d", "cf", "instances")
	want := map[string]struct{ ips, state string }{
		"router/3f2a0000-0000-4000-8000-000000000001":     {"10.0.2.10", "running"},
		"diego-cell/3f2a0000-0000-4000-8000-000000000002": {"10.0.1.10", "running"},
		"errand/3f2a0000-0000-4000-8000-000000000003":     {"", "stopped"},
	}
	if len(insts) != len(want) {
		t.Errorf("instances = %v", insts)
	}
	for _, row := range insts {
		w, ok := want[row["instance"]]
		if !ok || row["ips"] != w.ips || row["process_state"] != w.state || row["deployment"] != "cf" {
			t.Errorf("instance row %v, want %+v", row, w)
		}
	}
	// The user's own token reached the director for every call.
	for path, min := range map[string]int{"/info": 1, "/deployments": 1, "/deployments/cf/instances": 1} {
		if n := e.dir.Requests().Count(path); n < min {
			t.Errorf("director %s requested %d times", path, n)
		}
	}
}

func TestBOSHCLIRefreshesRejectedToken(t *testing.T) {
	e := startBOSH(t)
	bosh := e.aliased(t)
	logIn(t, bosh, "admin", "admin-pw")
	old := boshConfig(t, bosh)["access_token"]
	e.clk.Advance(13 * time.Hour) // the director now rejects the saved token
	if got := column(tableRows(t, bosh, nil, "-e", "fake", "deployments"), "name"); len(got) != 2 {
		t.Errorf("deployments after refresh = %v", got)
	}
	if now := boshConfig(t, bosh)["access_token"]; now == old || now == "" {
		t.Error("refreshed token was not saved to ~/.bosh/config")
	}
}

func TestBOSHCLIWrongPassword(t *testing.T) {
	e := startBOSH(t)
	bosh := e.aliased(t)
	// The CLI asks again after a rejection and fails at end of input.
	r := bosh.run("admin\nwrong\n", nil, "-e", "fake", "log-in")
	if r.err == nil || !strings.Contains(r.stderr+r.stdout, "Failed to authenticate with UAA") {
		t.Errorf("log-in with a wrong password: %v\n%s", r.err, r)
	}
	if tok := boshConfig(t, bosh)["access_token"]; tok != "" {
		t.Error("a token was saved after a failed log-in")
	}
}

func TestBOSHCLIClientCredentials(t *testing.T) {
	e := startBOSH(t)
	bosh := e.aliased(t)
	creds := []string{"BOSH_CLIENT=ops", "BOSH_CLIENT_SECRET=ops-secret"}
	r := bosh.run("", creds, "-e", "fake", "log-in")
	if r.err != nil {
		t.Fatalf("log-in with client credentials: %v\n%s", r.err, r)
	}
	if got := column(tableRows(t, bosh, creds, "-e", "fake", "deployments"), "name"); len(got) != 2 {
		t.Errorf("deployments as client = %v", got)
	}
	r = bosh.run("", []string{"BOSH_CLIENT=ops", "BOSH_CLIENT_SECRET=wrong"}, "-e", "fake", "deployments")
	if r.err == nil {
		t.Errorf("wrong client secret accepted:\n%s", r)
	}
	// Client tokens cannot be refreshed, so log-in does not save one.
	if tok := boshConfig(t, bosh)["access_token"]; tok != "" {
		t.Error("log-in saved a client token")
	}
}

func TestBOSHCLIScopes(t *testing.T) {
	e := startBOSH(t)
	t.Run("read-only user lists everything", func(t *testing.T) {
		bosh := e.aliased(t)
		logIn(t, bosh, "reader", "reader-pw")
		if got := column(tableRows(t, bosh, nil, "-e", "fake", "deployments"), "name"); len(got) != 2 {
			t.Errorf("deployments = %v", got)
		}
		if rows := tableRows(t, bosh, nil, "-e", "fake", "-d", "cf", "instances"); len(rows) != 3 {
			t.Errorf("instances = %v", rows)
		}
	})
	t.Run("team admin sees only the team's deployment", func(t *testing.T) {
		bosh := e.aliased(t)
		logIn(t, bosh, "team-a", "team-a-pw")
		if got := strings.Join(column(tableRows(t, bosh, nil, "-e", "fake", "deployments"), "name"), ","); got != "team-a-dep" {
			t.Errorf("deployments = %v", got)
		}
		r := bosh.run("", nil, "-e", "fake", "-d", "cf", "instances")
		if r.err == nil || !strings.Contains(r.stdout+r.stderr, "Require one of the scopes") {
			t.Errorf("team admin listed cf instances: %v\n%s", r.err, r)
		}
	})
}
