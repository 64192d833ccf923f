// Package frontdoortest is the one in-process stand-in for pcap-api's
// front door that the clients' tests share (tunnel/frontdoor, the cf
// plugin, pcap-bosh): a real tunnel.Server on 127.0.0.1:0 that checks the
// login, records passwords and exec commands, answers the exec request
// before the command runs (as pcap-api does), writes Stderr and Stdout,
// streams Chunk until Limit bytes or a stop ("signal" request; stdin EOF
// is not a stop, as in pcap-api), and exits with Exit.
//
// It is for tests only; it imports tunnel and x/crypto/ssh, nothing of
// the server.
package frontdoortest

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/tunneltest"
)

// Server is the fake front door. Set the exported fields before Start;
// Start fills Addr, Signer, HostKey and Fingerprint.
type Server struct {
	// User is the only login user accepted ("" accepts any).
	User string
	// Accept says whether a password logs in (nil: every one); change it
	// after Start with SetAccept.
	Accept func(password string) bool
	// Stderr, then Stdout are written once the command is in.
	Stderr, Stdout string
	// Chunk, when not empty, is then written again and again until Limit
	// bytes of it are sent (0: until the session is stopped or closed).
	Chunk []byte
	Limit int
	// Exit is the exit status sent at the end.
	Exit uint32

	Addr        string
	Signer      ssh.Signer
	HostKey     ssh.PublicKey
	Fingerprint string

	mu        sync.Mutex
	conns     int
	passwords []string
	commands  []string
	sent      int
	stopped   chan struct{} // closed when a session was sent a stop
	stopOnce  sync.Once
}

// Start serves s until the test ends.
func Start(t testing.TB, s *Server) *Server {
	t.Helper()
	signer := tunneltest.Key(t)
	conf := &ssh.ServerConfig{PasswordCallback: s.password}
	conf.AddHostKey(signer)
	srv := &tunnel.Server{Config: conf, Handlers: map[string]tunnel.ChannelHandler{"session": tunnel.ChannelHandlerFunc(s.session)}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr, s.Signer, s.HostKey = l.Addr().String(), signer, signer.PublicKey()
	s.Fingerprint = tunnel.Fingerprint(s.HostKey)
	s.stopped = make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(&countingListener{Listener: l, s: s}); !errors.Is(err, tunnel.ErrServerClosed) {
			t.Errorf("frontdoortest: Serve: %v", err)
		}
	}()
	t.Cleanup(func() {
		srv.Close()
		<-done
	})
	return s
}

func (s *Server) password(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.passwords = append(s.passwords, string(pw))
	if (s.User != "" && meta.User() != s.User) || (s.Accept != nil && !s.Accept(string(pw))) {
		return nil, errors.New("refused")
	}
	return &ssh.Permissions{}, nil
}

// SetAccept replaces Accept while the server runs.
func (s *Server) SetAccept(accept func(password string) bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.Accept = accept
}

type countingListener struct {
	net.Listener
	s *Server
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.s.mu.Lock()
		l.s.conns++
		l.s.mu.Unlock()
	}
	return c, err
}

func (s *Server) session(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	cmd := make(chan string, 1)
	stop := make(chan struct{})
	go func() {
		stopped := false
		for r := range reqs {
			if r.Type == "signal" && !stopped {
				stopped = true
				// Recorded before the session acts on it: a client that
				// sees the session end after its stop must find Stopped
				// closed.
				s.stopOnce.Do(func() { close(s.stopped) })
				close(stop)
			}
			var m struct{ Command string }
			ok := r.Type == "exec" && ssh.Unmarshal(r.Payload, &m) == nil
			if r.WantReply { // before the command runs, as pcap-api does
				r.Reply(ok, nil)
			}
			if ok {
				select {
				case cmd <- m.Command:
				default:
				}
			}
		}
	}()
	var line string
	select {
	case line = <-cmd:
	case <-ctx.Done():
		return
	}
	s.mu.Lock()
	s.commands = append(s.commands, line)
	s.mu.Unlock()

	go io.Copy(io.Discard, ch) // stdin: EOF is not a stop
	io.WriteString(ch.Stderr(), s.Stderr)
	io.WriteString(ch, s.Stdout)
	for sent := 0; len(s.Chunk) > 0 && (s.Limit == 0 || sent < s.Limit); {
		select {
		case <-stop:
			s.exit(ch)
			return
		case <-ctx.Done():
			return
		default:
		}
		chunk := s.Chunk
		if s.Limit > 0 && len(chunk) > s.Limit-sent {
			chunk = chunk[:s.Limit-sent]
		}
		n, err := ch.Write(chunk)
		sent += n
		s.mu.Lock()
		s.sent += n
		s.mu.Unlock()
		if err != nil {
			return
		}
	}
	s.exit(ch)
}

func (s *Server) exit(ch ssh.Channel) {
	ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{s.Exit}))
	ch.CloseWrite()
}

// Seen returns how many connections were made, and the passwords and
// commands received, in order.
func (s *Server) Seen() (conns int, passwords, commands []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns, append([]string(nil), s.passwords...), append([]string(nil), s.commands...)
}

// Commands returns the commands received, in order.
func (s *Server) Commands() []string {
	_, _, c := s.Seen()
	return c
}

// Sent returns how many bytes of Chunk were sent.
func (s *Server) Sent() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent
}

// Stopped is closed once a session was sent a stop.
func (s *Server) Stopped() <-chan struct{} { return s.stopped }

// Flags are the CLIs' flags for this front door, its host key pinned.
func (s *Server) Flags() []string {
	return []string{"--pcap-api", s.Addr, "--pcap-api-host-key-fingerprint", s.Fingerprint}
}
