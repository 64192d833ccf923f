// Package allproxy reads BOSH_ALL_PROXY as the bosh CLI reads it and
// dials TCP connections through it: the director, its UAA and pcap-api's
// front door, for environments (bbl's, for one) that are only reachable
// through a jumpbox.
//
// Two forms are accepted, as the bosh CLI accepts them:
//
//	socks5://[USER:PASSWORD@]HOST[:PORT]   a SOCKS5 proxy (port 1080 by default; socks5h:// too),
//	                                        with NO_PROXY honoured
//	ssh+socks5://[USER@]HOST:PORT?private-key=FILE
//	                                        an SSH jumpbox (user "jumpbox" by default) logged in
//	                                        to with the unencrypted private key in FILE; connections
//	                                        are forwarded by it (direct-tcpip, as `ssh -D` does)
//
// The bosh CLI accepts any host key from the jumpbox; so does this
// package, except that a jumpbox listed in ~/.ssh/known_hosts must present
// the key recorded there. What goes through the jumpbox is authenticated
// end to end anyway: the director and UAA by TLS, pcap-api by its pinned
// host key. Errors never contain the proxy's password or the key.
package allproxy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"golang.org/x/net/proxy"

	"code.cloudfoundry.org/pcap/tunnel"
)

// EnvVar is the variable the bosh CLI reads.
const EnvVar = "BOSH_ALL_PROXY"

// ErrBadProxy is wrapped by every error about the value itself.
var ErrBadProxy = errors.New(EnvVar)

// DefaultJumpboxUser is the user when ssh+socks5:// names none, as in the
// bosh CLI (and bbl's jumpbox).
const DefaultJumpboxUser = "jumpbox"

// connectTimeout bounds the jumpbox's TCP connect plus SSH handshake when
// the caller's context has no earlier deadline (the bosh CLI's is 30 s).
const connectTimeout = 30 * time.Second

// Options are what Parse reads besides the value.
type Options struct {
	// NoProxy is NO_PROXY (hosts, domains, CIDRs reached directly);
	// it applies to socks5:// only, as in the bosh CLI.
	NoProxy string
	// KnownHosts is an OpenSSH known_hosts file; a jumpbox listed there
	// must present a recorded key. Default ~/.ssh/known_hosts; a missing
	// file lists nobody.
	KnownHosts string
}

// FromEnvironment parses $BOSH_ALL_PROXY with $NO_PROXY (or $no_proxy).
func FromEnvironment() (*Dialer, error) {
	noProxy := os.Getenv("NO_PROXY")
	if noProxy == "" {
		noProxy = os.Getenv("no_proxy")
	}
	return Parse(os.Getenv(EnvVar), Options{NoProxy: noProxy})
}

// Dialer makes TCP connections directly (empty BOSH_ALL_PROXY) or
// through the proxy. It is safe for concurrent use; Close ends the
// jumpbox connection, if any.
type Dialer struct {
	via  string // what String says: no secrets
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	jump *jumpbox
}

// Parse checks value (a BOSH_ALL_PROXY) and reads the private key it
// names, contacting nothing. An empty value dials directly.
func Parse(value string, o Options) (*Dialer, error) {
	direct := &net.Dialer{}
	if value == "" {
		return &Dialer{via: "direct", dial: direct.DialContext}, nil
	}
	scheme, _, ok := strings.Cut(value, "://")
	if !ok {
		return nil, fmt.Errorf("%w: not a URL; use socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE", ErrBadProxy)
	}
	// url.Parse's errors quote the whole value, password included.
	u, err := url.Parse(value)
	if err != nil {
		return nil, fmt.Errorf("%w: not a URL (%s://…); use socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE", ErrBadProxy, scheme)
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%w: %s:// names no host", ErrBadProxy, u.Scheme)
	}
	switch strings.ToLower(u.Scheme) {
	case "socks5", "socks5h":
		return socks5(u, o, direct)
	case "ssh+socks5":
		return jump(u, o)
	default:
		return nil, fmt.Errorf("%w: unsupported scheme %q; use socks5:// or ssh+socks5://", ErrBadProxy, u.Scheme)
	}
}

func socks5(u *url.URL, o Options, direct *net.Dialer) (*Dialer, error) {
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		return nil, fmt.Errorf("%w: socks5:// takes HOST:PORT only, no path or query", ErrBadProxy)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	p, err := proxy.FromURL(u, direct)
	if err != nil {
		return nil, fmt.Errorf("%w: %s", ErrBadProxy, strings.TrimPrefix(err.Error(), "proxy: "))
	}
	perHost := proxy.NewPerHost(p, direct)
	if o.NoProxy != "" {
		perHost.AddFromString(o.NoProxy)
	}
	port := u.Port()
	if port == "" {
		port = "1080"
	}
	d := &Dialer{via: "SOCKS5 proxy " + net.JoinHostPort(u.Hostname(), port), dial: perHost.DialContext}
	return d, nil
}

