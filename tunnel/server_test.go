package tunnel

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// testServer is a Server on 127.0.0.1:0 that accepts one client key.
type testServer struct {
	srv      *Server
	addr     string
	hostKey  ssh.Signer
	client   ssh.Signer // the authorized client key
	served   chan error // Serve's result
	connErrs chan error // what OnConnError was told
}

func newKey(t *testing.T) ssh.Signer {
	t.Helper()
	s, _, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newTestServer starts a server; opts change it before it serves.
func newTestServer(t *testing.T, handlers map[string]ChannelHandler, opts ...func(*Server)) *testServer {
	t.Helper()
	ts := &testServer{hostKey: newKey(t), client: newKey(t), served: make(chan error, 1), connErrs: make(chan error, 16)}
	allowed := NewKeySet(ts.client.PublicKey())
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
			return nil, allowed.Check(k)
		},
	}
	cfg.AddHostKey(ts.hostKey)
	ts.srv = &Server{
		Config:           cfg,
		Handlers:         handlers,
		HandshakeTimeout: 5 * time.Second,
		OnConnError: func(_ net.Addr, err error) {
			select {
			case ts.connErrs <- err:
			default:
			}
		},
	}
	for _, o := range opts {
		o(ts.srv)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	go func() { ts.served <- ts.srv.Serve(l) }()
	t.Cleanup(func() {
		ts.srv.Close()
		select {
		case err := <-ts.served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("Serve() = %v, want ErrServerClosed", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of Close")
		}
	})
	return ts
}

// config is a client config for key that pins the server's host key.
func (ts *testServer) config(key ssh.Signer) ClientConfig {
	return ClientConfig{
		User:              "pcap-api",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback:   PinnedHostKey([]ssh.PublicKey{ts.hostKey.PublicKey()}),
		DialTimeout:       5 * time.Second,
		KeepaliveInterval: -1,
	}
}

func (ts *testServer) dial(t *testing.T) *Client {
	t.Helper()
	c, err := Dial(context.Background(), ts.addr, ts.config(ts.client))
	if err != nil {
		t.Fatalf("Dial() = %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// testChannel is the channel type the test servers handle.
const testChannel = "pcap-test"

// openTest opens a testChannel on c with payload; the channel's requests
// are discarded, and done is closed once they have ended and the channel
// is released. A refusal comes back through ParseRejection.
func openTest(ctx context.Context, c *Client, payload []byte) (ch ssh.Channel, done <-chan struct{}, err error) {
	ch, reqs, release, err := c.OpenChannel(ctx, testChannel, payload)
	if err != nil {
		return nil, nil, ParseRejection(err)
	}
	d := make(chan struct{})
	go func() {
		ssh.DiscardRequests(reqs)
		release()
		close(d)
	}()
	return ch, d, nil
}

func within(t *testing.T, what string, d time.Duration, ch <-chan struct{}) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(d):
		t.Fatalf("%s did not happen within %v", what, d)
	}
}

// TestRejectionRoundTrip: a rejection the handler makes reaches the client
// as the same code and message, over a real connection.
func TestRejectionRoundTrip(t *testing.T) {
	rejections := map[string]error{
		"bad-filter":     Reject(CodeBadFilter, "filter does not compile on eth0: syntax error"),
		"limit":          Reject(CodeLimitReached, "agent is running its maximum of 4 captures"),
		"colons":         Reject(CodeTargetNotFound, "no container: really: none"),
		"not-allowed":    Reject(CodeNotAllowed, "no"),
		"unknown-iface":  Reject(CodeUnknownInterface, `no interface "eth7" in the target's network namespace`),
		"foreign error":  errors.New("agent: list processes: permission denied"),
		"wrapped reject": errors.Join(errors.New("context"), Reject(CodeBadSnaplen, "snaplen 7 is odd")),
	}
	h := ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		RejectChannel(nc, rejections[string(nc.ExtraData())])
	})
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: h})
	c := ts.dial(t)

	tests := []struct {
		key    string
		code   string
		msg    string
		reason ssh.RejectionReason
	}{
		{"bad-filter", CodeBadFilter, "filter does not compile on eth0: syntax error", ssh.Prohibited},
		{"limit", CodeLimitReached, "agent is running its maximum of 4 captures", ssh.ResourceShortage},
		{"colons", CodeTargetNotFound, "no container: really: none", ssh.ConnectionFailed},
		{"not-allowed", CodeNotAllowed, "no", ssh.Prohibited},
		{"unknown-iface", CodeUnknownInterface, `no interface "eth7" in the target's network namespace`, ssh.ConnectionFailed},
		{"foreign error", CodeInternal, "agent: list processes: permission denied", ssh.ConnectionFailed},
		{"wrapped reject", CodeBadSnaplen, "snaplen 7 is odd", ssh.Prohibited},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ch, _, err := openTest(ctx, c, []byte(tt.key))
			var re *RejectError
			if !errors.As(err, &re) {
				t.Fatalf("open = %v, %v; want a *RejectError", ch, err)
			}
			if re.Code != tt.code || re.Message != tt.msg {
				t.Errorf("rejection = %s: %q, want %s: %q", re.Code, re.Message, tt.code, tt.msg)
			}

			// On the wire: the SSH reason and "<code>: <message>".
			_, _, _, err = c.OpenChannel(ctx, testChannel, []byte(tt.key))
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) {
				t.Fatalf("raw OpenChannel() = %v, want *ssh.OpenChannelError", err)
			}
			if oce.Reason != tt.reason || oce.Message != tt.code+": "+tt.msg {
				t.Errorf("raw rejection = %v %q, want %v %q", oce.Reason, oce.Message, tt.reason, tt.code+": "+tt.msg)
			}
		})
	}
}

