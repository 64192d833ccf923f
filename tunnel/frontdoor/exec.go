package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"code.cloudfoundry.org/pcap/tunnel"
)

// ErrStopTimeout is returned by [Exec] when the server did not end the
// command within the grace period after a stop.
var ErrStopTimeout = errors.New("tunnel: server did not finish in time after stop")

// ExecOptions configure [Exec], the client side of pcap-api's front door.
type ExecOptions struct {
	Addr   string
	Config tunnel.ClientConfig
	// Command is the command line sent in the exec request.
	Command string
	Stdout  io.Writer
	Stderr  io.Writer
	// StopGrace bounds how long the server may take to finish after ctx
	// ends (default 10 s); then the connection is closed.
	StopGrace time.Duration
}

// Exec connects to addr, runs Command and copies its stdout and stderr.
// When ctx ends it closes stdin (EOF: the server stops the capture and
// finishes) and waits at most StopGrace. It returns the command's exit
// status; err is set when the session failed (connection lost, no exit
// status, stop timeout).
func Exec(ctx context.Context, o ExecOptions) (int, error) {
	timeout := o.Config.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var d net.Dialer
	c, err := d.DialContext(dctx, "tcp", o.Addr)
	if err != nil {
		return -1, fmt.Errorf("tunnel: dial %s: %w", o.Addr, err)
	}
	if o.Config.HostKeyCallback == nil {
		c.Close()
		return -1, errors.New("tunnel: a host key callback is required")
	}
	stopDial := context.AfterFunc(dctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	sc, chans, reqs, err := ssh.NewClientConn(c, o.Addr, &ssh.ClientConfig{
		User: o.Config.User, Auth: o.Config.Auth, HostKeyCallback: o.Config.HostKeyCallback,
	})
	stopDial()
	if err != nil {
		c.Close()
		return -1, fmt.Errorf("tunnel: connect to %s: %w", o.Addr, err)
	}
	c.SetDeadline(time.Time{})
	client := ssh.NewClient(sc, chans, reqs)
	defer client.Close()

	sess, err := client.NewSession()
	if err != nil {
		return -1, fmt.Errorf("tunnel: open session: %w", err)
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = o.Stdout, o.Stderr
	stdin, err := sess.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("tunnel: stdin: %w", err)
	}
	if err := sess.Start(o.Command); err != nil {
		return -1, fmt.Errorf("tunnel: start command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		stdin.Close() // EOF: stop
		grace := o.StopGrace
		if grace <= 0 {
			grace = 10 * time.Second
		}
		select {
		case werr = <-done:
		case <-time.After(grace):
			client.Close()
			<-done
			return -1, ErrStopTimeout
		}
	}
	var exit *ssh.ExitError
	switch {
	case werr == nil:
		return 0, nil
	case errors.As(werr, &exit):
		return exit.ExitStatus(), nil
	default:
		return -1, fmt.Errorf("tunnel: session: %w", werr)
	}
}

// TrustOnFirstUse returns a host-key callback backed by a known_hosts file:
// a host seen before must present the same key (anything else is an error
// wrapping ErrHostKeyMismatch); a new host's key is recorded.
func TrustOnFirstUse(path string) (ssh.HostKeyCallback, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("tunnel: known hosts: %w", err)
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("tunnel: known hosts: %w", err)
	}
	f.Close()
	check, err := knownhosts.New(path)
	if err != nil {
		return nil, fmt.Errorf("tunnel: known hosts %s: %w", path, err)
	}
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		err := check(host, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return fmt.Errorf("tunnel: %s offered %s, but %s has another key for it: %w", host, tunnel.Fingerprint(key), path, tunnel.ErrHostKeyMismatch)
		case errors.As(err, &ke):
			line := knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n"
			af, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0o600)
			if err != nil {
				return fmt.Errorf("tunnel: record host key: %w", err)
			}
			defer af.Close()
			if _, err := af.WriteString(line); err != nil {
				return fmt.Errorf("tunnel: record host key: %w", err)
			}
			return nil
		default:
			return fmt.Errorf("tunnel: check host key: %w", err)
		}
	}, nil
}
