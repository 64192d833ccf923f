package integration

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
)

// The CF world of the cf tests: one org with a space "dev" holding app
// "myapp" (web: instances 0..2 running on two cells, 3 crashed) and a
// space "other" with its own developer.
const (
	cfOrg        = "0a000000-0000-4000-8000-0000000000f1"
	cfSpace      = "5a000000-0000-4000-8000-0000000000f1"
	cfOtherSpace = "5a000000-0000-4000-8000-0000000000f2"
	cfApp        = "aa000000-0000-4000-8000-0000000000f1"
	cfStoppedApp = "aa000000-0000-4000-8000-0000000000f2"
)

var cfUsers = map[string]string{ // name → UAA/CC user id
	"developer":  "d0000000-0000-4000-8000-000000000001",
	"auditor":    "d0000000-0000-4000-8000-000000000002",
	"orgmanager": "d0000000-0000-4000-8000-000000000003",
	"otherdev":   "d0000000-0000-4000-8000-000000000004",
	"admin":      "d0000000-0000-4000-8000-000000000005",
	"supporter":  "d0000000-0000-4000-8000-000000000006",
	"spacemgr":   "d0000000-0000-4000-8000-000000000007",
	"adminro":    "d0000000-0000-4000-8000-000000000008", // cloud_controller.admin_read_only, no role
	"auditorg":   "d0000000-0000-4000-8000-000000000009", // cloud_controller.global_auditor, no role
}

// cfCell is a cell: an agent on its own loopback address, in the root
// namespace like on a Diego cell; containers are namespaces of their own.
type cfCell struct {
	Agent *agentProc
	Host  string
}

// cfContainer is an app instance's container.
type cfContainer struct {
	*container
	Index int
	Cell  int
}

// cfEnv is the whole CF stack of a test.
type cfEnv struct {
	UAA        *uaa.Server
	CC         *cc.Server
	Cells      []*cfCell
	Containers []*cfContainer
	API        *apiProc
	AgentPort  int
	apiKey     keyPair   // the API's key for agents
	agentKeys  []keyPair // the agents' host keys
}

// freePortOn finds a TCP port free on every host.
func freePortOn(t *testing.T, hosts ...string) int {
	t.Helper()
	for range 20 {
		l, err := net.Listen("tcp", hosts[0]+":0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		ok := true
		var held []net.Listener
		for _, h := range hosts[1:] {
			l2, err := net.Listen("tcp", net.JoinHostPort(h, strconv.Itoa(port)))
			if err != nil {
				ok = false
				break
			}
			held = append(held, l2)
		}
		l.Close()
		for _, l2 := range held {
			l2.Close()
		}
		if ok {
			return port
		}
	}
	t.Fatal("no port free on all hosts")
	return 0
}

func startCFEnv(t *testing.T) *cfEnv {
	t.Helper()
	dir := t.TempDir()
	cfScopes := []string{"openid", "uaa.user", "cloud_controller.read", "cloud_controller.write"}
	var users []uaa.User
	var ccUsers []cc.User
	for name, id := range cfUsers {
		scopes := cfScopes
		switch name {
		case "admin":
			scopes = append([]string{"cloud_controller.admin"}, cfScopes...)
		case "adminro":
			scopes = append([]string{"cloud_controller.admin_read_only"}, cfScopes...)
		case "auditorg":
			scopes = append([]string{"cloud_controller.global_auditor"}, cfScopes...)
		}
		users = append(users, uaa.User{Username: name, Password: name + "-pw", ID: id, Scopes: scopes})
		ccUsers = append(ccUsers, cc.User{GUID: id, Username: name})
	}
	// "other" is a client of something else, whose own tokens UAA signs
	// too (scope uaa.none, audience not the Cloud Controller).
	clients := append(uaa.DefaultClients(), uaa.Client{ID: "other", Secret: "other-secret",
		AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"uaa.none"}})
	u := uaa.StartForTest(t, uaa.Options{Users: users, Clients: clients})

	e := &cfEnv{UAA: u}
	// Two cells on their own loopback addresses, one agent port for both.
	hosts := []string{"127.0.0.10", "127.0.0.11"}
	e.AgentPort = freePortOn(t, hosts...)
	apiKey := newKeyPair(t, dir, "api_client")
	var agentKeys []keyPair
	for _, h := range hosts {
		a := startAgent(t, agentOptions{Listen: net.JoinHostPort(h, strconv.Itoa(e.AgentPort)), ClientKeys: []keyPair{apiKey}})
		e.Cells = append(e.Cells, &cfCell{Agent: a, Host: h})
		agentKeys = append(agentKeys, a.HostKey)
	}
	// Three running instances in containers: 0 on cell 0, 1 and 2 on cell 1.
	// Each is published in its cell's netns directory, where only that
	// cell's agent finds it; GUIDs are unique to this env all the same.
	envID := make([]byte, 3)
	rand.Read(envID)
	var instances []cc.Instance
	for i, cell := range []int{0, 1, 1} {
		guid := fmt.Sprintf("1a%x-0000-4000-8000-0000000000%02d", envID, i)
		c := &cfContainer{container: newContainer(t, e.Cells[cell].Agent.NetnsDir, guid), Index: i, Cell: cell}
		e.Containers = append(e.Containers, c)
		instances = append(instances, cc.Instance{Index: i, State: "RUNNING", Host: hosts[cell], InstanceGUID: guid})
	}
	instances = append(instances, cc.Instance{Index: 3, State: "CRASHED", Host: hosts[0], InstanceGUID: fmt.Sprintf("1a%x-0000-4000-8000-000000000099", envID)})

	role := func(typ, user, org, space string) cc.Role {
		return cc.Role{Type: typ, User: cfUsers[user], Organization: org, Space: space}
	}
	c := cc.StartForTest(t, cc.Options{
		Verifier: u.Verifier(nil),
		UAAURL:   u.URL(),
		World: cc.World{
			Users: ccUsers,
			Organizations: []cc.Org{{GUID: cfOrg, Name: "org", Spaces: []cc.Space{
				{GUID: cfSpace, Name: "dev", Apps: []cc.App{
					{GUID: cfApp, Name: "myapp", Processes: []cc.Process{{Type: "web", Instances: instances}}},
					{GUID: cfStoppedApp, Name: "stopped", State: "STOPPED", Processes: []cc.Process{{Type: "web"}}},
				}},
				{GUID: cfOtherSpace, Name: "other"},
			}}},
			Roles: []cc.Role{
				role(cc.RoleOrgUser, "developer", cfOrg, ""), role(cc.RoleSpaceDeveloper, "developer", "", cfSpace),
				role(cc.RoleOrgUser, "auditor", cfOrg, ""), role(cc.RoleSpaceAuditor, "auditor", "", cfSpace),
				role(cc.RoleOrgUser, "supporter", cfOrg, ""), role(cc.RoleSpaceSupporter, "supporter", "", cfSpace),
				role(cc.RoleOrgUser, "spacemgr", cfOrg, ""), role(cc.RoleSpaceManager, "spacemgr", "", cfSpace),
				role(cc.RoleOrgManager, "orgmanager", cfOrg, ""),
				role(cc.RoleOrgUser, "otherdev", cfOrg, ""), role(cc.RoleSpaceDeveloper, "otherdev", "", cfOtherSpace),
			},
		},
	})
	e.CC = c

	e.apiKey, e.agentKeys = apiKey, agentKeys
	e.API = e.startAPI(t, nil)
	return e
}

