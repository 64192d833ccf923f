package integration

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// Helpers of the reliability and security suite (reliability_*_test.go,
// security_*_test.go). Names start with "rel" so they never collide with
// the helpers of the other integration tests.

// relSoak reports whether the long variants run (PCAP_SOAK=1, make soak).
func relSoak() bool { return os.Getenv("PCAP_SOAK") == "1" }

// relLabOptions configure newRelLab.
type relLabOptions struct {
	VMs int
	// AgentConfig changes every agent's config (see agentOptions.Config).
	AgentConfig func(*agent.Config)
	// AgentMaxCaptures is each agent's max_captures (default 8).
	AgentMaxCaptures int
	// APIConfig changes the API's config (see apiOptions.Config).
	APIConfig func(*api.Config)
	// Operators is how many operator keys the API trusts (default 1).
	Operators int
	// PinStranger lists VMs whose agent the API pins with another host
	// key than the agent's own: the API must refuse to talk to them.
	PinStranger map[int]bool
}

// relLab is a capLab whose API client key the test knows.
type relLab struct {
	*capLab
	APIKey keyPair // the key the API presents to agents
}

// newRelLab is newCapLab with control over both configs: VM namespaces
// behind a bridge, an agent on each VM's eth0 address (port 9494), and
// pcap-api at 198.18.0.1:2222 in the LAN namespace with a static group
// "lab" of every VM.
func newRelLab(t *testing.T, o relLabOptions) *relLab {
	t.Helper()
	c := &relLab{capLab: &capLab{lab: newLab(t, o.VMs, nil), Dir: t.TempDir()}}
	apiKey := newKeyPair(t, c.Dir, "api_client")
	c.APIKey = apiKey
	maxCaptures := o.AgentMaxCaptures
	if maxCaptures == 0 {
		maxCaptures = 8
	}
	var pins []keyPair
	var addrs []string
	for i, vm := range c.VMs {
		addr := c.vmAddr(i) + ":9494"
		addrs = append(addrs, addr)
		a := startAgent(t, agentOptions{Netns: vm, Listen: addr, ClientKeys: []keyPair{apiKey}, MaxCaptures: maxCaptures, Config: o.AgentConfig})
		c.Agents = append(c.Agents, a)
		pin := a.HostKey
		if o.PinStranger[i] {
			pin = newKeyPair(t, c.Dir, fmt.Sprintf("stranger%d", i))
		}
		pins = append(pins, pin)
	}
	for i := range max(o.Operators, 1) {
		c.Operators = append(c.Operators, newKeyPair(t, c.Dir, fmt.Sprintf("operator%d", i)))
	}
	c.API = startAPI(t, apiOptions{
		Netns: c.LAN, Listen: "198.18.0.1:2222", ClientKey: apiKey, AgentKeys: pins,
		Operators: c.Operators, Groups: map[string][]string{"lab": addrs}, Config: o.APIConfig,
	})
	return c
}

// captureCounted runs a capture of -c n datagrams to port on VM i alone,
// sends them, and fails t unless ssh exits 0 (the message starts with
// what, when given) and the file holds exactly those n packets.
func (c *relLab) captureCounted(t *testing.T, what string, i, port, n int) {
	t.Helper()
	src := fmt.Sprintf("lab/%d", i)
	cl, file := c.captureFile(t, 0, "-c", fmt.Sprint(n), "-f", fmt.Sprintf("'udp dst port %d'", port), "--duration", "60s", src)
	waitStarted(t, cl, src)
	relSendUDP(t, c.VMs[i], fmt.Sprintf("198.18.0.1:%d", port), n, 100)
	if code := exitCode(t, cl, 20*time.Second); code != 0 {
		if what != "" {
			what += ": "
		}
		t.Fatalf("%sexit status %d:\n%s", what, code, cl.Output())
	}
	wantCounts(t, perInterface(t, file), map[string]int{src + ":eth0": n})
}

// relResult is how one command at the front door ended.
type relResult struct {
	Status int // exit status; -1 when the session failed
	Stdout []byte
	Stderr string
	Err    error
	Took   time.Duration
}

