package frontdoor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/tunneltest"
)

// startExecServer serves h for session channels on 127.0.0.1:0 and
// returns its address and a client config that logs in to it.
func startExecServer(t *testing.T, h tunnel.ChannelHandler) (string, tunnel.ClientConfig) {
	t.Helper()
	return tunneltest.Serve(t, map[string]tunnel.ChannelHandler{"session": h})
}

func within(t *testing.T, what string, d time.Duration, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s did not happen within %v", what, d)
	}
}

// execHandler accepts a session, says yes to its exec request and writes
// "partial"; with die set it then closes the connection, as a server that
// dies mid-command.
type execHandler struct{ die bool }

func (h execHandler) HandleChannel(_ context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	for r := range reqs {
		if r.Type != "exec" {
			r.Reply(false, nil)
			continue
		}
		r.Reply(true, nil)
		ch.Write([]byte("partial"))
		if h.die {
			conn.Close()
		}
	}
}

// TestExecSessionLost: a server that goes away mid-command (no exit
// status) is ErrSessionLost at the client, and what it wrote is kept.
func TestExecSessionLost(t *testing.T) {
	addr, cfg := startExecServer(t, execHandler{die: true})
	var out bytes.Buffer
	status, err := Exec(context.Background(), ExecOptions{Addr: addr, Config: cfg, Command: "capture", Stdout: &out, Stderr: io.Discard})
	if status != -1 || !errors.Is(err, ErrSessionLost) {
		t.Errorf("Exec() = %d, %v; want -1, ErrSessionLost", status, err)
	}
	if out.String() != "partial" {
		t.Errorf("stdout %q, want \"partial\"", out.String())
	}
}

// freezingProxy forwards TCP to addr until freeze is called; then it
// forwards nothing more and closes nothing, like a load balancer in front
// of a server whose VM vanished.
type freezingProxy struct {
	addr   string
	freeze func()
}

func newFreezingProxy(t *testing.T, to string) *freezingProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	released := make(chan struct{})
	t.Cleanup(func() {
		close(released)
		l.Close()
	})
	frozen := make(chan struct{})
	p := &freezingProxy{addr: l.Addr().String(), freeze: sync.OnceFunc(func() { close(frozen) })}
	pipe := func(dst, src net.Conn) {
		buf := make([]byte, 32<<10)
		for {
			n, err := src.Read(buf)
			select {
			case <-frozen:
				<-released // hold both ends open, silent
				return
			default:
			}
			if n > 0 {
				dst.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", to)
			if err != nil {
				c.Close()
				continue
			}
			go pipe(s, c)
			go pipe(c, s)
			go func() {
				<-released
				c.Close()
				s.Close()
			}()
		}
	}()
	return p
}

// signalWriter signals got on its first write.
type signalWriter struct {
	once sync.Once
	got  chan struct{}
}

func (w *signalWriter) Write(p []byte) (int, error) {
	w.once.Do(func() { close(w.got) })
	return len(p), nil
}

// TestExecKeepaliveEndsSilentSession: a server that stops answering
// mid-command without closing anything is ErrSessionLost within the
// keepalive bound (interval + timeout), instead of a client waiting for
// ever.
func TestExecKeepaliveEndsSilentSession(t *testing.T) {
	addr, cfg := startExecServer(t, execHandler{})
	p := newFreezingProxy(t, addr)
	cfg.KeepaliveInterval = 100 * time.Millisecond
	out := &signalWriter{got: make(chan struct{})}
	res := make(chan error, 1)
	start := time.Now()
	go func() {
		_, err := Exec(context.Background(), ExecOptions{Addr: p.addr, Config: cfg, Command: "capture", Stdout: out, Stderr: io.Discard})
		res <- err
	}()
	within(t, "the command's first output", 5*time.Second, out.got)
	p.freeze()
	frozenAt := time.Now()
	select {
	case err := <-res:
		if !errors.Is(err, ErrSessionLost) {
			t.Errorf("Exec() = %v, want ErrSessionLost", err)
		}
		if took := time.Since(frozenAt); took < 300*time.Millisecond {
			t.Errorf("ended %v after the freeze, before a keepalive could time out", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("Exec still waiting %v after the server went silent", time.Since(start))
	}
}
