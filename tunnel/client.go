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

// ClientConfig configures [Dial] and [NewClient].
type ClientConfig struct {
	User            string
	Auth            []ssh.AuthMethod
	HostKeyCallback ssh.HostKeyCallback
	// DialTimeout bounds TCP connect plus handshake (default 10 s).
	DialTimeout time.Duration
	// DialContext, when set, makes the TCP connection instead of a
	// net.Dialer (through a proxy, say).
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
	// KeepaliveInterval is how often a keepalive is sent (default 15 s,
	// negative disables); KeepaliveTimeout how long a reply may take before
	// the connection is closed (default 3 intervals).
	KeepaliveInterval time.Duration
	KeepaliveTimeout  time.Duration
}

// Client is an SSH client connection (to an agent, or to pcap-api's front
// door). Its methods are safe for concurrent use; many channels share one
// connection.
type Client struct {
	conn ssh.Conn
	done chan struct{} // closed when the connection has ended
	err  error         // why it ended; read after done

	mu       sync.Mutex
	channels int       // open or being opened
	changed  time.Time // when channels last changed, or the connection was made
}

// Dial connects to addr and performs the SSH handshake within
// cfg.DialTimeout or ctx, whichever ends first.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Client, error) {
	timeout := cfg.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	c, err := cfg.DialTCP(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("tunnel: dial %s: %w", addr, err)
	}
	cl, err := NewClient(ctx, c, addr, cfg)
	if err != nil {
		c.Close()
		return nil, err
	}
	return cl, nil
}

// DialTCP makes the TCP connection to addr with cfg.DialContext, or
// directly when it is nil.
func (cfg ClientConfig) DialTCP(ctx context.Context, addr string) (net.Conn, error) {
	if cfg.DialContext != nil {
		return cfg.DialContext(ctx, "tcp", addr)
	}
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}

// NewClient performs the SSH handshake on c, bounded by ctx, and returns
// the client. addr is the name the host key is checked under.
func NewClient(ctx context.Context, c net.Conn, addr string, cfg ClientConfig) (*Client, error) {
	if cfg.HostKeyCallback == nil {
		return nil, errors.New("tunnel: a host key callback is required")
	}
	sc := &ssh.ClientConfig{
		User:            cfg.User,
		Auth:            cfg.Auth,
		HostKeyCallback: cfg.HostKeyCallback,
	}
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	conn, chans, reqs, err := ssh.NewClientConn(newReadAheadConn(c), addr, sc)
	if !stop() {
		if err == nil {
			conn.Close()
		}
		return nil, fmt.Errorf("tunnel: handshake with %s: %w", addr, context.Cause(ctx))
	}
	if err != nil {
		return nil, fmt.Errorf("tunnel: handshake with %s: %w", addr, err)
	}
	c.SetDeadline(time.Time{})
	go ssh.DiscardRequests(reqs)
	go func() {
		for nc := range chans {
			nc.Reject(ssh.Prohibited, "clients accept no channels")
		}
	}()
	cl := &Client{conn: conn, done: make(chan struct{}), changed: time.Now()}
	go func() {
		cl.err = conn.Wait()
		close(cl.done)
	}()
	cfg.StartKeepalive(conn, cl.done)
	return cl, nil
}

// StartKeepalive runs keepalive on conn with the config's interval and
// timeout (defaults 15 s and 3 intervals; a negative interval disables)
// until done is closed; the caller owns done.
func (cfg ClientConfig) StartKeepalive(conn ssh.Conn, done <-chan struct{}) {
	if cfg.KeepaliveInterval < 0 {
		return
	}
	iv := cfg.KeepaliveInterval
	if iv == 0 {
		iv = 15 * time.Second
	}
	to := cfg.KeepaliveTimeout
	if to <= 0 {
		to = 3 * iv
	}
	go keepalive(conn, done, iv, to)
}

// keepalive sends keepalive requests on conn until done is closed, and
// closes conn when a reply does not come within timeout. Any reply counts,
// a refusal too (OpenSSH refuses unknown global requests).
func keepalive(conn ssh.Conn, done <-chan struct{}, interval, timeout time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		replied := make(chan struct{})
		go func() {
			// Ends with a reply or when the connection closes.
			conn.SendRequest("keepalive@openssh.com", true, nil)
			close(replied)
		}()
		select {
		case <-replied:
		case <-done:
			return
		case <-time.After(timeout):
			conn.Close()
			return
		}
	}
}

// Done is closed when the connection has ended.
func (c *Client) Done() <-chan struct{} { return c.done }

// Err says why the connection ended; valid after Done is closed.
func (c *Client) Err() error {
	<-c.done
	return c.err
}

// RemoteAddr is the server's address.
func (c *Client) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// Close closes the connection and with it every channel on it.
func (c *Client) Close() error { return c.conn.Close() }

// Channels returns how many channels are open or being opened on c, and
// since when that number has not changed (for idle connections: since
// when they are idle). A channel counts from [Client.OpenChannel] until its
// release is called.
func (c *Client) Channels() (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.channels, c.changed
}

func (c *Client) countChannel(delta int) {
	c.mu.Lock()
	c.channels += delta
	c.changed = time.Now()
	c.mu.Unlock()
}

// OpenChannel opens a channel of type kind with payload as its extra data.
// ctx bounds only the opening: when it ends first, a channel that still
// opens later is closed. A refusal is the peer's *ssh.OpenChannelError,
// unchanged ([ParseRejection] reads pcap's codes out of it).
//
// An opened channel counts in [Client.Channels] until release is called;
// the caller must call release once, when the channel has closed (its
// requests channel has ended). release is safe to call more than once.
func (c *Client) OpenChannel(ctx context.Context, kind string, payload []byte) (ch ssh.Channel, reqs <-chan *ssh.Request, release func(), err error) {
	c.countChannel(1)
	type result struct {
		ch   ssh.Channel
		reqs <-chan *ssh.Request
		err  error
	}
	res := make(chan result, 1)
	go func() {
		ch, reqs, err := c.conn.OpenChannel(kind, payload)
		res <- result{ch, reqs, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			c.countChannel(-1)
			return nil, nil, nil, r.err
		}
		var once sync.Once
		return r.ch, r.reqs, func() { once.Do(func() { c.countChannel(-1) }) }, nil
	case <-ctx.Done():
		go func() {
			// The open may still succeed; close what it opens.
			if r := <-res; r.err == nil {
				r.ch.Close()
			}
			c.countChannel(-1)
		}()
		return nil, nil, nil, fmt.Errorf("tunnel: open %s channel: %w", kind, ctx.Err())
	}
}
