package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/internal/syncbuf"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// relLockedBuffer is a log sink many goroutines write to.
type relLockedBuffer struct{ syncbuf.Buffer }

// TestSecurityAgentExposure runs the agent's real server (agent.NewServer:
// key files, authorized keys, the capture handler) in this process, and
// knocks on it with every key but the API's, every channel type but
// capture, requests, packets over SSH's limit, plain TCP garbage and
// silence. All are refused or cut off and logged; the API's key still
// captures; and when the connections are gone the process runs no more
// goroutines than before (a bounded poll, not a sleep). It is not
// parallel: it counts the whole test process's goroutines.
func TestSecurityAgentExposure(t *testing.T) {
	testenv.RequireRoot(t) // the capture at the end uses libpcap
	// Not parallel: it counts this process's goroutines, and other tests'
	// would count with them.
	dir := t.TempDir()
	apiKey := newKeyPair(t, dir, "api")
	stranger := newKeyPair(t, dir, "stranger")
	host := newKeyPair(t, dir, "host")
	cfg := agent.DefaultConfig()
	cfg.HostKeyFile = host.Private
	cfg.AuthorizedKeysFile = apiKey.Public
	logs := &relLockedBuffer{}
	srv, ag, err := agent.NewServer(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	// The config has no knob for it; the server has.
	srv.HandshakeTimeout = time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	baseline := runtime.NumGoroutine()
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	shut := false
	shutdown := func() {
		if shut {
			return
		}
		shut = true
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, tunnel.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	}
	t.Cleanup(shutdown)
	hostKey := host.Signer.PublicKey()
	refusedLogs := func() int { return strings.Count(logs.String(), `"msg":"connection-refused"`) }

	dial := func(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
		return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: auth,
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{hostKey}), Timeout: 10 * time.Second})
	}

	t.Run("keys other than the API's", func(t *testing.T) {
		before := refusedLogs()
		for _, tc := range []struct {
			name string
			auth []ssh.AuthMethod
		}{
			{"a stranger's key", []ssh.AuthMethod{ssh.PublicKeys(stranger.Signer)}},
			{"the agent's own host key", []ssh.AuthMethod{ssh.PublicKeys(host.Signer)}},
			{"a password", []ssh.AuthMethod{ssh.Password("pcap-api")}},
			{"keyboard-interactive", []ssh.AuthMethod{ssh.KeyboardInteractive(func(string, string, []string, []bool) ([]string, error) {
				return []string{"x"}, nil
			})}},
			{"no authentication", nil},
		} {
			c, err := dial("pcap-api", tc.auth...)
			if err == nil {
				c.Close()
				t.Errorf("%s: logged in", tc.name)
				continue
			}
			if !strings.Contains(err.Error(), "ssh: unable to authenticate") {
				t.Errorf("%s: %v, want an authentication failure", tc.name, err)
			}
		}
		// The server logs once its side of the handshake has ended.
		waitUntil(t, 5*time.Second, "5 refused connections logged", func() bool { return refusedLogs()-before >= 5 })
		if n := refusedLogs() - before; n != 5 {
			t.Errorf("%d refused connections logged, want 5", n)
		}
		fp := tunnel.Fingerprint(stranger.Signer.PublicKey())
		if !strings.Contains(logs.String(), fp+": "+tunnel.ErrUnauthorizedKey.Error()) {
			t.Errorf("the log does not name the refused key %s:\n%s", fp, logs.String())
		}
	})

	t.Run("channels and requests other than capture", func(t *testing.T) {
		c, err := dial("pcap-api", ssh.PublicKeys(apiKey.Signer))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, typ := range []string{"session", "direct-tcpip", "forwarded-tcpip", "x11", "auth-agent@openssh.com", "pcap-capture-v2", ""} {
			ch, _, err := c.OpenChannel(typ, nil)
			if err == nil {
				ch.Close()
				t.Errorf("channel %q accepted", typ)
				continue
			}
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType || oce.Message != fmt.Sprintf("unknown channel type %q", typ) {
				t.Errorf("channel %q: %v", typ, err)
			}
		}
		for _, req := range []string{"tcpip-forward", "streamlocal-forward@openssh.com", "no-more-sessions@openssh.com"} {
			if ok, _, err := c.SendRequest(req, true, nil); ok || err != nil {
				t.Errorf("global request %s: ok %v, err %v", req, ok, err)
			}
		}
		// On a capture channel, only "stop" is served.
		req, err := agentproto.CaptureRequest{Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost},
			Interfaces: []string{"lo"}, Filter: "udp dst port 9"}.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		ch, reqs, err := c.OpenChannel(agentproto.ChannelCapture, req)
		if err != nil {
			t.Fatalf("open a capture: %v", err)
		}
		go ssh.DiscardRequests(reqs)
		for _, r := range []string{"pty-req", "shell", "exec", "subsystem", "env", "x11-req", "signal", "window-change"} {
			if ok, err := ch.SendRequest(r, true, nil); ok || err != nil {
				t.Errorf("request %s on a capture channel: ok %v, err %v; want refused", r, ok, err)
			}
		}
		if ok, err := ch.SendRequest(agentproto.RequestStop, true, nil); !ok || err != nil {
			t.Errorf("stop: ok %v, err %v", ok, err)
		}
		ended := make(chan error, 1)
		go func() {
			_, err := io.Copy(io.Discard, ch)
			ended <- err
		}()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("capture stream: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the capture did not end after stop")
		}
		ch.Close()

		// A capture request over SSH's 256 KiB packet limit: cut off.
		c.OpenChannel(agentproto.ChannelCapture, make([]byte, 1<<20))
		done := make(chan error, 1)
		go func() { done <- c.Wait() }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("the agent kept a connection that sent a 1 MiB packet")
		}
	})

	t.Run("plain TCP", func(t *testing.T) {
		random := make([]byte, 64<<10)
		rand.Read(random)
		for _, tc := range []struct {
			name string
			send []byte
		}{
			{"HTTP", []byte("GET / HTTP/1.1\r\nHost: agent\r\n\r\n")},
			{"TLS client hello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}},
			{"64 KiB of noise", random},
			{"SSH banner, then noise", append([]byte("SSH-2.0-OpenSSH_9.6\r\n"), random[:4096]...)},
			{"a banner line of 300 bytes", bytes.Repeat([]byte("S"), 300)},
			{"silence", nil},
		} {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			go conn.Write(tc.send) // may block or fail once the agent closes
			_, err = io.Copy(io.Discard, conn)
			conn.Close()
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("%s: the agent kept the connection open for 10 s", tc.name)
			} else if d := time.Since(start); d > 3*time.Second {
				t.Errorf("%s: closed after %v, want within the 1 s handshake timeout (and a margin)", tc.name, d)
			}
		}
	})

	t.Run("the API's key still captures", func(t *testing.T) {
		c, err := tunnel.Dial(context.Background(), addr, tunnel.ClientConfig{
			User: "pcap-api", Auth: []ssh.AuthMethod{ssh.PublicKeys(apiKey.Signer)},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{hostKey}), KeepaliveInterval: -1,
		})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		port, received := agUDPSink(t)
		capt := agOpen(t, c, agentproto.CaptureRequest{Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost},
			Interfaces: []string{"lo"}, Filter: fmt.Sprintf("udp dst port %d", port)})
		wait := drain(t, capt)
		agSend(t, nil, fmt.Sprintf("127.0.0.1:%d", port), 3, 50, 1000)
		received(3)
		if _, st := agStop(t, capt, wait, 2*time.Second); st.Total().Packets != 3 {
			t.Errorf("final stats %+v, want 3 packets", st)
		}
	})

	// Every connection above is closed: back to the baseline, plus the
	// Serve loop.
	relWaitGoroutines(t, baseline+1, "after every connection closed")
	if n := ag.Active(); n != 0 {
		t.Errorf("the agent counts %d active captures", n)
	}
	shutdown()
	relWaitGoroutines(t, baseline, "after shutdown")
	if s := logs.String(); strings.Contains(s, "panic") || strings.Contains(s, `"level":"ERROR"`) {
		t.Errorf("the agent logged a panic or an error:\n%s", s)
	}
}

