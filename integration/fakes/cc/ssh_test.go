package cc_test

import (
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

type v2Body struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
	ErrorCode   string `json:"error_code"`
	ProcessGUID string `json:"process_guid"`
}

// setSwitches sets the three SSH switches of app "app".
func setSwitches(t *testing.T, e *env, global, space, app bool) {
	t.Helper()
	if err := e.cc.SetSSH(appGUID, global, space, app); err != nil {
		t.Fatal(err)
	}
}

// TestSSHAccess: GET /internal/apps/:guid/ssh_access/:index answers as
// the CC's AppsSSHController (token, then process, then scope, then role,
// then the switches) and records the audit events it records.
func TestSSHAccess(t *testing.T) {
	e := setup(t)
	mint := func(user string, scopes ...string) string {
		tok, err := e.uaa.Mint(uaa.Mint{Username: user, Scopes: scopes})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	foreign, err := e.uaa.MintClientToken("bosh_cli", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rw := []string{"openid", "cloud_controller.read", "cloud_controller.write"}
	on := [3]bool{true, true, true}
	tests := []struct {
		name     string
		token    string
		guid     string
		switches [3]bool // global, space, app
		status   int
		code     string
		event    string
		actor    string
	}{
		{"space developer", mint("developer", rw...), appGUID, on, 200, "", cc.EventSSHAuthorized, "u-developer"},
		{"admin", mint("admin", "cloud_controller.admin"), appGUID, on, 200, "", cc.EventSSHAuthorized, "u-admin"},
		{"read-only admin", mint("adminro", append(rw, "cloud_controller.admin_read_only")...), appGUID, on, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-adminro"},
		{"global auditor", mint("globalauditor", append(rw, "cloud_controller.global_auditor")...), appGUID, on, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-globalauditor"},
		{"space auditor", mint("auditor", rw...), appGUID, on, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-auditor"},
		{"space manager", mint("manager", rw...), appGUID, on, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-manager"},
		{"org manager", mint("orgmanager", rw...), appGUID, on, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-orgmanager"},
		{"developer without write scope", mint("developer", "openid", "cloud_controller.read"), appGUID, on, 403, "CF-InsufficientScope", cc.EventSSHUnauthorized, "u-developer"},
		{"app ssh off", mint("developer", rw...), appGUID, [3]bool{true, true, false}, 400, "CF-InvalidRequest", cc.EventSSHUnauthorized, "u-developer"},
		{"space ssh off", mint("developer", rw...), appGUID, [3]bool{true, false, true}, 400, "CF-InvalidRequest", cc.EventSSHUnauthorized, "u-developer"},
		{"global ssh off", mint("developer", rw...), appGUID, [3]bool{false, true, true}, 400, "CF-InvalidRequest", cc.EventSSHUnauthorized, "u-developer"},
		{"role before switches", mint("auditor", rw...), appGUID, [3]bool{false, false, false}, 403, "CF-NotAuthorized", cc.EventSSHUnauthorized, "u-auditor"},
		{"admin, app ssh off", mint("admin", "cloud_controller.admin"), appGUID, [3]bool{true, true, false}, 400, "CF-InvalidRequest", cc.EventSSHUnauthorized, "u-admin"},
		{"no such process", mint("admin", "cloud_controller.admin"), "aa000000-0000-4000-8000-0000000000ff", on, 404, "CF-AppNotFound", "", ""},
		{"no token", "", appGUID, on, 401, "CF-NotAuthenticated", cc.EventSSHUnauthorized, "unknown-user-guid"},
		{"foreign audience", foreign, appGUID, on, 401, "CF-InvalidAuthToken", cc.EventSSHUnauthorized, "unknown-user-guid"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			setSwitches(t, e, tc.switches[0], tc.switches[1], tc.switches[2])
			before := len(e.cc.AuditEvents())
			var body v2Body
			status := e.get(t, tc.token, "/internal/apps/"+tc.guid+"/ssh_access/2", &body)
			if status != tc.status || body.ErrorCode != tc.code {
				t.Errorf("status %d %s, want %d %s", status, body.ErrorCode, tc.status, tc.code)
			}
			if status == 200 && !strings.HasPrefix(body.ProcessGUID, appGUID+"-") {
				t.Errorf("process_guid %q is not the process guid and version", body.ProcessGUID)
			}
			events := e.cc.AuditEvents()[before:]
			if tc.event == "" {
				if len(events) != 0 {
					t.Errorf("recorded %d events, want none", len(events))
				}
				return
			}
			if len(events) != 1 {
				t.Fatalf("recorded %d events, want 1", len(events))
			}
			ev := events[0]
			if ev.Type != tc.event || ev.Actor.GUID != tc.actor || ev.Target.GUID != appGUID || ev.Target.Name != "app" ||
				ev.Data["index"] != "2" || ev.SpaceGUID != spaceGUID || ev.OrgGUID != orgGUID {
				t.Errorf("event = %+v, want %s by %s about app %s, index 2", ev, tc.event, tc.actor, appGUID)
			}
		})
	}
}

// TestSSHEnabledNamesTheSwitch: /v3/apps/:guid/ssh_enabled as the CC's
// AppSshStatusPresenter: the global switch first, then the space, then
// the app.
func TestSSHEnabledNamesTheSwitch(t *testing.T) {
	e := setup(t)
	tok := e.token(t, "auditor")
	for _, tc := range []struct {
		switches [3]bool
		enabled  bool
		reason   string
	}{
		{[3]bool{true, true, true}, true, ""},
		{[3]bool{true, true, false}, false, "ssh is disabled for app"},
		{[3]bool{true, false, false}, false, "ssh is disabled for space 'space'"},
		{[3]bool{false, false, false}, false, "ssh is disabled globally"},
	} {
		setSwitches(t, e, tc.switches[0], tc.switches[1], tc.switches[2])
		var st struct {
			Enabled bool
			Reason  string
		}
		if status := e.get(t, tok, "/v3/apps/"+appGUID+"/ssh_enabled", &st); status != 200 || st.Enabled != tc.enabled || st.Reason != tc.reason {
			t.Errorf("%v: %d %+v, want %v %q", tc.switches, status, st, tc.enabled, tc.reason)
		}
	}
}

// TestAuditEventsList: /v3/audit_events filters by type and target,
// orders by created_at, and shows events to global readers and to space
// developers, auditors and supporters (not to space managers).
func TestAuditEventsList(t *testing.T) {
	e := setup(t)
	dev, err := e.uaa.Mint(uaa.Mint{Username: "developer", Scopes: []string{"openid", "cloud_controller.read", "cloud_controller.write"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range []string{"0", "1"} {
		e.clk.Advance(time.Second)
		if status := e.get(t, dev, "/internal/apps/"+appGUID+"/ssh_access/"+i, nil); status != 200 {
			t.Fatalf("ssh_access: %d", status)
		}
	}
	e.clk.Advance(time.Second)
	if status := e.get(t, e.token(t, "auditor"), "/internal/apps/"+appGUID+"/ssh_access/0", nil); status != 403 {
		t.Fatalf("auditor's ssh_access: %d", status)
	}
	for _, tc := range []struct {
		user, query string
		want        []string // type:index of each event, in order
	}{
		{"auditor", "target_guids=" + appGUID, []string{"audit.app.ssh-authorized:0", "audit.app.ssh-authorized:1", "audit.app.ssh-unauthorized:0"}},
		{"supporter", "target_guids=" + appGUID + "&order_by=-created_at", []string{"audit.app.ssh-unauthorized:0", "audit.app.ssh-authorized:1", "audit.app.ssh-authorized:0"}},
		{"globalauditor", "types=audit.app.ssh-unauthorized", []string{"audit.app.ssh-unauthorized:0"}},
		{"adminro", "target_guids=" + app2GUID, nil},
		{"manager", "", nil},
		{"orgmanager", "", nil},
		{"otherdev", "", nil},
	} {
		var l list
		if status := e.get(t, e.token(t, tc.user), "/v3/audit_events?"+tc.query, &l); status != 200 {
			t.Errorf("%s: status %d", tc.user, status)
			continue
		}
		var got []string
		for _, r := range l.Resources {
			got = append(got, r["type"].(string)+":"+r["data"].(map[string]any)["index"].(string))
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") || l.Pagination.TotalResults != len(tc.want) {
			t.Errorf("%s ?%s: %v (total %d), want %v", tc.user, tc.query, got, l.Pagination.TotalResults, tc.want)
		}
	}
	var l list
	e.get(t, e.token(t, "auditor"), "/v3/audit_events?types=audit.app.ssh-authorized&per_page=1", &l)
	r := l.Resources[0]
	actor, target := r["actor"].(map[string]any), r["target"].(map[string]any)
	if actor["guid"] != "u-developer" || actor["type"] != "user" || actor["name"] != "developer" ||
		target["guid"] != appGUID || target["type"] != "app" || target["name"] != "app" ||
		r["space"].(map[string]any)["guid"] != spaceGUID || l.Pagination.Next == nil {
		t.Errorf("event = %v", r)
	}
	var eb errorsBody
	if status := e.get(t, e.token(t, "auditor"), "/v3/audit_events?actor_guids=x", &eb); status != 400 || eb.Errors[0].Title != "CF-BadQueryParameter" {
		t.Errorf("unknown parameter: %d %+v", status, eb)
	}
}
