package integration

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPILivePipeIntoTshark pipes ssh's stdout straight into tshark, which
// shows packets while the capture still runs and ends with the right
// per-interface counts when the stream ends.
func TestAPILivePipeIntoTshark(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{VMs: 3})

	ts, pw := tsharkPipe(t, nil, "-l", "-n", "-r", "-",
		"-T", "fields", "-e", "frame.interface_name", "-e", "udp.dstport")
	cl := c.capture(t, 0, pw, "-f", "'udp dst port 7000'", "lab")
	pw.Close() // ssh holds its copy
	waitStarted(t, cl, "lab/0", "lab/1", "lab/2")

	c.send(t, 0, 7000, 7)
	// tshark prints lab/0's packets while the capture is still running.
	ts.WaitLine(t, regexp.MustCompile(`^lab/0:eth0\t7000$`), 20*time.Second)
	select {
	case <-cl.Done():
		t.Fatalf("capture ended early:\n%s", cl.Output())
	default:
	}
	c.send(t, 1, 7000, 11)
	c.send(t, 2, 7000, 13)
	c.send(t, 2, 7001, 5) // filtered out
	stopOK(t, cl, 15*time.Second)
	if err, ok := ts.Wait(20 * time.Second); !ok || err != nil {
		t.Fatalf("tshark did not end cleanly at the end of the stream: err=%v exited=%v\n%s", err, ok, ts.Output())
	}
	got := map[string]int{}
	for _, l := range ts.Lines(regexp.MustCompile(`^lab/\d:eth0\t`)) {
		name, port, _ := strings.Cut(l, "\t")
		if port != "7000" {
			t.Errorf("tshark shows a packet to port %s: %q", port, l)
		}
		got[name]++
	}
	wantCounts(t, got, map[string]int{"lab/0:eth0": 7, "lab/1:eth0": 11, "lab/2:eth0": 13})
}

// TestAPIAgentKilledMidCapture kills one agent while capturing: the others
// keep capturing, the lost source is named, the exit status says partial,
// and the file is whole, statistics included.
func TestAPIAgentKilledMidCapture(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c, cl, file := newLabCapture(t, 3)
	for i := range 3 {
		c.send(t, i, 7000, 10)
	}

	if err := c.Agents[1].Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Agents[1].Wait(10 * time.Second); !ok {
		t.Fatal("agent 1 did not die")
	}
	// The loss is reported while the capture goes on.
	cl.WaitLine(t, regexp.MustCompile(`^pcap: lab/1: lost reason="connection to agent 198.18.0.11:9494 lost"$`), 10*time.Second)
	c.send(t, 0, 7000, 20)
	c.send(t, 2, 7000, 20)
	select {
	case <-cl.Done():
		t.Fatalf("capture ended with the lost agent:\n%s", cl.Output())
	default:
	}

	cl.Stdin.Close()
	wantPartial(t, cl, 15*time.Second)
	outcome, sum := summary(t, cl)
	if outcome != "partial" || sum["sources"] != 3 {
		t.Errorf("summary %s %v, want partial with 3 sources", outcome, sum)
	}
	wantLine(t, cl, `^pcap: lab/0: ended end=stopped packets=30 `)
	wantLine(t, cl, `^pcap: lab/2: ended end=stopped packets=30 `)
	wantLine(t, cl, `^pcap: lab/1: lost reason="connection to agent 198.18.0.11:9494 lost" packets=\d+ `)

	capinfos(t, file)
	per := perInterface(t, file)
	if per["lab/0:eth0"] != 30 || per["lab/2:eth0"] != 30 || per["lab/1:eth0"] > 10 {
		t.Errorf("packets per interface %v, want 30, ≤10, 30", per)
	}
	names, stats := statsBlocks(t, file)
	// Interfaces are declared in the order their captures opened.
	if strings.Join(slices.Sorted(slices.Values(names)), " ") != "lab/0:eth0 lab/1:eth0 lab/2:eth0" {
		t.Errorf("interfaces %v", names)
	}
	for _, n := range names {
		if _, ok := stats[n]; !ok {
			t.Errorf("no statistics block for %s", n)
		}
	}
	if s := stats["lab/0:eth0"]; s.PacketsReceived != 30 || s.PacketsDropped != 0 {
		t.Errorf("statistics of lab/0:eth0: received %d dropped %d, want 30 and 0", s.PacketsReceived, s.PacketsDropped)
	}
}

