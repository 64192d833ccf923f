package agentproto

import (
	"context"
	"fmt"
	"sync"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// OpenCapture asks the agent on c for a capture. A refusal is returned as a
// [*tunnel.RejectError] carrying the agent's reason. ctx bounds only the
// opening. The capture counts in c's [tunnel.Client.Channels] until its
// channel has closed.
func OpenCapture(ctx context.Context, c *tunnel.Client, req CaptureRequest) (*Capture, error) {
	payload, err := req.Marshal()
	if err != nil {
		return nil, err
	}
	ch, reqs, release, err := c.OpenChannel(ctx, ChannelCapture, payload)
	if err != nil {
		return nil, tunnel.ParseRejection(err)
	}
	return newCapture(ch, reqs, release), nil
}

// Capture is the client side of one capture channel. Read returns the
// pcapng stream; it returns io.EOF after the agent has finished. The
// channel's requests are serviced by the Capture itself.
type Capture struct {
	ch       ssh.Channel
	reqsDone chan struct{}
	final    chan struct{} // closed when final stats arrived

	mu      sync.Mutex
	stats   Stats
	updates chan struct{}
}

// newCapture serves the channel's requests; ended runs when they end (the
// channel has closed).
func newCapture(ch ssh.Channel, reqs <-chan *ssh.Request, ended func()) *Capture {
	c := &Capture{ch: ch, reqsDone: make(chan struct{}), final: make(chan struct{}), updates: make(chan struct{}, 1)}
	go c.serviceRequests(reqs, ended)
	return c
}

func (c *Capture) serviceRequests(reqs <-chan *ssh.Request, ended func()) {
	defer close(c.reqsDone)
	defer ended() // counted down before anyone sees the end
	for r := range reqs {
		ok := false
		if r.Type == RequestStats {
			if s, err := DecodeStats(r.Payload); err == nil {
				c.mu.Lock()
				first := !c.stats.Final && s.Final
				if !c.stats.Final {
					c.stats = s
				}
				c.mu.Unlock()
				if first {
					close(c.final)
				}
				ok = true
				select {
				case c.updates <- struct{}{}:
				default:
				}
			}
		}
		if r.WantReply {
			r.Reply(ok, nil)
		}
	}
}

// Read reads the pcapng stream.
func (c *Capture) Read(p []byte) (int, error) { return c.ch.Read(p) }

// Stop asks the agent to end the capture; the agent then flushes, sends
// final stats and closes, and Read returns io.EOF.
func (c *Capture) Stop() error {
	_, err := c.ch.SendRequest(RequestStop, false, nil)
	if err != nil {
		return fmt.Errorf("agentproto: send stop: %w", err)
	}
	return nil
}

// Updates receives a value whenever new stats arrived (coalesced); read
// them with Stats.
func (c *Capture) Updates() <-chan struct{} { return c.updates }

// Stats returns the latest stats the agent sent.
func (c *Capture) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// Wait waits until the agent's final stats arrived or the channel closed
// (after Read returned io.EOF, or after Close), or ctx ends, and returns
// the last stats; they are final when Stats.Final is set.
func (c *Capture) Wait(ctx context.Context) (Stats, error) {
	select {
	case <-c.final:
		return c.Stats(), nil
	case <-c.reqsDone:
		return c.Stats(), nil
	case <-ctx.Done():
		return c.Stats(), fmt.Errorf("agentproto: wait for final stats: %w", ctx.Err())
	}
}

// Close closes the channel at once.
func (c *Capture) Close() error { return c.ch.Close() }
