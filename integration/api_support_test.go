package integration

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// capLab is a lab of VMs behind a bridge, a pcap-agent on each VM's
// address (port 9494) unless told otherwise, and pcap-api in the LAN
// namespace at 198.18.0.1:2222 with a static group "lab" of every VM.
type capLab struct {
	*lab
	Dir       string
	Agents    []*agentProc // nil where no agent runs
	API       *apiProc
	Operators []keyPair
}

type capLabOptions struct {
	VMs int
	// IfName names a VM's interface on the bridge (default eth0).
	IfName func(i int) string
	// NoAgent lists VMs where no agent runs: their address refuses
	// connections.
	NoAgent map[int]bool
	// Operators is how many operator keys the API trusts (default 1);
	// each is a user of its own for the limits.
	Operators int
	// Groups maps group names to VM indexes (default "lab": every VM).
	Groups map[string][]int
	// APIConfig changes the API's config (see apiOptions.Config).
	APIConfig func(*api.Config)
	// AgentConfig changes the config of VM i's agent.
	AgentConfig func(i int, c *agent.Config)
}

func newCapLab(t *testing.T, o capLabOptions) *capLab {
	t.Helper()
	c := &capLab{lab: newLab(t, o.VMs, o.IfName), Dir: t.TempDir()}
	apiKey := newKeyPair(t, c.Dir, "api_client")
	var hostKeys []keyPair
	var addrs []string
	for i, vm := range c.VMs {
		addr := c.vmAddr(i) + ":9494"
		addrs = append(addrs, addr)
		if o.NoAgent[i] {
			c.Agents = append(c.Agents, nil)
			continue
		}
		ao := agentOptions{Netns: vm, Listen: addr, ClientKeys: []keyPair{apiKey}, MaxCaptures: 8}
		if o.AgentConfig != nil {
			ao.Config = func(c *agent.Config) { o.AgentConfig(i, c) }
		}
		a := startAgent(t, ao)
		c.Agents = append(c.Agents, a)
		hostKeys = append(hostKeys, a.HostKey)
	}
	for i := range max(o.Operators, 1) {
		c.Operators = append(c.Operators, newKeyPair(t, c.Dir, fmt.Sprintf("operator%d", i)))
	}
	groups := map[string][]string{"lab": addrs}
	if o.Groups != nil {
		groups = map[string][]string{}
		for g, idx := range o.Groups {
			for _, i := range idx {
				groups[g] = append(groups[g], addrs[i])
			}
		}
	}
	c.API = startAPI(t, apiOptions{
		Netns: c.LAN, Listen: "198.18.0.1:2222", ClientKey: apiKey,
		AgentKeys: hostKeys, Operators: c.Operators, Groups: groups, Config: o.APIConfig,
	})
	return c
}

// capture runs `ssh … capture args…` as operator op; stdout goes to out.
func (c *capLab) capture(t *testing.T, op int, out io.Writer, args ...string) *sshClient {
	t.Helper()
	return runSSH(t, c.API, "static", c.Operators[op], out, append([]string{"capture"}, args...)...)
}

// captureFile runs a capture into a new file and returns the client and
// the file's path; the file is closed at cleanup.
func (c *capLab) captureFile(t *testing.T, op int, args ...string) (*sshClient, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "capture.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return c.capture(t, op, f, args...), path
}

// send sends count UDP datagrams from VM i to the LAN address on port.
func (c *capLab) send(t *testing.T, i, port, count int) {
	t.Helper()
	sendUDP(t, c.VMs[i], fmt.Sprintf("198.18.0.1:%d", port), count)
}

// httpGet fetches a path of the API's HTTP port from inside the LAN.
func (c *capLab) httpGet(t *testing.T, path string) (int, string) {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: netlab.DialerIn(c.LAN)}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://" + c.API.HTTPAddr + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// newLabCapture is a capLab of vms VMs (default options) with captureLab
// running.
func newLabCapture(t *testing.T, vms int) (*capLab, *sshClient, string) {
	t.Helper()
	c := newCapLab(t, capLabOptions{VMs: vms})
	cl, file := c.captureLab(t)
	return c, cl, file
}

// captureLab runs a capture of UDP port 7000 on group "lab" into a new
// file and waits until every VM's source has started.
func (c *capLab) captureLab(t *testing.T) (*sshClient, string) {
	t.Helper()
	cl, file := c.captureFile(t, 0, "-f", "'udp dst port 7000'", "lab")
	for i := range c.VMs {
		waitStarted(t, cl, fmt.Sprintf("lab/%d", i))
	}
	return cl, file
}