func jump(u *url.URL, o Options) (*Dialer, error) {
	if u.Port() == "" {
		return nil, fmt.Errorf("%w: ssh+socks5:// needs the jumpbox's port: ssh+socks5://USER@%s:22?private-key=FILE", ErrBadProxy, u.Hostname())
	}
	user := DefaultJumpboxUser
	if u.User != nil {
		if _, has := u.User.Password(); has {
			return nil, fmt.Errorf("%w: ssh+socks5:// logs in with a private key, not a password", ErrBadProxy)
		}
		if n := u.User.Username(); n != "" {
			user = n
		}
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: bad query after ?: use ?private-key=FILE", ErrBadProxy)
	}
	keyFile := q.Get("private-key")
	if keyFile == "" {
		return nil, fmt.Errorf("%w: ssh+socks5:// needs ?private-key=FILE (the jumpbox's private key)", ErrBadProxy)
	}
	pem, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("%w: read the private key: %w", ErrBadProxy, err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	var pp *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &pp):
		return nil, fmt.Errorf("%w: the private key %s is protected by a passphrase; give an unencrypted key, as the bosh CLI needs", ErrBadProxy, keyFile)
	case err != nil:
		// ssh's parse errors name the problem, never the key's bytes.
		return nil, fmt.Errorf("%w: the private key %s: %w", ErrBadProxy, keyFile, err)
	}
	check, err := hostKeyCheck(o.KnownHosts)
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort(u.Hostname(), u.Port())
	j := &jumpbox{addr: addr, config: &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)}, HostKeyCallback: check,
	}}
	return &Dialer{via: "jumpbox " + user + "@" + addr, dial: j.dialContext, jump: j}, nil
}

// hostKeyCheck accepts any key of a host not in the known_hosts file (as
// the bosh CLI does) and refuses a key that differs from the recorded
// one.
func hostKeyCheck(path string) (ssh.HostKeyCallback, error) {
	if path == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return func(string, net.Addr, ssh.PublicKey) error { return nil }, nil
		}
		path = filepath.Join(home, ".ssh", "known_hosts")
	}
	known, err := knownhosts.New(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return func(string, net.Addr, ssh.PublicKey) error { return nil }, nil
	case err != nil:
		return nil, fmt.Errorf("%w: read %s: %w", ErrBadProxy, path, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := known(host, remote, key)
		var ke *knownhosts.KeyError
		if errors.As(err, &ke) && len(ke.Want) == 0 {
			return nil // not listed
		}
		if err != nil {
			return fmt.Errorf("the jumpbox's host key %s is not the one %s records for it: %w", ssh.FingerprintSHA256(key), path, err)
		}
		return nil
	}, nil
}

// String says how connections are made, without secrets.
func (d *Dialer) String() string { return d.via }

// DialContext connects to addr through the proxy.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := d.dial(ctx, network, addr)
	if err != nil && d.via != "direct" {
		return nil, fmt.Errorf("through %s: %w", d.via, err)
	}
	return c, err
}

// Close ends the jumpbox connection; later dials make a new one.
func (d *Dialer) Close() error {
	if d.jump == nil {
		return nil
	}
	return d.jump.close()
}

// jumpbox is one SSH connection to the jumpbox, made at the first dial
// and shared by all; when it ends, the next dial makes another.
type jumpbox struct {
	addr   string
	config *ssh.ClientConfig

	mu     sync.Mutex // held while connecting: dials wait for one connection
	client *ssh.Client
}

func (j *jumpbox) dialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	c, err := j.connect(ctx)
	if err != nil {
		return nil, err
	}
	conn, err := c.DialContext(ctx, network, addr)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", addr, err)
	}
	return conn, nil
}

func (j *jumpbox) connect(ctx context.Context) (*ssh.Client, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.client != nil {
		return j.client, nil
	}
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", j.addr)
	if err != nil {
		return nil, err
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(conn, j.addr, j.config)
	if !stop() {
		err = errors.Join(err, ctx.Err())
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("log in as %s: %w", j.config.User, err)
	}
	conn.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	j.client = client
	done := make(chan struct{})
	tunnel.ClientConfig{}.StartKeepalive(sc, done)
	go func() {
		client.Wait()
		close(done)
		j.mu.Lock()
		if j.client == client {
			j.client = nil
		}
		j.mu.Unlock()
	}()
	return client, nil
}

func (j *jumpbox) close() error {
	j.mu.Lock()
	c := j.client
	j.client = nil
	j.mu.Unlock()
	if c == nil {
		return nil
	}
	return c.Close()
}
