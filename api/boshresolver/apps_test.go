package boshresolver_test

import (
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	fakecc "code.cloudfoundry.org/pcap/integration/fakes/cc"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

const (
	appGUID   = "aa000000-0000-4000-8000-0000000000a1"
	cfClient  = "pcap-api-cc"
	cfSecret  = "pcap-api-cc-secret"
	cellHost  = "10.0.16.5"
	instGUID0 = "1a000000-0000-4000-8000-000000000000"
	instGUID1 = "1a000000-0000-4000-8000-000000000001"
)

// cfWorld is a foundation next to the director: its own UAA (with
// pcap-api's client, cloud_controller.admin_read_only) and a Cloud
// Controller with app "myapp" (web: 0 and 1 running, 2 crashed).
type cfWorld struct {
	uaa *fakeuaa.Server
	cc  *fakecc.Server
}

func newCFWorld(t *testing.T) *cfWorld {
	t.Helper()
	u, err := fakeuaa.New(fakeuaa.Options{Clients: []fakeuaa.Client{
		{ID: cfClient, Secret: cfSecret, AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"cloud_controller.admin_read_only"}},
		// A client the CC sees nothing with: no read scope at all.
		{ID: "blind", Secret: "blind-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"uaa.none"}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	c, err := fakecc.New(fakecc.Options{Verifier: u.Verifier(nil), UAAURL: u.URL(), World: fakecc.World{
		Organizations: []fakecc.Org{{GUID: "0a000000-0000-4000-8000-0000000000a1", Name: "org", Spaces: []fakecc.Space{
			{GUID: "5a000000-0000-4000-8000-0000000000a1", Name: "dev", Apps: []fakecc.App{{GUID: appGUID, Name: "myapp", Processes: []fakecc.Process{{Type: "web", Instances: []fakecc.Instance{
				{Index: 0, Host: cellHost, InstanceGUID: instGUID0, InternalIP: "10.255.0.2"},
				{Index: 1, Host: cellHost, InstanceGUID: instGUID1, InternalIP: "10.255.0.3"},
				{Index: 2, State: "CRASHED", Host: cellHost, InstanceGUID: "1a000000-0000-4000-8000-000000000002"},
			}}}}}},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &cfWorld{uaa: u, cc: c}
}

// clientConfig is a bosh.cf_client section for the foundation; the UAA is
// found from the CC's root document.
func (c *cfWorld) clientConfig(id, secret string) *api.CFClientConfig {
	return &api.CFClientConfig{APIURL: c.cc.URL(), ClientID: id, ClientSecret: secret, Timeout: 10 * time.Second, AllowInsecureHTTP: true}
}

// resolveAudited resolves req and returns what it asked to be audited.
func resolveAudited(r *boshresolver.Resolver, id *api.Identity, req capturecmd.Request) ([]api.Target, []api.Skipped, []api.AuditEvent, error) {
	ctx, audited := api.CollectAudit(context.Background())
	targets, skipped, err := r.Resolve(ctx, id, req)
	return targets, skipped, audited(), err
}

// TestAppNextToGroups: director admins and operator keys get the app's
// running instances next to the VMs, found with pcap-api's own client and
// audited; team admins and readers are refused before anything is asked.
func TestAppNextToGroups(t *testing.T) {
	w := newWorld(t)
	cf := newCFWorld(t)
	cfg := w.cfg
	cfg.CFClient = cf.clientConfig(cfClient, cfSecret)
	r := w.resolver(t, cfg)
	req := capturecmd.Request{Deployment: "cf", Targets: []string{"router"}, App: appGUID, Process: "web"}

	key, err := r.AuthKey(context.Background(), w.operator.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	login := func(user string) *api.Identity {
		id, err := r.AuthPassword(context.Background(), w.mint(t, fakeuaa.Mint{Username: user}))
		if err != nil {
			t.Fatalf("%s: %v", user, err)
		}
		return id
	}
	for _, who := range []struct {
		name string
		id   *api.Identity
	}{{"bosh.admin", login("admin")}, {"bosh.<uuid>.admin", login("director-admin")}, {"operator key", key}} {
		t.Run(who.name, func(t *testing.T) {
			targets, skipped, audit, err := resolveAudited(r, who.id, req)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := targetNames(targets), []string{"router/r0", "router/r1", "web/0", "web/1"}; !reflect.DeepEqual(got, want) {
				t.Errorf("targets %v, want %v", got, want)
			}
			if want := []api.Skipped{{Name: "web/2", Reason: "instance is CRASHED"}}; !reflect.DeepEqual(skipped, want) {
				t.Errorf("skipped %v, want %v", skipped, want)
			}
			web0 := targets[2]
			if web0.Agent != cellHost+":9494" || web0.Capture.Kind != agentproto.TargetCFInstance || web0.Capture.InstanceGUID != instGUID0 ||
				web0.Address.String() != "10.255.0.2" {
				t.Errorf("web/0 target = %+v", web0)
			}
			wantAudit := []api.AuditEvent{{Event: "bosh-app-capture", Attrs: []any{"operator", who.id.Name, "subject", who.id.Subject,
				"deployment", "cf", "app", appGUID, "process", "web", "instances", []string{"web/0", "web/1"}, "vms", 2}}}
			if !reflect.DeepEqual(audit, wantAudit) {
				t.Errorf("audit %#v\nwant %#v", audit, wantAudit)
			}
			for _, e := range audit {
				for _, a := range e.Attrs {
					if s, ok := a.(string); ok && (s == who.id.Token || strings.Contains(s, "eyJ")) {
						t.Errorf("audit event holds a token: %v", e)
					}
				}
			}
		})
	}
	// The CC saw only pcap-api's client: one grant, shared.
	if n := cf.uaa.Requests().Count("/oauth/token"); n != 1 {
		t.Errorf("%d token grants at the foundation's UAA, want 1 (cached)", n)
	}

	t.Run("instances of the app", func(t *testing.T) {
		req := req
		req.Instances = []int{1}
		targets, _, _, err := resolveAudited(r, login("admin"), req)
		if got, want := targetNames(targets), []string{"router/r0", "router/r1", "web/1"}; err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("targets %v, err %v; want %v", got, err, want)
		}
	})

	before := cf.cc.Requests().Len()
	for _, tc := range []struct {
		name, user, msg string
	}{
		{"team admin of the deployment", "team-cf", "--app is for admins of the whole director (bosh.admin or bosh." + directorUUID + ".admin); a team admin may capture only the VMs of the team's deployments"},
		{"admin of another director", "other-director-admin", ""},
		{"reader", "reader", ""},
	} {
		t.Run("refused: "+tc.name, func(t *testing.T) {
			id, err := r.AuthPassword(context.Background(), w.mint(t, fakeuaa.Mint{Username: tc.user}))
			if err != nil {
				// Not an admin of anything here: refused at login already.
				if tc.msg != "" {
					t.Fatal(err)
				}
				return
			}
			_, _, audit, err := resolveAudited(r, id, req)
			wantReject(t, err, tunnel.CodeNotAllowed, tc.msg)
			if len(audit) != 0 {
				t.Errorf("refused capture audited: %v", audit)
			}
		})
	}
	if n := cf.cc.Requests().Len() - before; n != 0 {
		t.Errorf("the Cloud Controller was asked %d times for refused users", n)
	}

	admin := login("admin")
	for _, tc := range []struct {
		name string
		r    *boshresolver.Resolver
		req  capturecmd.Request
		code string
		msg  string
	}{
		{"unknown app", r, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}, App: "aa000000-0000-4000-8000-0000000000ff", Process: "web"},
			tunnel.CodeTargetNotFound, "app aa000000-0000-4000-8000-0000000000ff not found, or not visible to pcap-api's Cloud Controller client (bosh.cf_client)"},
		{"bad guid", r, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}, App: "../v2/info", Process: "web"},
			tunnel.CodeBadRequest, `app guid "../v2/info" is not valid`},
		{"unknown process type", r, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}, App: appGUID, Process: "worker"},
			tunnel.CodeTargetNotFound, `app myapp has no process of type "worker"`},
		{"unknown group next to the app", r, capturecmd.Request{Deployment: "cf", Targets: []string{"nope"}, App: appGUID, Process: "web"},
			tunnel.CodeTargetNotFound, "no such instance group or instance: nope (groups: errand, router, worker)"},
		{"client with a wrong secret", w.resolver(t, withCFClient(cfg, cf.clientConfig(cfClient, "wrong"))), req,
			tunnel.CodeInternal, ""},
		{"client the CC refuses", w.resolver(t, withCFClient(cfg, cf.clientConfig("blind", "blind-secret"))), req,
			tunnel.CodeNotAllowed, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			targets, _, audit, err := resolveAudited(tc.r, admin, tc.req)
			if tc.msg != "" {
				wantReject(t, err, tc.code, tc.msg)
			} else if re := tunnel.AsReject(err); err == nil || re.Code != tc.code || strings.Contains(re.Message, "wrong") {
				t.Errorf("err = %v, want a %s refusal without the secret", err, tc.code)
			}
			if targets != nil || len(audit) != 0 {
				t.Errorf("refusal came with targets %v, audit %v", targetNames(targets), audit)
			}
		})
	}
}

