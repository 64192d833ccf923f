package api

import (
	"context"
	"io"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestPoolEvictsIdleConnections: a connection that carries a capture stays
// open past the idle timeout; once the capture has ended and nothing used
// the connection for the idle timeout, the pool closes it, and the next Get
// dials a fresh one.
func TestPoolEvictsIdleConnections(t *testing.T) {
	const idle = 200 * time.Millisecond
	a := startFakeAgent(t, &fakeAgent{Packets: 1})
	pool := &Pool{Config: tunnel.ClientConfig{User: "api", HostKeyCallback: ssh.InsecureIgnoreHostKey()}, IdleTimeout: idle}
	t.Cleanup(pool.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	c1, err := pool.Get(ctx, a.Addr)
	if err != nil {
		t.Fatal(err)
	}
	capt, err := agentproto.OpenCapture(ctx, c1, agentproto.CaptureRequest{Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost}, Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := c1.Channels(); n != 1 {
		t.Errorf("%d captures on the connection, want 1", n)
	}
	// Several idle timeouts pass while the capture runs: the connection
	// stays.
	select {
	case <-c1.Done():
		t.Fatalf("connection with a capture in flight closed: %v", c1.Err())
	case <-time.After(5 * idle):
	}
	if c, err := pool.Get(ctx, a.Addr); err != nil || c != c1 {
		t.Fatalf("Get during the capture = %p, %v; want the same connection %p", c, err, c1)
	}

	ended := time.Now() // the capture ends after this
	capt.Stop()
	if _, err := io.Copy(io.Discard, capt); err != nil {
		t.Fatal(err)
	}
	if st, err := capt.Wait(ctx); err != nil || !st.Final {
		t.Fatalf("final stats %+v, %v", st, err)
	}
	capt.Close()
	select {
	case <-c1.Done():
	case <-ctx.Done():
		t.Fatal("idle connection not closed within 20s")
	}
	if d := time.Since(ended); d < idle {
		t.Errorf("connection closed %v after its capture ended, before the idle timeout of %v", d, idle)
	}
	if n, _ := c1.Channels(); n != 0 {
		t.Errorf("%d captures on the closed connection, want 0", n)
	}

	c2, err := pool.Get(ctx, a.Addr)
	if err != nil || c2 == c1 {
		t.Fatalf("Get after eviction = %p, %v; want a new connection (old %p)", c2, err, c1)
	}
	capt2, err := agentproto.OpenCapture(ctx, c2, agentproto.CaptureRequest{Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost}, Interfaces: []string{"eth0"}})
	if err != nil {
		t.Fatalf("capture on the new connection: %v", err)
	}
	capt2.Close()
}