func TestParseRejection(t *testing.T) {
	other := errors.New("tunnel: dial: refused")
	tests := []struct {
		name string
		in   error
		want error
	}{
		{"not a channel error", other, other},
		{"code and message", &ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "bad-filter: syntax error"}, Reject(CodeBadFilter, "syntax error")},
		{"empty message", &ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "bad-filter: "}, Reject(CodeBadFilter, "")},
		{"no code", &ssh.OpenChannelError{Reason: ssh.UnknownChannelType, Message: `unknown channel type "x"`}, Reject(CodeInternal, `unknown channel type "x"`)},
		{"code is not a code", &ssh.OpenChannelError{Reason: ssh.Prohibited, Message: "Bad Thing: happened"}, Reject(CodeInternal, "Bad Thing: happened")},
		{"wrapped", errors.Join(errors.New("x"), &ssh.OpenChannelError{Message: "limit-reached: full"}), Reject(CodeLimitReached, "full")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseRejection(tt.in)
			var gre, wre *RejectError
			if errors.As(tt.want, &wre) {
				if !errors.As(got, &gre) || *gre != *wre {
					t.Errorf("ParseRejection() = %#v, want %#v", got, wre)
				}
				return
			}
			if got != tt.want {
				t.Errorf("ParseRejection() = %v, want %v unchanged", got, tt.want)
			}
		})
	}
}

func TestHostKeyPinning(t *testing.T) {
	ts := newTestServer(t, nil)

	t.Run("wrong key", func(t *testing.T) {
		cfg := ts.config(ts.client)
		cfg.HostKeyCallback = PinnedHostKey([]ssh.PublicKey{newKey(t).PublicKey()}, Fingerprint(newKey(t).PublicKey()))
		c, err := Dial(context.Background(), ts.addr, cfg)
		if err == nil {
			c.Close()
			t.Fatal("Dial() succeeded with a wrong pinned host key")
		}
		if !errors.Is(err, ErrHostKeyMismatch) {
			t.Errorf("Dial() = %v, want an error wrapping ErrHostKeyMismatch", err)
		}
		if want := Fingerprint(ts.hostKey.PublicKey()); !strings.Contains(err.Error(), want) {
			t.Errorf("Dial() = %v, want it to name the offered key %s", err, want)
		}
	})
	t.Run("no callback", func(t *testing.T) {
		cfg := ts.config(ts.client)
		cfg.HostKeyCallback = nil
		if c, err := Dial(context.Background(), ts.addr, cfg); err == nil || err.Error() != "tunnel: a host key callback is required" {
			if c != nil {
				c.Close()
			}
			t.Errorf("Dial(no host key callback) = %v", err)
		}
	})
	for name, cb := range map[string]ssh.HostKeyCallback{
		"pinned key":         PinnedHostKey([]ssh.PublicKey{newKey(t).PublicKey(), ts.hostKey.PublicKey()}),
		"pinned fingerprint": PinnedHostKey(nil, " "+Fingerprint(ts.hostKey.PublicKey())+"\n"),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := ts.config(ts.client)
			cfg.HostKeyCallback = cb
			c, err := Dial(context.Background(), ts.addr, cfg)
			if err != nil {
				t.Fatalf("Dial() = %v", err)
			}
			c.Close()
		})
	}
}