// cfAPIConfig is the cf section of pcap-api's config for the env.
func (e *cfEnv) cfAPIConfig() *api.CFConfig {
	return &api.CFConfig{APIURL: e.CC.URL(), AllowInsecureHTTP: true, UAAClientID: "ssh-proxy", UAAClientSecret: "ssh-proxy-secret"}
}

// startAPI starts a pcap-api for the env; configure (when not nil)
// changes its config after the cf section is set.
func (e *cfEnv) startAPI(t *testing.T, configure func(*api.Config)) *apiProc {
	t.Helper()
	return startAPI(t, apiOptions{
		ClientKey: e.apiKey, AgentKeys: e.agentKeys, AgentPort: e.AgentPort,
		Config: func(c *api.Config) {
			c.CF = e.cfAPIConfig()
			if configure != nil {
				configure(c)
			}
		},
	})
}

// cfCLI runs the real cf CLI with its own CF_HOME.
type cfCLI struct {
	bin  string
	home string
	env  []string
}

func newCFCLI(t *testing.T) *cfCLI {
	t.Helper()
	home := t.TempDir()
	return &cfCLI{bin: testenv.Tool(t, "cf"), home: home,
		env: []string{"CF_HOME=" + home, "CF_PLUGIN_HOME=" + home, "CF_COLOR=false", "CF_STARTUP_TIMEOUT=30"}}
}

// must runs a short cf command and returns its output.
func (c *cfCLI) must(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// login targets the fake CC as user and installs the plugin.
func (c *cfCLI) login(t *testing.T, e *cfEnv, user string) {
	t.Helper()
	c.must(t, "api", e.CC.URL())
	c.must(t, "auth", user, user+"-pw")
	c.must(t, "target", "-o", "org", "-s", "dev")
	c.must(t, "install-plugin", "-f", filepath.Join(testenv.Binaries(t), "pcap-cf-plugin"))
}

// startCFDeveloper starts a CF world (startCFEnv) and a cf CLI logged in
// to it as the space developer, with the plugin installed.
func startCFDeveloper(t *testing.T) (*cfEnv, *cfCLI) {
	t.Helper()
	e := startCFEnv(t)
	cf := newCFCLI(t)
	cf.login(t, e, "developer")
	return e, cf
}

// start starts `cf pcap …` in a process group of its own (for Ctrl-C).
func (c *cfCLI) start(t *testing.T, e *cfEnv, stdout *os.File, args ...string) *testenv.Proc {
	t.Helper()
	args = append([]string{"pcap"}, args...)
	args = append(args, "--pcap-api", e.API.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(e.API.HostKey))
	o := testenv.StartOptions{Env: c.env, Group: true}
	if stdout != nil {
		o.Stdout = stdout
	}
	return testenv.Start(t, o, c.bin, args...)
}

func fingerprintOf(k keyPair) string { return tunnel.Fingerprint(k.Signer.PublicKey()) }
