package fakes_test

import (
	"encoding/json"
	"net/http"
	"net/url"
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
	cfOrgGUID   = "0a000000-0000-4000-8000-0000000000c1"
	cfSpaceGUID = "5a000000-0000-4000-8000-0000000000c1"
	cfAppGUID   = "aa000000-0000-4000-8000-0000000000c1"
	developerID = "d0000000-0000-4000-8000-000000000001"
	auditorID   = "d0000000-0000-4000-8000-000000000002"
)

type cfEnv struct {
	uaa *uaa.Server
	cc  *cc.Server
	clk *fakeclock.Clock
}

// startCF starts a UAA issuing tokens with this lifetime (zero: UAA's
// default) and a CC.
func startCF(t *testing.T, tokenLifetime time.Duration) *cfEnv {
	t.Helper()
	clk := fakeclock.New(time.Now())
	cfScopes := []string{"openid", "uaa.user", "cloud_controller.read", "cloud_controller.write"}
	u := startUAA(t, uaa.Options{Now: clk.Now, AccessTokenLifetime: tokenLifetime, Users: []uaa.User{
		{Username: "developer", Password: "developer-pw", ID: developerID, Scopes: cfScopes},
		{Username: "auditor", Password: "auditor-pw", ID: auditorID, Scopes: cfScopes},
	}})
	c := cc.StartForTest(t, cc.Options{
		Verifier: u.Verifier(nil),
		UAAURL:   u.URL(),
		Now:      clk.Now,
		World: cc.World{
			Users: []cc.User{{GUID: developerID, Username: "developer"}, {GUID: auditorID, Username: "auditor"}},
			Organizations: []cc.Org{{GUID: cfOrgGUID, Name: "org", Spaces: []cc.Space{{GUID: cfSpaceGUID, Name: "space",
				Apps: []cc.App{{GUID: cfAppGUID, Name: "app", Processes: []cc.Process{{Type: "web", Instances: []cc.Instance{
					{Index: 0, Host: "10.0.1.10", InstanceGUID: "1a000000-0000-4000-8000-000000000000"},
				}}}}}}}}},
			Roles: []cc.Role{
				{Type: cc.RoleOrgUser, User: developerID, Organization: cfOrgGUID},
				{Type: cc.RoleSpaceDeveloper, User: developerID, Space: cfSpaceGUID},
				{Type: cc.RoleOrgUser, User: auditorID, Organization: cfOrgGUID},
				{Type: cc.RoleSpaceAuditor, User: auditorID, Space: cfSpaceGUID},
			},
		},
	})
	return &cfEnv{uaa: u, cc: c, clk: clk}
}

// loggedIn returns a cf CLI that has run cf api, cf auth and cf target.
func (e *cfEnv) loggedIn(t *testing.T, user, password string) *cli {
	t.Helper()
	cf := newCLI(t, tool(t, "cf"))
	out := cf.must("api", e.cc.URL())
	if !strings.Contains(out, e.cc.URL()) || !strings.Contains(out, "3.195.0") {
		t.Errorf("cf api output:\n%s", out)
	}
	if out := cf.must("auth", user, password); !strings.Contains(out, "OK") {
		t.Errorf("cf auth output:\n%s", out)
	}
	out = cf.must("target", "-o", "org", "-s", "space")
	for _, want := range []string{"org:", "space:", user} {
		if !strings.Contains(out, want) {
			t.Errorf("cf target output lacks %q:\n%s", want, out)
		}
	}
	return cf
}

func curlJSON(t *testing.T, cf *cli, path string, v any) {
	t.Helper()
	out := cf.must("curl", path)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("cf curl %s: %v\n%s", path, err, out)
	}
}