func withCFClient(cfg api.BOSHConfig, cc *api.CFClientConfig) api.BOSHConfig {
	cfg.CFClient = cc
	return cfg
}

// sameNameApps finds one instance named like a VM.
type sameNameApps struct{}

func (sameNameApps) Targets(context.Context, string, string, []int) ([]api.Target, []api.Skipped, error) {
	return []api.Target{{Name: "router/r0", Agent: "10.0.16.5:9494"}}, nil, nil
}

// TestAppNamedLikeAVM: an app instance may not hide behind a VM's name
// (interfaces and status lines are told apart by it); the capture is
// refused, not merged.
func TestAppNamedLikeAVM(t *testing.T) {
	w := newWorld(t)
	r := w.resolver(t, w.cfg)
	r.Apps = sameNameApps{}
	id, err := r.AuthPassword(context.Background(), w.mint(t, fakeuaa.Mint{Username: "admin"}))
	if err != nil {
		t.Fatal(err)
	}
	targets, _, audit, err := resolveAudited(r, id, capturecmd.Request{Deployment: "cf", Targets: []string{"router"}, App: appGUID, Process: "router"})
	wantReject(t, err, tunnel.CodeBadRequest, "app instance router/r0 has the name of a VM of deployment cf; capture them apart")
	if targets != nil || len(audit) != 0 {
		t.Errorf("targets %v, audit %v", targetNames(targets), audit)
	}
}