// relWaitGoroutines polls (bounded) until at most want goroutines run,
// or fails with every goroutine's stack.
func relWaitGoroutines(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, want at most %d:\n%s", what, runtime.NumGoroutine(), want, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// TestSecurityAPIRefusesUnpinnedAgent: the API pins agents' host keys.
// An agent offering another key (an impostor on its address) gets no
// capture request: the user sees that source failed with the reason, the
// API logs it, the other agent captures, and the impostor saw no
// capture.
func TestSecurityAPIRefusesUnpinnedAgent(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 2, PinStranger: map[int]bool{1: true}})
	cl, file := c.captureFile(t, 0, "-c", "3", "-f", "'udp dst port 7000'", "--duration", "60s", "lab")
	waitStarted(t, cl, "lab/0")
	relSendUDP(t, c.VMs[0], "198.18.0.1:7000", 3, 100)
	wantPartial(t, cl, 30*time.Second)
	const reason = "cannot reach agent 198.18.0.11:9494: host key does not match the pinned key"
	wantLine(t, cl, `^pcap: lab/1: failed code=internal reason="`+regexp.QuoteMeta(reason)+`"$`)
	wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 3})
	c.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-source-failed".*"source":"lab/1".*"reason":"`+regexp.QuoteMeta(reason)+`"`), 5*time.Second)
	if n := relCount(c.Agents[1], `"msg":"(connection-opened|capture-started)"`); n != 0 {
		t.Errorf("the unpinned agent logged %d connections or captures", n)
	}
}
