package director_test

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

const uuid = "d1d1d1d1-0000-4000-8000-000000000001"

var people = map[string][]string{
	"admin":     {"openid", "bosh.admin"},
	"uuidadmin": {"openid", "bosh." + uuid + ".admin"},
	"otheradm":  {"openid", "bosh.99999999-0000-4000-8000-000000000000.admin"},
	"reader":    {"openid", "bosh.read"},
	"teama":     {"openid", "bosh.teams.a.admin"},
	"teamaread": {"openid", "bosh.teams.a.read"},
	"nobody":    {"openid"},
}

type env struct {
	uaa    *uaa.Server
	dir    *director.Server
	client *http.Client
}

func setup(t *testing.T) *env {
	t.Helper()
	var us []uaa.User
	for name, scopes := range people {
		us = append(us, uaa.User{Username: name, Password: name + "-pw", Scopes: scopes})
	}
	u, d, trusting := director.StartWithUAAForTest(t, uaa.Options{Users: us}, director.Options{
		UUID: uuid,
		Deployments: []director.Deployment{
			{Name: "cf", Releases: []director.NameVersion{{Name: "cf", Version: "40.0.0"}},
				Stemcells: []director.NameVersion{{Name: "jammy", Version: "1.500"}},
				Instances: []director.Instance{
					{Job: "router", Index: 0, ID: "r-0", AZ: "z1", IPs: []string{"10.0.2.10"}},
					{Job: "diego-cell", Index: 0, AZ: "z1", IPs: []string{"10.0.1.10"}, Bootstrap: true},
					{Job: "diego-cell", Index: 1, AZ: "z2"}, // no IP
					{Job: "errand", Index: 0, State: "detached"},
				}},
			{Name: "team-dep", Teams: []string{"a"}, Instances: []director.Instance{{Job: "web", IPs: []string{"10.0.3.1"}}}},
		},
	})
	// The tests look at the director's redirects themselves.
	client := &http.Client{
		Transport:     trusting.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return &env{uaa: u, dir: d, client: client}
}

func (e *env) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := e.uaa.Mint(uaa.Mint{Username: user, ClientID: "bosh_cli", Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// get does a GET and returns status, headers and body.
func (e *env) get(t *testing.T, token, path string, header http.Header) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, e.dir.URL()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

func decode(t *testing.T, b []byte, v any) {
	t.Helper()
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("decode %q: %v", b, err)
	}
}

func TestInfo(t *testing.T) {
	e := setup(t)
	if !strings.HasPrefix(e.dir.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %s", e.dir.URL())
	}
	var info struct {
		Name, UUID, Version, CPI string
		User                     *string
		Auth                     struct {
			Type    string
			Options map[string]any
		} `json:"user_authentication"`
		Features map[string]struct{ Status bool }
	}
	status, _, b := e.get(t, "", "/info", nil)
	decode(t, b, &info)
	if status != 200 || info.UUID != uuid || info.Name == "" || info.Version == "" || info.CPI == "" || info.User != nil {
		t.Errorf("anonymous info: %d %s", status, b)
	}
	if info.Auth.Type != "uaa" || info.Auth.Options["url"] != e.uaa.URL() {
		t.Errorf("user_authentication = %+v", info.Auth)
	}
	if _, ok := info.Features["snapshots"]; !ok {
		t.Errorf("features = %v", info.Features)
	}
	_, _, b = e.get(t, e.token(t, "reader"), "/info", nil)
	decode(t, b, &info)
	if info.User == nil || *info.User != "reader" {
		t.Errorf("authenticated info user = %v", info.User)
	}
	if n := e.dir.Requests().Count("/info"); n != 2 {
		t.Errorf("/info requests = %d", n)
	}
}

func TestScopeRules(t *testing.T) {
	e := setup(t)
	tests := []struct {
		user, path string
		status     int
		names      []string // deployment names for /deployments
	}{
		{"admin", "/deployments", 200, []string{"cf", "team-dep"}},
		{"uuidadmin", "/deployments", 200, []string{"cf", "team-dep"}},
		{"reader", "/deployments", 200, []string{"cf", "team-dep"}},
		{"teama", "/deployments", 200, []string{"team-dep"}},
		{"teamaread", "/deployments", 401, nil},
		{"otheradm", "/deployments", 401, nil},
		{"nobody", "/deployments", 401, nil},
		{"admin", "/deployments/cf/instances", 200, nil},
		{"uuidadmin", "/deployments/cf/instances", 200, nil},
		{"reader", "/deployments/cf/instances", 200, nil},
		{"teama", "/deployments/cf/instances", 401, nil},
		{"teama", "/deployments/team-dep/instances", 200, nil},
		{"nobody", "/deployments/team-dep", 401, nil},
		{"admin", "/deployments/cf", 200, nil},
		{"nobody", "/deployments/missing", 404, nil},
		{"admin", "/deployments/missing/instances", 404, nil},
	}
	for _, tc := range tests {
		t.Run(tc.user+tc.path, func(t *testing.T) {
			status, _, b := e.get(t, e.token(t, tc.user), tc.path, nil)
			if status != tc.status {
				t.Fatalf("status = %d, want %d: %s", status, tc.status, b)
			}
			var body map[string]any
			switch {
			case tc.status == 401:
				decode(t, b, &body)
				if body["code"] != float64(600000) || !strings.HasPrefix(body["description"].(string), "Require one of the scopes: bosh.admin, bosh."+uuid+".admin") {
					t.Errorf("body = %s", b)
				}
			case tc.status == 404:
				decode(t, b, &body)
				if body["code"] != float64(70000) || body["description"] != "Deployment 'missing' doesn't exist" {
					t.Errorf("body = %s", b)
				}
			case tc.names != nil:
				var deps []struct {
					Name      string
					Teams     []string
					Releases  []director.NameVersion
					Stemcells []director.NameVersion
				}
				decode(t, b, &deps)
				var names []string
				for _, d := range deps {
					names = append(names, d.Name)
				}
				sort.Strings(names)
				if strings.Join(names, ",") != strings.Join(tc.names, ",") {
					t.Errorf("deployments = %v, want %v", names, tc.names)
				}
			}
		})
	}
}

func TestUnauthenticated(t *testing.T) {
	e := setup(t)
	toks, err := e.uaa.RejectedTokens("admin")
	if err != nil {
		t.Fatal(err)
	}
	toks["none"] = ""
	for name, tok := range toks {
		t.Run(name, func(t *testing.T) {
			status, h, b := e.get(t, tok, "/deployments", nil)
			if status != 401 || string(b) != "Not authorized: '/deployments'\n" || h.Get("WWW-Authenticate") == "" {
				t.Errorf("got %d %q", status, b)
			}
		})
	}
}

func TestInstances(t *testing.T) {
	e := setup(t)
	status, _, b := e.get(t, e.token(t, "admin"), "/deployments/cf/instances", nil)
	if status != 200 {
		t.Fatalf("status %d", status)
	}
	var insts []map[string]any
	decode(t, b, &insts)
	if len(insts) != 4 {
		t.Fatalf("instances = %s", b)
	}
	router := insts[0]
	for k, want := range map[string]any{"job": "router", "index": float64(0), "id": "r-0", "az": "z1", "expects_vm": true} {
		if router[k] != want {
			t.Errorf("router.%s = %v, want %v", k, router[k], want)
		}
	}
	if ips := router["ips"].([]any); len(ips) != 1 || ips[0] != "10.0.2.10" {
		t.Errorf("router ips = %v", ips)
	}
	if router["agent_id"] == nil || router["cid"] == nil || router["vm_created_at"] == nil {
		t.Errorf("router VM fields = %v", router)
	}
	if _, err := time.Parse(time.RFC3339, router["vm_created_at"].(string)); err != nil {
		t.Errorf("vm_created_at: %v", err)
	}
	if cell1 := insts[2]; len(cell1["ips"].([]any)) != 0 || cell1["id"] == "" || cell1["expects_vm"] != true {
		t.Errorf("instance without IP = %v", cell1)
	}
	if errand := insts[3]; errand["expects_vm"] != false || errand["agent_id"] != nil || errand["cid"] != nil || errand["vm_created_at"] != nil {
		t.Errorf("detached instance = %v", errand)
	}
	// vms lists only instances with a VM.
	_, _, b = e.get(t, e.token(t, "admin"), "/deployments/cf/vms", nil)
	var vms []map[string]any
	decode(t, b, &vms)
	if len(vms) != 3 {
		t.Errorf("vms = %s", b)
	}
}

func TestInstanceDetailsTask(t *testing.T) {
	e := setup(t)
	tok := e.token(t, "reader")
	status, h, _ := e.get(t, tok, "/deployments/cf/instances?format=full", nil)
	if status != http.StatusFound || !strings.HasPrefix(h.Get("Location"), e.dir.URL()+"/tasks/") {
		t.Fatalf("got %d Location %q", status, h.Get("Location"))
	}
	taskPath := strings.TrimPrefix(h.Get("Location"), e.dir.URL())
	var task map[string]any
	_, _, b := e.get(t, tok, taskPath, nil)
	decode(t, b, &task)
	if task["state"] != "done" || task["deployment"] != "cf" || task["user"] != "reader" {
		t.Errorf("task = %v", task)
	}
	status, _, b = e.get(t, tok, taskPath+"/output?type=result", nil)
	if status != 200 {
		t.Fatalf("result: %d", status)
	}
	var lines []map[string]any
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		var m map[string]any
		decode(t, sc.Bytes(), &m)
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("result lines = %d: %s", len(lines), b)
	}
	if l := lines[0]; l["job_name"] != "router" || l["job_state"] != "running" || l["vm_cid"] == nil || l["id"] != "r-0" {
		t.Errorf("router details = %v", l)
	}
	if l := lines[1]; l["bootstrap"] != true {
		t.Errorf("bootstrap = %v", l["bootstrap"])
	}
	if l := lines[3]; l["vm_cid"] != nil || l["state"] != "detached" || l["job_state"] != "stopped" {
		t.Errorf("detached details = %v", l)
	}
	// Range as the CLI polls event output: nothing there yet.
	status, _, _ = e.get(t, tok, taskPath+"/output?type=event", http.Header{"Range": {"bytes=0-"}})
	if status != http.StatusRequestedRangeNotSatisfiable {
		t.Errorf("event range: %d", status)
	}
	status, _, part := e.get(t, tok, taskPath+"/output?type=result", http.Header{"Range": {"bytes=10-"}})
	if status != http.StatusPartialContent || string(part) != string(b[10:]) {
		t.Errorf("result range: %d", status)
	}
	// Team admins cannot read a task of another deployment.
	if status, _, _ := e.get(t, e.token(t, "teama"), taskPath, nil); status != 401 {
		t.Errorf("team admin reads cf task: %d", status)
	}
	if status, _, _ := e.get(t, tok, "/tasks/999", nil); status != 404 {
		t.Errorf("missing task: %d", status)
	}
}

func TestUpdateAndValidation(t *testing.T) {
	e := setup(t)
	err := e.dir.Update(func(deps []director.Deployment) []director.Deployment {
		return append(deps, director.Deployment{Name: "new", Instances: []director.Instance{{Job: "x"}}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if status, _, _ := e.get(t, e.token(t, "admin"), "/deployments/new/instances", nil); status != 200 {
		t.Errorf("new deployment: %d", status)
	}
	err = e.dir.Update(func(deps []director.Deployment) []director.Deployment {
		return append(deps, director.Deployment{Name: "cf"}, director.Deployment{Name: "z", Instances: []director.Instance{{Job: "j", State: "gone"}}})
	})
	if err == nil || !strings.Contains(err.Error(), `deployment "cf" twice`) || !strings.Contains(err.Error(), `bad state "gone"`) {
		t.Errorf("err = %v", err)
	}
	deps, err := director.ParseDeployments(strings.NewReader(`[{"name":"d","teams":["t"],"instances":[{"job":"j","index":1,"ips":[],"state":"detached"}]}]`))
	if err != nil || len(deps) != 1 || deps[0].Instances[0].HasVM() {
		t.Errorf("parse: %v %+v", err, deps)
	}
	if _, err := director.ParseDeployments(strings.NewReader(`[{"name":"d","bogus":1}]`)); err == nil {
		t.Error("unknown field accepted")
	}
}