func TestUnauthorizedClientKeyRefused(t *testing.T) {
	handled := make(chan struct{}, 1)
	h := ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		handled <- struct{}{}
		nc.Reject(ssh.Prohibited, "no")
	})
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: h})
	c, err := Dial(context.Background(), ts.addr, ts.config(newKey(t)))
	if err == nil {
		c.Close()
		t.Fatal("Dial() with an unauthorized key succeeded")
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("Dial() = %v, want an authentication failure", err)
	}
	select {
	case cerr := <-ts.connErrs:
		if !strings.HasPrefix(cerr.Error(), "tunnel: handshake: ") {
			t.Errorf("server was told %v", cerr)
		}
	case <-time.After(5 * time.Second):
		t.Error("the server did not report the refused connection")
	}
	select {
	case <-handled:
		t.Error("a handler ran for an unauthenticated client")
	default:
	}
}

func TestUnknownChannelTypeRejected(t *testing.T) {
	h := ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		nc.Reject(ssh.ResourceShortage, "limit-reached: only a test")
	})
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: h})
	c := ts.dial(t)
	for _, typ := range []string{"session", "direct-tcpip", "PCAP-CAPTURE"} {
		_, _, err := c.conn.OpenChannel(typ, nil)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.UnknownChannelType || oce.Message != `unknown channel type "`+typ+`"` {
			t.Errorf("OpenChannel(%q) = %v, want unknown channel type", typ, err)
		}
	}
	// The connection still serves the known type.
	_, _, err := openTest(context.Background(), c, nil)
	var re *RejectError
	if !errors.As(err, &re) || re.Code != CodeLimitReached {
		t.Errorf("open after unknown types = %v, want the handler's rejection", err)
	}
}

// acceptingHandler accepts every channel and runs body on it; it records
// when body has returned.
type acceptingHandler struct {
	body     func(ctx context.Context, ch ssh.Channel)
	started  chan struct{}
	finished chan struct{}
}

func newAcceptingHandler(body func(ctx context.Context, ch ssh.Channel)) *acceptingHandler {
	return &acceptingHandler{body: body, started: make(chan struct{}), finished: make(chan struct{})}
}

func (h *acceptingHandler) HandleChannel(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
	defer close(h.finished)
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	go ssh.DiscardRequests(reqs)
	close(h.started)
	h.body(ctx, ch)
}

// serveOne starts a server whose only handler is h, dials it and opens one
// channel, and returns once h has started on it.
func serveOne(t *testing.T, h *acceptingHandler, opts ...func(*Server)) (*testServer, *Client, ssh.Channel) {
	t.Helper()
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: h}, opts...)
	c := ts.dial(t)
	ch, _, err := openTest(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	within(t, "handler start", 5*time.Second, h.started)
	return ts, c, ch
}

func TestShutdownGraceful(t *testing.T) {
	h := newAcceptingHandler(func(ctx context.Context, ch ssh.Channel) {
		<-ctx.Done()
		// Still connected while finishing: the goodbye reaches the client.
		ch.Write([]byte("bye"))
		ch.CloseWrite()
	})
	ts, c, capt := serveOne(t, h)

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.srv.Shutdown(ctx)
	}()
	got, err := io.ReadAll(capt)
	if err != nil || string(got) != "bye" {
		t.Errorf("client read %q, %v; want \"bye\" then EOF", got, err)
	}
	select {
	case err := <-shut:
		if err != nil {
			t.Errorf("Shutdown() = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown did not return within 10s")
	}
	select {
	case <-h.finished:
	default:
		t.Error("Shutdown returned before the handler finished")
	}
	within(t, "connection close after Shutdown", 5*time.Second, c.Done())
	select {
	case err := <-ts.served:
		ts.served <- err // for the cleanup's check
	case <-time.After(5 * time.Second):
		t.Error("Serve did not return after Shutdown")
	}
	if c2, err := Dial(context.Background(), ts.addr, ts.config(ts.client)); err == nil {
		c2.Close()
		t.Error("Dial() after Shutdown succeeded")
	}
}

