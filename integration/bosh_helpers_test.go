package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// boshEnv is the BOSH stack of a test: VMs (namespaces behind the lab's
// bridge, each with an agent on eth0), and in the LAN namespace the fake
// director and its UAA (HTTPS, one CA), pcap-api, and the clients.
type boshEnv struct {
	Lab      *lab
	UAA      *uaa.Server
	Director *director.Server
	CAFile   string
	Agents   []*agentProc
	API      *apiProc
	APIKey   keyPair
}

const boshDirectorUUID = "d1rec70r-0000-4000-8000-000000000001"

func startBOSHEnv(t *testing.T, vms int) *boshEnv {
	t.Helper()
	dir := t.TempDir()
	e := &boshEnv{Lab: newLab(t, vms, nil)}
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	e.CAFile = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(e.CAFile, authority.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	uaaTLS, err := authority.ServerConfig("198.18.0.1")
	if err != nil {
		t.Fatal(err)
	}
	u, err := uaa.New(uaa.Options{
		TLS: uaaTLS,
		Users: []uaa.User{
			{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "bosh.admin"}},
			{Username: "director-admin", Password: "director-admin-pw", Scopes: []string{"openid", "bosh." + boshDirectorUUID + ".admin"}},
			{Username: "team-cf", Password: "team-cf-pw", Scopes: []string{"openid", "bosh.teams.cf-team.admin"}},
			{Username: "team-other", Password: "team-other-pw", Scopes: []string{"openid", "bosh.teams.other.admin"}},
			{Username: "reader", Password: "reader-pw", Scopes: []string{"openid", "bosh.read"}},
		},
		Clients: append(uaa.DefaultClients(), uaa.Client{
			ID: "ops", Secret: "ops-secret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"},
		}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.StartOn(testenv.ListenIn(t, e.Lab.LAN, "198.18.0.1:0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	e.UAA = u

	var instances []director.Instance
	for i := range vms {
		instances = append(instances, director.Instance{
			Job: "router", Index: i, ID: fmt.Sprintf("3f2a0000-0000-4000-8000-0000000000%02d", i),
			AZ: "z1", IPs: []string{e.Lab.vmAddr(i)},
		})
	}
	instances = append(instances, director.Instance{Job: "errand", Index: 0, ID: "3f2a0000-0000-4000-8000-0000000000ee", State: "detached"})
	// The director fake runs in this process: it reaches UAA inside the LAN.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig(), DialContext: netlab.DialerIn(e.Lab.LAN)}}
	t.Cleanup(client.CloseIdleConnections)
	d, err := director.New(director.Options{
		Name: "fake-bosh", UUID: boshDirectorUUID, UAAURL: u.URL(), Verifier: u.Verifier(client), CA: authority,
		Deployments: []director.Deployment{
			{Name: "cf", Teams: []string{"cf-team"}, Instances: instances},
			{Name: "other", Teams: []string{"other"}, Instances: []director.Instance{
				{Job: "db", Index: 0, ID: "4f2a0000-0000-4000-8000-000000000001", IPs: []string{"198.18.0.99"}},
			}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.StartOn(testenv.ListenIn(t, e.Lab.LAN, "198.18.0.1:0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	e.Director = d

	e.APIKey = newKeyPair(t, dir, "api_client")
	var hostKeys []keyPair
	for i, vm := range e.Lab.VMs {
		a := startAgent(t, agentOptions{Netns: vm, Listen: e.Lab.vmAddr(i) + ":9494", ClientKeys: []keyPair{e.APIKey}})
		e.Agents = append(e.Agents, a)
		hostKeys = append(hostKeys, a.HostKey)
	}
	e.API = startAPI(t, apiOptions{
		Netns: e.Lab.LAN, Listen: "198.18.0.1:2222", ClientKey: e.APIKey, AgentKeys: hostKeys,
		Extra: fmt.Sprintf("bosh:\n  director_url: %q\n  ca_cert_file: %q\n", d.URL(), e.CAFile),
	})
	return e
}

// inLAN runs a short command inside the LAN namespace with env added.
func (e *boshEnv) inLAN(t *testing.T, env []string, stdin string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", e.Lab.LAN.Name, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// boshLogin runs the real bosh CLI: alias-env and log-in with a password,
// writing a real ~/.bosh/config in a temp HOME, which it returns.
func (e *boshEnv) boshLogin(t *testing.T, user string) string {
	t.Helper()
	home := t.TempDir()
	bosh := testenv.Tool(t, "bosh")
	env := []string{"HOME=" + home}
	if out, err := e.inLAN(t, env, "", bosh, "alias-env", "fake", "-e", e.Director.URL(), "--ca-cert", e.CAFile); err != nil {
		t.Fatalf("bosh alias-env: %v\n%s", err, out)
	}
	if out, err := e.inLAN(t, env, user+"\n"+user+"-pw\n", bosh, "-e", "fake", "log-in"); err != nil {
		t.Fatalf("bosh log-in: %v\n%s", err, out)
	}
	return home
}
