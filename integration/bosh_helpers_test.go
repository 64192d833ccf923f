package integration

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
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
	CA       *ca.Authority // signs every server's certificate
	Agents   []*agentProc
	API      *apiProc
	APIKey   keyPair
}

const boshDirectorUUID = "d1rec70r-0000-4000-8000-000000000001"

// boshCodeClient is the director UAA's client one-time codes are issued
// for, as manifests/ops-files/director-uaa-pcap-client.yml adds it.
var boshCodeClient = uaa.Client{ID: "pcap_ssh", Secret: "pcap-ssh-secret", AuthorizedGrantTypes: []string{"authorization_code"}, RedirectURI: "/login"}

// boshAPIConfig is the bosh section of pcap-api's config for the env.
func (e *boshEnv) boshAPIConfig() *api.BOSHConfig {
	return &api.BOSHConfig{DirectorURL: e.Director.URL(), CACertFile: e.CAFile,
		CodeClientID: boshCodeClient.ID, CodeClientSecret: boshCodeClient.Secret}
}

func startBOSHEnv(t *testing.T, vms int) *boshEnv {
	t.Helper()
	return startBOSHEnvCells(t, vms, nil)
}

// startBOSHEnvCells is startBOSHEnv where the agent of VM i finds
// containers in netnsDirs[i] (when given), as on a Diego cell. Containers
// must be published there before: an agent in a VM's namespace has its
// own mount namespace, copied when it starts (`ip netns exec`).
func startBOSHEnvCells(t *testing.T, vms int, netnsDirs []string) *boshEnv {
	t.Helper()
	dir := t.TempDir()
	e := &boshEnv{Lab: newLab(t, vms, nil)}
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	e.CA = authority
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
		}, boshCodeClient),
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
		o := agentOptions{Netns: vm, Listen: e.Lab.vmAddr(i) + ":9494", ClientKeys: []keyPair{e.APIKey}}
		if i < len(netnsDirs) {
			o.NetnsDir = netnsDirs[i]
		}
		a := startAgent(t, o)
		e.Agents = append(e.Agents, a)
		hostKeys = append(hostKeys, a.HostKey)
	}
	e.API = startAPI(t, apiOptions{
		Netns: e.Lab.LAN, Listen: "198.18.0.1:2222", ClientKey: e.APIKey, AgentKeys: hostKeys,
		Config: func(c *api.Config) { c.BOSH = e.boshAPIConfig() },
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

// startBOSHAdmin starts a BOSH world of vms VMs (startBOSHEnv) and logs
// in to it as admin with the real bosh CLI; it returns the world and the
// HOME that holds the log-in.
func startBOSHAdmin(t *testing.T, vms int) (*boshEnv, string) {
	t.Helper()
	e := startBOSHEnv(t, vms)
	return e, e.boshLogin(t, "admin")
}

// boshResult is how a finished command ended.
type boshResult struct {
	Stdout, Stderr string
	Code           int // exit code; -1 when it did not exit by itself
}

// run runs a command to completion inside the LAN namespace with env
// added and an empty pipe as stdin, and returns its output and exit code.
func (e *boshEnv) run(t *testing.T, env []string, name string, args ...string) boshResult {
	t.Helper()
	return runInNetns(t, e.Lab.LAN, env, name, args...)
}

// runInNetns runs a command to completion inside ns, as boshEnv.run.
func runInNetns(t *testing.T, ns *testenv.Netns, env []string, name string, args ...string) boshResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = strings.NewReader("") // a pipe: not a terminal
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := boshResult{Stdout: out.String(), Stderr: errb.String()}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.Code = ee.ExitCode()
	default:
		t.Fatalf("%s: %v", name, err)
	}
	return r
}

// boshAPIFlags point pcap-bosh at a pcap-api with its host key pinned.
func boshAPIFlags(a *apiProc) []string {
	return []string{"--pcap-api", a.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(a.HostKey)}
}

// pcapBosh runs pcap-bosh to completion in the LAN namespace.
func (e *boshEnv) pcapBosh(t *testing.T, env []string, args ...string) boshResult {
	t.Helper()
	return e.run(t, env, filepath.Join(testenv.Binaries(t), "pcap-bosh"), args...)
}

