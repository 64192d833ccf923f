package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestSecurityHostileSSH speaks SSH to the front door and to an agent the
// way their own clients never do: channel types and requests they do not
// serve, packets over SSH's 256 KiB limit, payloads over the protocol's
// own limits, and connections that never speak. Each is refused or cut
// off, and both keep serving.
func TestSecurityHostileSSH(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 1})
	apiHost := c.API.HostKey.Signer.PublicKey()
	agent := c.Agents[0]
	agentHost := agent.HostKey.Signer.PublicKey()
	frontDoor := func(t *testing.T) *ssh.Client {
		return relSSHClient(t, c.LAN, c.API.Addr, "static", relKeyAuth(c.Operators[0]), apiHost)
	}
	toAgent := func(t *testing.T) *ssh.Client {
		return relSSHClient(t, c.LAN, agent.Addr, "pcap-api", relKeyAuth(c.APIKey), agentHost)
	}
	// stillServes runs a short capture through the API (and so the agent).
	stillServes := func(t *testing.T) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := relExec(ctx, c.API, "static", relKeyAuth(c.Operators[0]), "capture --duration 1s lab")
		if r.Status != 0 || r.Err != nil || !strings.Contains(r.Stderr, "pcap: summary: limit-reached sources=1 ") {
			t.Errorf("a capture afterwards: status %d, err %v:\n%s", r.Status, r.Err, r.Stderr)
		}
	}
	directTCPIP := ssh.Marshal(struct {
		Host     string
		Port     uint32
		OrigHost string
		OrigPort uint32
	}{"127.0.0.1", 22, "198.18.0.1", 4242})

	wantUnknownChannel := func(t *testing.T, cl *ssh.Client, typ string, payload []byte) {
		t.Helper()
		ch, _, err := cl.OpenChannel(typ, payload)
		if err == nil {
			ch.Close()
			t.Errorf("channel %q was accepted", typ)
			return
		}
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType || oce.Message != fmt.Sprintf("unknown channel type %q", typ) {
			t.Errorf("channel %q: %v, want unknown channel type", typ, err)
		}
	}

	t.Run("front door: channel types", func(t *testing.T) {
		cl := frontDoor(t)
		for _, typ := range []struct {
			name    string
			payload []byte
		}{
			{"direct-tcpip", directTCPIP}, {"forwarded-tcpip", directTCPIP}, {"x11", ssh.Marshal(struct {
				Host string
				Port uint32
			}{"127.0.0.1", 6000})},
			{"auth-agent@openssh.com", nil}, {"direct-streamlocal@openssh.com", nil}, {agentproto.ChannelCapture, nil},
		} {
			wantUnknownChannel(t, cl, typ.name, typ.payload)
		}
	})

	t.Run("front door: global requests", func(t *testing.T) {
		cl := frontDoor(t)
		for _, req := range []string{"tcpip-forward", "streamlocal-forward@openssh.com", "cancel-tcpip-forward", "no-more-sessions@openssh.com"} {
			ok, _, err := cl.SendRequest(req, true, ssh.Marshal(struct {
				Addr string
				Port uint32
			}{"0.0.0.0", 8022}))
			if ok || err != nil {
				t.Errorf("global request %s: ok %v, err %v; want refused", req, ok, err)
			}
		}
	})

	t.Run("front door: session requests", func(t *testing.T) {
		cl := frontDoor(t)
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if err := s.RequestPty("xterm", 40, 80, ssh.TerminalModes{}); err == nil {
			t.Error("pty-req was accepted")
		}
		if err := s.RequestSubsystem("sftp"); err == nil {
			t.Error("subsystem sftp was accepted")
		}
		for _, req := range []string{"x11-req", "auth-agent-req@openssh.com", "window-change", "break", "xon-xoff"} {
			if ok, err := s.SendRequest(req, true, nil); ok || err != nil {
				t.Errorf("session request %s: ok %v, err %v; want refused", req, ok, err)
			}
		}
		// env is accepted (OpenSSH sends LANG) and ignored.
		if err := s.Setenv("LD_PRELOAD", "/tmp/evil.so"); err != nil {
			t.Errorf("env: %v", err)
		}
		var stderr strings.Builder
		s.Stderr = &stderr
		err = s.Run("capture -s 0 lab")
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 1 || stderr.String() != relErrLine("bad-request", "snaplen 0 is out of range 1..262144") {
			t.Errorf("exec after refused requests: %v, stderr %q", err, stderr.String())
		}

		// A second exec while the first runs is refused.
		s2, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s2.Close()
		// No stdin: EOF at once, which does not stop the capture.
		var stderr2 relLockedBuffer
		s2.Stderr = &stderr2
		if err := s2.Start("capture lab"); err != nil {
			t.Fatal(err)
		}
		waitUntil(t, 30*time.Second, "the capture to start", func() bool { return strings.Contains(stderr2.String(), "pcap: lab/0: started ") })
		if ok, err := s2.SendRequest("exec", true, ssh.Marshal(struct{ Command string }{"capture lab"})); ok || err != nil {
			t.Errorf("a second exec: ok %v, err %v; want refused", ok, err)
		}
		if err := s2.Signal(ssh.SIGINT); err != nil { // the CLIs' stop
			t.Fatal(err)
		}
		if err := s2.Wait(); err != nil {
			t.Errorf("the first exec: %v\n%s", err, stderr2.String())
		}

		// A shell runs nothing.
		s3, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s3.Close()
		var stderr3 strings.Builder
		s3.Stderr = &stderr3
		if err := s3.Shell(); err != nil {
			t.Fatalf("shell: %v", err)
		}
		err = s3.Wait()
		if !errors.As(err, &ee) || ee.ExitStatus() != 1 ||
			stderr3.String() != relErrLine("bad-request", `no command: this server runs only "capture …" (try "capture --help")`) {
			t.Errorf("shell: %v, stderr %q", err, stderr3.String())
		}
	})

	t.Run("front door: 200 KiB command line", func(t *testing.T) {
		cl := frontDoor(t)
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var stderr strings.Builder
		s.Stderr = &stderr
		cmd := "capture " + strings.Repeat("x", 200<<10)
		err = s.Run(cmd)
		var ee *ssh.ExitError
		if !errors.As(err, &ee) || ee.ExitStatus() != 1 ||
			stderr.String() != relErrLine("bad-request", fmt.Sprintf("command line is %d bytes, at most 65536 are allowed", len(cmd))) {
			t.Errorf("%v, stderr %q", err, stderr.String())
		}
	})

	t.Run("front door: 1 MiB packets", func(t *testing.T) {
		// Over SSH's packet limit: the connection is cut.
		cl := frontDoor(t)
		s, err := cl.NewSession()
		if err != nil {
			t.Fatal(err)
		}
		s.Start("capture " + strings.Repeat("x", 1<<20))
		relWaitClosed(t, cl, 10*time.Second)
		cl = frontDoor(t)
		cl.OpenChannel("session", make([]byte, 1<<20))
		relWaitClosed(t, cl, 10*time.Second)
		stillServes(t)
	})

	t.Run("agent: channel types and requests", func(t *testing.T) {
		cl := toAgent(t)
		wantUnknownChannel(t, cl, "session", nil)
		wantUnknownChannel(t, cl, "direct-tcpip", directTCPIP)
		wantUnknownChannel(t, cl, "x11", nil)
		wantUnknownChannel(t, cl, "forwarded-tcpip", directTCPIP)
		if ok, _, err := cl.SendRequest("tcpip-forward", true, nil); ok || err != nil {
			t.Errorf("tcpip-forward: ok %v, err %v; want refused", ok, err)
		}
		// A capture request larger than an SSH packet: the connection is cut.
		cl.OpenChannel(agentproto.ChannelCapture, make([]byte, 1<<20))
		relWaitClosed(t, cl, 10*time.Second)
		stillServes(t)
	})

	t.Run("silent connections", func(t *testing.T) {
		// The handshake timeout is 10 s (no config knob); 50 connections
		// that never speak neither block others nor stay.
		const n = 50
		const bound = 15 * time.Second
		refusedBefore := relCount(c.API, `"msg":"connection-refused"`)
		start := time.Now()
		apiConns := relSilentConns(t, c.LAN, c.API.Addr, n)
		agentConns := relSilentConns(t, c.LAN, agent.Addr, n)
		stillServes(t)
		for name, conns := range map[string][]*relSilent{"front door": apiConns, "agent": agentConns} {
			for i, sc := range conns {
				if !sc.banner {
					t.Errorf("%s: silent connection %d got no SSH banner", name, i)
				}
				if d := sc.waitClosed(t, 30*time.Second).Sub(start); d > bound {
					t.Errorf("%s: silent connection %d closed after %v, want within %v", name, i, d, bound)
				}
			}
		}
		relWaitCount(t, c.API, `"msg":"connection-refused".*"error":"tunnel: handshake: read tcp .*: i/o timeout"`, refusedBefore+n, 10*time.Second)
		relWaitCount(t, agent, `"msg":"connection-refused".*"error":"tunnel: handshake: read tcp .*: i/o timeout"`, n, 10*time.Second)
		stillServes(t)
	})

	t.Run("more silent connections than the front door takes", func(t *testing.T) {
		// Beyond its 256 connections the front door closes new ones at
		// once, so silent clients cost it bounded memory; until the
		// handshake timeout frees their places, other clients are
		// refused too (no per-address limit).
		const n = 300
		conns := relSilentConns(t, c.LAN, c.API.Addr, n)
		cut := 0
		for _, sc := range conns {
			if !sc.banner {
				cut++
			}
		}
		if cut < n-256 {
			t.Errorf("%d of %d connections closed at once, want at least %d", cut, n, n-256)
		}
		for _, sc := range conns {
			sc.waitClosed(t, 30*time.Second)
		}
		stillServes(t)
	})
}

