package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestCFPluginCapturesAppInstances runs the real cf CLI with the plugin:
// two instances of three are captured, each under its own interface, and
// Ctrl-C leaves a complete file with statistics blocks.
func TestCFPluginCapturesAppInstances(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)

	out := filepath.Join(t.TempDir(), "web.pcapng")
	p := cf.start(t, e, nil, "myapp", "-i", "0,1", "-f", "udp dst port 9000", "-o", out)
	for _, i := range []int{0, 1} {
		p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: web/%d: started`, i)), 30*time.Second)
	}
	sent := []int{13, 17, 19}
	for i, c := range e.Containers {
		sendUDP(t, c.NS, "198.18.0.1:9000", sent[i])
		sendUDP(t, c.NS, "198.18.0.1:9001", 3) // filtered out
	}
	if err := p.SignalGroup(syscall.SIGINT); err != nil { // Ctrl-C
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(15 * time.Second):
		t.Fatalf("cf pcap did not finish within 15s after Ctrl-C:\n%s", p.Output())
	}
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=2 packets=30 `), time.Second)

	capinfos(t, out)
	per := interfaceCounts(t, out)
	if per["web/0:eth0"] != 13 || per["web/1:eth0"] != 17 || len(per) != 2 {
		t.Errorf("packets per interface = %v, want web/0:eth0=13 web/1:eth0=17 and nothing else", per)
	}
	// Statistics blocks: one per interface, with what each received.
	stats := tshark(t, "-r", out, "-q", "-z", "io,stat,0")
	if !strings.Contains(stats, "30") {
		t.Errorf("io,stat does not show 30 frames:\n%s", stats)
	}
	if n := countISBs(t, out); n != 2 {
		t.Errorf("file has %d interface statistics blocks, want 2", n)
	}
}

// interfaceCounts counts packets per interface name.
func interfaceCounts(t *testing.T, file string) map[string]int {
	t.Helper()
	per := map[string]int{}
	for _, n := range strings.Fields(tshark(t, "-r", file, "-T", "fields", "-e", "frame.interface_name")) {
		per[n]++
	}
	return per
}

// countISBs counts Interface Statistics Blocks (type 5) by walking the
// pcapng blocks.
func countISBs(t *testing.T, file string) int {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; off+12 <= len(b); {
		typ := uint32(b[off]) | uint32(b[off+1])<<8 | uint32(b[off+2])<<16 | uint32(b[off+3])<<24
		l := int(uint32(b[off+4]) | uint32(b[off+5])<<8 | uint32(b[off+6])<<16 | uint32(b[off+7])<<24)
		if l < 12 || off+l > len(b) {
			t.Fatalf("bad block length %d at offset %d", l, off)
		}
		if typ == 5 {
			n++
		}
		off += l
	}
	return n
}
