package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestSecurityCF runs the security cases of the cf path on one CF world:
// the authorisation matrix of every role and credential, hostile input
// through the front door and through the real cf CLI with the plugin,
// and finally a search of every log for the credentials used.
func TestSecurityCF(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	sec := relSecrets{}
	logs := map[string]string{}
	mint := func(user string, lifetime time.Duration, forged bool) string {
		var tok string
		var err error
		if forged {
			tok, err = e.UAA.MintForgedToken(user, lifetime)
		} else {
			tok, err = e.UAA.MintToken(user, lifetime)
		}
		if err != nil {
			t.Fatal(err)
		}
		sec.addToken("the token of "+user, tok)
		return tok
	}
	agents := []*agentProc{e.Cells[0].Agent, e.Cells[1].Agent}

	t.Run("authorisation matrix", func(t *testing.T) {
		notDeveloper := relErrLine("not-allowed", "you may not capture app "+cfApp+": app captures follow SSH access, which takes the space developer role in the app's space (or admin)")
		mintWith := func(m uaa.Mint) string {
			tok, err := e.UAA.Mint(m)
			if err != nil {
				t.Fatal(err)
			}
			sec.addToken("a minted token", tok)
			return tok
		}
		cases := []relAuthz{
			{name: "admin", password: mint("admin", time.Hour, false), user: "cf:admin", allowed: true},
			{name: "space developer", password: mint("developer", time.Hour, false), user: "cf:developer", allowed: true},
			{name: "space supporter", password: mint("supporter", time.Hour, false), user: "cf:supporter", refused: notDeveloper},
			{name: "space auditor", password: mint("auditor", time.Hour, false), user: "cf:auditor", refused: notDeveloper},
			{name: "space manager", password: mint("spacemgr", time.Hour, false), user: "cf:spacemgr", refused: notDeveloper},
			{name: "org manager", password: mint("orgmanager", time.Hour, false), user: "cf:orgmanager", refused: notDeveloper},
			{name: "other space's developer", password: mint("otherdev", time.Hour, false), user: "cf:otherdev", refused: notDeveloper},
			{name: "read-only admin", password: mint("adminro", time.Hour, false), user: "cf:adminro", refused: notDeveloper},
			{name: "global auditor", password: mint("auditorg", time.Hour, false), user: "cf:auditorg", refused: notDeveloper},
			// Tokens UAA signed for something else: refused at the door.
			{name: "client_credentials of an unrelated client", password: mintWith(uaa.Mint{ClientID: "other"}), user: "cf",
				authErr: `uaa: token refused: it is a token of client \"other\" for itself (grant client_credentials), not of a user; an operator may allow the client with cf.allowed_clients`},
			{name: "user token for another audience", password: mintWith(uaa.Mint{Username: "developer", Scopes: []string{"openid", "uaa.user"}}), user: "cf",
				authErr: "uaa: token refused: it is not for the Cloud Controller (audience openid uaa cf)"},
			{name: "user token with scope uaa.none", password: mintWith(uaa.Mint{Username: "admin", Scopes: []string{"cloud_controller.write", "uaa.none"}}), user: "cf",
				authErr: "uaa: token refused: it has neither cloud_controller.read nor cloud_controller.admin scope (scopes cloud_controller.write uaa.none)"},
			{name: "no token", password: "", user: "cf",
				authErr: `uaa: one-time code was refused: uaa: token request refused (400 Bad Request): invalid_grant Invalid authorization code: `},
			{name: "expired", password: mint("developer", -time.Hour, false), user: "cf", authErr: "uaa: token has expired"},
			{name: "forged", password: mint("admin", time.Hour, true), user: "cf", authErr: "uaa: token is not valid: signature does not verify"},
		}
		relRunAuthz(t, e.API, agents, "cf", "capture --app "+cfApp+" --instance 0 --duration 1s", cases)
	})

	t.Run("hostile input", func(t *testing.T) {
		tok := mint("developer", time.Hour, false)
		before := 0
		for _, a := range agents {
			before += relCount(a, relAgentContactRe)
		}
		for _, tc := range []struct{ name, cmd, want string }{
			{"app guid ../../v3/apps", "capture --app ../../v3/apps", relErrLine("bad-request", `app guid "../../v3/apps" is not valid`)},
			{"app guid with a path", "capture --app " + cfApp + "/../..", relErrLine("bad-request", `app guid "`+cfApp+`/../.." is not valid`)},
			{"app guid URL-encoded", "capture --app %2e%2e", relErrLine("bad-request", `app guid "%2e%2e" is not valid`)},
			{"app guid with a query", "capture --app '" + cfApp + "?include=space'", relErrLine("bad-request", `app guid "`+cfApp+`?include=space" is not valid`)},
			{"app guid 65 characters", "capture --app " + strings.Repeat("a", 65), relErrLine("bad-request", `app guid "`+strings.Repeat("a", 65)+`" is not valid`)},
			{"app guid empty", "capture --app ''", relErrLine("bad-request", "--app GUID is required")},
			{"instance not a number", "capture --app " + cfApp + " --instance 0,abc", relErrLine("bad-request", `instance index "abc" is not a number 0..100000`)},
			{"instance huge", "capture --app " + cfApp + " --instance 99999999999", relErrLine("bad-request", `instance index "99999999999" is not a number 0..100000`)},
			{"process type ../x", "capture --app " + cfApp + " -t ../x", relErrLine("target-not-found", `app myapp has no process of type "../x"`)},
			{"a positional argument", "capture --app " + cfApp + " port 80", relErrLine("bad-request", `unexpected argument(s) "port 80": cf captures take --app GUID (and --type, --instance); quote a filter that has spaces, e.g. -f 'tcp port 8080'`)},
			{"a deployment", "capture --app " + cfApp + " -d cf", relErrLine("bad-request", "-d is for BOSH deployments: cf captures take --app GUID (and --type, --instance)")},
		} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r := relExec(ctx, e.API, "cf", ssh.Password(tok), tc.cmd)
			cancel()
			if r.Status != 1 || r.Err != nil || r.Stderr != tc.want || len(r.Stdout) != 0 {
				t.Errorf("%s: status %d, err %v, %d bytes, stderr:\n%q\nwant:\n%q", tc.name, r.Status, r.Err, len(r.Stdout), r.Stderr, tc.want)
			}
		}
		after := 0
		for _, a := range agents {
			after += relCount(a, relAgentContactRe)
		}
		if after != before {
			t.Errorf("agents logged %d contacts for refused commands", after-before)
		}

		// Through the real cf CLI and the plugin.
		cf := newCFCLI(t)
		cf.login(t, e, "developer")
		cfTok := cf.token(t)
		sec.addToken("the cf CLI's token", cfTok)
		if b, err := os.ReadFile(filepath.Join(cf.home, ".cf", "config.json")); err == nil {
			var cfg struct{ AccessToken, RefreshToken string }
			if json.Unmarshal(b, &cfg) == nil {
				sec.addToken("the cf CLI's refresh token", cfg.RefreshToken)
			}
		}
		dir := t.TempDir()
		for i, tc := range []struct {
			name string
			args []string
			want []string // whole lines of cf's output
		}{
			{"app name ../x", []string{"../x"}, []string{"FAILED: app ../x not found in the targeted space"}},
			{"app name with a query", []string{"myapp?x=1"}, []string{"FAILED: app myapp?x=1 not found in the targeted space"}},
			{"filter $(…)", []string{"myapp", "-i", "0", "-f", "$(id)"}, []string{
				`pcap: web/0: failed code=bad-filter reason="filter does not compile on eth0: syntax error"`,
				`pcap: error: failed reason="no target could be captured: web/0: filter does not compile on eth0: syntax error"`}},
			{"filter with ;", []string{"myapp", "-i", "0", "-f", "udp; id"}, []string{
				`pcap: web/0: failed code=bad-filter reason="filter does not compile on eth0: syntax error"`}},
			// Refused by the plugin itself, before any network call.
			{"interface ../x", []string{"myapp", "--interface", "../x"}, []string{
				`FAILED: interface name "../x" is not valid (letters, digits and _.:@- only)`}},
			{"snaplen 0", []string{"myapp", "-s", "0"}, []string{`FAILED: snaplen 0 is out of range 1..262144`}},
			{"unknown flag", []string{"myapp", "--exec", "/bin/sh"}, []string{"FAILED: flag provided but not defined: -exec (see cf help pcap)"}},
		} {
			out := filepath.Join(dir, fmt.Sprintf("hostile%d.pcapng", i))
			p := cf.start(t, e, nil, append(tc.args, "-o", out)...)
			if code := cfExit(t, p, 60*time.Second); code != 1 {
				t.Errorf("cf pcap %s: exit %d, want 1:\n%s", tc.name, code, p.Output())
			}
			for _, w := range tc.want {
				if len(p.Lines(regexp.MustCompile("^"+regexp.QuoteMeta(w)+"$"))) != 1 {
					t.Errorf("cf pcap %s: no line %q in:\n%s", tc.name, w, p.Output())
				}
			}
			assertNoFile(t, out)
			logs["cf pcap ("+tc.name+")"] = p.Output()
		}

		// A capture that works, and a one-time code through OpenSSH, for
		// the logs searched below.
		out := filepath.Join(dir, "ok.pcapng")
		p := cf.start(t, e, nil, "myapp", "-i", "1", "--duration", "1s", "-o", out)
		if code := cfExit(t, p, 60*time.Second); code != 0 {
			t.Errorf("cf pcap: exit %d:\n%s", code, p.Output())
		}
		logs["cf pcap (capture)"] = p.Output()
		code := strings.TrimSpace(cf.must(t, "ssh-code"))
		sec.add("a cf ssh-code", code)
		f, err := os.Create(filepath.Join(dir, "code.pcapng"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		s := runSSHPassword(t, e.API, "cf", code, f, "capture", "--app", cfApp, "--instance", "2", "--duration", "1s")
		if err, ok := s.Wait(30 * time.Second); !ok || err != nil {
			t.Errorf("ssh with a one-time code: %v %v\n%s", ok, err, s.Output())
		}
		logs["ssh (one-time code)"] = s.Output()
		// The code was used: a second login with it is refused.
		s = runSSHPassword(t, e.API, "cf", code, f, "capture", "--app", cfApp, "--duration", "1s")
		if err, ok := s.Wait(30 * time.Second); !ok || err == nil {
			t.Errorf("a used code logged in again: %v %v", ok, err)
		}
		logs["ssh (used one-time code)"] = s.Output()
	})

	t.Run("no secret in any log", func(t *testing.T) {
		sec.add("the UAA client secret of the API", "ssh-proxy-secret")
		for name := range cfUsers {
			sec.add("the password of "+name, name+"-pw")
		}
		sec.addConfigKeys(t, "pcap-api's", e.API.Cmd.Args)
		logs["pcap-api"] = e.API.Output()
		for i, c := range e.Cells {
			sec.addConfigKeys(t, fmt.Sprintf("agent %d's", i), c.Agent.Cmd.Args)
			logs[fmt.Sprintf("pcap-agent %d", i)] = c.Agent.Output()
		}
		sec.check(t, logs)
	})
}