// TestShutdownLetsThePeerHangUp: with CloseGrace, a connection whose
// session ended in a shutdown stays open for the peer to hang up first
// (OpenSSH exits 255 when the server closes under it), and Shutdown
// returns once it has; a peer that does not hang up is cut after the
// grace.
func TestShutdownLetsThePeerHangUp(t *testing.T) {
	endOnStop := func(ctx context.Context, ch ssh.Channel) { <-ctx.Done() }
	t.Run("peer hangs up", func(t *testing.T) {
		h := newAcceptingHandler(endOnStop)
		ts, c, capt := serveOne(t, h, func(s *Server) { s.CloseGrace = time.Hour })
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			shut <- ts.srv.Shutdown(ctx)
		}()
		io.Copy(io.Discard, capt) // the session ends
		within(t, "handler end", 5*time.Second, h.finished)
		// The connection is still there: a request gets its answer.
		if _, _, err := c.conn.SendRequest("ping@pcap", true, nil); err != nil {
			t.Fatalf("the server closed the connection before the peer hung up: %v", err)
		}
		c.Close()
		select {
		case err := <-shut:
			if err != nil {
				t.Errorf("Shutdown() = %v, want nil", err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Shutdown did not return after the peer hung up")
		}
	})
	t.Run("peer stays", func(t *testing.T) {
		h := newAcceptingHandler(endOnStop)
		ts, c, _ := serveOne(t, h, func(s *Server) { s.CloseGrace = 50 * time.Millisecond })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := ts.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown() = %v, want nil (the grace, not the deadline, ends it)", err)
		}
		within(t, "connection close after the grace", 10*time.Second, c.Done())
	})
}

func TestShutdownBoundedWhenHandlerIgnoresContext(t *testing.T) {
	// The handler ignores ctx and reads until its channel dies.
	h := newAcceptingHandler(func(_ context.Context, ch ssh.Channel) {
		io.Copy(io.Discard, ch)
	})
	ts, c, _ := serveOne(t, h)

	const grace = 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	start := time.Now()
	shut := make(chan error, 1)
	go func() { shut <- ts.srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown() = %v, want context.DeadlineExceeded", err)
		}
		if d := time.Since(start); d < grace {
			t.Errorf("Shutdown returned after %v, before its grace of %v", d, grace)
		}
	case <-time.After(grace + 5*time.Second):
		t.Fatal("Shutdown did not return within 5s of its context ending")
	}
	within(t, "handler cut off", 5*time.Second, h.finished)
	within(t, "connection close", 5*time.Second, c.Done())
}

func TestShutdownBoundedWhenHandlerHangs(t *testing.T) {
	// The handler ignores ctx and its channel: only the connection close
	// reaches the client, and Shutdown must still return.
	release := make(chan struct{})
	h := newAcceptingHandler(func(context.Context, ssh.Channel) { <-release })
	ts, c, _ := serveOne(t, h)
	t.Cleanup(func() { close(release) }) // runs before the server's cleanup

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- ts.srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown() = %v, want context.DeadlineExceeded", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Shutdown did not return within 5s of its context ending while a handler hangs")
	}
	within(t, "connection close", 5*time.Second, c.Done())
}

// stallConn passes traffic through until stalled; then reads block and
// writes vanish, like a peer that died without closing.
type stallConn struct {
	net.Conn
	stalled chan struct{}
	once    sync.Once
	closed  chan struct{}
	cOnce   sync.Once
}

func (c *stallConn) stall() { c.once.Do(func() { close(c.stalled) }) }

func (c *stallConn) Read(p []byte) (int, error) {
	select {
	case <-c.stalled:
		<-c.closed
		return 0, net.ErrClosed
	default:
	}
	// A read already waiting on the socket returns when it gets data;
	// drop what arrives after the stall.
	n, err := c.Conn.Read(p)
	select {
	case <-c.stalled:
		<-c.closed
		return 0, net.ErrClosed
	default:
		return n, err
	}
}

func (c *stallConn) Write(p []byte) (int, error) {
	select {
	case <-c.stalled:
		return len(p), nil
	default:
		return c.Conn.Write(p)
	}
}

func (c *stallConn) Close() error {
	c.cOnce.Do(func() { close(c.closed) })
	return c.Conn.Close()
}

func TestKeepaliveClosesDeadConnection(t *testing.T) {
	ts := newTestServer(t, nil)
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc := &stallConn{Conn: raw, stalled: make(chan struct{}), closed: make(chan struct{})}
	cfg := ts.config(ts.client)
	cfg.KeepaliveInterval = 20 * time.Millisecond
	cfg.KeepaliveTimeout = time.Second
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, sc, ts.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Alive and answering: many keepalives go by without closing it.
	select {
	case <-c.Done():
		t.Fatalf("a live connection was closed: %v", c.Err())
	case <-time.After(300 * time.Millisecond):
	}

	sc.stall()
	start := time.Now()
	within(t, "keepalive close of a dead connection", 10*time.Second, c.Done())
	if d := time.Since(start); d < cfg.KeepaliveTimeout/2 {
		t.Errorf("closed %v after the stall, before the keepalive timeout of %v", d, cfg.KeepaliveTimeout)
	}
}

