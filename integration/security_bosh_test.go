package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestSecurityBOSH runs the security cases of the BOSH path on one BOSH
// world: the authorisation matrix of every scope and credential, hostile
// input through the front door and through pcap-bosh, and finally a
// search of every log for the credentials used.
func TestSecurityBOSH(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 2)
	sec := relSecrets{}
	logs := map[string]string{}
	mint := func(m uaa.Mint) string {
		if m.ClientID == "" {
			m.ClientID = "bosh_cli"
		}
		tok := e.mint(t, m)
		sec.addToken("the token of "+m.Username, tok)
		return tok
	}

	t.Run("authorisation matrix", func(t *testing.T) {
		cases := []relAuthz{
			{name: "bosh.admin", password: mint(uaa.Mint{Username: "admin"}), user: "bosh:admin", allowed: true},
			{name: "director-uuid admin", password: mint(uaa.Mint{Username: "director-admin"}), user: "bosh:director-admin", allowed: true},
			{name: "team admin of the deployment", password: mint(uaa.Mint{Username: "team-cf"}), user: "bosh:team-cf", allowed: true},
			{name: "team admin of another deployment", password: mint(uaa.Mint{Username: "team-other"}), user: "bosh:team-other",
				refused: relErrLine("not-allowed", `you are not an admin of deployment "cf" (needs bosh.admin or admin of a team owning it)`)},
			{name: "bosh.read only", password: mint(uaa.Mint{Username: "reader"}), user: "bosh",
				authErr: "boshresolver: token has no bosh admin scope (bosh.admin, bosh.<director-uuid>.admin or bosh.teams.<team>.admin)"},
			{name: "forged", password: mint(uaa.Mint{Username: "admin", Forged: true}), user: "bosh",
				authErr: "uaa: token is not valid: signature does not verify"},
			{name: "expired", password: mint(uaa.Mint{Username: "admin", Lifetime: -time.Hour}), user: "bosh",
				authErr: "uaa: token has expired"},
		}
		relRunAuthz(t, e.API, e.Agents, "bosh", "capture -d cf router/0 --duration 1s", cases)
	})

	t.Run("hostile input", func(t *testing.T) {
		tok := mint(uaa.Mint{Username: "admin"})
		contacts := func() int {
			n := 0
			for _, a := range e.Agents {
				n += relCount(a, `"msg":"(capture-started|capture-rejected)"`)
			}
			return n
		}
		before := contacts()
		for _, tc := range []struct{ name, cmd, want string }{
			{"deployment ..", "capture -d .. router", relErrLine("target-not-found", `deployment ".." not found`)},
			{"deployment ../other", "capture -d ../other db", relErrLine("target-not-found", `deployment "../other" not found`)},
			{"deployment with a query", "capture -d 'cf/instances?x=' router", relErrLine("target-not-found", `deployment "cf/instances?x=" not found`)},
			{"deployment URL-encoded", "capture -d %2e%2e router", relErrLine("target-not-found", `deployment "%2e%2e" not found`)},
			{"instance ../../x", "capture -d cf router/../../x", relErrLine("target-not-found", "no such instance group or instance: router/../../x (groups: errand, router)")},
			{"no deployment", "capture router", relErrLine("bad-request", "-d DEPLOYMENT is required")},
			{"an app, without a Cloud Controller client", "capture -d cf --app " + cfApp + " router", relErrLine("not-allowed", "this pcap-api has no Cloud Controller client (bosh.cf_client), so it cannot capture app instances")},
			{"an instance without an app", "capture -d cf --instance 0 router", relErrLine("bad-request", "--instance picks instances of the app of --app GUID; name VMs as GROUP/ID")},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r := relExec(ctx, e.API, "bosh", ssh.Password(tok), tc.cmd)
			cancel()
			if r.Status != 1 || r.Err != nil || r.Stderr != tc.want || len(r.Stdout) != 0 {
				t.Errorf("%s: status %d, err %v, %d bytes, stderr:\n%q\nwant:\n%q", tc.name, r.Status, r.Err, len(r.Stdout), r.Stderr, tc.want)
			}
		}
		if n := contacts() - before; n != 0 {
			t.Errorf("agents logged %d captures for refused commands", n)
		}

		// Through pcap-bosh, logged in with the real bosh CLI.
		home := e.boshLogin(t, "admin")
		var cfg struct {
			Environments []struct {
				AccessToken  string `yaml:"access_token"`
				RefreshToken string `yaml:"refresh_token"`
			} `yaml:"environments"`
		}
		b, err := os.ReadFile(filepath.Join(home, ".bosh", "config"))
		if err != nil {
			t.Fatal(err)
		}
		if err := yaml.Unmarshal(b, &cfg); err != nil || len(cfg.Environments) != 1 {
			t.Fatalf("bosh config: %v", err)
		}
		sec.addToken("the bosh CLI's access token", cfg.Environments[0].AccessToken)
		sec.addToken("the bosh CLI's refresh token", cfg.Environments[0].RefreshToken)
		env := []string{"HOME=" + home}
		dir := t.TempDir()
		for i, tc := range []struct {
			name string
			args []string
			want string // stderr
		}{
			{"filter $(…)", []string{"-d", "cf", "router/0", "-f", "$(id)"},
				"pcap: router/3f2a0000-0000-4000-8000-000000000000: failed code=bad-filter reason=\"filter does not compile on eth0: syntax error\"\n" +
					relErrLine("failed", "no target could be captured: router/3f2a0000-0000-4000-8000-000000000000: filter does not compile on eth0: syntax error")},
			{"deployment ../x", []string{"-n", "-d", "../x", "router"}, relErrLine("target-not-found", `deployment "../x" not found`)},
			// Refused by pcap-bosh itself, before any network call.
			{"interface ../x", []string{"-d", "cf", "router/0", "--interface", "../x"},
				"pcap-bosh: interface name \"../x\" is not valid (letters, digits and _.:@- only)\n"},
			{"snaplen 0", []string{"-d", "cf", "router/0", "-s", "0"}, "pcap-bosh: snaplen 0 is out of range 1..262144\n"},
			{"unknown flag", []string{"-d", "cf", "router/0", "--exec", "/bin/sh"}, "pcap-bosh: flag provided but not defined: -exec (see pcap-bosh --help)\n"},
		} {
			out := filepath.Join(dir, fmt.Sprintf("hostile%d.pcapng", i))
			r := e.pcapBosh(t, env, append(append([]string{"-e", "fake", "-o", out}, tc.args...), boshAPIFlags(e.API)...)...)
			stderr := r.Stderr
			if r.Code != 1 || stderr != tc.want {
				t.Errorf("pcap-bosh %s: exit %d, stderr:\n%q\nwant 1 and:\n%q", tc.name, r.Code, r.Stderr, tc.want)
			}
			assertNoFile(t, out)
			logs["pcap-bosh ("+tc.name+")"] = r.Stderr
		}

		// A capture that works, and a one-time code through OpenSSH, for
		// the logs searched below.
		r := e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "cf", "router/1", "--duration", "1s", "-o", filepath.Join(dir, "ok.pcapng")}, boshAPIFlags(e.API)...)...)
		if r.Code != 0 {
			t.Errorf("pcap-bosh: exit %d:\n%s", r.Code, r.Stderr)
		}
		logs["pcap-bosh (capture)"] = r.Stderr
		code := e.sshCode(t, home)
		sec.add("a one-time code", code)
		f, err := os.Create(filepath.Join(dir, "code.pcapng"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s := boshSSH{API: e.API, Password: code, Out: f}.start(t, "capture", "-d", "cf", "router/0", "--duration", "1s")
		if c := boshExitCode(t, s.Proc, 30*time.Second); c != 0 {
			t.Errorf("ssh with a one-time code: exit %d:\n%s", c, s.Output())
		}
		logs["ssh (one-time code)"] = s.Output()
		// Used: the same code again is refused, with a reason on stderr.
		s = boshSSH{API: e.API, Password: code, Out: f}.start(t, "capture", "-d", "cf", "router/0", "--duration", "1s")
		if c := boshExitCode(t, s.Proc, 30*time.Second); c == 0 {
			t.Error("a used code logged in again")
		}
		if !regexp.MustCompile(`pcap-api: refused: one-time code is unknown, used or expired`).MatchString(s.Output()) {
			t.Errorf("a used code: ssh said:\n%s", s.Output())
		}
		logs["ssh (used one-time code)"] = s.Output()
	})

	t.Run("no secret in any log", func(t *testing.T) {
		sec.add("the UAA client secret of ops", "ops-secret")
		for _, u := range []string{"admin", "director-admin", "team-cf", "team-other", "reader"} {
			sec.add("the password of "+u, u+"-pw")
		}
		sec.addConfigKeys(t, "pcap-api's", e.API.Cmd.Args)
		logs["pcap-api"] = e.API.Output()
		for i, a := range e.Agents {
			sec.addConfigKeys(t, fmt.Sprintf("agent %d's", i), a.Cmd.Args)
			logs[fmt.Sprintf("pcap-agent %d", i)] = a.Output()
		}
		if !strings.Contains(logs["pcap-api"], `"msg":"auth-refused"`) {
			t.Error("the API's log has no refused login: the matrix did not run")
		}
		sec.check(t, logs)
	})
}
