package cfresolver_test

import (
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// switches sets the CC's three SSH switches for app "myapp".
func (w *world) switches(t *testing.T, global, space, app bool) {
	t.Helper()
	if err := w.CC.SetSSH(appGUID, global, space, app); err != nil {
		t.Fatal(err)
	}
}

// events are the CC's audit events recorded since n, as "type:index".
func (w *world) events(n int) []string {
	out := []string{}
	for _, e := range w.CC.AuditEvents()[n:] {
		out = append(out, e.Type+":"+e.Data["index"].(string))
	}
	return out
}

// TestResolveSSH: with the default cf.policy (ssh), each instance is
// captured only after the Cloud Controller's SSH access check allowed it,
// which leaves an audit event; a refusal names the switch that is off, and
// the first check comes before any other request, so that the answer does
// not depend on scopes only some tokens carry.
func TestResolveSSH(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	all := []api.Target{target("0", cell0, instance0GUID), target("2", cell1, instance2GUID)}
	notRunning := []api.Skipped{{Name: "web/1", Reason: "instance is CRASHED"}, {Name: "web/3", Reason: "instance is STARTING"}}
	access := func(i string) string { return "/internal/apps/" + appGUID + "/ssh_access/" + i }
	lookup := []string{"/v3/apps/" + appGUID, "/v3/processes/" + appGUID + "/stats"}
	ok, refused := "audit.app.ssh-authorized:", "audit.app.ssh-unauthorized:"
	notDeveloper := "you may not capture app " + appGUID + ": app captures follow SSH access, which takes the space developer role in the app's space (or admin)"
	on := [3]bool{true, true, true}

	cases := []struct {
		name      string
		user      string
		switches  [3]bool // global, space, app
		req       capturecmd.Request
		targets   []api.Target
		skipped   []api.Skipped
		code, msg string
		ccPaths   []string
		events    []string
	}{
		{name: "space developer, all instances", user: "developer", switches: on, req: capturecmd.Request{App: appGUID},
			targets: all, skipped: notRunning, ccPaths: append(append([]string{access("0")}, lookup...), access("2")), events: []string{ok + "0", ok + "2"}},
		{name: "admin, one instance", user: "admin", switches: on, req: capturecmd.Request{App: appGUID, Instances: []int{2}},
			targets: all[1:], ccPaths: append([]string{access("2")}, lookup...), events: []string{ok + "2"}},
		{name: "indexes sorted and deduplicated", user: "developer", switches: on, req: capturecmd.Request{App: appGUID, Instances: []int{2, 0, 2}},
			targets: all, events: []string{ok + "0", ok + "2"}},
		{name: "worker process", user: "developer", switches: on, req: capturecmd.Request{App: appGUID, Process: "worker"},
			targets: []api.Target{{Name: "worker/0", Agent: cell1 + ":9494",
				Capture:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: workerInstance},
				Description: "app myapp instance 0 on " + cell1}},
			skipped: []api.Skipped{{Name: "worker/1", Reason: "instance is DOWN"}}, events: []string{ok + "0"}},

		{name: "space auditor", user: "auditor", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "space supporter", user: "supporter", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "space manager", user: "spacemgr", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "org manager", user: "orgmanager", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "read-only admin", user: "adminro", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "global auditor", user: "auditorg", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},
		{name: "developer of another space", user: "otherdev", switches: on, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, ccPaths: []string{access("0")}, events: []string{refused + "0"}},

		{name: "app ssh off", user: "developer", switches: [3]bool{true, true, false}, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: "SSH is disabled for app myapp, and app captures follow SSH access; a space developer can enable it with: cf enable-ssh myapp",
			ccPaths: []string{access("0"), "/v3/apps/" + appGUID, "/v3/apps/" + appGUID + "/ssh_enabled"}, events: []string{refused + "0"}},
		{name: "space ssh off", user: "admin", switches: [3]bool{true, false, true}, req: capturecmd.Request{App: appGUID, Instances: []int{2}},
			code: tunnel.CodeNotAllowed, msg: "SSH is disabled in space dev, and app captures follow SSH access; a space manager can allow it with: cf allow-space-ssh dev",
			events: []string{refused + "2"}},
		{name: "global ssh off", user: "developer", switches: [3]bool{false, true, true}, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: "SSH to apps is disabled on this platform (the operator's cc.allow_app_ssh_access), and app captures follow SSH access",
			events: []string{refused + "0"}},
		{name: "role before switches", user: "auditor", switches: [3]bool{false, false, false}, req: capturecmd.Request{App: appGUID},
			code: tunnel.CodeNotAllowed, msg: notDeveloper, events: []string{refused + "0"}},

		{name: "app not found", user: "admin", switches: on, req: capturecmd.Request{App: "ab000000-0000-4000-8000-0000000000ff"},
			code: tunnel.CodeTargetNotFound, msg: "app ab000000-0000-4000-8000-0000000000ff not found, or not visible to you", events: []string{}},
		{name: "no such process type", user: "developer", switches: on, req: capturecmd.Request{App: appGUID, Process: "clock"},
			code: tunnel.CodeTargetNotFound, msg: `app myapp has no process of type "clock"`, ccPaths: []string{"/v3/apps/" + appGUID, "/v3/apps/" + appGUID + "/processes?types=clock"}, events: []string{}},
		{name: "index out of range", user: "developer", switches: on, req: capturecmd.Request{App: appGUID, Instances: []int{0, 7}},
			code: tunnel.CodeTargetNotFound, msg: "app myapp has no web instance 7 (it has 4: 0..3)", events: []string{ok + "0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w.switches(t, tc.switches[0], tc.switches[1], tc.switches[2])
			id := w.identity(t, r, tc.user)
			w.CC.Requests().Reset()
			n := len(w.CC.AuditEvents())
			targets, skipped, err := r.Resolve(t.Context(), id, tc.req)
			if tc.code != "" {
				re := tunnel.AsReject(err)
				if re.Code != tc.code || re.Message != tc.msg || targets != nil || skipped != nil {
					t.Errorf("refusal = %s: %q (%v %v)\n            want %s: %q", re.Code, re.Message, targets, skipped, tc.code, tc.msg)
				}
			} else {
				if err != nil {
					t.Fatalf("Resolve: %v", err)
				}
				if !reflect.DeepEqual(targets, tc.targets) || !reflect.DeepEqual(skipped, tc.skipped) {
					t.Errorf("targets = %+v, skipped %+v\n   want %+v, %+v", targets, skipped, tc.targets, tc.skipped)
				}
			}
			if got := paths(w); tc.ccPaths != nil && !reflect.DeepEqual(got, tc.ccPaths) {
				t.Errorf("Cloud Controller requests = %q, want %q", got, tc.ccPaths)
			}
			if got := w.events(n); tc.events != nil && !reflect.DeepEqual(got, tc.events) {
				t.Errorf("audit events = %q, want %q", got, tc.events)
			}
		})
	}
}

