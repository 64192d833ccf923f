package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/integration/testreq"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// Helpers of the scale-out tests (scaleout_test.go): several pcap-api
// instances with one config (one host key, one agent client key) behind
// a real HAProxy in TCP mode, as a foundation runs them behind its load
// balancer.

// apiFarm is pcap-api instances behind HAProxy.
type apiFarm struct {
	APIs []*apiProc
	// LB is the front door clients use: HAProxy's address, with the host
	// key every instance shares.
	LB      *apiProc
	HAProxy *testenv.Proc
	cfgs    []string // each instance's config file
	stats   string   // HAProxy's admin socket
	// owner is the test whose cleanup stops the instances, also those
	// restarted by a subtest.
	owner *testing.T
}

var (
	cfgListenRe     = regexp.MustCompile(`(?m)^listen: .*$`)
	cfgHTTPListenRe = regexp.MustCompile(`(?m)^http_listen: .*$`)
)

// newAPIFarm replaces base by n instances started from base's own config
// file, each on its own ports of base's host (in base's namespace), and
// puts HAProxy in front of them: TCP mode, roundrobin, health checks on
// each instance's GET /health. It returns once HAProxy sees every
// instance up.
func newAPIFarm(t *testing.T, base *apiProc, n int) *apiFarm {
	t.Helper()
	haproxy := testreq.Tool(t, "haproxy", "`make deps` installs Debian's haproxy")
	cfgFile := base.Cmd.Args[len(base.Cmd.Args)-1]
	cfg, err := os.ReadFile(cfgFile)
	if err != nil {
		t.Fatal(err)
	}
	base.Stop(15 * time.Second)
	host, _ := splitHostPort(t, base.Addr)
	next := 2300
	port := func() int {
		if base.Netns != nil { // the test's own namespace: every port is free
			next++
			return next
		}
		return freePortOn(t, host)
	}
	dir := t.TempDir()
	f := &apiFarm{owner: t}
	var servers strings.Builder
	for i := range n {
		sshPort, httpPort := port(), port()
		c := cfgListenRe.ReplaceAll(cfg, fmt.Appendf(nil, "listen: %q", net.JoinHostPort(host, strconv.Itoa(sshPort))))
		c = cfgHTTPListenRe.ReplaceAll(c, fmt.Appendf(nil, "http_listen: %q", net.JoinHostPort(host, strconv.Itoa(httpPort))))
		file := filepath.Join(dir, fmt.Sprintf("api%d.yml", i))
		if err := os.WriteFile(file, c, 0o644); err != nil {
			t.Fatal(err)
		}
		f.cfgs = append(f.cfgs, file)
		f.APIs = append(f.APIs, nil)
		f.start(t, i, base)
		fmt.Fprintf(&servers, "  server api%d %s check port %d\n", i, net.JoinHostPort(host, strconv.Itoa(sshPort)), httpPort)
	}

	// A short directory: a unix socket path has at most 107 bytes.
	sockDir, err := os.MkdirTemp("", "pcap-lb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	f.stats = filepath.Join(sockDir, "admin.sock")
	lbAddr := net.JoinHostPort(host, strconv.Itoa(port()))
	// Checks every 250 ms, down after 2 failures: an instance draining
	// (drain_delay) is out of the rotation before its listener closes. A
	// connection to an instance that refuses it (killed) is redispatched
	// to another at once.
	lbCfg := fmt.Sprintf(`global
  stats socket %s mode 600 level admin
  log stderr format raw local0 info
defaults
  mode tcp
  log global
  option tcplog
  timeout connect 5s
  timeout client 1h
  timeout server 1h
  timeout check 5s
  retries 2
  option redispatch 1
frontend pcap
  bind %s
  default_backend pcap_api
backend pcap_api
  balance roundrobin
  option httpchk GET /health
  http-check expect status 200
  default-server inter 250ms fall 2 rise 2
%s`, f.stats, lbAddr, servers.String())
	lbFile := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(lbFile, []byte(lbCfg), 0o644); err != nil {
		t.Fatal(err)
	}
	// Foreground (-db), our own config and ports, stopped by PID at
	// cleanup: never the Debian package's service.
	f.HAProxy = testenv.Start(t, testenv.StartOptions{Netns: base.Netns}, haproxy, "-db", "-f", lbFile)
	f.LB = &apiProc{Proc: f.HAProxy, Addr: lbAddr, HostKey: base.HostKey, Netns: base.Netns}
	for i := range n {
		f.waitServer(t, i, "UP", 30*time.Second)
	}
	return f
}

// start starts instance i from its config file.
func (f *apiFarm) start(t *testing.T, i int, like *apiProc) {
	t.Helper()
	p := testenv.Start(f.owner, testenv.StartOptions{Netns: like.Netns}, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", f.cfgs[i])
	m := p.WaitLine(t, apiListeningRe, 30*time.Second)
	f.APIs[i] = &apiProc{Proc: p, Addr: m[1], HTTPAddr: m[2], HostKey: like.HostKey, Netns: like.Netns}
}

// restart ends instance i with sig, waits for its exit, starts it again
// with the same config and returns how long it was away: from the signal
// until the new process listens.
func (f *apiFarm) restart(t *testing.T, i int, sig syscall.Signal) time.Duration {
	t.Helper()
	old := f.APIs[i]
	start := time.Now()
	if err := old.Signal(sig); err != nil {
		t.Fatal(err)
	}
	if _, ok := old.Wait(30 * time.Second); !ok {
		t.Fatalf("api%d did not exit within 30s of %v", i, sig)
	}
	f.start(t, i, old)
	return time.Since(start)
}

// lbServer is one server line of HAProxy's statistics.
type lbServer struct {
	Status       string // UP, DOWN, "UP 1/2" (going down), "DOWN 1/2" (coming up)
	Retries      int    // connection retries (wretr)
	Redispatches int    // connections moved to another server (wredis)
	Downs        int    // UP to DOWN transitions (chkdown)
}

// lbStats asks HAProxy's admin socket for each server's state.
func (f *apiFarm) lbStats() (map[string]lbServer, error) {
	c, err := net.DialTimeout("unix", f.stats, 5*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, "show stat\n"); err != nil {
		return nil, err
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	col := map[string]int{}
	out := map[string]lbServer{}
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ",")
		if h, ok := strings.CutPrefix(sc.Text(), "# "); ok {
			for i, name := range strings.Split(h, ",") {
				col[name] = i
			}
			continue
		}
		if len(col) == 0 || len(fields) <= col["wredis"] || fields[col["pxname"]] != "pcap_api" || !strings.HasPrefix(fields[col["svname"]], "api") {
			continue
		}
		num := func(name string) int {
			n, _ := strconv.Atoi(fields[col[name]])
			return n
		}
		out[fields[col["svname"]]] = lbServer{Status: fields[col["status"]], Retries: num("wretr"), Redispatches: num("wredis"), Downs: num("chkdown")}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no pcap_api servers in HAProxy's statistics:\n%s", b)
	}
	return out, nil
}

// waitServer waits (bounded) until HAProxy reports instance i in state.
func (f *apiFarm) waitServer(t *testing.T, i int, state string, timeout time.Duration) {
	t.Helper()
	var last map[string]lbServer
	var lastErr error
	waitUntil(t, timeout, fmt.Sprintf("HAProxy to see api%d %s", i, state), func() bool {
		last, lastErr = f.lbStats()
		return lastErr == nil && last[fmt.Sprintf("api%d", i)].Status == state
	})
}

// servedBy returns the instances whose log has a line matching re.
func (f *apiFarm) servedBy(re string) []int {
	rx := regexp.MustCompile(re)
	var out []int
	for i, a := range f.APIs {
		if len(a.Lines(rx)) > 0 {
			out = append(out, i)
		}
	}
	return out
}

// Output returns everything written so far (relLockedBuffer, of
// security_agent_test.go, as a lineSource).
func (l *relLockedBuffer) Output() string { return l.String() }

// Lines returns the lines written so far that match re.
func (l *relLockedBuffer) Lines(re *regexp.Regexp) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		if re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// lbCapture is a capture through the load balancer run by the CLIs'
// client (frontdoor.Run, as cf pcap and pcap-bosh run it) in the
// background, into a file.
type lbCapture struct {
	File    string
	Stderr  *relLockedBuffer
	Started time.Time
	cancel  context.CancelFunc
	done    chan struct{}
	status  int
	err     error
}

// startCapture starts `capture args…` through the load balancer as the
// static operator key. Safe to call from goroutines (it never fails t).
func (f *apiFarm) startCapture(t *testing.T, key keyPair, args ...string) *lbCapture {
	ctx, cancel := context.WithCancel(context.Background())
	c := &lbCapture{File: filepath.Join(t.TempDir(), "capture.pcapng"), Stderr: &relLockedBuffer{}, Started: time.Now(), cancel: cancel, done: make(chan struct{})}
	req, perr := capturecmd.ParseCommand(capturecmd.Quote(append([]string{"capture"}, args...)), io.Discard)
	o := frontdoor.Options{
		Addr: f.LB.Addr,
		Config: tunnel.ClientConfig{
			User: "static", Auth: []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{f.LB.HostKey.Signer.PublicKey()}),
			DialTimeout:     10 * time.Second,
			// A silent instance is noticed within 4 s.
			KeepaliveInterval: time.Second,
		},
		Request: req, Output: c.File, Stderr: c.Stderr,
	}
	go func() {
		defer close(c.done)
		if perr != nil {
			c.status, c.err = -1, perr
			return
		}
		run := func() error {
			c.status, c.err = frontdoor.Run(ctx, o)
			return nil
		}
		if f.LB.Netns == nil {
			run()
		} else if err := netlab.Do(f.LB.Netns, run); err != nil {
			c.status, c.err = -1, err
		}
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-c.done:
		case <-time.After(20 * time.Second):
			t.Errorf("a capture through the load balancer did not end within 20s of its stop")
		}
	})
	return c
}

