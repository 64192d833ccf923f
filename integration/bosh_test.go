package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestPcapBoshCapturesThreeVMs logs in with the real bosh CLI and
// captures on three VMs with pcap-bosh reading its ~/.bosh/config.
func TestPcapBoshCapturesThreeVMs(t *testing.T) {
	testenv.RequireRoot(t)
	e := startBOSHEnv(t, 3)
	home := e.boshLogin(t, "admin")

	out := filepath.Join(t.TempDir(), "edge.pcapng")
	p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + home}},
		filepath.Join(testenv.Binaries(t), "pcap-bosh"), "-e", "fake", "-d", "cf", "router",
		"-f", "udp dst port 7000", "-o", out, "--duration", "30s",
		"--pcap-api", e.API.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(e.API.HostKey))
	for i := range 3 {
		p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: router/3f2a0000-0000-4000-8000-0000000000%02d: started`, i)), 30*time.Second)
	}
	sent := []int{7, 8, 9}
	for i, vm := range e.Lab.VMs {
		sendUDP(t, vm, "198.18.0.1:7000", sent[i])
	}
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err, ok := p.Wait(15 * time.Second); !ok || err != nil {
		t.Fatalf("pcap-bosh: exited=%v err=%v\n%s", ok, err, p.Output())
	}
	capinfos(t, out)
	per := interfaceCounts(t, out)
	for i, want := range sent {
		name := fmt.Sprintf("router/3f2a0000-0000-4000-8000-0000000000%02d:eth0", i)
		if per[name] != want {
			t.Errorf("%s has %d packets, want %d (all: %v)", name, per[name], want, per)
		}
	}
	if len(per) != 3 {
		t.Errorf("interfaces with packets: %v, want 3", per)
	}
}