// TestResolveSSHSameForBothDoors: a read-only admin gets the same refusal
// with a token of the cf CLI (which carries admin_read_only, so the app is
// visible to it) and with a `cf ssh-code` code (whose ssh-proxy client
// drops that scope, so the app is not).
func TestResolveSSHSameForBothDoors(t *testing.T) {
	w := startWorld(t, nil)
	for _, policy := range []string{api.CFPolicySSH, api.CFPolicyReadSensitiveData} {
		r := w.resolver()
		r.Policy = policy
		viaToken := w.identity(t, r, "adminro")
		code, err := w.UAA.MintCode("adminro", "ssh-proxy")
		if err != nil {
			t.Fatal(err)
		}
		viaCode, err := r.AuthPassword(t.Context(), code)
		if err != nil {
			t.Fatal(err)
		}
		_, _, errToken := r.Resolve(t.Context(), viaToken, capturecmd.Request{App: appGUID})
		_, _, errCode := r.Resolve(t.Context(), viaCode, capturecmd.Request{App: appGUID})
		same := errToken != nil && errCode != nil && errToken.Error() == errCode.Error()
		if policy == api.CFPolicySSH && !same {
			t.Errorf("ssh policy: token → %v; code → %v; want the same refusal", errToken, errCode)
		}
		// The old policy is documented to differ: the scope decides.
		if policy == api.CFPolicyReadSensitiveData && (errToken != nil || errCode == nil) {
			t.Errorf("read_sensitive_data: token → %v, code → %v; want allowed, refused", errToken, errCode)
		}
	}
}