// waitLine waits (bounded) for a status line matching re; it fails when
// the capture ends first or the time runs out.
func (c *lbCapture) waitLine(re string, timeout time.Duration) error {
	rx := regexp.MustCompile(re)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for len(c.Stderr.Lines(rx)) == 0 {
		select {
		case <-tick.C:
		case <-c.done:
			if len(c.Stderr.Lines(rx)) > 0 {
				return nil
			}
			return fmt.Errorf("capture ended (status %d, %v) without a line matching %q:\n%s", c.status, c.err, re, c.Stderr.Output())
		case <-deadline.C:
			return fmt.Errorf("no line matching %q within %v:\n%s", re, timeout, c.Stderr.Output())
		}
	}
	return nil
}

// waitStarted waits for the "started" line of every source.
func (c *lbCapture) waitStarted(timeout time.Duration, sources ...string) error {
	for _, s := range sources {
		if err := c.waitLine(`^pcap: `+regexp.QuoteMeta(s)+`: started `, timeout); err != nil {
			return err
		}
	}
	return nil
}

// wait waits (bounded) for the capture to end and returns its remote
// exit status and error.
func (c *lbCapture) wait(timeout time.Duration) (int, error) {
	select {
	case <-c.done:
		return c.status, c.err
	case <-time.After(timeout):
		return -1, fmt.Errorf("capture did not end within %v:\n%s", timeout, c.Stderr.Output())
	}
}