// stopOK stops cl's capture (see stopStdin) and fails t at once unless
// ssh exits 0 within timeout.
func stopOK(t *testing.T, cl *sshClient, timeout time.Duration) {
	t.Helper()
	cl.Stdin.Close()
	if code := exitCode(t, cl, timeout); code != 0 {
		t.Fatalf("ssh exit status %d:\n%s", code, cl.Output())
	}
}

// wantPartial waits (bounded) for cl to exit and fails t unless its exit
// status is 3 (partial).
func wantPartial(t *testing.T, cl *sshClient, timeout time.Duration) {
	t.Helper()
	if code := exitCode(t, cl, timeout); code != 3 {
		t.Errorf("ssh exit status %d, want 3 (partial):\n%s", code, cl.Output())
	}
}

// waitStarted waits for the "started" status line of every source.
func waitStarted(t *testing.T, cl *sshClient, sources ...string) {
	t.Helper()
	for _, s := range sources {
		cl.WaitLine(t, regexp.MustCompile(`^pcap: `+regexp.QuoteMeta(s)+`: started `), 30*time.Second)
	}
}

// exitCode waits (bounded) for cl to exit and returns its exit status.
func exitCode(t *testing.T, cl *sshClient, timeout time.Duration) int {
	t.Helper()
	err, ok := cl.Wait(timeout)
	if !ok {
		t.Fatalf("ssh did not exit within %v:\n%s", timeout, cl.Output())
	}
	assertAccounting(t, cl)
	return exitStatus(t, err, "ssh")
}

// exitStatus is the exit status a process's wait error says: 0 for none,
// an *exec.ExitError's code; any other error fails t as "what: err".
func exitStatus(t *testing.T, err error, what string) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	default:
		t.Fatalf("%s: %v", what, err)
		return -1
	}
}

var endedRe = regexp.MustCompile(`^pcap: (\S+): ended (.*)$`)

// assertAccounting checks every source that ended with final statistics
// against the invariant: what the kernel counted was delivered or dropped
// at a named place, and nothing is unaccounted.
func assertAccounting(t *testing.T, cl lineSource) {
	t.Helper()
	for _, line := range cl.Lines(endedRe) {
		kv := map[string]int64{}
		for _, f := range strings.Fields(endedRe.FindStringSubmatch(line)[2]) {
			k, v, _ := strings.Cut(f, "=")
			if n, err := strconv.ParseInt(v, 10, 64); err == nil {
				kv[k] = n
			}
		}
		u, ok := kv["unaccounted"]
		if !ok {
			t.Errorf("no unaccounted= in %q", line)
		}
		if u != 0 || kv["received"] != kv["packets"]+kv["kernel_dropped"]+kv["agent_dropped"]+kv["api_dropped"]+u {
			t.Errorf("accounting does not add up: %s", line)
		}
	}
}

var summaryRe = regexp.MustCompile(`^pcap: summary: (\S+) (.*)$`)

// summary returns the outcome and counters of the summary line (all but
// limit=, which names limits); the client must have exited.
func summary(t *testing.T, cl *sshClient) (string, map[string]int) {
	t.Helper()
	lines := cl.Lines(summaryRe)
	if len(lines) != 1 {
		t.Fatalf("%d summary lines, want 1:\n%s", len(lines), cl.Output())
	}
	m := summaryRe.FindStringSubmatch(lines[0])
	kv := map[string]int{}
	for _, f := range strings.Fields(m[2]) {
		k, v, _ := strings.Cut(f, "=")
		if k == "limit" {
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("summary field %q is not a number: %s", f, lines[0])
		}
		kv[k] = n
	}
	return m[1], kv
}

// lineSource is a process whose output lines are collected.
type lineSource interface {
	Lines(re *regexp.Regexp) []string
	Output() string
}

// wantLine fails unless a line of cl's output matches re.
func wantLine(t *testing.T, cl lineSource, re string) {
	t.Helper()
	if len(cl.Lines(regexp.MustCompile(re))) == 0 {
		t.Errorf("no line matches %q in:\n%s", re, cl.Output())
	}
}

// perInterface counts a capture file's packets by interface name.
func perInterface(t *testing.T, file string) map[string]int {
	t.Helper()
	out := tshark(t, "-r", file, "-T", "fields", "-e", "frame.interface_name")
	per := map[string]int{}
	for _, n := range strings.Fields(out) {
		per[n]++
	}
	return per
}