// sshCode gets a one-time code of the director's UAA with `pcap-bosh -e
// fake ssh-code` as the user whose bosh config is in home (no pcap-api is
// involved).
func (e *boshEnv) sshCode(t *testing.T, home string) string {
	t.Helper()
	r := e.pcapBosh(t, []string{"HOME=" + home}, "-e", "fake", "ssh-code")
	code := strings.TrimSpace(r.Stdout)
	if r.Code != 0 || !regexp.MustCompile(`^[A-Za-z0-9_-]{6,}$`).MatchString(code) {
		t.Fatalf("pcap-bosh ssh-code: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	return code
}

// writeBoshConfig writes a bosh CLI config with the environment "fake"
// (the director, its CA, the given tokens) into a new HOME, which it
// returns.
func (e *boshEnv) writeBoshConfig(t *testing.T, access, refresh string) string {
	t.Helper()
	type environment struct {
		URL             string `yaml:"url"`
		CACert          string `yaml:"ca_cert"`
		Alias           string `yaml:"alias"`
		AccessToken     string `yaml:"access_token,omitempty"`
		AccessTokenType string `yaml:"access_token_type,omitempty"`
		RefreshToken    string `yaml:"refresh_token,omitempty"`
	}
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	b, err := yaml.Marshal(map[string][]environment{"environments": {{
		URL: e.Director.URL(), CACert: string(pem), Alias: "fake",
		AccessToken: access, AccessTokenType: "bearer", RefreshToken: refresh,
	}}})
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, ".bosh"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, ".bosh", "config"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	return home
}

// mint mints a token of the env's UAA.
func (e *boshEnv) mint(t *testing.T, m uaa.Mint) string {
	t.Helper()
	tok, err := e.UAA.Mint(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// startSecondAPI starts another pcap-api in the LAN namespace, on listen, for
// the same director and agents; configure (when not nil) changes its
// config after the bosh section is set.
func (e *boshEnv) startSecondAPI(t *testing.T, listen string, configure func(*api.Config)) *apiProc {
	t.Helper()
	var hostKeys []keyPair
	for _, a := range e.Agents {
		hostKeys = append(hostKeys, a.HostKey)
	}
	return startAPI(t, apiOptions{
		Netns: e.Lab.LAN, Listen: listen, ClientKey: e.APIKey, AgentKeys: hostKeys,
		Config: func(c *api.Config) {
			c.BOSH = e.boshAPIConfig()
			if configure != nil {
				configure(c)
			}
		},
	})
}

// boshSSH is how the real OpenSSH client gets its password.
type boshSSH struct {
	API      *apiProc
	User     string // the ssh user; "bosh" when empty
	Password string // through sshpass (SSHPASS in the environment)
	Askpass  string // else a file whose content an SSH_ASKPASS program prints
	Out      io.Writer
}

// start starts `ssh -p PORT bosh@HOST command…` inside the API's
// namespace with password authentication only and the API's host key
// pinned. Its stderr (banners, status lines) is collected; closing Stdin
// stops the capture.
func (o boshSSH) start(t *testing.T, command ...string) *sshClient {
	t.Helper()
	dir := t.TempDir()
	host, port, kh := pinnedKnownHosts(t, o.API, dir)
	args := []string{"-p", port, "-F", "none",
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1",
		cmp.Or(o.User, "bosh") + "@" + host}
	args = append(args, command...)
	name := "ssh"
	env := []string{"HOME=" + dir}
	if o.Askpass != "" {
		script := filepath.Join(dir, "askpass")
		if err := os.WriteFile(script, []byte("#!/bin/sh\nexec cat "+o.Askpass+"\n"), 0o700); err != nil {
			t.Fatal(err)
		}
		env = append(env, "SSH_ASKPASS="+script, "SSH_ASKPASS_REQUIRE=force", "DISPLAY=")
	} else {
		name, args = "sshpass", append([]string{"-e", "ssh"}, args...)
		env = append(env, "SSHPASS="+o.Password)
	}
	return startSSHClient(t, o.API.Netns, o.Out, env, name, args...)
}

// boshExitCode waits for p to exit and returns its exit code.
func boshExitCode(t *testing.T, p *testenv.Proc, timeout time.Duration) int {
	t.Helper()
	err, ok := p.Wait(timeout)
	if !ok {
		t.Fatalf("%s did not exit within %v:\n%s", filepath.Base(p.Cmd.Path), timeout, p.Output())
	}
	return exitStatus(t, err, "wait")
}

// boshWaitLines waits until p has printed at least n lines matching re: a
// bounded poll of its output.
func boshWaitLines(t *testing.T, p *testenv.Proc, re *regexp.Regexp, n int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for len(p.Lines(re)) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d lines matched %q within %v, want %d:\n%s", len(p.Lines(re)), re, timeout, n, p.Output())
		}
		select {
		case <-p.Done():
			if len(p.Lines(re)) < n {
				t.Fatalf("exited with %d lines matching %q, want %d:\n%s", len(p.Lines(re)), re, n, p.Output())
			}
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// agentsStarted waits until every agent logged the start of a capture
// with this filter (a filter unique to the test).
func (e *boshEnv) agentsStarted(t *testing.T, filter string) {
	t.Helper()
	re := regexp.MustCompile(`"msg":"capture-started".*"filter":"` + regexp.QuoteMeta(filter) + `"`)
	for _, a := range e.Agents {
		a.WaitLine(t, re, 30*time.Second)
	}
}

// routersCapture waits until every agent started filter's capture, sends
// n datagrams to port from each router VM, waits for p (its capture ends
// at -c n) to exit 0, else fails t with "exited CODE", and wants n
// packets of each router in out; it returns out's packets by interface.
func (e *boshEnv) routersCapture(t *testing.T, p *testenv.Proc, exited, out, filter string, port, n int) map[string]int {
	t.Helper()
	e.agentsStarted(t, filter)
	for _, vm := range e.Lab.VMs {
		sendUDP(t, vm, fmt.Sprintf("198.18.0.1:%d", port), n)
	}
	if c := boshExitCode(t, p, 30*time.Second); c != 0 {
		t.Fatalf("%s %d:\n%s", exited, c, p.Output())
	}
	per := interfaceCounts(t, out)
	for i := range 3 {
		if per[boshRouterIface(i)] != n {
			t.Errorf("%s: %d packets, want %d (all: %v)", boshRouterIface(i), per[boshRouterIface(i)], n, per)
		}
	}
	return per
}

// boshRouterIface is the interface name of router VM i.
func boshRouterIface(i int) string {
	return fmt.Sprintf("router/3f2a0000-0000-4000-8000-0000000000%02d:eth0", i)
}

// boshCFClient is pcap-api's own client of the foundation's UAA
// (bosh.cf_client): its client_credentials tokens read every app.
var boshCFClient = uaa.Client{ID: "pcap-api-cc", Secret: "pcap-api-cc-secret",
	AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"cloud_controller.admin_read_only"}}

// startFoundation starts, in the LAN namespace, a CF foundation next to
// the director: its own UAA (with boshCFClient) and a Cloud Controller
// (HTTPS, the env's CA) where app appGUID's web process has these
// instances. It returns the cf_client section of pcap-api's bosh config.
func (e *boshEnv) startFoundation(t *testing.T, appGUID string, instances []cc.Instance) *api.CFClientConfig {
	t.Helper()
	tlsConf := func() *tls.Config {
		c, err := e.CA.ServerConfig("198.18.0.1")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	u, err := uaa.New(uaa.Options{TLS: tlsConf(), Clients: append(uaa.DefaultClients(), boshCFClient)})
	if err != nil {
		t.Fatal(err)
	}
	if err := u.StartOn(testenv.ListenIn(t, e.Lab.LAN, "198.18.0.1:0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	// The CC fake runs in this process: it reaches its UAA inside the LAN.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: e.CA.ClientConfig(), DialContext: netlab.DialerIn(e.Lab.LAN)}}
	t.Cleanup(client.CloseIdleConnections)
	c, err := cc.New(cc.Options{TLS: tlsConf(), Verifier: u.Verifier(client), UAAURL: u.URL(), World: cc.World{
		Organizations: []cc.Org{{GUID: "0a000000-0000-4000-8000-0000000000b1", Name: "org", Spaces: []cc.Space{
			{GUID: "5a000000-0000-4000-8000-0000000000b1", Name: "prod", Apps: []cc.App{
				{GUID: appGUID, Name: "web-app", Processes: []cc.Process{{Type: "web", Instances: instances}}},
			}},
		}}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.StartOn(testenv.ListenIn(t, e.Lab.LAN, "198.18.0.1:0")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &api.CFClientConfig{APIURL: c.URL(), CACertFile: e.CAFile, ClientID: boshCFClient.ID, ClientSecret: boshCFClient.Secret}
}
