package director_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	fakedirector "code.cloudfoundry.org/pcap/integration/fakes/director"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// instances is a deployment as the director lists it: two routers, two
// cells (one without an IP), an errand without a VM.
var instances = []director.Instance{
	{Job: "router", Index: 0, ID: "r0", CID: "vm-r0", IPs: []string{"10.0.0.10"}, ExpectsVM: true},
	{Job: "router", Index: 1, ID: "r1", CID: "vm-r1", IPs: []string{"10.0.0.11", "10.0.9.11"}, ExpectsVM: true},
	{Job: "cell", Index: 0, ID: "c0", CID: "vm-c0", IPs: []string{"10.0.1.10"}, ExpectsVM: true},
	{Job: "cell", Index: 1, ID: "c1", CID: "vm-c1", ExpectsVM: true},
	{Job: "errand", Index: 0, ID: "e0"},
	{Job: "errand", Index: 1, ID: "e1", CID: "vm-e1", IPs: []string{"10.0.2.11"}}, // running now
	{Job: "db", Index: 0, ID: "d0", ExpectsVM: true},                              // its VM is gone
}

func names(is []director.Instance) []string {
	out := []string{}
	for _, in := range is {
		out = append(out, in.Name())
	}
	return out
}

func TestSelect(t *testing.T) {
	for _, tc := range []struct {
		name      string
		selectors []string
		picked    []string
		skipped   []director.Skipped
		err       string
	}{
		{name: "group", selectors: []string{"router"}, picked: []string{"router/r0", "router/r1"}},
		{name: "group/index", selectors: []string{"router/1"}, picked: []string{"router/r1"}},
		{name: "group/uuid", selectors: []string{"cell/c0"}, picked: []string{"cell/c0"}},
		{name: "several", selectors: []string{"cell/0", "router/r1", "router/0"}, picked: []string{"cell/c0", "router/r1", "router/r0"}},
		{name: "dedup", selectors: []string{"router/1", "router", "router/r1", "router/0"}, picked: []string{"router/r1", "router/r0"}},
		{name: "no VM is skipped", selectors: []string{"errand/0"}, picked: []string{},
			skipped: []director.Skipped{{Name: "errand/e0", Reason: "instance has no VM"}}},
		{name: "no IP is skipped", selectors: []string{"cell"}, picked: []string{"cell/c0"},
			skipped: []director.Skipped{{Name: "cell/c1", Reason: "instance has no IP address"}}},
		{name: "unknown group and instance named together", selectors: []string{"router/0", "nope", "router/7", "cell/zz"},
			err: "no such instance group or instance: nope, router/7, cell/zz (groups: cell, db, errand, router)"},
		{name: "malformed selector", selectors: []string{"router/../x", "a b"},
			err: "no such instance group or instance: router/../x, a b (groups: cell, db, errand, router)"},
		{name: "index is not a prefix", selectors: []string{"router/01"},
			err: "no such instance group or instance: router/01 (groups: cell, db, errand, router)"},
		{name: "whole deployment: every VM, errands without one left out", selectors: nil,
			picked:  []string{"router/r0", "router/r1", "cell/c0", "errand/e1"},
			skipped: []director.Skipped{{Name: "cell/c1", Reason: "instance has no IP address"}, {Name: "db/d0", Reason: "instance has no VM"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			picked, skipped, err := director.Select(instances, tc.selectors)
			if tc.err != "" {
				if err == nil || err.Error() != tc.err {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				if picked != nil || skipped != nil {
					t.Errorf("with an error, picked = %v, skipped = %v; want nothing", picked, skipped)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := names(picked); !reflect.DeepEqual(got, tc.picked) {
				t.Errorf("picked %v, want %v", got, tc.picked)
			}
			if !reflect.DeepEqual(skipped, tc.skipped) {
				t.Errorf("skipped %v, want %v", skipped, tc.skipped)
			}
		})
	}
}

// world is a fake UAA and director over HTTPS on loopback.
type world struct {
	uaa    *fakeuaa.Server
	dir    *fakedirector.Server
	client *director.Client
}

const uuid = "d1rec70r-0000-4000-8000-0000000000aa"

func newWorld(t *testing.T) *world {
	t.Helper()
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	tlsConf, err := authority.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	u := fakeuaa.StartForTest(t, fakeuaa.Options{TLS: tlsConf, Users: []fakeuaa.User{
		{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "bosh.admin"}},
		{Username: "team-other", Password: "x", Scopes: []string{"openid", "bosh.teams.other.admin"}},
	}})
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}, Timeout: 10 * time.Second}
	t.Cleanup(hc.CloseIdleConnections)
	d := fakedirector.StartForTest(t, fakedirector.Options{
		Name: "test-bosh", UUID: uuid, UAAURL: u.URL(), Verifier: u.Verifier(hc), CA: authority,
		Deployments: []fakedirector.Deployment{
			{Name: "cf", Teams: []string{"cf-team"}, Instances: []fakedirector.Instance{
				{Job: "router", Index: 0, ID: "r0", AZ: "z1", IPs: []string{"10.0.0.10"}, VMCID: "vm-r0"},
				{Job: "errand", Index: 0, ID: "e0", State: "detached"},
			}},
			{Name: "other", Teams: []string{"other"}},
		},
	})
	return &world{uaa: u, dir: d, client: &director.Client{URL: d.URL() + "/", HTTP: hc}}
}

func (w *world) token(t *testing.T, user string) string {
	t.Helper()
	tok, err := w.uaa.MintToken(user, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestClient(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	admin := w.token(t, "admin")

	t.Run("info", func(t *testing.T) {
		info, err := w.client.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.Name != "test-bosh" || info.UUID != uuid || info.UserAuthentication.Type != "uaa" ||
			info.UserAuthentication.Options.URL != w.uaa.URL() {
			t.Errorf("info = %+v", info)
		}
	})

	t.Run("deployments", func(t *testing.T) {
		ds, err := w.client.Deployments(ctx, admin)
		if err != nil {
			t.Fatal(err)
		}
		want := []director.Deployment{{Name: "cf", Teams: []string{"cf-team"}}, {Name: "other", Teams: []string{"other"}}}
		if !reflect.DeepEqual(ds, want) {
			t.Errorf("deployments = %+v, want %+v", ds, want)
		}
		// A team admin sees only the team's deployments.
		ds, err = w.client.Deployments(ctx, w.token(t, "team-other"))
		if err != nil {
			t.Fatal(err)
		}
		if want := []director.Deployment{{Name: "other", Teams: []string{"other"}}}; !reflect.DeepEqual(ds, want) {
			t.Errorf("team-other sees %+v, want %+v", ds, want)
		}
	})

	t.Run("instances", func(t *testing.T) {
		is, err := w.client.Instances(ctx, admin, "cf")
		if err != nil {
			t.Fatal(err)
		}
		if len(is) != 2 {
			t.Fatalf("instances = %+v", is)
		}
		r := is[0]
		if r.Job != "router" || r.Index != 0 || r.ID != "r0" || r.CID != "vm-r0" || r.AZ != "z1" ||
			!reflect.DeepEqual(r.IPs, []string{"10.0.0.10"}) || !r.ExpectsVM || r.AgentID == "" || r.Name() != "router/r0" {
			t.Errorf("router = %+v", r)
		}
		e := is[1]
		if e.Job != "errand" || e.ID != "e0" || e.CID != "" || e.AgentID != "" || len(e.IPs) != 0 || e.ExpectsVM {
			t.Errorf("detached errand = %+v", e)
		}
	})

	t.Run("401", func(t *testing.T) {
		forged, err := w.uaa.MintForgedToken("admin", time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		_, err = w.client.Deployments(ctx, forged)
		if !errors.Is(err, director.ErrUnauthorized) {
			t.Fatalf("err = %v, want ErrUnauthorized", err)
		}
		if want := "director refused the token for /deployments (401 Unauthorized): unauthorized"; err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
		if strings.Contains(err.Error(), forged[:20]) {
			t.Error("the error holds the token")
		}
		// Scope refusal: another team's deployment.
		_, err = w.client.Instances(ctx, w.token(t, "team-other"), "cf")
		if !errors.Is(err, director.ErrUnauthorized) {
			t.Errorf("team-other on cf: err = %v, want ErrUnauthorized", err)
		}
	})

	t.Run("404", func(t *testing.T) {
		_, err := w.client.Instances(ctx, admin, "nope")
		if !errors.Is(err, director.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
		if want := "director: /deployments/nope/instances: not found"; err.Error() != want {
			t.Errorf("err = %q, want %q", err, want)
		}
	})

	t.Run("path is escaped", func(t *testing.T) {
		_, err := w.client.Instances(ctx, admin, "../info")
		if !errors.Is(err, director.ErrNotFound) {
			t.Fatalf("err = %v, want ErrNotFound", err)
		}
	})

	t.Run("untrusted certificate", func(t *testing.T) {
		c := &director.Client{URL: w.dir.URL(), HTTP: &http.Client{Timeout: 5 * time.Second}}
		_, err := c.Info(ctx)
		if err == nil || !strings.HasPrefix(err.Error(), "director unreachable: tls: failed to verify certificate") {
			t.Errorf("err = %v, want director unreachable: tls: failed to verify certificate…", err)
		}
	})
}

// A status other than 401, 403 and 404 is the helper's typed error, which
// callers test with errors.As rather than by its text.
func TestOtherStatusIsStatusError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, `{"code":100,"description":"busy"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	_, err := (&director.Client{URL: srv.URL}).Deployments(context.Background(), "tok")
	var se *httpjson.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable || !strings.Contains(string(se.Body), "busy") {
		t.Fatalf("err = %v (%T), want a *httpjson.StatusError 503 with the body", err, err)
	}
	if want := "director: GET " + srv.URL + "/deployments: 503 Service Unavailable"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
	if errors.Is(err, director.ErrNotFound) || errors.Is(err, director.ErrUnauthorized) {
		t.Errorf("err = %v wraps a sentinel it should not", err)
	}
}
