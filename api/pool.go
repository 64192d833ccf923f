package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Pool keeps one SSH connection per agent, shared by every capture on it.
// A connection that ends is forgotten and dialled again when next needed;
// so is one idle for IdleTimeout, which the pool closes.
type Pool struct {
	Config tunnel.ClientConfig
	// IdleTimeout, when positive, closes a connection that has carried no
	// capture and was handed out by no Get for that long. A capture in
	// flight keeps its connection.
	IdleTimeout time.Duration

	mu     sync.Mutex
	conns  map[string]*poolEntry
	closed bool
	wg     sync.WaitGroup // watchers of live connections
}

type poolEntry struct {
	ready   chan struct{} // closed when the dial finished
	client  *tunnel.Client
	err     error
	lastGet time.Time // guarded by Pool.mu
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
	e.lastGet = time.Now() // the caller is about to open a capture
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
		p.watch(addr, e)
	}
	p.mu.Lock()
	if p.conns[addr] == e {
		delete(p.conns, addr)
	}
	p.mu.Unlock()
}

// watch returns when e's connection has ended, closing it first once it
// has been idle (see IdleTimeout).
func (p *Pool) watch(addr string, e *poolEntry) {
	if p.IdleTimeout <= 0 {
		<-e.client.Done()
		return
	}
	t := time.NewTimer(p.IdleTimeout)
	defer t.Stop()
	for {
		select {
		case <-e.client.Done():
			return
		case <-t.C:
		}
		n, since := e.client.Channels()
		p.mu.Lock()
		if e.lastGet.After(since) {
			since = e.lastGet
		}
		idle := time.Since(since)
		evict := n == 0 && idle >= p.IdleTimeout
		if evict && p.conns[addr] == e {
			delete(p.conns, addr) // no Get hands it out any more
		}
		p.mu.Unlock()
		if evict {
			e.client.Close()
			<-e.client.Done()
			return
		}
		next := p.IdleTimeout
		if n == 0 {
			next -= idle
		}
		t.Reset(next)
	}
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