// stop stops the capture as Ctrl-C does.
func (c *lbCapture) stop() { c.cancel() }

// pcapngCounts counts a pcapng file's packets by interface name with
// pcapgo. On a file still being written it returns what it read before
// the cut, with the error.
func pcapngCounts(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return nil, err
	}
	per := map[string]int{}
	for {
		_, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return per, nil
		}
		if err != nil {
			return per, err
		}
		ifc, err := r.Interface(ci.InterfaceIndex)
		if err != nil {
			return per, err
		}
		per[ifc.Name]++
	}
}

var agentSessionRe = regexp.MustCompile(`"session":"([0-9a-f]+)"`)

// agentSessions returns, for each agent, the SSH session (one connection
// from one pcap-api instance) of the one capture with filter.
func agentSessions(t *testing.T, agents []*agentProc, filter string) []string {
	t.Helper()
	var out []string
	for i, a := range agents {
		lines := a.Lines(regexp.MustCompile(`"msg":"capture-started".*"filter":` + regexp.QuoteMeta(strconv.Quote(filter))))
		if len(lines) != 1 {
			t.Fatalf("agent %d: %d captures with filter %q, want 1", i, len(lines), filter)
		}
		out = append(out, agentSessionRe.FindStringSubmatch(lines[0])[1])
	}
	return out
}

// waitSessionEnded waits (bounded) until agent a has logged capture-ended
// for every capture it started on session: their slots are free.
func waitSessionEnded(t *testing.T, a *agentProc, session string, timeout time.Duration) {
	t.Helper()
	on := `.*"session":"` + session + `"`
	started := len(a.Lines(regexp.MustCompile(`"msg":"capture-started"` + on)))
	a.WaitCount(t, regexp.MustCompile(`"msg":"capture-ended"`+on), started, timeout)
}
