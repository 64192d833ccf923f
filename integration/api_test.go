package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPIMergesThreeAgents captures on three VMs through pcap-api with the
// real OpenSSH client and checks every packet lands under its source.
func TestAPIMergesThreeAgents(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	dir := t.TempDir()
	apiKey := newKeyPair(t, dir, "api_client")
	operator := newKeyPair(t, dir, "operator")
	lb := newLab(t, 3, nil)

	var agents []*agentProc
	var addrs []string
	for i, vm := range lb.VMs {
		a := startAgent(t, agentOptions{Netns: vm, Listen: lb.vmAddr(i) + ":9494", ClientKeys: []keyPair{apiKey}})
		agents = append(agents, a)
		addrs = append(addrs, a.Addr)
	}
	api := startAPI(t, apiOptions{
		Netns: lb.LAN, Listen: "198.18.0.1:2222", ClientKey: apiKey,
		AgentKeys: []keyPair{agents[0].HostKey, agents[1].HostKey, agents[2].HostKey},
		Operators: []keyPair{operator},
		Groups:    map[string][]string{"lab": addrs},
	})

	out := filepath.Join(dir, "lab.pcapng")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cl := runSSH(t, api, "static", operator, f, "capture", "-f", "'udp dst port 7000'", "lab")
	for i := range 3 {
		cl.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: lab/%d: started interfaces=eth0`, i)), 20*time.Second)
	}
	counts := []int{11, 22, 33}
	for i, vm := range lb.VMs {
		sendUDP(t, vm, "198.18.0.1:7000", counts[i])
		sendUDP(t, vm, "198.18.0.1:7001", 5) // filtered out
	}
	cl.Stdin.Close() // a line, then EOF: stops the capture
	if err, ok := cl.Wait(10 * time.Second); !ok || err != nil {
		t.Fatalf("ssh did not exit cleanly within 10s: err=%v exited=%v\n%s", err, ok, cl.Output())
	}
	cl.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=3 packets=66 `), time.Second)

	capinfos(t, out)
	names := tshark(t, "-r", out, "-T", "fields", "-e", "frame.interface_name")
	per := map[string]int{}
	for _, n := range strings.Fields(names) {
		per[n]++
	}
	for i, want := range counts {
		if got := per[fmt.Sprintf("lab/%d:eth0", i)]; got != want {
			t.Errorf("lab/%d:eth0 has %d packets, want %d (all: %v)", i, got, want, per)
		}
	}
	if len(per) != 3 {
		t.Errorf("interfaces with packets: %v, want exactly 3", per)
	}
}
