package tunnel

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// ErrServerClosed is returned by [Server.Serve] after Shutdown or Close.
var ErrServerClosed = errors.New("tunnel: server closed")

// ChannelHandler serves one new channel of the type it is registered for.
// ctx is cancelled when the connection ends or the server shuts down (then
// context.Cause(ctx) is [ErrServerClosed]); the
// handler must then finish promptly. The handler owns nc: it must Accept or
// Reject it.
type ChannelHandler interface {
	HandleChannel(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel)
}

// ChannelHandlerFunc adapts a function to [ChannelHandler].
type ChannelHandlerFunc func(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel)

// HandleChannel calls f.
func (f ChannelHandlerFunc) HandleChannel(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
	f(ctx, conn, nc)
}

// Server accepts SSH connections and routes channels to handlers by type;
// other channel types are rejected. Global requests are answered with false
// (which also answers keepalives). Set the fields before Serve.
type Server struct {
	Config   *ssh.ServerConfig
	Handlers map[string]ChannelHandler

	// HandshakeTimeout bounds the SSH handshake (default 10 s).
	HandshakeTimeout time.Duration
	// MaxConns bounds concurrent connections, handshaking ones included
	// (default 256). Connections beyond it are closed at once.
	MaxConns int
	// KeepaliveInterval, when positive, sends a keepalive on every
	// connection that often and closes a connection whose peer does not
	// answer within three intervals, so a peer that vanished (network cut,
	// host gone) ends its captures instead of leaving them blocked.
	KeepaliveInterval time.Duration
	// CloseGrace, when positive, is how long a shutdown leaves a
	// connection open after its handlers finished, for the peer to hang
	// up first. OpenSSH's client, having read its session's exit status,
	// disconnects by itself, and exits 255 ("send disconnect: Broken
	// pipe") when the server closed under it. Zero closes at once (peers
	// that keep connections, like pcap-api's pool at an agent).
	CloseGrace time.Duration
	// OnConnError, when set, is told about connections that failed their
	// handshake or were refused. It must not block.
	OnConnError func(remote net.Addr, err error)
	// OnConnOpen and OnConnClose, when set, are told about authenticated
	// connections. They must not block.
	OnConnOpen  func(conn *ssh.ServerConn)
	OnConnClose func(conn *ssh.ServerConn)

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	baseCtx   context.Context
	cancel    context.CancelCauseFunc
	closed    bool
	wg        sync.WaitGroup // connection goroutines
}

func (s *Server) init() {
	if s.baseCtx == nil {
		s.baseCtx, s.cancel = context.WithCancelCause(context.Background())
		s.listeners = make(map[net.Listener]struct{})
		s.conns = make(map[net.Conn]struct{})
	}
}

// Serve accepts connections on l until Shutdown or Close, and then returns
// ErrServerClosed. It closes l.
func (s *Server) Serve(l net.Listener) error {
	s.mu.Lock()
	s.init()
	if s.closed {
		s.mu.Unlock()
		l.Close()
		return ErrServerClosed
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, l)
		s.mu.Unlock()
		l.Close()
	}()

	var backoff time.Duration
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closed := s.closed
			s.mu.Unlock()
			if closed {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("tunnel: accept: %w", err)
		}
		backoff = 0
		if !s.track(c) {
			continue
		}
		s.wg.Add(1)
		go s.serveConn(c)
	}
}

// track registers c, or closes it when the server is closed or full.
func (s *Server) track(c net.Conn) bool {
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = 256
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= maxConns {
		c.Close()
		if !s.closed && s.OnConnError != nil {
			s.OnConnError(c.RemoteAddr(), fmt.Errorf("tunnel: %d connections open, refusing more", maxConns))
		}
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) serveConn(c net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		c.Close()
	}()

	timeout := s.HandshakeTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	c.SetDeadline(time.Now().Add(timeout))
	// Shutdown cuts a handshake short instead of waiting out its timeout.
	stop := context.AfterFunc(s.baseCtx, func() { c.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewServerConn(c, s.Config)
	if !stop() && err == nil {
		sc.Close()
		return
	}
	if err != nil {
		if s.OnConnError != nil {
			s.OnConnError(c.RemoteAddr(), fmt.Errorf("tunnel: handshake: %w", err))
		}
		return
	}
	c.SetDeadline(time.Time{})
	if s.OnConnOpen != nil {
		s.OnConnOpen(sc)
	}
	if s.OnConnClose != nil {
		defer s.OnConnClose(sc)
	}

	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	d := &drain{conn: sc, grace: s.CloseGrace}
	defer d.stop()
	go func() {
		// On shutdown, close the connection once its handlers are done;
		// when the connection ends first, cancel ends this goroutine.
		<-ctx.Done()
		d.start()
	}()
	go ssh.DiscardRequests(reqs) // ends when the connection closes
	if s.KeepaliveInterval > 0 {
		connDone := make(chan struct{})
		defer close(connDone)
		go keepalive(sc, connDone, s.KeepaliveInterval, 3*s.KeepaliveInterval)
	}

	var handlers sync.WaitGroup
	for nc := range chans {
		h, ok := s.Handlers[nc.ChannelType()]
		if !ok {
			nc.Reject(ssh.UnknownChannelType, fmt.Sprintf("unknown channel type %q", nc.ChannelType()))
			continue
		}
		handlers.Add(1)
		d.add()
		go func() {
			defer handlers.Done()
			defer d.done()
			h.HandleChannel(ctx, sc, nc)
		}()
	}
	cancel()
	handlers.Wait()
}

// drain closes a connection once it is draining and no handler is active,
// after grace (see Server.CloseGrace).
type drain struct {
	conn     ssh.Conn
	grace    time.Duration
	mu       sync.Mutex
	active   int
	draining bool
	timer    *time.Timer // closes conn after grace; nil until then
	ended    bool        // the connection ended: no timer to start
}

// closeSoon starts the grace timer, or reports that conn is to be closed
// now (zero grace). Called with mu held.
func (d *drain) closeSoon() (now bool) {
	if d.grace <= 0 {
		return true
	}
	if d.timer == nil && !d.ended {
		d.timer = time.AfterFunc(d.grace, func() { d.conn.Close() })
	}
	return false
}

// stop ends the grace timer once the connection is over.
func (d *drain) stop() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ended = true
	if d.timer != nil {
		d.timer.Stop()
	}
}

func (d *drain) add() {
	d.mu.Lock()
	d.active++
	d.mu.Unlock()
}

func (d *drain) done() {
	d.mu.Lock()
	d.active--
	now := d.draining && d.active == 0 && d.closeSoon()
	d.mu.Unlock()
	if now {
		d.conn.Close()
	}
}

func (d *drain) start() {
	d.mu.Lock()
	d.draining = true
	now := d.active == 0 && d.closeSoon()
	d.mu.Unlock()
	if now {
		d.conn.Close()
	}
}

// Shutdown stops accepting, cancels every connection's context so handlers
// finish gracefully, and waits for the connections to end or for ctx to be
// done, after which it closes what is left and returns ctx's error at once
// (a handler that ignores both ctx and its closed connection is not waited
// for).
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()

	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		return ctx.Err()
	}
}

// stopAccepting closes the listeners and cancels every connection's
// context.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	s.init()
	s.closed = true
	for l := range s.listeners {
		l.Close()
	}
	s.mu.Unlock()
	s.cancel(ErrServerClosed)
}

// Close stops accepting and closes every connection at once.
func (s *Server) Close() error {
	s.stopAccepting()
	s.closeConns()
	s.wg.Wait()
	return nil
}

func (s *Server) closeConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		c.Close()
	}
}
