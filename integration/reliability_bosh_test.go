package integration

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityBOSH runs the faults of the BOSH path on one BOSH world:
// the client's disk fills up, the user's token expires mid-capture, and
// the director is slow or down when a capture starts.
func TestReliabilityBOSH(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 2)

	t.Run("disk full", func(t *testing.T) { relDiskFull(t, e) })
	t.Run("token expires mid-capture", func(t *testing.T) { relTokenExpires(t, e) })
	t.Run("director slow or down", func(t *testing.T) { relDirectorDown(t, e) })
}

// relDiskFull: pcap-bosh writes into a 256 KiB tmpfs while a VM sends a
// megabyte. It stops the capture when the disk is full, says so, exits
// non-zero, and the file holds what fitted: Wireshark's tools read every
// whole packet in it and report the last one as cut short.
func relDiskFull(t *testing.T, e *boshEnv) {
	dir := filepath.Join(t.TempDir(), "small")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	testenv.Run(t, "mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", dir)
	// Registered after TempDir's removal, so it runs before it.
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", dir, err, out)
		}
	})
	out := filepath.Join(dir, "capture.pcapng")
	endedBefore := relCount(e.Agents[0], `"msg":"capture-ended"`)
	p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + t.TempDir(),
		"BOSH_ENVIRONMENT=" + e.Director.URL(), "BOSH_CA_CERT=" + e.CAFile,
		"BOSH_CLIENT=ops", "BOSH_CLIENT_SECRET=ops-secret"}},
		filepath.Join(testenv.Binaries(t), "pcap-bosh"), append([]string{"-d", "cf", "router/0",
			"-f", "udp dst port 7106", "--duration", "60s", "-o", out}, boshAPIFlags(e.API)...)...)
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started `), 30*time.Second)
	relSendUDP(t, e.Lab.VMs[0], "198.18.0.1:7106", 1000, 1000)

	if code := boshExitCode(t, p, 30*time.Second); code != 1 {
		t.Errorf("pcap-bosh exited %d on a full disk, want 1:\n%s", code, p.Output())
	}
	want := "pcap-bosh: write " + out + ": no space left on device (the file holds what was written before)"
	if len(p.Lines(regexp.MustCompile("^"+regexp.QuoteMeta(want)+"$"))) != 1 {
		t.Errorf("no line %q in:\n%s", want, p.Output())
	}
	// The capture was stopped everywhere, not left running.
	relWaitCount(t, e.Agents[0], `"msg":"capture-ended"`, endedBefore+1, 10*time.Second)
	e.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-ended","user":"bosh:client:ops".*"filter":"udp dst port 7106"`), 10*time.Second)

	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() < 200<<10 {
		t.Errorf("the file holds %d bytes, want the disk filled (256 KiB)", fi.Size())
	}
	// capinfos and tshark read it. The last block was almost surely cut
	// by the full disk, which they report as "cut short in the middle of
	// a packet" (and exit non-zero); that is their only complaint.
	const cutShort = "appears to have been cut short in the middle of a packet"
	info, err := exec.Command("capinfos", "-c", out).CombinedOutput()
	t.Logf("capinfos on the cut file (%v):\n%s", err, info)
	m := regexp.MustCompile(`Number of packets:\s+(\d+)`).FindSubmatch(info)
	if m == nil || string(m[1]) == "0" {
		t.Errorf("capinfos reads no packet in the file:\n%s", info)
	}
	if err != nil && !strings.Contains(string(info), cutShort) {
		t.Errorf("capinfos fails on the file for another reason than its cut end: %v\n%s", err, info)
	}
	ts := exec.Command("tshark", "-r", out, "-T", "fields", "-e", "udp.dstport")
	var stderr strings.Builder
	ts.Stderr = &stderr
	fields, err := ts.Output()
	n := 0
	for _, f := range strings.Fields(string(fields)) {
		if f != "7106" {
			t.Errorf("tshark reads a packet to port %s", f)
		}
		n++
	}
	if m != nil && fmt.Sprint(n) != string(m[1]) {
		t.Errorf("tshark reads %d packets, capinfos %s", n, m[1])
	}
	if s := strings.TrimSpace(stderr.String()); err != nil && !strings.Contains(s, cutShort) {
		t.Errorf("tshark fails on the file for another reason than its cut end: %v: %q", err, s)
	}
}

