package integration

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestBoshPcapBoshRefusals runs pcap-bosh against the real pcap-api and
// the fake director: every refusal ends with a clear message on stderr, a
// non-zero exit and no output file; a client-credentials login captures
// without any bosh config.
func TestBoshPcapBoshRefusals(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, admin := startBOSHAdmin(t, 3)
	// An instance with a VM but no IP, next to the detached errand.
	if err := e.Director.Update(func(ds []director.Deployment) []director.Deployment {
		ds[0].Instances = append(ds[0].Instances, director.Instance{Job: "worker", Index: 0, ID: "5f2a0000-0000-4000-8000-000000000001"})
		return ds
	}); err != nil {
		t.Fatal(err)
	}
	refusedAt := func() string { return "pcap-bosh: pcap-api at " + e.API.Addr + " refused the login: " }

	// capture runs pcap-bosh to completion with HOME=home and returns its
	// result; it checks that no output file is left behind.
	capture := func(t *testing.T, env []string, args ...string) boshResult {
		t.Helper()
		out := filepath.Join(t.TempDir(), "out.pcapng")
		r := e.pcapBosh(t, env, append(append([]string{"-e", "fake", "-o", out}, args...), boshAPIFlags(e.API)...)...)
		if _, err := os.Stat(out); err == nil {
			t.Errorf("a refused capture left %s", out)
		}
		return r
	}
	apiLogged := func(t *testing.T, re string) {
		t.Helper()
		e.API.WaitLine(t, regexp.MustCompile(re), 5*time.Second)
	}
	want := func(t *testing.T, r boshResult, code int, stderr string) {
		t.Helper()
		if r.Code != code || r.Stderr != stderr {
			t.Errorf("exit %d, stderr:\n%s\nwant exit %d, stderr:\n%s", r.Code, r.Stderr, code, stderr)
		}
	}

	t.Run("token without admin scope", func(t *testing.T) {
		home := e.boshLogin(t, "reader")
		r := capture(t, []string{"HOME=" + home}, "-d", "cf", "router")
		want(t, r, 1, refusedAt()+"reader has no bosh admin scope (bosh.admin, bosh."+boshDirectorUUID+".admin or bosh.teams.<team>.admin), only: openid bosh.read\n")
		apiLogged(t, `"msg":"auth-refused","user":"bosh".*"error":"boshresolver: token has no bosh admin scope`)
	})

	t.Run("token of another director", func(t *testing.T) {
		// Another director's UAA: its tokens are all this test needs.
		other, err := uaa.New(uaa.Options{URL: "https://198.18.0.2:8443", Users: []uaa.User{{Username: "admin", Scopes: []string{"openid", "bosh.admin"}}}})
		if err != nil {
			t.Fatal(err)
		}
		tok, err := other.MintToken("admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		// The director's UAA issues no code for it: pcap-api gets nothing.
		refused := len(e.API.Lines(regexp.MustCompile(`"msg":"auth-refused"`)))
		r := capture(t, []string{"HOME=" + e.writeBoshConfig(t, tok, "")}, "-n", "-d", "cf", "router")
		want(t, r, 1, "pcap-bosh: the director's UAA issued no one-time code: the token of admin was issued by https://198.18.0.2:8443/oauth/token, not by the UAA of director fake-bosh ("+
			e.UAA.Issuer()+"): log in to this director with bosh log-in\n")
		if n := len(e.API.Lines(regexp.MustCompile(`"msg":"auth-refused"`))); n != refused {
			t.Errorf("pcap-api refused %d logins: it was sent a password", n-refused)
		}
	})

	t.Run("forged signature", func(t *testing.T) {
		tok := e.mint(t, uaa.Mint{Username: "admin", Forged: true})
		r := capture(t, []string{"HOME=" + e.writeBoshConfig(t, tok, "")}, "-n", "-d", "cf", "router")
		want(t, r, 1, "pcap-bosh: the director's UAA issued no one-time code: the token of admin is refused by the UAA of director fake-bosh: token is not valid: signature does not verify: run bosh log-in\n")
	})

	t.Run("expired token without refresh token", func(t *testing.T) {
		lines := len(e.API.Lines(regexp.MustCompile(`.`)))
		tok := e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli", Lifetime: -time.Hour})
		r := capture(t, []string{"HOME=" + e.writeBoshConfig(t, tok, "")}, "-d", "cf", "router")
		want(t, r, 1, "pcap-bosh: get a token for "+e.Director.URL()+": the access token has expired and there is no refresh token: run bosh log-in\n")
		if n := len(e.API.Lines(regexp.MustCompile(`.`))); n != lines {
			t.Errorf("pcap-api logged %d lines: it was contacted", n-lines)
		}
	})

	t.Run("expired token is refreshed, the config is not rewritten", func(t *testing.T) {
		// The real bosh CLI's config, with its access token replaced by an
		// expired one; its refresh token stays.
		home := e.boshLogin(t, "admin")
		path := filepath.Join(home, ".bosh", "config")
		var cfg map[string]any
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			t.Fatal(err)
		}
		env := cfg["environments"].([]any)[0].(map[string]any)
		if env["refresh_token"] == nil || env["refresh_token"] == "" {
			t.Fatalf("bosh log-in wrote no refresh token: %v", env)
		}
		env["access_token"] = e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli", Lifetime: -time.Hour})
		if b, err = yaml.Marshal(cfg); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		r := e.pcapBosh(t, []string{"HOME=" + home}, "-e", "fake", "ssh-code")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) == "" {
			t.Errorf("exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		if after, err := os.ReadFile(path); err != nil || !bytes.Equal(after, b) {
			t.Errorf("the bosh config was rewritten (err %v)", err)
		}
	})

	t.Run("team admin of another deployment", func(t *testing.T) {
		home := e.boshLogin(t, "team-other")
		r := capture(t, []string{"HOME=" + home}, "-n", "-d", "cf", "router")
		want(t, r, 1, `pcap: error: not-allowed reason="you are not an admin of deployment \"cf\" (needs bosh.admin or admin of a team owning it)"`+"\n")
		// Without -n, pcap-bosh lists the instances first; the director refuses.
		r = capture(t, []string{"HOME=" + home}, "-d", "cf", "router")
		want(t, r, 1, "pcap-bosh: list instances of cf: director refused the token for /deployments/cf/instances (401 Unauthorized): unauthorized\n")
	})

	t.Run("unknown deployment", func(t *testing.T) {
		r := capture(t, []string{"HOME=" + admin}, "-n", "-d", "nope", "router")
		want(t, r, 1, `pcap: error: target-not-found reason="deployment \"nope\" not found"`+"\n")
		r = capture(t, []string{"HOME=" + admin}, "-d", "nope", "router")
		want(t, r, 1, "pcap-bosh: list instances of nope: director: /deployments/nope/instances: not found\n")
	})

	t.Run("unknown group and instance", func(t *testing.T) {
		r := capture(t, []string{"HOME=" + admin}, "-n", "-d", "cf", "router/9", "nope", "router/0")
		want(t, r, 1, `pcap: error: target-not-found reason="no such instance group or instance: router/9, nope (groups: errand, router, worker)"`+"\n")
		r = capture(t, []string{"HOME=" + admin}, "-d", "cf", "router/9", "nope", "router/0")
		want(t, r, 1, "pcap-bosh: no such instance group or instance: router/9, nope (groups: errand, router, worker)\n")
	})

	t.Run("instances without VM or IP", func(t *testing.T) {
		r := capture(t, []string{"HOME=" + admin}, "-n", "-d", "cf", "errand", "worker")
		want(t, r, 1, `pcap: errand/3f2a0000-0000-4000-8000-0000000000ee: skipped reason="instance has no VM"`+"\n"+
			`pcap: worker/5f2a0000-0000-4000-8000-000000000001: skipped reason="instance has no IP address"`+"\n"+
			`pcap: error: failed reason="no target could be captured: errand/3f2a0000-0000-4000-8000-0000000000ee: instance has no VM; worker/5f2a0000-0000-4000-8000-000000000001: instance has no IP address"`+"\n")

		// Next to a VM that can be captured, they are reported and the
		// capture goes on (exit 3: partial).
		out := filepath.Join(t.TempDir(), "partial.pcapng")
		const filter = "udp dst port 7004"
		p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + admin}},
			filepath.Join(testenv.Binaries(t), "pcap-bosh"), append([]string{"-e", "fake", "-d", "cf", "router/0", "errand", "worker",
				"-f", filter, "-c", "4", "--duration", "60s", "-o", out}, boshAPIFlags(e.API)...)...)
		p.WaitLine(t, regexp.MustCompile(`^pcap: errand/3f2a0000-0000-4000-8000-0000000000ee: skipped reason="instance has no VM"$`), 30*time.Second)
		p.WaitLine(t, regexp.MustCompile(`^pcap: worker/5f2a0000-0000-4000-8000-000000000001: skipped reason="instance has no IP address"$`), 30*time.Second)
		p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started `), 30*time.Second)
		sendUDP(t, e.Lab.VMs[0], "198.18.0.1:7004", 4)
		if c := boshExitCode(t, p, 30*time.Second); c != 3 {
			t.Errorf("exit %d, want 3 (partial):\n%s", c, p.Output())
		}
		per := interfaceCounts(t, out)
		if per[boshRouterIface(0)] != 4 || len(per) != 1 {
			t.Errorf("packets per interface %v, want %s=4 only", per, boshRouterIface(0))
		}
	})

	t.Run("many VMs need -n when not on a terminal", func(t *testing.T) {
		lines := len(e.API.Lines(regexp.MustCompile(`.`)))
		r := capture(t, []string{"HOME=" + admin}, "-d", "cf", "router", "--confirm-over", "2")
		want(t, r, 1, "pcap-bosh: capturing on 3 VMs needs confirmation; run with -n to capture on all of them:\n"+
			"  router/3f2a0000-0000-4000-8000-000000000000 (198.18.0.10)\n"+
			"  router/3f2a0000-0000-4000-8000-000000000001 (198.18.0.11)\n"+
			"  router/3f2a0000-0000-4000-8000-000000000002 (198.18.0.12)\n")
		if n := len(e.API.Lines(regexp.MustCompile(`.`))); n != lines {
			t.Errorf("pcap-api logged %d lines: it was contacted", n-lines)
		}
	})

	t.Run("client credentials without a bosh config", func(t *testing.T) {
		home := t.TempDir()
		out := filepath.Join(t.TempDir(), "ops.pcapng")
		const filter = "udp dst port 7002"
		p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + home,
			"BOSH_ENVIRONMENT=" + e.Director.URL(), "BOSH_CA_CERT=" + e.CAFile,
			"BOSH_CLIENT=ops", "BOSH_CLIENT_SECRET=ops-secret"}},
			filepath.Join(testenv.Binaries(t), "pcap-bosh"), append([]string{"-d", "cf", "router",
				"-f", filter, "-c", "5", "--duration", "60s", "-o", out}, boshAPIFlags(e.API)...)...)
		e.routersCapture(t, p, "exit", out, filter, 7002, 5)
		apiLogged(t, `"msg":"capture-started","user":"bosh:client:ops".*"filter":"udp dst port 7002"`)
		if ents, _ := os.ReadDir(home); len(ents) != 0 {
			t.Errorf("HOME holds %v, want nothing", ents)
		}
	})
}
