package api

import (
	"context"
	"fmt"
	"sync"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Pool keeps one SSH connection per agent, shared by every capture on it.
// A connection that ends is forgotten and dialled again when next needed.
type Pool struct {
	Config tunnel.ClientConfig

	mu     sync.Mutex
	conns  map[string]*poolEntry
	closed bool
	wg     sync.WaitGroup // watchers of live connections
}

type poolEntry struct {
	ready  chan struct{} // closed when the dial finished
	client *tunnel.Client
	err    error
}

// Get returns a connected client for addr, dialling when there is none.
// Concurrent callers for one address share one dial.
func (p *Pool) Get(ctx context.Context, addr string) (*tunnel.Client, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("api: agent pool closed")
	}
	if p.conns == nil {
		p.conns = make(map[string]*poolEntry)
	}
	e, ok := p.conns[addr]
	if !ok {
		e = &poolEntry{ready: make(chan struct{})}
		p.conns[addr] = e
		p.wg.Add(1)
		go p.dial(addr, e)
	}
	p.mu.Unlock()

	select {
	case <-e.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("api: connect to agent %s: %w", addr, ctx.Err())
	}
	if e.err != nil {
		return nil, e.err
	}
	select {
	case <-e.client.Done():
		// Ended between the dial and now; the watcher forgets it.
		return nil, fmt.Errorf("api: connection to agent %s ended: %w", addr, e.client.Err())
	default:
		return e.client, nil
	}
}

// dial connects and then watches the connection until it ends.
func (p *Pool) dial(addr string, e *poolEntry) {
	defer p.wg.Done()
	e.client, e.err = tunnel.Dial(context.Background(), addr, p.Config)
	if e.err != nil {
		e.err = fmt.Errorf("api: connect to agent %s: %w", addr, e.err)
	}
	close(e.ready)
	if e.err == nil {
		<-e.client.Done()
	}
	p.mu.Lock()
	if p.conns[addr] == e {
		delete(p.conns, addr)
	}
	p.mu.Unlock()
}

// Close closes every connection and waits for the watchers.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	entries := make([]*poolEntry, 0, len(p.conns))
	for _, e := range p.conns {
		entries = append(entries, e)
	}
	p.mu.Unlock()
	for _, e := range entries {
		<-e.ready
		if e.client != nil {
			e.client.Close()
		}
	}
	p.wg.Wait()
}