// relTokenExpires: authorisation happens when a capture starts. A capture
// started with a token that expires a few seconds later goes on after the
// director refuses that token, and captures what is sent afterwards.
// (pcap-api verifies tokens with 30 s of leeway for clock skew; the
// director, here the fake, with none. Under PCAP_SOAK=1 the capture also
// outlives that leeway.)
func relTokenExpires(t *testing.T, e *boshEnv) {
	// Long enough to start the capture on a loaded machine.
	tok := e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli", Lifetime: 8 * time.Second})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan relResult, 1)
	go func() {
		done <- relExec(ctx, e.API, "bosh", ssh.Password(tok), "capture -d cf router -f 'udp dst port 7107' -c 6 --duration 60s")
	}()
	e.agentsStarted(t, "udp dst port 7107")

	// Wait (bounded) until the director refuses the token.
	dc := relDirectorClient(t, e)
	waitUntil(t, 30*time.Second, "the director to refuse the expired token", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := dc.Deployments(ctx, tok)
		return errors.Is(err, director.ErrUnauthorized)
	})
	if relSoak() {
		// Long enough for pcap-api itself to refuse the token (it allows
		// 30 s of clock skew): a new login with it fails, the capture
		// started with it goes on.
		deadline := time.Now().Add(90 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			r := relExec(ctx, e.API, "bosh", ssh.Password(tok), "ssh-code")
			cancel()
			if r.Err != nil && strings.Contains(r.Err.Error(), "unable to authenticate") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pcap-api still accepts the expired token after 90 s: %v", r.Err)
			}
			time.Sleep(time.Second) // polling interval, not synchronisation
		}
		e.API.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused".*"error":"uaa: token has expired"`), 5*time.Second)
	}
	for _, vm := range e.Lab.VMs {
		relSendUDP(t, vm, "198.18.0.1:7107", 6, 100)
	}
	var r relResult
	select {
	case r = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("the capture did not end after its count")
	}
	if r.Status != 0 || r.Err != nil {
		t.Fatalf("capture with a token that expired: status %d, err %v:\n%s", r.Status, r.Err, r.Stderr)
	}
	if !strings.Contains(r.Stderr, "pcap: summary: limit-reached sources=2 packets=12 ") {
		t.Errorf("the capture did not get the 12 packets sent after the token expired:\n%s", r.Stderr)
	}
	f := filepath.Join(t.TempDir(), "expired.pcapng")
	if err := os.WriteFile(f, r.Stdout, 0o644); err != nil {
		t.Fatal(err)
	}
	wantCounts(t, perInterface(t, f), map[string]int{boshRouterIface(0): 6, boshRouterIface(1): 6})
}

