// Package tunneltest runs real tunnel.Servers on 127.0.0.1:0 for the tests
// of the packages built on package tunnel: fresh keys, a listener, Serve in
// a goroutine, and a stop when the test ends. Only tests import it.
package tunneltest

import (
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Key returns a fresh key.
func Key(t testing.TB) ssh.Signer {
	t.Helper()
	s, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// Start serves srv on 127.0.0.1:0 and returns its address. When the test
// ends, srv is closed and Serve must have returned tunnel.ErrServerClosed.
func Start(t testing.TB, srv *tunnel.Server) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		srv.Close()
		if err := <-served; !errors.Is(err, tunnel.ErrServerClosed) {
			t.Errorf("Serve() = %v, want tunnel.ErrServerClosed", err)
		}
	})
	return l.Addr().String()
}

// Serve starts a server with a fresh host key that admits one fresh client
// key and routes channel types to handlers. It returns the address and a
// client config that logs in with that key, pins the host key, and sends
// no keepalives.
func Serve(t testing.TB, handlers map[string]tunnel.ChannelHandler) (string, tunnel.ClientConfig) {
	t.Helper()
	host, client := Key(t), Key(t)
	allowed := tunnel.NewKeySet(client.PublicKey())
	conf := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		return nil, allowed.Check(k)
	}}
	conf.AddHostKey(host)
	addr := Start(t, &tunnel.Server{Config: conf, Handlers: handlers, HandshakeTimeout: 5 * time.Second})
	return addr, tunnel.ClientConfig{
		User:              "pcap-test",
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(client)},
		HostKeyCallback:   tunnel.PinnedHostKey([]ssh.PublicKey{host.PublicKey()}),
		DialTimeout:       5 * time.Second,
		KeepaliveInterval: -1,
	}
}
