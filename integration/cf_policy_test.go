package integration

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// cfSwitches sets the SSH switches of app myapp: the CC's global
// allow_app_ssh_access, space dev's allow_ssh and the app's enable_ssh.
func cfSwitches(t *testing.T, e *cfEnv, global, space, app bool) {
	t.Helper()
	if err := e.CC.SetSSH(cfApp, global, space, app); err != nil {
		t.Fatal(err)
	}
}

// TestCFSSHPolicy: app captures follow the platform's SSH policy. One
// pcap-api answers every role under every SSH switch as the Cloud
// Controller's ssh_access check does (space developers and admins only,
// and only while SSH is allowed globally, in the space and for the app),
// each request leaving the audit event the CC records, which `cf events`
// shows; a refusal names the switch that is off. A read-only admin gets
// the same answer with the cf CLI's token and with a `cf ssh-code` code.
// A second pcap-api with cf.admins_only lets only admins in, and a third
// with cf.policy read_sensitive_data ignores the switches.
func TestCFSSHPolicy(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	tokens := map[string]string{}
	for name := range cfUsers {
		tok, err := e.UAA.MintToken(name, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens[name] = tok
	}
	exec := func(a *apiProc, password string) relResult {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return relExec(ctx, a, "cf", ssh.Password(password), "capture --app "+cfApp+" --instance 0 --duration 1s")
	}
	// newEvents returns the CC's audit events since n, as "type by actor
	// on target/index".
	newEvents := func(n int) []string {
		var out []string
		for _, ev := range e.CC.AuditEvents()[n:] {
			out = append(out, fmt.Sprintf("%s by %s on %s/%v", ev.Type, ev.Actor.GUID, ev.Target.GUID, ev.Data["index"]))
		}
		return out
	}
	event := func(typ, user string) string { return fmt.Sprintf("%s by %s on %s/0", typ, cfUsers[user], cfApp) }
	allowed := func(t *testing.T, r relResult) {
		t.Helper()
		if r.Status != 0 || r.Err != nil || !strings.Contains(r.Stderr, "pcap: web/0: started ") || len(r.Stdout) == 0 {
			t.Errorf("want a capture: status %d, err %v, %d bytes, stderr:\n%s", r.Status, r.Err, len(r.Stdout), r.Stderr)
		}
	}
	refused := func(t *testing.T, r relResult, want string) {
		t.Helper()
		if r.Status != 1 || r.Err != nil || len(r.Stdout) != 0 || r.Stderr != want {
			t.Errorf("status %d, err %v, %d bytes, stderr:\n%q\nwant refused with:\n%q", r.Status, r.Err, len(r.Stdout), r.Stderr, want)
		}
	}

	notDeveloper := relErrLine("not-allowed", "you may not capture app "+cfApp+": app captures follow SSH access, which takes the space developer role in the app's space (or admin)")
	appOff := relErrLine("not-allowed", "SSH is disabled for app myapp, and app captures follow SSH access; a space developer can enable it with: cf enable-ssh myapp")
	spaceOff := relErrLine("not-allowed", "SSH is disabled in space dev, and app captures follow SSH access; a space manager can allow it with: cf allow-space-ssh dev")
	globalOff := relErrLine("not-allowed", "SSH to apps is disabled on this platform (the operator's cc.allow_app_ssh_access), and app captures follow SSH access")
	roles := []string{"developer", "admin", "spacemgr", "auditor", "supporter", "orgmanager", "otherdev", "adminro", "auditorg"}

	t.Run("role × switch matrix", func(t *testing.T) {
		for _, sw := range []struct {
			name              string
			global, space, on bool
			refusal           string // for developers and admins; "" = they capture
		}{
			{"all on", true, true, true, ""},
			{"app off", true, true, false, appOff},
			{"space off", true, false, true, spaceOff},
			{"global off", false, true, true, globalOff},
			{"all off", false, false, false, globalOff},
		} {
			cfSwitches(t, e, sw.global, sw.space, sw.on)
			for _, role := range roles {
				t.Run(sw.name+"/"+role, func(t *testing.T) {
					n := len(e.CC.AuditEvents())
					r := exec(e.API, tokens[role])
					want := event(cc.EventSSHUnauthorized, role)
					switch {
					case role != "developer" && role != "admin":
						refused(t, r, notDeveloper) // the role is checked before the switches
					case sw.refusal != "":
						refused(t, r, sw.refusal)
					default:
						allowed(t, r)
						want = event(cc.EventSSHAuthorized, role)
					}
					if got := newEvents(n); len(got) != 1 || got[0] != want {
						t.Errorf("audit events %q, want [%s]", got, want)
					}
				})
			}
		}
	})
	cfSwitches(t, e, true, true, true)

	// The same user, the same answer through both front doors: the token
	// the cf CLI holds (cf pcap sends it) and a `cf ssh-code` code. The
	// code's token carries fewer scopes (the ssh-proxy client's); a
	// read-only admin sees the app with the first and not with the second.
	t.Run("same answer with a token and a one-time code", func(t *testing.T) {
		for _, tc := range []struct {
			user string
			app  bool
			want string
		}{
			{"adminro", true, notDeveloper},
			{"auditorg", true, notDeveloper},
			{"developer", false, appOff},
		} {
			cfSwitches(t, e, true, true, tc.app)
			cf := newCFCLI(t)
			cf.must(t, "api", e.CC.URL())
			cf.must(t, "auth", tc.user, tc.user+"-pw")
			n := len(e.CC.AuditEvents())
			refused(t, exec(e.API, cf.token(t)), tc.want)
			refused(t, exec(e.API, strings.TrimSpace(cf.must(t, "ssh-code"))), tc.want)
			if got, ev := newEvents(n), event(cc.EventSSHUnauthorized, tc.user); len(got) != 2 || got[0] != ev || got[1] != ev {
				t.Errorf("%s: audit events %q, want two of %s", tc.user, got, ev)
			}
		}
		cfSwitches(t, e, true, true, true)
	})

	t.Run("admins only", func(t *testing.T) {
		a := e.startAPI(t, func(c *api.Config) { c.CF.AdminsOnly = true })
		n := len(e.CC.AuditEvents())
		for _, role := range []string{"developer", "adminro", "auditorg"} {
			refused(t, exec(a, tokens[role]), relErrLine("not-allowed", "app captures are for admins only here (the operator set cf.admins_only): your token has no cloud_controller.admin scope"))
		}
		if got := newEvents(n); len(got) != 0 {
			t.Errorf("refused before the CC was asked, yet audit events %q", got)
		}
		allowed(t, exec(a, tokens["admin"]))
		if got := newEvents(n); len(got) != 1 || got[0] != event(cc.EventSSHAuthorized, "admin") {
			t.Errorf("audit events %q", got)
		}
	})

	t.Run("read_sensitive_data policy", func(t *testing.T) {
		a := e.startAPI(t, func(c *api.Config) { c.CF.Policy = api.CFPolicyReadSensitiveData })
		cfSwitches(t, e, false, false, false)
		defer cfSwitches(t, e, true, true, true)
		n := len(e.CC.AuditEvents())
		allowed(t, exec(a, tokens["developer"]))
		allowed(t, exec(a, tokens["adminro"]))
		refused(t, exec(a, tokens["auditor"]), relErrLine("not-allowed", "you may not capture app myapp: it takes the space developer role in its space (or admin)"))
		if got := newEvents(n); len(got) != 0 {
			t.Errorf("audit events %q, want none (SSH access is not asked)", got)
		}
	})

	// A space developer reads the events with `cf events` (which lists
	// the first page of /v3/audit_events?target_guids=…&order_by=-created_at:
	// the 50 most recent).
	t.Run("cf events shows them", func(t *testing.T) {
		allowed(t, exec(e.API, tokens["developer"]))
		cf := newCFCLI(t)
		cf.must(t, "api", e.CC.URL())
		cf.must(t, "auth", "developer", "developer-pw")
		cf.must(t, "target", "-o", "org", "-s", "dev")
		out := cf.must(t, "events", "myapp")
		for _, re := range []string{
			`(?m)^\S+\s+audit\.app\.ssh-authorized\s+developer\s+index: 0$`,
			`(?m)^\S+\s+audit\.app\.ssh-authorized\s+admin\s+index: 0$`,
			`(?m)^\S+\s+audit\.app\.ssh-unauthorized\s+auditorg\s+index: 0$`,
			`(?m)^\S+\s+audit\.app\.ssh-unauthorized\s+adminro\s+index: 0$`,
		} {
			if !regexp.MustCompile(re).MatchString(out) {
				t.Errorf("cf events has no line matching %s:\n%s", re, out)
			}
		}
	})
}