// statsBlocks reads a pcapng file with pcapgo and returns its interface
// names in order and the statistics blocks by interface name.
func statsBlocks(t *testing.T, file string) ([]string, map[string]pcapgo.NgInterfaceStatistics) {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	byID := map[int]pcapgo.NgInterfaceStatistics{}
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true,
		StatisticsCallback: func(id int, s pcapgo.NgInterfaceStatistics) { byID[id] = s }})
	if err != nil {
		t.Fatalf("read %s: %v", file, err)
	}
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", file, err)
		}
	}
	var names []string
	stats := map[string]pcapgo.NgInterfaceStatistics{}
	for i := range r.NInterfaces() {
		ifc, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ifc.Name)
		if s, ok := byID[i]; ok {
			stats[ifc.Name] = s
		}
	}
	return names, stats
}

// wantSentAccounted checks a capture of lab/0's eth0 whose summary is sum
// against the sent packets: each was delivered or dropped at a named
// place, and the file is valid and holds the delivered ones. It returns
// the file's statistics block of lab/0:eth0, whether there is one, and
// the drops that block should count.
func wantSentAccounted(t *testing.T, file string, sum map[string]int, sent int) (pcapgo.NgInterfaceStatistics, bool, uint64) {
	t.Helper()
	// if_dropped is the interface's own drop counter, not a count of the
	// captured packets, so it is not part of the sum.
	if got := sum["packets"] + sum["kernel_dropped"] + sum["agent_dropped"] + sum["api_dropped"]; got != sent {
		t.Errorf("delivered %d + dropped (kernel %d, agent %d, api %d) = %d, want the %d sent",
			sum["packets"], sum["kernel_dropped"], sum["agent_dropped"], sum["api_dropped"], got, sent)
	}
	capinfos(t, file)
	info, err := exec.Command("capinfos", "-M", "-c", file).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos -M -c: %v\n%s", err, info)
	}
	if want := fmt.Sprintf("Number of packets:   %d\n", sum["packets"]); !strings.Contains(string(info), want) {
		t.Errorf("the file does not hold the %d packets delivered:\n%s", sum["packets"], info)
	}
	_, stats := statsBlocks(t, file)
	s, ok := stats["lab/0:eth0"]
	return s, ok, uint64(sum["kernel_dropped"] + sum["if_dropped"] + sum["agent_dropped"] + sum["api_dropped"])
}

// wantCounts compares per-interface packet counts.
func wantCounts(t *testing.T, got map[string]int, want map[string]int) {
	t.Helper()
	for name, n := range want {
		if got[name] != n {
			t.Errorf("%s has %d packets, want %d (all: %v)", name, got[name], n, got)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("unexpected packets on %s (all: %v)", name, got)
		}
	}
}

var vmRSSRe = regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`)

// rssKiB returns a process's resident set size.
func rssKiB(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	m := vmRSSRe.FindSubmatch(b)
	if m == nil {
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	return strconv.Atoi(string(m[1]))
}

// freeze stops p (SIGSTOP) until the test ends, as a hung process that
// keeps its connections open.
func freeze(t *testing.T, p *testenv.Proc) {
	t.Helper()
	if err := p.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Signal(syscall.SIGCONT) }) // before testenv stops it
	waitState(t, p.Cmd.Process.Pid, "T", 5*time.Second)
}

// stopTimed stops cl's capture (see stopStdin), fails t unless ssh exits
// within bound ("stop took D what, want want"), logs how long it took and
// returns its exit status.
func stopTimed(t *testing.T, cl *sshClient, bound time.Duration, what, want string) int {
	t.Helper()
	start := time.Now()
	cl.Stdin.Close()
	code := exitCode(t, cl, 20*time.Second)
	took := time.Since(start)
	if took > bound {
		t.Errorf("stop took %v %s, want %s", took, what, want)
	}
	t.Logf("stop %s took %v", what, took)
	return code
}

// waitAccounted waits until cl's progress lines of lab/0 (--progress)
// account for n packets, written or dropped.
func waitAccounted(t *testing.T, cl lineSource, n int) {
	t.Helper()
	progress := regexp.MustCompile(`^pcap: lab/0: progress packets=(\d+) bytes=\d+ dropped=(\d+)$`)
	waitUntil(t, 60*time.Second, "the agent to account for the burst", func() bool {
		for _, l := range cl.Lines(progress) {
			m := progress.FindStringSubmatch(l)
			p, _ := strconv.Atoi(m[1])
			d, _ := strconv.Atoi(m[2])
			if p+d >= n {
				return true
			}
		}
		return false
	})
}

// waitState waits until a process is in the given /proc state (e.g. "T"
// for stopped).
func waitState(t *testing.T, pid int, state string, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err == nil {
			// pid (comm) state …: comm may hold spaces, so cut at the last ')'.
			if i := strings.LastIndexByte(string(b), ')'); i >= 0 && strings.HasPrefix(string(b[i+1:]), " "+state+" ") {
				return
			}
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			t.Fatalf("process %d not in state %s within %v", pid, state, timeout)
		}
	}
}
