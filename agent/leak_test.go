package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/internal/syncbuf"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// inProcessAgent runs the agent's real server (agent.NewServer: key files,
// authorized keys, capture handler) on 127.0.0.1:0 inside the test.
type inProcessAgent struct {
	srv    *tunnel.Server
	agent  *agent.Agent
	addr   string
	host   ssh.Signer
	client ssh.Signer
	log    *syncbuf.Buffer
	served chan error
	once   sync.Once // Serve's result is checked once
}

func startInProcessAgent(t *testing.T) *inProcessAgent {
	t.Helper()
	dir := t.TempDir()
	host, hostPEM, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	client, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	cfg := agent.DefaultConfig()
	cfg.HostKeyFile = filepath.Join(dir, "host_key")
	cfg.AuthorizedKeysFile = filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(cfg.HostKeyFile, hostPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfg.AuthorizedKeysFile, ssh.MarshalAuthorizedKey(client.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	logs := &syncbuf.Buffer{}
	srv, a, err := agent.NewServer(cfg, slog.New(slog.NewJSONHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ia := &inProcessAgent{srv: srv, agent: a, addr: l.Addr().String(), host: host, client: client, log: logs, served: make(chan error, 1)}
	go func() { ia.served <- srv.Serve(l) }()
	t.Cleanup(func() { ia.shutdown(t) })
	return ia
}

// shutdown stops the server (idempotent) and checks Serve's result.
func (ia *inProcessAgent) shutdown(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ia.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v", err)
	}
	ia.once.Do(func() {
		select {
		case err := <-ia.served:
			if !errors.Is(err, tunnel.ErrServerClosed) {
				t.Errorf("Serve() = %v, want ErrServerClosed", err)
			}
		case <-ctx.Done():
			t.Error("Serve did not return after Shutdown")
		}
	})
}

func (ia *inProcessAgent) dial(t *testing.T) *tunnel.Client {
	t.Helper()
	c, err := tunnel.Dial(context.Background(), ia.addr, tunnel.ClientConfig{
		User:              "pcap-api",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(ia.client)},
		HostKeyCallback:   tunnel.PinnedHostKey([]ssh.PublicKey{ia.host.PublicKey()}),
		KeepaliveInterval: -1, // no timer goroutines coming and going
	})
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	return c
}

// waitGoroutines polls until at most want goroutines run, or fails after
// a bounded time with every goroutine's stack.
func waitGoroutines(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= want {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("%s: %d goroutines, want at most %d:\n%s", what, n, want, buf)
		}
		time.Sleep(10 * time.Millisecond) // polling interval, not synchronisation
	}
}

// captureOnce captures on the host's lo with a filter for port, sends k
// datagrams from sender to sink, stops, and checks the stream and the
// final stats.
func captureOnce(t *testing.T, c *tunnel.Client, sender, sink *net.UDPConn, port, k int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := agentproto.OpenCapture(ctx, c, agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     agentproto.Target{Kind: agentproto.TargetHost},
		Interfaces: []string{"lo"},
		Filter:     fmt.Sprintf("udp dst port %d", port),
	})
	if err != nil {
		t.Fatalf("OpenCapture() = %v", err)
	}
	defer capt.Close()
	var stream bytes.Buffer
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(&stream, capt)
		read <- err
	}()
	// The handle is active once the capture is open: these are captured.
	for i := range k {
		if _, err := sender.Write([]byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	// Once the sink has them, so has the capture's ring (taps come before
	// IP delivery); after a stop the agent still reads what the ring holds.
	sink.SetReadDeadline(time.Now().Add(10 * time.Second))
	for i := range k {
		if _, err := sink.Read(make([]byte, 16)); err != nil {
			t.Fatalf("sink got %d of %d datagrams: %v", i, k, err)
		}
	}
	if err := capt.Stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-read:
		if err != nil {
			t.Fatalf("read capture: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("no EOF after stop")
	}
	st, err := capt.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Final || st.End != agentproto.EndStopped || st.Total().Packets != uint64(k) {
		t.Fatalf("final stats = %+v, want final, stopped, %d packets", st, k)
	}
	r, err := pcapgo.NewNgReader(&stream, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("read pcapng: %v", err)
	}
	n := 0
	for {
		_, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read pcapng packet %d: %v", n, err)
		}
		n++
	}
	if n != k {
		t.Fatalf("stream holds %d packets, want %d", n, k)
	}
}

// TestNoGoroutineLeakAfter50Captures runs the agent in this process and
// checks that 50 sequential captures leave no goroutine behind, and that
// shutting the server down leaves none of its own.
func TestNoGoroutineLeakAfter50Captures(t *testing.T) {
	testenv.RequireRoot(t)
	before := runtime.NumGoroutine()

	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	port := sink.LocalAddr().(*net.UDPAddr).Port
	sender, err := net.DialUDP("udp", nil, sink.LocalAddr().(*net.UDPAddr))
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	// Both sockets live for the whole test: goroutine count is unaffected
	// (sockets park in the netpoller, not in goroutines).

	ia := startInProcessAgent(t)
	c := ia.dial(t)

	// One capture first, so whatever starts lazily has started. The
	// baseline is read with the connection open; the handler of that
	// capture may still be returning, which can only make it higher by
	// one, never hide a leak of one goroutine per capture. The check
	// after shutdown is exact.
	captureOnce(t, c, sender, sink, port, 3)
	baseline := runtime.NumGoroutine()

	const captures = 50
	for i := range captures {
		captureOnce(t, c, sender, sink, port, 1+i%5)
	}
	waitGoroutines(t, baseline, fmt.Sprintf("after %d captures", captures))
	if n := ia.agent.Active(); n != 0 {
		t.Errorf("agent reports %d active captures after all ended", n)
	}
	c.Close()
	ia.shutdown(t)
	if got := strings.Count(ia.log.String(), `"msg":"capture-ended","remote"`); got != captures+1 {
		t.Errorf("agent logged %d capture-ended events, want %d", got, captures+1)
	}
	if got := strings.Count(ia.log.String(), `"end":"stopped"`); got != captures+1 {
		t.Errorf("agent logged %d captures ending as stopped, want %d:\n%s", got, captures+1, ia.log.String())
	}
	waitGoroutines(t, before, "after client close and server shutdown")
}