// TestServerKeepaliveClosesDeadClient: the server notices a client that
// vanished without closing, and its handlers see the connection end.
func TestServerKeepaliveClosesDeadClient(t *testing.T) {
	const interval = 200 * time.Millisecond // a reply may take 3 intervals
	h := newAcceptingHandler(func(ctx context.Context, _ ssh.Channel) { <-ctx.Done() })
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: h}, func(s *Server) { s.KeepaliveInterval = interval })
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	sc := &stallConn{Conn: raw, stalled: make(chan struct{}), closed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := NewClient(ctx, sc, ts.addr, ts.config(ts.client)) // no client keepalives
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, _, err := openTest(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	within(t, "handler start", 5*time.Second, h.started)

	// A client that answers keeps its connection through many keepalives.
	select {
	case <-h.finished:
		t.Fatal("the server ended a live connection")
	case <-time.After(5 * interval):
	}

	sc.stall()
	start := time.Now()
	within(t, "the server ending a dead client's connection", 10*time.Second, h.finished)
	if d := time.Since(start); d < interval {
		t.Errorf("ended %v after the stall, sooner than any keepalive could time out", d)
	}
}

func TestDialTimeoutOnSilentServer(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	var accepted sync.WaitGroup
	accepted.Add(1)
	go func() {
		defer accepted.Done()
		c, err := l.Accept()
		if err != nil {
			return
		}
		// Say nothing; hold the connection until the client gives up.
		io.Copy(io.Discard, c)
		c.Close()
	}()
	start := time.Now()
	c, err := Dial(context.Background(), l.Addr().String(), ClientConfig{
		User:            "pcap-api",
		HostKeyCallback: PinnedHostKey(nil),
		DialTimeout:     200 * time.Millisecond,
	})
	if err == nil {
		c.Close()
		t.Fatal("Dial() to a silent server succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Dial() = %v, want it to wrap context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Dial() took %v with a 200ms timeout", d)
	}
	l.Close()
	accepted.Wait()
}

func TestServerHandshakeTimeout(t *testing.T) {
	errs := make(chan error, 1)
	srv := &Server{
		Config:           &ssh.ServerConfig{NoClientAuth: true},
		HandshakeTimeout: 100 * time.Millisecond,
		OnConnError:      func(_ net.Addr, err error) { errs <- err },
	}
	srv.Config.AddHostKey(newKey(t))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() {
		srv.Close()
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve() = %v, want ErrServerClosed", err)
		}
	}()

	// A client that connects and never speaks is dropped.
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, raw); err != nil {
		t.Errorf("the server did not close a silent connection: %v", err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("server was told %v, want a deadline error", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the server did not report the handshake timeout")
	}
}

// TestShutdownDoesNotWaitForHandshakes: a client stuck in its handshake
// does not hold Shutdown up for the handshake timeout.
func TestShutdownDoesNotWaitForHandshakes(t *testing.T) {
	ts := newTestServer(t, nil) // handshake timeout 5s
	raw, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	// The server's version line proves it is in the handshake.
	raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	line := make([]byte, 4)
	if _, err := io.ReadFull(raw, line); err != nil || string(line) != "SSH-" {
		t.Fatalf("read server version: %q, %v", line, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	start := time.Now()
	if err := ts.srv.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown() = %v after %v, want nil", err, time.Since(start))
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("Shutdown took %v with only a handshaking client", d)
	}
}

// TestClientCountsChannels: a channel counts from its open until it is
// released; a refused open does not count.
func TestClientCountsChannels(t *testing.T) {
	refuse := ChannelHandlerFunc(func(_ context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		nc.Reject(ssh.ResourceShortage, "limit-reached: only a test")
	})
	ts := newTestServer(t, map[string]ChannelHandler{testChannel: refuse})
	c := ts.dial(t)
	if _, _, err := openTest(context.Background(), c, nil); err == nil {
		t.Fatal("the refusing handler accepted")
	}
	if n, _ := c.Channels(); n != 0 {
		t.Errorf("%d channels after a refused open, want 0", n)
	}

	h := newAcceptingHandler(func(ctx context.Context, ch ssh.Channel) { <-ctx.Done() })
	ts = newTestServer(t, map[string]ChannelHandler{testChannel: h})
	c = ts.dial(t)
	_, before := c.Channels()
	ch, done, err := openTest(context.Background(), c, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := c.Channels(); n != 1 {
		t.Errorf("%d channels while one is open, want 1", n)
	}
	ch.Close()
	within(t, "channel release", 10*time.Second, done)
	if n, since := c.Channels(); n != 0 || !since.After(before) {
		t.Errorf("%d channels (changed %v) after the release, want 0 changed after %v", n, since, before)
	}
}