// TestResolveAdminsOnly: cf.admins_only refuses non-admins before the
// Cloud Controller is asked.
func TestResolveAdminsOnly(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	r.AdminsOnly = true
	for _, user := range []string{"developer", "adminro"} {
		id := w.identity(t, r, user)
		w.CC.Requests().Reset()
		_, _, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID})
		want := "app captures are for admins only here (the operator set cf.admins_only): your token has no cloud_controller.admin scope"
		if re := tunnel.AsReject(err); re.Code != tunnel.CodeNotAllowed || re.Message != want {
			t.Errorf("%s: %v, want %q", user, err, want)
		}
		if n := w.CC.Requests().Len(); n != 0 {
			t.Errorf("%s: %d Cloud Controller requests, want 0", user, n)
		}
	}
	targets, _, err := r.Resolve(t.Context(), w.identity(t, r, "admin"), capturecmd.Request{App: appGUID, Instances: []int{0}})
	if err != nil || len(targets) != 1 {
		t.Errorf("admin: %v, %v", targets, err)
	}
}

// refuseIndex answers the SSH access check of one instance with a 403, as
// if the user's role had been taken away between two checks.
type refuseIndex struct {
	path string
	next http.RoundTripper
}

func (f refuseIndex) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Path == f.path {
		body := `{"code":10003,"description":"You are not authorized to perform the requested action","error_code":"CF-NotAuthorized"}`
		return &http.Response{StatusCode: http.StatusForbidden, Header: http.Header{}, Body: io.NopCloser(strings.NewReader(body)), Request: req}, nil
	}
	return f.next.RoundTrip(req)
}

// TestResolveSSHOneRefusedInstance: an instance the check refuses is
// reported skipped with the reason; the others are captured.
func TestResolveSSHOneRefusedInstance(t *testing.T) {
	w := startWorld(t, nil)
	r := w.resolver()
	id := w.identity(t, r, "developer")
	r.HTTP.Transport = refuseIndex{path: "/internal/apps/" + appGUID + "/ssh_access/2", next: http.DefaultTransport}
	targets, skipped, err := r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID, Instances: []int{0, 2}})
	if err != nil {
		t.Fatal(err)
	}
	want := []api.Skipped{{Name: "web/2", Reason: "you may not capture app " + appGUID + ": app captures follow SSH access, which takes the space developer role in the app's space (or admin)"}}
	if len(targets) != 1 || targets[0].Name != "web/0" || !reflect.DeepEqual(skipped, want) {
		t.Errorf("targets %+v, skipped %+v; want web/0 and %+v", targets, skipped, want)
	}
	// Only that one asked: refused as a whole.
	r.HTTP.Transport = refuseIndex{path: "/internal/apps/" + appGUID + "/ssh_access/0", next: http.DefaultTransport}
	_, _, err = r.Resolve(t.Context(), id, capturecmd.Request{App: appGUID, Instances: []int{0}})
	var re *tunnel.RejectError
	if !errors.As(err, &re) || re.Code != tunnel.CodeNotAllowed {
		t.Errorf("only a refused instance: %v, want not-allowed", err)
	}
}