// relWaitClosed waits (bounded) until the server has closed cl.
func relWaitClosed(t *testing.T, cl *ssh.Client, timeout time.Duration) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cl.Wait() }()
	select {
	case err := <-done:
		t.Logf("the server closed the connection: %v", err)
	case <-time.After(timeout):
		t.Fatalf("the server kept the connection open for %v", timeout)
	}
}

// relSilent is a TCP connection that never sends a byte.
type relSilent struct {
	banner bool // the server sent its SSH version line
	closed chan time.Time
}

// relSilentConns opens n connections to addr from inside ns that never
// speak, and watches each for the server's banner and close.
func relSilentConns(t *testing.T, ns *testenv.Netns, addr string, n int) []*relSilent {
	t.Helper()
	out := make([]*relSilent, n)
	var wg sync.WaitGroup
	for i := range n {
		conn := relDial(t, ns, addr)
		sc := &relSilent{closed: make(chan time.Time, 1)}
		out[i] = sc
		conn.SetReadDeadline(time.Now().Add(time.Second))
		br := bufio.NewReader(conn)
		line, err := br.ReadString('\n')
		sc.banner = err == nil && strings.HasPrefix(line, "SSH-2.0-")
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn.SetReadDeadline(time.Now().Add(30 * time.Second))
			if !sc.banner && (errors.Is(err, io.EOF) || isReset(err)) {
				sc.closed <- time.Now()
				return
			}
			_, err := io.Copy(io.Discard, br)
			if err == nil || isReset(err) {
				sc.closed <- time.Now()
			}
			close(sc.closed)
		}()
	}
	t.Cleanup(wg.Wait)
	return out
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset by peer")
}

// waitClosed returns when the server closed the connection.
func (s *relSilent) waitClosed(t *testing.T, timeout time.Duration) time.Time {
	t.Helper()
	select {
	case at, ok := <-s.closed:
		if !ok {
			t.Fatal("a silent connection was not closed by the server")
		}
		return at
	case <-time.After(timeout):
		t.Fatalf("a silent connection stayed open for %v", timeout)
		return time.Time{}
	}
}