func TestCFCLIAgainstFakes(t *testing.T) {
	e := startCF(t, 0)
	cf := e.loggedIn(t, "developer", "developer-pw")

	var apps struct {
		Pagination struct {
			TotalResults int `json:"total_results"`
		} `json:"pagination"`
		Resources []struct{ GUID, Name string } `json:"resources"`
	}
	curlJSON(t, cf, "/v3/apps", &apps)
	if apps.Pagination.TotalResults != 1 || apps.Resources[0].GUID != cfAppGUID || apps.Resources[0].Name != "app" {
		t.Errorf("apps = %+v", apps)
	}
	var perms map[string]bool
	curlJSON(t, cf, "/v3/apps/"+cfAppGUID+"/permissions", &perms)
	if !perms["read_basic_data"] || !perms["read_sensitive_data"] {
		t.Errorf("developer permissions = %v", perms)
	}

	// cf oauth-token prints a token the fake UAA's published key verifies.
	out := strings.TrimSpace(cf.must("oauth-token"))
	scheme, token, ok := strings.Cut(out, " ")
	if !ok || scheme != "bearer" {
		t.Fatalf("cf oauth-token = %q", out)
	}
	claims, err := e.uaa.Verifier(nil).Verify(t.Context(), token)
	if err != nil {
		t.Fatalf("verify cf oauth-token: %v", err)
	}
	if claims.UserName != "developer" || claims.UserID != developerID || claims.ClientID != "cf" {
		t.Errorf("claims = %+v", claims)
	}

	// cf ssh-code prints a one-time code that the UAA exchanges exactly once.
	code := strings.TrimSpace(cf.must("ssh-code"))
	if code == "" || strings.ContainsAny(code, " \n") {
		t.Fatalf("cf ssh-code = %q", code)
	}
	exchange := func() (int, map[string]any) {
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
		req, err := http.NewRequest(http.MethodPost, e.uaa.URL()+"/oauth/token", strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.SetBasicAuth("ssh-proxy", "ssh-proxy-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, body
	}
	status, body := exchange()
	if status != http.StatusOK {
		t.Fatalf("exchange ssh code: %d %v", status, body)
	}
	codeClaims, err := e.uaa.Verifier(nil).Verify(t.Context(), body["access_token"].(string))
	if err != nil || codeClaims.UserID != developerID || codeClaims.GrantType != "authorization_code" {
		t.Errorf("code token: %v %+v", err, codeClaims)
	}
	if status, body := exchange(); status != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Errorf("second exchange: %d %v", status, body)
	}

	// The CLI kept the tokens and target in its config.
	raw, err := os.ReadFile(filepath.Join(cf.home, ".cf", "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var conf struct {
		Target, AccessToken, RefreshToken, AuthorizationEndpoint string
		OrganizationFields                                       struct{ GUID string }
		SpaceFields                                              struct{ GUID string }
	}
	if err := json.Unmarshal(raw, &conf); err != nil {
		t.Fatal(err)
	}
	if conf.Target != e.cc.URL() || !strings.HasPrefix(conf.AccessToken, "bearer ") || conf.RefreshToken == "" ||
		conf.AuthorizationEndpoint != e.uaa.URL() || conf.OrganizationFields.GUID != cfOrgGUID || conf.SpaceFields.GUID != cfSpaceGUID {
		t.Errorf("config = %+v", conf)
	}
	for path, min := range map[string]int{"/": 1, "/v3/organizations": 1, "/v3/spaces": 1, "/v3/apps": 1} {
		if n := e.cc.Requests().Count(path); n < min {
			t.Errorf("CC %s requested %d times", path, n)
		}
	}
	if n := e.uaa.Requests().Count("/oauth/authorize"); n != 1 {
		t.Errorf("UAA /oauth/authorize requested %d times", n)
	}
}

func TestCFCLIAuditorLacksSensitiveData(t *testing.T) {
	e := startCF(t, 0)
	cf := e.loggedIn(t, "auditor", "auditor-pw")
	var perms map[string]bool
	curlJSON(t, cf, "/v3/apps/"+cfAppGUID+"/permissions", &perms)
	if !perms["read_basic_data"] || perms["read_sensitive_data"] {
		t.Errorf("auditor permissions = %v", perms)
	}
}

func TestCFCLIWrongPassword(t *testing.T) {
	e := startCF(t, 0)
	cf := newCLI(t, tool(t, "cf"))
	cf.must("api", e.cc.URL())
	r := cf.run("", nil, "auth", "developer", "wrong")
	if r.err == nil || !strings.Contains(r.stdout+r.stderr, "Credentials were rejected") {
		t.Errorf("cf auth with a wrong password: %v\n%s", r.err, r)
	}
}

// The cf CLI refreshes a token that expires within a minute before using
// it: with 30-second tokens every command goes through the UAA's
// refresh_token grant, and the CC accepts the refreshed token.
func TestCFCLIRefreshesExpiringToken(t *testing.T) {
	e := startCF(t, 30*time.Second)
	cf := e.loggedIn(t, "developer", "developer-pw")
	before := e.uaa.Requests().Count("/oauth/token")
	var apps struct {
		Resources []struct{ GUID string } `json:"resources"`
	}
	curlJSON(t, cf, "/v3/apps", &apps)
	if len(apps.Resources) != 1 {
		t.Errorf("apps after refresh = %+v", apps)
	}
	if after := e.uaa.Requests().Count("/oauth/token"); after != before+1 {
		t.Errorf("token requests: %d before, %d after; want one refresh", before, after)
	}
}