// relExec runs command at the API's front door with the Go SSH client
// (frontdoor.Exec), dialling from inside the API's namespace when it has
// one. ctx's end closes stdin (a stop); the command must end by itself
// otherwise (refusal, --duration, --count).
func relExec(ctx context.Context, a *apiProc, user string, auth ssh.AuthMethod, command string) relResult {
	var stdout, stderr bytes.Buffer
	var r relResult
	start := time.Now()
	run := func() error {
		r.Status, r.Err = frontdoor.Exec(ctx, frontdoor.ExecOptions{
			Addr: a.Addr,
			Config: tunnel.ClientConfig{
				User: user, Auth: []ssh.AuthMethod{auth},
				HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{a.HostKey.Signer.PublicKey()}),
				DialTimeout:     10 * time.Second,
			},
			Command: command, Stdout: &stdout, Stderr: &stderr, StopGrace: 10 * time.Second,
		})
		return nil
	}
	if a.Netns != nil {
		if err := netlab.Do(a.Netns, run); err != nil {
			r.Status, r.Err = -1, err
		}
	} else {
		run()
	}
	r.Took = time.Since(start)
	r.Stdout, r.Stderr = stdout.Bytes(), stderr.String()
	return r
}

// relDial opens a TCP connection to addr from inside ns (nil: this
// namespace).
func relDial(t *testing.T, ns *testenv.Netns, addr string) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	dial := (&net.Dialer{}).DialContext
	if ns != nil {
		dial = netlab.DialerIn(ns)
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// relSSHClient completes an SSH handshake on a connection from inside ns
// and returns the raw x/crypto client, for what tunnel's clients never
// send.
func relSSHClient(t *testing.T, ns *testenv.Netns, addr, user string, auth ssh.AuthMethod, hostKey ssh.PublicKey) *ssh.Client {
	t.Helper()
	c := relDial(t, ns, addr)
	c.SetDeadline(time.Now().Add(10 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(c, addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{hostKey}),
	})
	if err != nil {
		t.Fatalf("ssh handshake with %s: %v", addr, err)
	}
	c.SetDeadline(time.Time{})
	cl := ssh.NewClient(sc, chans, reqs)
	t.Cleanup(func() { cl.Close() })
	return cl
}

// relSendUDP sends count datagrams of size bytes from inside ns to "to",
// from this process.
func relSendUDP(t *testing.T, ns *testenv.Netns, to string, count, size int) {
	t.Helper()
	if err := relTrySendUDP(ns, to, count, size); err != nil {
		t.Fatal(err)
	}
}

// relTrySendUDP is relSendUDP for goroutines: it returns the error.
func relTrySendUDP(ns *testenv.Netns, to string, count, size int) error {
	dst, err := net.ResolveUDPAddr("udp", to)
	if err != nil {
		return err
	}
	var conn *net.UDPConn
	if err := netlab.Do(ns, func() error {
		var err error
		conn, err = net.ListenUDP("udp", nil) // unconnected: ICMP errors do not fail writes
		return err
	}); err != nil {
		return fmt.Errorf("UDP socket in %s: %w", ns.Name, err)
	}
	defer conn.Close()
	payload := make([]byte, size)
	for i := range count {
		payload[0] = byte(i)
		for tries := 0; ; tries++ {
			_, err := conn.WriteToUDP(payload, dst)
			if err == nil {
				break
			}
			if tries > 1000 {
				return fmt.Errorf("send to %s: %w", to, err)
			}
			runtime.Gosched() // the qdisc is full: try again
		}
	}
	return nil
}

// relRestartAgent ends an agent with sig and starts it again with the
// same config (address, host key, authorized keys), returning the new
// process.
func relRestartAgent(t *testing.T, a *agentProc, ns *testenv.Netns, sig syscall.Signal) *agentProc {
	t.Helper()
	args := a.Cmd.Args
	cfgFile := args[len(args)-1]
	if err := a.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if _, ok := a.Wait(15 * time.Second); !ok {
		t.Fatalf("agent did not exit within 15s of %v", sig)
	}
	p := testenv.Start(t, testenv.StartOptions{Netns: ns}, filepath.Join(testenv.Binaries(t), "pcap-agent"), "--config", cfgFile)
	m := p.WaitLine(t, listeningRe, 30*time.Second)
	return &agentProc{Proc: p, Addr: m[1], HostKey: a.HostKey}
}

// relGoroutineDump ends p with SIGQUIT, which makes the Go runtime print
// every goroutine's stack, and returns the dump.
func relGoroutineDump(t *testing.T, p *testenv.Proc) string {
	t.Helper()
	if err := p.Signal(syscall.SIGQUIT); err != nil {
		t.Fatal(err)
	}
	if _, ok := p.Wait(15 * time.Second); !ok {
		t.Fatal("no exit within 15s of SIGQUIT")
	}
	out := p.Output()
	i := strings.Index(out, "SIGQUIT: quit")
	if i < 0 {
		t.Fatalf("no goroutine dump after SIGQUIT:\n%s", out)
	}
	return out[i:]
}

// relGoroutinesIn returns the stacks of a dump whose frames mention any
// of funcs, leaving out goroutines that are only returning (see
// relGoroutineExiting).
func relGoroutinesIn(dump string, funcs ...string) []string {
	var hits []string
	for _, g := range strings.Split(dump, "\n\n") {
		if !strings.HasPrefix(g, "goroutine ") || relGoroutineExiting(g) {
			continue
		}
		for _, f := range funcs {
			if strings.Contains(g, f) {
				hits = append(hits, g)
				break
			}
		}
	}
	return hits
}

// relGoroutineExiting says whether goroutine g of a dump has finished its
// work and is only returning: its function runs its deferred calls on the
// way out (runtime.deferreturn, at most inside sync's wake-ups: a
// deferred WaitGroup.Done), or has returned into runtime.goexit. A
// WaitGroup's Wait returns while the goroutine that called Done is still
// in it, so a dump taken just after an event that waited for it (such as
// "connection-closed") may catch such a goroutine; one that waits for
// anything, or runs any code of its own, is not exiting.
func relGoroutineExiting(g string) bool {
	lines := strings.Split(g, "\n")
	if !strings.Contains(lines[0], "[runnable") && !strings.Contains(lines[0], "[running") {
		return false // waiting for something: not on its way out
	}
	var frames []string
	for _, line := range lines[1:] {
		if line != "" && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, "created by ") {
			frames = append(frames, line)
		}
	}
	if len(frames) == 0 || !strings.HasPrefix(frames[len(frames)-1], "runtime.goexit(") {
		return false
	}
	frames = frames[:len(frames)-1]
	returning := false
	for len(frames) > 0 {
		f := frames[0]
		switch {
		case strings.HasPrefix(f, "runtime.deferreturn("):
			returning = true
		case strings.HasPrefix(f, "runtime."), strings.HasPrefix(f, "sync."),
			strings.HasPrefix(f, "internal/sync."), strings.Contains(f, ".deferwrap"):
		default:
			// The first frame of the goroutine's own code: it must be
			// the goroutine's function, returning, or nothing is left.
			return returning && len(frames) == 1
		}
		frames = frames[1:]
	}
	return true // only runtime frames over goexit
}

// relThreadsOutsideNetns lists the threads of pid whose network namespace
// is not the process's own: a capture that entered a container's
// namespace and did not come back.
func relThreadsOutsideNetns(t *testing.T, pid int) []string {
	t.Helper()
	own, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid))
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, task := range tasks {
		ns, err := os.Readlink(fmt.Sprintf("/proc/%d/task/%s/ns/net", pid, task.Name()))
		if err != nil {
			continue // the thread just exited
		}
		if ns != own {
			out = append(out, task.Name()+" in "+ns)
		}
	}
	return out
}

// relCount counts the lines of p matching re.
func relCount(p lineSource, re string) int { return len(p.Lines(regexp.MustCompile(re))) }

// relWaitCount polls (bounded) until at least n lines of p match re.
func relWaitCount(t *testing.T, p lineSource, re string, n int, timeout time.Duration) {
	t.Helper()
	rx := regexp.MustCompile(re)
	waitUntil(t, timeout, fmt.Sprintf("%d lines matching %q", n, re), func() bool { return len(p.Lines(rx)) >= n })
}

// relKeyAuth is public key authentication with k.
func relKeyAuth(k keyPair) ssh.AuthMethod { return ssh.PublicKeys(k.Signer) }