// TestAPIUnreachableAndRejectingAgents starts a capture where one agent
// cannot be reached and one refuses (its host has no eth0): the others
// capture, both reasons are reported. When no target can start, the
// capture fails with every reason.
func TestAPIUnreachableAndRejectingAgents(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{
		VMs:     4,
		NoAgent: map[int]bool{2: true},
		IfName: func(i int) string {
			if i == 3 {
				return "lan0"
			}
			return "eth0"
		},
		Groups: map[string][]int{"lab": {0, 1, 2, 3}, "dead": {2, 3}},
	})
	const unreachable = `pcap: lab/2: failed code=internal reason="cannot reach agent 198.18.0.12:9494: .*connection refused"`
	const rejected = `pcap: lab/3: failed code=unknown-interface reason="no interface \\"eth0\\" in the target's network namespace"`

	cl, file := c.captureFile(t, 0, "-f", "'udp dst port 7000'", "lab")
	waitStarted(t, cl, "lab/0", "lab/1")
	c.send(t, 0, 7000, 5)
	c.send(t, 1, 7000, 6)
	cl.Stdin.Close()
	wantPartial(t, cl, 15*time.Second)
	wantLine(t, cl, "^"+unreachable+"$")
	wantLine(t, cl, "^"+rejected+"$")
	if outcome, sum := summary(t, cl); outcome != "partial" || sum["sources"] != 4 || sum["packets"] != 11 {
		t.Errorf("summary %s %v, want partial, 4 sources, 11 packets", outcome, sum)
	}
	capinfos(t, file)
	wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 5, "lab/1:eth0": 6})
	if names, stats := statsBlocks(t, file); len(names) != 2 || len(stats) != 2 {
		t.Errorf("interfaces %v with %d statistics blocks, want the 2 that started", names, len(stats))
	}

	// Nothing can start: exit 1, every reason listed, no capture written.
	var out bytes.Buffer
	cl = c.capture(t, 0, &out, "dead")
	if code := exitCode(t, cl, 15*time.Second); code != 1 {
		t.Errorf("ssh exit status %d, want 1:\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: dead/0: failed code=internal reason="cannot reach agent 198.18.0.12:9494: .*connection refused"$`)
	wantLine(t, cl, `^pcap: dead/1: failed code=unknown-interface reason=`)
	wantLine(t, cl, `^pcap: error: failed reason="no target could be captured: dead/0: cannot reach agent 198.18.0.12:9494: .*connection refused; dead/1: no interface \\"eth0\\" in the target's network namespace"$`)
	if out.Len() != 0 {
		t.Errorf("a failed capture wrote %d bytes to stdout", out.Len())
	}
}

// TestAPIFormatPcap gives classic pcap when every source has one link
// type, and refuses it, naming the interfaces, when they differ (one VM's
// eth0 is a tun device: raw IP, no Ethernet header).
func TestAPIFormatPcap(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{
		VMs: 2,
		IfName: func(i int) string {
			if i == 1 {
				return "lan0"
			}
			return "eth0"
		},
	})
	testenv.Run(t, "ip", "-n", c.VMs[1].Name, "tuntap", "add", "dev", "eth0", "mode", "tun")
	testenv.Run(t, "ip", "-n", c.VMs[1].Name, "link", "set", "eth0", "up")

	var out bytes.Buffer
	cl := c.capture(t, 0, &out, "--format", "pcap", "lab")
	if code := exitCode(t, cl, 15*time.Second); code != 1 {
		t.Errorf("ssh exit status %d, want 1:\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: error: failed reason="--format pcap needs one link type for all sources, but lab/0:eth0 is Ethernet, lab/1:eth0 is Raw; use pcapng"$`)
	if out.Len() != 0 {
		t.Errorf("refused capture wrote %d bytes", out.Len())
	}

	// One link type: classic pcap that tshark reads.
	cl, file := c.captureFile(t, 0, "--format", "pcap", "-f", "'udp dst port 7000'", "lab/0")
	waitStarted(t, cl, "lab/0")
	c.send(t, 0, 7000, 9)
	stopOK(t, cl, 15*time.Second)
	info := capinfos(t, file)
	if !strings.Contains(info, "File type:           Wireshark/tcpdump/... - nanosecond pcap") || !strings.Contains(info, "Number of packets:   9") {
		t.Errorf("not a classic pcap of 9 packets:\n%s", info)
	}
	if n := countPackets(t, file, "udp.dstport == 7000 && ip.src == 198.18.0.10"); n != 9 {
		t.Errorf("%d matching packets, want 9", n)
	}

	// pcapng carries both link types.
	cl, file = c.captureFile(t, 0, "lab")
	waitStarted(t, cl, "lab/0", "lab/1")
	stopOK(t, cl, 15*time.Second)
	info = capinfos(t, file)
	if !strings.Contains(info, "Encapsulation = Ethernet") || !strings.Contains(info, "Encapsulation = Raw IP") {
		t.Errorf("pcapng does not declare both link types:\n%s", info)
	}
}

// TestAPINamesSourcesInFile: the file names each source's address in a
// Name Resolution Block, so that tshark -N n shows lab/0 rather than its
// IP, and the section header records the command and pcap-api's version.
func TestAPINamesSourcesInFile(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c, cl, file := newLabCapture(t, 2)
	c.send(t, 0, 7000, 3)
	c.send(t, 1, 7000, 4)
	stopOK(t, cl, 15*time.Second)

	// Names from the file only: the peer, 198.18.0.1, has none.
	got := map[string]int{}
	for _, l := range strings.Split(strings.TrimSpace(tshark(t, "-r", file, "-N", "n",
		"-T", "fields", "-e", "frame.interface_name", "-e", "ip.src_host", "-e", "ip.dst_host")), "\n") {
		got[l]++
	}
	wantCounts(t, got, map[string]int{"lab/0:eth0\tlab/0\t198.18.0.1": 3, "lab/1:eth0\tlab/1\t198.18.0.1": 4})
	// Without -N n the addresses stay numbers: the names are not the
	// interface names leaking into the address columns.
	if src := strings.Fields(tshark(t, "-r", file, "-n", "-c", "1", "-T", "fields", "-e", "ip.src")); len(src) != 1 || src[0] != c.vmAddr(0) && src[0] != c.vmAddr(1) {
		t.Errorf("tshark -n shows source %q, want a VM's address", src)
	}

	out, err := exec.Command(filepath.Join(testenv.Binaries(t), "pcap-api"), "--version").Output()
	if err != nil {
		t.Fatalf("pcap-api --version: %v", err)
	}
	f := strings.Fields(string(out))
	if len(f) == 0 {
		t.Fatalf("pcap-api --version printed nothing")
	}
	version := f[len(f)-1]
	info := capinfos(t, file)
	for _, want := range []string{
		"Capture comment:     pcap " + version + ": capture -f 'udp dst port 7000' lab\n",
		"Capture application: pcap-api " + version + "\n",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos lacks %q:\n%s", want, info)
		}
	}
}
