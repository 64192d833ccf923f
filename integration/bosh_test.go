package integration

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestPcapBoshCapturesThreeVMs logs in with the real bosh CLI and
// captures on three VMs with pcap-bosh reading its ~/.bosh/config:
// exact per-VM counts (captureRouters).
func TestPcapBoshCapturesThreeVMs(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 3)

	captureRouters(t, e, e.Lab.LAN, []string{"HOME=" + home}, "-d", "cf", "router")
}

// TestPcapBoshRouterAndApp: an operator captures a router VM and an app's
// instance in one file (`-d cf router --app GUID`): the app is looked up
// at the Cloud Controller with pcap-api's own client, its instance is
// captured in its container on the cell (here the router VM's agent), and
// pcap-api audits it; a team admin of the deployment is refused, and
// nothing is written for them.
func TestPcapBoshRouterAndApp(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	appGUID := "ab000000-0000-4000-8000-0000000000b1"
	instGUID := fmt.Sprintf("1b%s-0000-4000-8000-000000000000", testenv.RunID()[1:])
	cell := t.TempDir()
	ct := newContainer(t, cell, instGUID)
	e := startBOSHEnvCells(t, 1, []string{cell})
	cfClient := e.startFoundation(t, appGUID, []cc.Instance{
		{Index: 0, Host: e.Lab.vmAddr(0), InstanceGUID: instGUID, InternalIP: "198.18.0.2"},
		{Index: 1, State: "CRASHED", Host: e.Lab.vmAddr(0), InstanceGUID: instGUID + "x"},
	})
	a := e.startSecondAPI(t, "198.18.0.1:0", func(c *api.Config) { c.BOSH.CFClient = cfClient })

	home := e.boshLogin(t, "admin")
	out := filepath.Join(t.TempDir(), "both.pcapng")
	p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + home}},
		filepath.Join(testenv.Binaries(t), "pcap-bosh"), append([]string{"-e", "fake", "-d", "cf", "router", "--app", appGUID,
			"-f", "udp dst port 7000", "-o", out, "--duration", "30s"}, boshAPIFlags(a)...)...)
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started`), 30*time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/0: started`), 30*time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/1: skipped .*CRASHED`), time.Second)
	sendUDP(t, e.Lab.VMs[0], "198.18.0.1:7000", 7) // the router's side
	sendUDP(t, ct.NS, "198.18.0.1:7000", 5)        // the app's side
	sendUDP(t, ct.NS, "198.18.0.1:7001", 3)        // filtered out
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	// Exit status 3: partial, for the crashed instance.
	if code := boshExitCode(t, p, 15*time.Second); code != 3 {
		t.Fatalf("pcap-bosh exited %d, want 3 (partial: web/1 crashed)\n%s", code, p.Output())
	}
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: partial sources=3 packets=12 `), time.Second)
	capinfos(t, out)
	per := interfaceCounts(t, out)
	if want := map[string]int{boshRouterIface(0): 7, "web/0:eth0": 5}; !maps.Equal(per, want) {
		t.Errorf("packets per interface = %v, want %v", per, want)
	}
	audit := a.WaitLine(t, regexp.MustCompile(`"msg":"bosh-app-capture".*`), 5*time.Second)[0]
	// pcap-bosh logs in with a one-time code of the director's UAA.
	for _, want := range []string{`"user":"bosh:admin","method":"one-time-code"`, `"operator":"admin"`, `"deployment":"cf"`, `"app":"` + appGUID + `"`,
		`"process":"web"`, `"instances":["web/0"]`, `"vms":1`} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit line lacks %s:\n%s", want, audit)
		}
	}
	if strings.Contains(a.Output(), "eyJ") || strings.Contains(a.Output(), boshCFClient.Secret) {
		t.Error("pcap-api's log holds a token or the client secret")
	}

	t.Run("--probe checks the Cloud Controller client", func(t *testing.T) {
		dir := t.TempDir()
		cfgFile := filepath.Join(dir, "api.yml")
		host, client := newKeyPair(t, dir, "host"), newKeyPair(t, dir, "client")
		cfg := api.DefaultConfig()
		cfg.HostKeyFile, cfg.BOSH = host.Private, e.boshAPIConfig()
		cfg.Agents.ClientKeyFile = client.Private
		cfg.Agents.HostKeyFingerprints = []string{"SHA256:x"}
		cfg.BOSH.CFClient = cfClient
		writeYAML(t, cfgFile, cfg)
		r := e.run(t, nil, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", cfgFile, "--check-config", "--probe")
		if r.Code != 0 || !strings.Contains(r.Stdout, "ok   bosh.cf_client: client "+boshCFClient.ID+": gets a token and sees 1 apps") ||
			!strings.Contains(r.Stdout, "ok   bosh.cf_client: UAA /token_keys") || strings.Contains(r.Stdout+r.Stderr, boshCFClient.Secret) {
			t.Errorf("probe: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
		// A wrong secret is found before anyone logs in.
		wrong := *cfClient
		wrong.ClientSecret = "wrong-secret"
		cfg.BOSH.CFClient = &wrong
		writeYAML(t, cfgFile, cfg)
		r = e.run(t, nil, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", cfgFile, "--check-config", "--probe")
		if r.Code == 0 || !strings.Contains(r.Stdout, "FAIL bosh.cf_client: client "+boshCFClient.ID+": uaa: token request refused (401") {
			t.Errorf("probe with a wrong secret: exit %d\n%s%s", r.Code, r.Stdout, r.Stderr)
		}
	})

	t.Run("plain ssh to a pcap-api without a Cloud Controller client", func(t *testing.T) {
		var stdout strings.Builder
		cl := boshSSH{API: e.API, Password: e.sshCode(t, home), Out: &stdout}.start(t, "capture", "-d", "cf", "router", "--app", appGUID)
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c == 0 {
			t.Errorf("ssh exited 0:\n%s", cl.Output())
		}
		cl.WaitLine(t, regexp.MustCompile(`^pcap: error: not-allowed reason="this pcap-api has no Cloud Controller client \(bosh\.cf_client\), so it cannot capture app instances"$`), time.Second)
		if stdout.Len() != 0 {
			t.Errorf("a refused capture wrote %d bytes", stdout.Len())
		}
	})

	t.Run("a team admin is refused", func(t *testing.T) {
		home := e.boshLogin(t, "team-cf")
		out := filepath.Join(t.TempDir(), "refused.pcapng")
		r := e.pcapBosh(t, []string{"HOME=" + home}, append([]string{"-e", "fake", "-d", "cf", "router", "--app", appGUID, "-o", out}, boshAPIFlags(a)...)...)
		if r.Code == 0 || !strings.Contains(r.Stderr, "--app is for admins of the whole director") {
			t.Errorf("exit %d, stderr:\n%s", r.Code, r.Stderr)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused capture left %s: %v", out, err)
		}
		a.WaitLine(t, regexp.MustCompile(`"msg":"capture-refused","user":"bosh:team-cf","method":"one-time-code".*"code":"not-allowed"`), 5*time.Second)
		if n := strings.Count(a.Output(), `"msg":"bosh-app-capture"`); n != 1 {
			t.Errorf("%d bosh-app-capture events, want 1 (the admin's)", n)
		}
	})
}
