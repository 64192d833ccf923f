package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// setRouters sets the cf deployment's router VMs in the fake director to
// those of the given indexes, as GET /deployments/cf/instances lists them.
func (e *boshEnv) setRouters(t *testing.T, indexes ...int) {
	t.Helper()
	err := e.Director.Update(func(ds []director.Deployment) []director.Deployment {
		for di := range ds {
			if ds[di].Name != "cf" {
				continue
			}
			var keep []director.Instance
			for _, in := range ds[di].Instances {
				if in.Job != "router" {
					keep = append(keep, in)
				}
			}
			for _, i := range indexes {
				keep = append(keep, director.Instance{Job: "router", Index: i, ID: boshRouterID(i), AZ: "z1", IPs: []string{e.Lab.vmAddr(i)}})
			}
			ds[di].Instances = keep
		}
		return ds
	})
	if err != nil {
		t.Fatal(err)
	}
}

func boshRouterID(i int) string { return fmt.Sprintf("3f2a0000-0000-4000-8000-0000000000%02d", i) }

// TestPcapBoshFollowsGroup: `pcap-bosh -d cf router` follows the group: a
// VM added during the capture joins, a VM deleted ends as instance-gone,
// and pcap-bosh exits 0 with exact per-interface counts.
func TestPcapBoshFollowsGroup(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 3)
	api := e.startSecondAPI(t, "198.18.0.1:2223", func(c *api.Config) { c.FollowInterval = 500 * time.Millisecond })
	e.setRouters(t, 0, 1)
	home := e.boshLogin(t, "admin")

	out := filepath.Join(t.TempDir(), "edge.pcapng")
	p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + home}},
		filepath.Join(testenv.Binaries(t), "pcap-bosh"), "-e", "fake", "-d", "cf", "router",
		"-f", "udp dst port 7000", "-o", out,
		"--pcap-api", api.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(api.HostKey))
	for i := range 2 {
		p.WaitLine(t, regexp.MustCompile(`^pcap: router/`+boshRouterID(i)+`: started`), 30*time.Second)
	}
	sendUDP(t, e.Lab.VMs[0], "198.18.0.1:7000", 4)
	sendUDP(t, e.Lab.VMs[1], "198.18.0.1:7000", 5)

	e.setRouters(t, 0, 2) // router/1 deleted, router/2 added
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/`+boshRouterID(2)+`: joined interfaces=eth0 `), 30*time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/`+boshRouterID(1)+`: gone `), 30*time.Second)
	sendUDP(t, e.Lab.VMs[0], "198.18.0.1:7000", 3)
	sendUDP(t, e.Lab.VMs[2], "198.18.0.1:7000", 6)

	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err, ok := p.Wait(15 * time.Second); !ok || err != nil {
		t.Fatalf("pcap-bosh: exited=%v err=%v (want exit 0: a deleted VM is no failure)\n%s", ok, err, p.Output())
	}
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/`+boshRouterID(1)+`: ended end=instance-gone packets=5 `), time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=3 packets=18 `), time.Second)
	capinfos(t, out)
	per := interfaceCounts(t, out)
	want := map[string]int{boshRouterIface(0): 7, boshRouterIface(1): 5, boshRouterIface(2): 6}
	if fmt.Sprint(per) != fmt.Sprint(want) {
		t.Errorf("packets per interface = %v, want %v\n%s", per, want, p.Output())
	}
	// The joined VM's address is named in the file too (a second Name
	// Resolution Block, written when it joined).
	named := map[string]int{}
	for _, l := range strings.Fields(tshark(t, "-r", out, "-N", "n", "-Y", "ip.src == "+e.Lab.vmAddr(2), "-T", "fields", "-e", "ip.src_host")) {
		named[l]++
	}
	if want := map[string]int{"router/" + boshRouterID(2): 6}; fmt.Sprint(named) != fmt.Sprint(want) {
		t.Errorf("the joined VM's packets are named %v, want %v", named, want)
	}
}