// relDirectorClient is a director client from this process into the
// LAN, trusting the env's CA.
func relDirectorClient(t *testing.T, e *boshEnv) *director.Client {
	t.Helper()
	pem, err := os.ReadFile(e.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, DialContext: netlab.DialerIn(e.Lab.LAN)}
	t.Cleanup(tr.CloseIdleConnections)
	return &director.Client{URL: e.Director.URL(), HTTP: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// relDirectorDown: a pcap-api whose director (behind a proxy the test
// controls) answers, then stalls, then is gone. With the bosh timeout at
// 1 s, each capture start fails within a few seconds with the reason.
func relDirectorDown(t *testing.T, e *boshEnv) {
	const bound = 5 * time.Second
	proxy := newRelProxy(t, e.Lab.LAN, strings.TrimPrefix(e.Director.URL(), "https://"))
	var hostKeys []keyPair
	for _, a := range e.Agents {
		hostKeys = append(hostKeys, a.HostKey)
	}
	opts := apiOptions{
		Netns: e.Lab.LAN, Listen: "198.18.0.1:0", ClientKey: e.APIKey, AgentKeys: hostKeys,
		Config: func(c *api.Config) {
			c.BOSH = &api.BOSHConfig{DirectorURL: "https://" + proxy.Addr(), CACertFile: e.CAFile, Timeout: time.Second}
		},
	}
	a := startAPI(t, opts)
	tok := e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli"})
	run := func(command string) relResult {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		return relExec(ctx, a, "bosh", ssh.Password(tok), command)
	}

	// The director answers: the API learns its UUID and UAA.
	if r := run("ssh-code"); r.Status != 0 || r.Err != nil {
		t.Fatalf("ssh-code through the proxy: status %d, err %v: %s", r.Status, r.Err, r.Stderr)
	}

	proxy.Stall()
	r := run("capture -d cf router/0 --duration 5s")
	t.Logf("director stalled: %v, %q", r.Took, r.Stderr)
	want := "pcap: error: internal reason=\"director unreachable: context deadline exceeded (Client.Timeout exceeded while awaiting headers)\"\n"
	if r.Status != 1 || r.Stderr != want || len(r.Stdout) != 0 {
		t.Errorf("director stalled: status %d, %d bytes of capture, stderr:\n%s\nwant status 1, none, stderr:\n%s", r.Status, len(r.Stdout), r.Stderr, want)
	}
	if r.Took > bound {
		t.Errorf("director stalled: the refusal took %v, want within %v", r.Took, bound)
	}

	proxy.Down()
	r = run("capture -d cf router/0 --duration 5s")
	t.Logf("director down: %v, %q", r.Took, r.Stderr)
	want = fmt.Sprintf("pcap: error: internal reason=\"director unreachable: dial tcp %s: connect: connection refused\"\n", proxy.Addr())
	if r.Status != 1 || r.Stderr != want || len(r.Stdout) != 0 {
		t.Errorf("director down: status %d, %d bytes of capture, stderr:\n%s\nwant status 1, none, stderr:\n%s", r.Status, len(r.Stdout), r.Stderr, want)
	}
	if r.Took > bound {
		t.Errorf("director down: the refusal took %v, want within %v", r.Took, bound)
	}
	for _, re := range []string{`"msg":"capture-refused".*"code":"internal".*Client.Timeout exceeded`, `"msg":"capture-refused".*"code":"internal".*connection refused`} {
		a.WaitLine(t, regexp.MustCompile(re), 5*time.Second)
	}

	// An API that has never reached the director cannot check a token
	// (it learns the director's UAA and UUID from it): the login fails
	// within the bound, and the API logs why.
	fresh := startAPI(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r = relExec(ctx, fresh, "bosh", ssh.Password(tok), "capture -d cf router/0 --duration 5s")
	t.Logf("director down at the first login: %v, %v", r.Took, r.Err)
	if r.Err == nil || !strings.Contains(r.Err.Error(), "unable to authenticate") || r.Took > bound {
		t.Errorf("login with the director down: took %v, err %v; want a refused login within %v", r.Took, r.Err, bound)
	}
	fresh.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused","user":"bosh".*"error":"boshresolver: director info: director unreachable: dial tcp `+regexp.QuoteMeta(proxy.Addr())+`: connect: connection refused"`), 5*time.Second)
}

// relProxy is a TCP proxy inside a namespace in front of target, which
// the test switches from forwarding, to stalling (connections accepted
// and never answered), to down (the port refuses connections).
type relProxy struct {
	l      net.Listener
	ns     *testenv.Netns
	target string
	stall  atomic.Bool

	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func newRelProxy(t *testing.T, ns *testenv.Netns, target string) *relProxy {
	t.Helper()
	host, _, err := net.SplitHostPort(target)
	if err != nil {
		t.Fatal(err)
	}
	l, err := netlab.ListenIn(ns, net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatal(err)
	}
	p := &relProxy{l: l, ns: ns, target: target}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		p.Down()
		p.wg.Wait()
	})
	return p
}

func (p *relProxy) Addr() string { return p.l.Addr().String() }

// Stall makes connections hang: those open are closed (clients keep
// idle HTTP connections), new ones are accepted and never answered.
func (p *relProxy) Stall() {
	p.stall.Store(true)
	p.closeConns()
}

// Down closes the listener and every connection: new connections are
// refused.
func (p *relProxy) Down() {
	p.l.Close()
	p.closeConns()
}

func (p *relProxy) closeConns() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *relProxy) track(c net.Conn) {
	p.mu.Lock()
	p.conns = append(p.conns, c)
	p.mu.Unlock()
}

func (p *relProxy) serve() {
	defer p.wg.Done()
	dial := netlab.DialerIn(p.ns)
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.track(c)
		if p.stall.Load() {
			continue // held open until cleanup
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		up, err := dial(ctx, "tcp", p.target)
		cancel()
		if err != nil {
			c.Close()
			continue
		}
		p.track(up)
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			io.Copy(dst, src)
			dst.Close()
			src.Close()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}
