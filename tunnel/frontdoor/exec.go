package frontdoor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// ErrStopTimeout is returned by [Exec] when the server did not end the
// command within the grace period after a stop.
var ErrStopTimeout = errors.New("tunnel: server did not finish in time after stop")

// ErrSessionLost is returned by [Exec] when the connection or the session
// ended without an exit status: the server went away mid-command (for
// pcap-api, the instance died), or stopped answering keepalives (the
// Config's KeepaliveInterval). What reached Stdout before is all there is.
var ErrSessionLost = errors.New("tunnel: the connection to the server was lost before the command ended")

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
// When ctx ends it sends the stop: an RFC 4254 "signal" request (INT),
// which pcap-api takes as "stop the capture and finish"; then it waits at
// most StopGrace. Stdin stays open and empty for the whole session: pcap-api
// does not take stdin EOF alone for a stop (a plain ssh with an empty
// stdin must capture what it asked for). It returns the command's exit
// status; err is set when the session failed (connection lost, no exit
// status, stop timeout).
func Exec(ctx context.Context, o ExecOptions) (int, error) {
	timeout := o.Config.DialTimeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	dctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := o.Config.DialTCP(dctx, o.Addr)
	if err != nil {
		return -1, fmt.Errorf("tunnel: dial %s: %w", o.Addr, err)
	}
	if o.Config.HostKeyCallback == nil {
		c.Close()
		return -1, errors.New("tunnel: a host key callback is required")
	}
	stopDial := context.AfterFunc(dctx, func() {
		// A connection forwarded by an SSH jumpbox has no deadlines.
		if c.SetDeadline(time.Unix(1, 0)) != nil {
			c.Close()
		}
	})
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
	// A server that vanishes without closing (its VM gone, behind a load
	// balancer that keeps our side open) stops answering keepalives.
	stopKeepalive := make(chan struct{})
	defer close(stopKeepalive)
	o.Config.StartKeepalive(sc, stopKeepalive)

	sess, err := client.NewSession()
	if err != nil {
		return -1, fmt.Errorf("tunnel: open session: %w", err)
	}
	defer sess.Close()
	sess.Stdout, sess.Stderr = o.Stdout, o.Stderr
	// An open stdin that never ends: a nil Stdin would send EOF at once.
	stdin, err := sess.StdinPipe()
	if err != nil {
		return -1, fmt.Errorf("tunnel: stdin: %w", err)
	}
	defer stdin.Close()
	if err := sess.Start(o.Command); err != nil {
		return -1, fmt.Errorf("tunnel: start command: %w", err)
	}
	done := make(chan error, 1)
	go func() { done <- sess.Wait() }()

	var werr error
	select {
	case werr = <-done:
	case <-ctx.Done():
		if err := sess.Signal(ssh.SIGINT); err != nil {
			// The channel is gone already; its end is what Wait reports.
			client.Close()
		}
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
	var missing *ssh.ExitMissingError
	switch {
	case werr == nil:
		return 0, nil
	case errors.As(werr, &exit):
		return exit.ExitStatus(), nil
	case errors.As(werr, &missing):
		return -1, fmt.Errorf("%w (%s)", ErrSessionLost, o.Addr)
	default:
		return -1, fmt.Errorf("tunnel: session: %w", werr)
	}
}
