package cc_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/fakes/fakeclock"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

const (
	orgGUID    = "0a000000-0000-4000-8000-000000000001"
	spaceGUID  = "5a000000-0000-4000-8000-000000000001"
	space2GUID = "5a000000-0000-4000-8000-000000000002"
	appGUID    = "aa000000-0000-4000-8000-000000000001"
	app2GUID   = "aa000000-0000-4000-8000-000000000002"
)

var read = []string{"openid", "cloud_controller.read"}

// people: username → scopes; every one gets a UAA user and a CC user with
// GUID "u-<username>".
var people = map[string][]string{
	"admin":         {"openid", "cloud_controller.admin"},
	"adminro":       {"openid", "cloud_controller.admin_read_only"},
	"globalauditor": {"openid", "cloud_controller.global_auditor"},
	"developer":     read,
	"supporter":     read,
	"auditor":       read,
	"manager":       read,
	"orgmanager":    read,
	"orguser":       read,
	"orgauditor":    read,
	"otherdev":      read,
	"outsider":      read,
	"noscope":       {"openid", "cloud_controller.write"}, // a CC audience, no read scope
}

func world() cc.World {
	w := cc.World{
		Organizations: []cc.Org{{GUID: orgGUID, Name: "org", Spaces: []cc.Space{
			{GUID: spaceGUID, Name: "space", Apps: []cc.App{{GUID: appGUID, Name: "app", Processes: []cc.Process{
				{Type: "web", Command: "./secret-command", Instances: []cc.Instance{
					{Index: 0, Host: "10.0.0.1", InstanceGUID: "i-0", InternalIP: "10.255.0.1", Uptime: 42,
						Ports: []cc.Port{{External: 61000, Internal: 8080, ExternalTLSProxyPort: 61001, InternalTLSProxyPort: 61443}}},
					{Index: 1, State: "CRASHED", Host: "10.0.0.2", InstanceGUID: "i-1", Details: "exited"},
					{Index: 2, State: "DOWN"},
					{Index: 3, State: "STARTING", Host: "10.0.0.3", InstanceGUID: "i-3"},
				}},
				{Type: "worker", Instances: []cc.Instance{{Index: 0, Host: "10.0.0.1"}}},
			}}}},
			{GUID: space2GUID, Name: "space2", Apps: []cc.App{{GUID: app2GUID, Name: "app2", State: "STOPPED"}}},
		}}},
		Roles: []cc.Role{
			{Type: cc.RoleSpaceDeveloper, User: "developer", Space: spaceGUID},
			{Type: cc.RoleSpaceSupporter, User: "supporter", Space: spaceGUID},
			{Type: cc.RoleSpaceAuditor, User: "auditor", Space: spaceGUID},
			{Type: cc.RoleSpaceManager, User: "manager", Space: spaceGUID},
			{Type: cc.RoleOrgManager, User: "orgmanager", Organization: orgGUID},
			{Type: cc.RoleOrgUser, User: "orguser", Organization: orgGUID},
			{Type: cc.RoleOrgAuditor, User: "orgauditor", Organization: orgGUID},
			{Type: cc.RoleOrgUser, User: "otherdev", Organization: orgGUID},
			{Type: cc.RoleSpaceDeveloper, User: "otherdev", Space: space2GUID},
			{Type: cc.RoleSpaceDeveloper, User: "noscope", Space: spaceGUID},
		},
	}
	for name := range people {
		w.Users = append(w.Users, cc.User{GUID: "u-" + name, Username: name})
	}
	return w
}

type env struct {
	uaa *uaa.Server
	cc  *cc.Server
	clk *fakeclock.Clock
}

func setup(t *testing.T) *env {
	t.Helper()
	clk := fakeclock.New(time.Now())
	var us []uaa.User
	for name, scopes := range people {
		us = append(us, uaa.User{Username: name, Password: name + "-pw", ID: "u-" + name, Scopes: scopes})
	}
	u := uaa.StartForTest(t, uaa.Options{Users: us, Now: clk.Now})
	c := cc.StartForTest(t, cc.Options{World: world(), Verifier: u.Verifier(nil), UAAURL: u.URL(), Now: clk.Now})
	return &env{uaa: u, cc: c, clk: clk}
}

func (e *env) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := e.uaa.MintToken(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get does GET path with the token (none when empty) and decodes the body
// into v (when non-nil), returning the status.
func (e *env) get(t *testing.T, token, path string, v any) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.cc.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("GET %s: content type %q", path, ct)
	}
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatalf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}

