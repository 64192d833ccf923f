package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"

	"golang.org/x/crypto/ssh"
)

// latencyRun is one capture timed by an in-process SSH client.
type latencyRun struct {
	connect, firstPacket, stop time.Duration
	// notStarted counts targets still opening at the stop, given up.
	notStarted int
}

// timeCapture opens a capture of group with a Go SSH client from the LAN
// namespace, times the exec request to the first packet at the client and
// the stop (a signal request, as the CLIs send) to the output file being
// closed. Traffic must be flowing.
func (l *lab) timeCapture(ctx context.Context, group string) (latencyRun, error) {
	var r latencyRun
	addr := fmt.Sprintf("%s:%d", lanAddr, apiPort)
	t0 := time.Now()
	conn, err := dialIn(l.lan, addr, 10*time.Second)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:            "static",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(l.operator)},
		HostKeyCallback: ssh.FixedHostKey(l.apiHostKey),
	})
	if err != nil {
		return r, fmt.Errorf("bench: ssh to pcap-api: %w", err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	sess, err := client.NewSession()
	if err != nil {
		return r, err
	}
	defer sess.Close()
	stdout, err := sess.StdoutPipe()
	if err != nil {
		return r, err
	}
	var stderr bytes.Buffer
	sess.Stderr = &stderr
	out, err := os.Create(l.dir.Path("latency.pcapng"))
	if err != nil {
		return r, err
	}
	defer os.Remove(out.Name())
	defer out.Close()
	r.connect = time.Since(t0)

	sent := time.Now()
	if err := sess.Start("capture -f '" + filter + "' " + group); err != nil {
		return r, fmt.Errorf("bench: exec capture: %w", err)
	}
	// Copy the stream to the file, noting when the first packet is whole.
	first := make(chan time.Duration, 1)
	copied := make(chan error, 1)
	go func() {
		var c counter
		buf := make([]byte, 64<<10)
		for {
			n, err := stdout.Read(buf)
			if n > 0 {
				if c.packets == 0 {
					c.feed(buf[:n])
					if c.packets > 0 {
						first <- time.Since(sent)
					}
				}
				if _, werr := out.Write(buf[:n]); werr != nil {
					copied <- werr
					return
				}
			}
			if err == io.EOF {
				copied <- out.Close()
				return
			}
			if err != nil {
				copied <- err
				return
			}
		}
	}()
	select {
	case r.firstPacket = <-first:
	case err := <-copied:
		return r, fmt.Errorf("bench: capture ended before its first packet: %v", err)
	case <-time.After(10 * time.Second):
		return r, fmt.Errorf("bench: no packet within 10s")
	case <-ctx.Done():
		return r, ctx.Err()
	}
	stopAt := time.Now()
	if err := sess.Signal(ssh.SIGINT); err != nil {
		return r, fmt.Errorf("bench: stop: %w", err)
	}
	select {
	case err := <-copied:
		if err != nil {
			return r, err
		}
		r.stop = time.Since(stopAt)
	case <-time.After(15 * time.Second):
		return r, fmt.Errorf("bench: capture did not end within 15s of the stop")
	}
	if err := sess.Wait(); err != nil {
		return r, fmt.Errorf("bench: capture: %w:\n%s", err, stderr.String())
	}
	r.notStarted = len(notStartedRe.FindAllString(stderr.String(), -1))
	return r, nil
}

// notStartedRe matches a target's status line when the stop came while
// its capture still opened.
var notStartedRe = regexp.MustCompile(`(?m)^pcap: \S+: not-started `)