type errorsBody struct {
	Errors []struct {
		Code   int    `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
	} `json:"errors"`
}

type list struct {
	Pagination struct {
		TotalResults int `json:"total_results"`
		TotalPages   int `json:"total_pages"`
		First        struct{ Href string }
		Last         struct{ Href string }
		Next         *struct{ Href string }
		Previous     *struct{ Href string }
	} `json:"pagination"`
	Resources []map[string]any `json:"resources"`
	Included  map[string][]map[string]any
}

func TestAppPermissionsFollowRoles(t *testing.T) {
	e := setup(t)
	tests := []struct {
		user      string
		status    int
		sensitive bool
	}{
		{"admin", 200, true},
		{"adminro", 200, true},
		{"globalauditor", 200, false},
		{"developer", 200, true},
		{"supporter", 200, false},
		{"auditor", 200, false},
		{"manager", 200, false},
		{"orgmanager", 200, false},
		{"orguser", 404, false},
		{"orgauditor", 404, false},
		{"otherdev", 404, false},
		{"outsider", 404, false},
		{"noscope", 403, false},
	}
	for _, tc := range tests {
		t.Run(tc.user, func(t *testing.T) {
			tok := e.token(t, tc.user)
			var perms map[string]bool
			var errs errorsBody
			var body any = &perms
			if tc.status != 200 {
				body = &errs
			}
			if got := e.get(t, tok, "/v3/apps/"+appGUID+"/permissions", body); got != tc.status {
				t.Fatalf("status = %d, want %d", got, tc.status)
			}
			switch tc.status {
			case 200:
				if !perms["read_basic_data"] || perms["read_sensitive_data"] != tc.sensitive || len(perms) != 2 {
					t.Errorf("permissions = %v", perms)
				}
			case 404:
				if len(errs.Errors) != 1 || errs.Errors[0].Code != 10010 || errs.Errors[0].Title != "CF-ResourceNotFound" || errs.Errors[0].Detail != "App not found" {
					t.Errorf("errors = %+v", errs)
				}
			case 403:
				if len(errs.Errors) != 1 || errs.Errors[0].Title != "CF-NotAuthorized" || errs.Errors[0].Code != 10003 {
					t.Errorf("errors = %+v", errs)
				}
			}
			// The app itself is visible exactly when its permissions are.
			if got := e.get(t, tok, "/v3/apps/"+appGUID, nil); got != tc.status {
				t.Errorf("GET app: %d, want %d", got, tc.status)
			}
			var apps list
			if tc.status != 403 {
				e.get(t, tok, "/v3/apps?names=app", &apps)
				if want := map[bool]int{true: 1, false: 0}[tc.status == 200]; apps.Pagination.TotalResults != want || len(apps.Resources) != want {
					t.Errorf("list apps: %d results, want %d", apps.Pagination.TotalResults, want)
				}
			}
		})
	}
}

func TestAuthErrors(t *testing.T) {
	e := setup(t)
	rejected, err := e.uaa.RejectedTokens("developer")
	if err != nil {
		t.Fatal(err)
	}
	type authCase struct {
		name, token string
		code        int
		title       string
	}
	cases := []authCase{
		{"missing", "", 10002, "CF-NotAuthenticated"},
		{"garbage", "abc.def.ghi", 1000, "CF-InvalidAuthToken"},
	}
	for name, tok := range rejected {
		cases = append(cases, authCase{name, tok, 1000, "CF-InvalidAuthToken"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var errs errorsBody
			if got := e.get(t, tc.token, "/v3/apps", &errs); got != http.StatusUnauthorized {
				t.Fatalf("status = %d", got)
			}
			if len(errs.Errors) != 1 || errs.Errors[0].Code != tc.code || errs.Errors[0].Title != tc.title {
				t.Errorf("errors = %+v", errs)
			}
		})
	}
	t.Run("expires with the clock", func(t *testing.T) {
		tok := e.token(t, "developer")
		if got := e.get(t, tok, "/v3/apps", nil); got != 200 {
			t.Fatalf("fresh token: %d", got)
		}
		e.clk.Advance(2 * time.Hour)
		if got := e.get(t, tok, "/v3/apps", nil); got != 401 {
			t.Errorf("after expiry: %d", got)
		}
	})
}

func TestRootAndInfoAreUnauthenticated(t *testing.T) {
	e := setup(t)
	var root struct {
		Links map[string]*struct {
			Href string            `json:"href"`
			Meta map[string]string `json:"meta"`
		} `json:"links"`
	}
	if got := e.get(t, "", "/", &root); got != 200 {
		t.Fatalf("GET /: %d", got)
	}
	l := root.Links
	if l["self"].Href != e.cc.URL() || l["cloud_controller_v3"].Href != e.cc.URL()+"/v3" ||
		l["cloud_controller_v3"].Meta["version"] == "" || l["cloud_controller_v2"].Href != e.cc.URL()+"/v2" ||
		l["uaa"].Href != e.uaa.URL() || l["login"].Href != e.uaa.URL() {
		t.Errorf("links = %+v", l)
	}
	ssh := l["app_ssh"]
	if ssh == nil || !strings.HasSuffix(ssh.Href, ":2222") || ssh.Meta["oauth_client"] != "ssh-proxy" || ssh.Meta["host_key_fingerprint"] == "" {
		t.Errorf("app_ssh = %+v", ssh)
	}
	var v3 struct {
		Links map[string]struct{ Href string } `json:"links"`
	}
	if got := e.get(t, "", "/v3", &v3); got != 200 || v3.Links["apps"].Href != e.cc.URL()+"/v3/apps" {
		t.Errorf("GET /v3: %d %+v", got, v3.Links["apps"])
	}
	var v2 map[string]any
	if got := e.get(t, "", "/v2/info", &v2); got != 200 || v2["token_endpoint"] != e.uaa.URL() || v2["app_ssh_oauth_client"] != "ssh-proxy" {
		t.Errorf("GET /v2/info: %d %v", got, v2)
	}
	var info map[string]any
	if got := e.get(t, "", "/v3/info", &info); got != 200 || info["links"] == nil {
		t.Errorf("GET /v3/info: %d %v", got, info)
	}
	var errs errorsBody
	if got := e.get(t, e.token(t, "admin"), "/v3/nonsense", &errs); got != 404 || errs.Errors[0].Title != "CF-NotFound" {
		t.Errorf("unknown endpoint: %d %+v", got, errs)
	}
}

func TestOrgsSpacesAndFilters(t *testing.T) {
	e := setup(t)
	dev := e.token(t, "developer")
	var orgs list
	e.get(t, dev, "/v3/organizations?names=org", &orgs)
	if len(orgs.Resources) != 1 || orgs.Resources[0]["guid"] != orgGUID || orgs.Resources[0]["name"] != "org" {
		t.Errorf("orgs = %+v", orgs.Resources)
	}
	e.get(t, dev, "/v3/organizations?names=nope", &orgs)
	if orgs.Pagination.TotalResults != 0 || orgs.Pagination.TotalPages != 1 || orgs.Resources == nil {
		t.Errorf("empty org list = %+v", orgs)
	}
	var spaces list
	e.get(t, dev, "/v3/spaces?names=space&organization_guids="+orgGUID+"&include=organization", &spaces)
	if len(spaces.Resources) != 1 || spaces.Resources[0]["guid"] != spaceGUID {
		t.Fatalf("spaces = %+v", spaces.Resources)
	}
	rel := spaces.Resources[0]["relationships"].(map[string]any)["organization"].(map[string]any)["data"].(map[string]any)
	if rel["guid"] != orgGUID || len(spaces.Included["organizations"]) != 1 {
		t.Errorf("space org relationship %v, included %v", rel, spaces.Included)
	}
	// A developer of one space does not see the other space; an org
	// manager sees both.
	e.get(t, dev, "/v3/spaces", &spaces)
	if spaces.Pagination.TotalResults != 1 {
		t.Errorf("developer sees %d spaces", spaces.Pagination.TotalResults)
	}
	e.get(t, e.token(t, "orgmanager"), "/v3/spaces", &spaces)
	if spaces.Pagination.TotalResults != 2 {
		t.Errorf("org manager sees %d spaces", spaces.Pagination.TotalResults)
	}
	// An org user sees the org but none of its spaces.
	orguser := e.token(t, "orguser")
	e.get(t, orguser, "/v3/organizations", &orgs)
	e.get(t, orguser, "/v3/spaces", &spaces)
	if orgs.Pagination.TotalResults != 1 || spaces.Pagination.TotalResults != 0 {
		t.Errorf("org user sees %d orgs, %d spaces", orgs.Pagination.TotalResults, spaces.Pagination.TotalResults)
	}
	var apps list
	e.get(t, e.token(t, "admin"), "/v3/apps?space_guids="+spaceGUID+","+space2GUID+"&include=space.organization", &apps)
	if apps.Pagination.TotalResults != 2 || len(apps.Included["spaces"]) != 2 || len(apps.Included["organizations"]) != 1 {
		t.Errorf("admin apps: %d, included %v", apps.Pagination.TotalResults, apps.Included)
	}
}

func TestPagination(t *testing.T) {
	e := setup(t)
	admin := e.token(t, "admin")
	var page list
	e.get(t, admin, "/v3/processes?per_page=1&page=2", &page)
	p := page.Pagination
	if p.TotalResults != 2 || p.TotalPages != 2 || len(page.Resources) != 1 || p.Next != nil || p.Previous == nil {
		t.Fatalf("pagination = %+v", p)
	}
	if !strings.HasPrefix(p.First.Href, e.cc.URL()+"/v3/processes?") || !strings.Contains(p.First.Href, "page=1") ||
		!strings.Contains(p.Last.Href, "page=2") || !strings.Contains(p.Previous.Href, "per_page=1") {
		t.Errorf("links = %+v", p)
	}
	var errs errorsBody
	if got := e.get(t, admin, "/v3/apps?per_page=5001", &errs); got != 400 || errs.Errors[0].Title != "CF-BadQueryParameter" {
		t.Errorf("per_page=5001: %d %+v", got, errs)
	}
}

func TestProcessesAndStats(t *testing.T) {
	e := setup(t)
	dev := e.token(t, "developer")
	var procs list
	e.get(t, dev, "/v3/apps/"+appGUID+"/processes?types=web", &procs)
	if len(procs.Resources) != 1 {
		t.Fatalf("web processes = %+v", procs.Resources)
	}
	web := procs.Resources[0]
	// The web process has the app's GUID, as in the real CC.
	if web["guid"] != appGUID || web["type"] != "web" || web["instances"] != float64(4) || web["command"] != "[PRIVATE DATA HIDDEN IN LISTS]" {
		t.Errorf("web process = %v", web)
	}
	var one map[string]any
	e.get(t, dev, "/v3/processes/"+appGUID, &one)
	if one["command"] != "./secret-command" {
		t.Errorf("developer sees command %v", one["command"])
	}
	e.get(t, e.token(t, "auditor"), "/v3/apps/"+appGUID+"/processes/web", &one)
	if one["command"] != "[PRIVATE DATA HIDDEN]" {
		t.Errorf("auditor sees command %v", one["command"])
	}

	var stats struct {
		Resources []map[string]any `json:"resources"`
	}
	if got := e.get(t, dev, "/v3/processes/"+appGUID+"/stats", &stats); got != 200 || len(stats.Resources) != 4 {
		t.Fatalf("stats: %d %+v", got, stats)
	}
	r0 := stats.Resources[0]
	for k, want := range map[string]any{
		"type": "web", "index": float64(0), "state": "RUNNING", "host": "10.0.0.1", "instance_guid": "i-0",
		"instance_internal_ip": "10.255.0.1", "uptime": float64(42), "routable": true,
	} {
		if r0[k] != want {
			t.Errorf("stats[0].%s = %v, want %v", k, r0[k], want)
		}
	}
	ports := r0["instance_ports"].([]any)[0].(map[string]any)
	if ports["external"] != float64(61000) || ports["internal"] != float64(8080) || ports["internal_tls_proxy_port"] != float64(61443) {
		t.Errorf("ports = %v", ports)
	}
	if usage, ok := r0["usage"].(map[string]any); !ok || usage["time"] == "" {
		t.Errorf("usage = %v", r0["usage"])
	}
	if r1 := stats.Resources[1]; r1["state"] != "CRASHED" || r1["details"] != "exited" || r1["host"] != "10.0.0.2" {
		t.Errorf("crashed instance = %v", r1)
	}
	if r2 := stats.Resources[2]; r2["state"] != "DOWN" || r2["host"] != nil || r2["instance_guid"] != nil || r2["index"] != float64(2) {
		t.Errorf("down instance = %v", r2)
	}
	if r3 := stats.Resources[3]; r3["state"] != "STARTING" || r3["routable"] != false {
		t.Errorf("starting instance = %v", r3)
	}
	// Same through the app's process-by-type route; the worker has a
	// derived GUID and an instance GUID.
	var byType struct {
		Resources []map[string]any `json:"resources"`
	}
	e.get(t, dev, "/v3/apps/"+appGUID+"/processes/worker/stats", &byType)
	if len(byType.Resources) != 1 || byType.Resources[0]["type"] != "worker" || byType.Resources[0]["instance_guid"] == "" {
		t.Errorf("worker stats = %+v", byType)
	}
	// Invisible to outsiders.
	if got := e.get(t, e.token(t, "outsider"), "/v3/processes/"+appGUID+"/stats", nil); got != 404 {
		t.Errorf("outsider stats: %d", got)
	}
}

func TestRolesAndUsers(t *testing.T) {
	e := setup(t)
	dev := e.token(t, "developer")
	var roles list
	e.get(t, dev, "/v3/roles?user_guids=u-developer&space_guids="+spaceGUID+"&types=space_developer&include=user,space", &roles)
	if len(roles.Resources) != 1 || roles.Resources[0]["type"] != "space_developer" ||
		len(roles.Included["users"]) != 1 || roles.Included["users"][0]["username"] != "developer" || len(roles.Included["spaces"]) != 1 {
		t.Errorf("roles = %+v included %+v", roles.Resources, roles.Included)
	}
	var user map[string]any
	if got := e.get(t, dev, "/v3/users/u-developer", &user); got != 200 || user["username"] != "developer" || user["origin"] != "uaa" {
		t.Errorf("user: %d %v", got, user)
	}
	if got := e.get(t, e.token(t, "outsider"), "/v3/users/u-developer", nil); got != 404 {
		t.Errorf("outsider sees developer: %d", got)
	}
}

func TestUpdateAndRequestLog(t *testing.T) {
	e := setup(t)
	dev := e.token(t, "developer")
	err := e.cc.Update(func(w *cc.World) {
		w.Organizations[0].Spaces[0].Apps[0].Processes[0].Instances[0].State = "CRASHED"
	})
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Resources []map[string]any `json:"resources"`
	}
	e.get(t, dev, "/v3/processes/"+appGUID+"/stats", &stats)
	if stats.Resources[0]["state"] != "CRASHED" {
		t.Errorf("state after update = %v", stats.Resources[0]["state"])
	}
	if err := e.cc.Update(func(w *cc.World) { w.Roles[0].Type = "wizard" }); err == nil || !strings.HasPrefix(err.Error(), "cc: ") {
		t.Errorf("invalid update: err = %v", err)
	}
	log := e.cc.Requests()
	if n := log.Count("/v3/processes/" + appGUID + "/stats"); n != 1 {
		t.Errorf("stats requested %d times", n)
	}
	if n := log.CountPrefix("/v3/apps"); n != 0 {
		t.Errorf("apps requested %d times", n)
	}
	if entries := log.Entries(); len(entries) != 1 || entries[0].Status != 200 || entries[0].Method != "GET" {
		t.Errorf("entries = %+v", entries)
	}
}

func TestWorldJSON(t *testing.T) {
	w, err := cc.LoadWorld(filepath.Join("..", "cmd", "fakecloud", "example-world.json"))
	if err == nil {
		t.Fatal("the fakecloud file wraps the world in a larger document; LoadWorld must reject unknown fields")
	}
	raw := `{"users":[{"guid":"u1","username":"dev"}],"organizations":[{"name":"o","spaces":[{"name":"s","apps":[
	  {"name":"a","processes":[{"type":"web","instances":[{"index":0,"host":"10.0.0.9"}]}]}]}]}],
	  "roles":[{"type":"space_developer","user":"dev","space":"SPACE"}]}`
	space := (&cc.World{Organizations: []cc.Org{{Name: "o", Spaces: []cc.Space{{Name: "s"}}}}})
	if err := space.Normalize(); err != nil {
		t.Fatal(err)
	}
	raw = strings.Replace(raw, "SPACE", space.Organizations[0].Spaces[0].GUID, 1)
	path := filepath.Join(t.TempDir(), "world.json")
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	if w, err = cc.LoadWorld(path); err != nil {
		t.Fatal(err)
	}
	if err := w.Normalize(); err != nil {
		t.Fatal(err)
	}
	app := w.Organizations[0].Spaces[0].Apps[0]
	in := app.Processes[0].Instances[0]
	if app.State != "STARTED" || app.Processes[0].GUID != app.GUID || in.State != "RUNNING" || in.InstanceGUID == "" || w.Roles[0].User != "u1" {
		t.Errorf("normalized = %+v", w)
	}
	bad := cc.World{
		Users:         []cc.User{{Username: "noguid"}},
		Organizations: []cc.Org{{Name: "o", Spaces: []cc.Space{{Name: "s", Apps: []cc.App{{Name: "a", State: "RUNNING"}}}}}},
		Roles:         []cc.Role{{Type: "space_developer", User: "ghost", Space: "nope"}},
	}
	err = bad.Normalize()
	if err == nil {
		t.Fatal("bad world accepted")
	}
	for _, want := range []string{"no guid", "bad state", "unknown user", "known space guid"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
