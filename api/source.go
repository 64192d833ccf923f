package api

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"code.cloudfoundry.org/pcap/tunnel"
)

// minRead is the least room a batch offers a read; with less, the
// reader moves on to the next batch.
const minRead = 16 << 10

// errAborted ends a source reader whose merger has gone.
var errAborted = errors.New("api: capture aborted")

// source is one target's capture inside a session: it reads the agent's
// pcapng stream into batches for the merger.
type source struct {
	t        Target
	agent    *tunnel.Client
	capture  *tunnel.Capture
	ifaces   []tunnel.InterfaceStats // as the agent announced them
	firstOut int                     // output id of ifaces[0]
	started  time.Time

	free chan *batch // batches the reader may fill; the merger returns them
	cur  *batch      // owned by the reader goroutine

	// delivered counts packets written, per interface; owned by the
	// merger goroutine. cutOff is set by it when the source was closed
	// for not stopping in time.
	delivered []uint64
	cutOff    bool

	// received and bytes count packets and bytes read, per interface; owned
	// by the reader goroutine, read after done.
	received []uint64
	bytes    []uint64

	// Set by the reader goroutine before done is closed.
	done    chan struct{}
	readErr error
	ended   time.Time
}

func newSource(t Target, agent *tunnel.Client, c *tunnel.Capture, ifaces []tunnel.InterfaceStats, firstOut int) *source {
	s := &source{
		t: t, agent: agent, capture: c, ifaces: ifaces, firstOut: firstOut, started: time.Now(),
		free:      make(chan *batch, batchesPerSource),
		delivered: make([]uint64, len(ifaces)),
		received:  make([]uint64, len(ifaces)),
		bytes:     make([]uint64, len(ifaces)),
		done:      make(chan struct{}),
	}
	for range batchesPerSource {
		s.free <- &batch{src: s, buf: make([]byte, 0, batchBytes)}
	}
	return s
}

// release gives a written batch back to its source. It never blocks: a
// source owns exactly batchesPerSource batches.
func (s *source) release(b *batch) {
	b.reset()
	s.free <- b
}

// read copies packets from the agent's stream into batches and sends them
// on out, until the stream ends or abort is closed. It closes s.done.
func (s *source) read(out chan<- *batch, abort <-chan struct{}) {
	defer close(s.done)
	defer func() { s.ended = time.Now() }()
	err := s.readLoop(s.capture, out, abort)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	s.readErr = err
}

// readLoop reads the agent's pcapng stream from r (the capture channel)
// straight into batch buffers and parses it there (see source_pcapng.go).
// A batch is handed over before every read that may wait for the network,
// so packets never sit in a batch while the source is quiet; under load a
// read fills most of a batch. A block cut by the end of a read moves to
// the next batch.
func (s *source) readLoop(r io.Reader, out chan<- *batch, abort <-chan struct{}) error {
	select {
	case s.cur = <-s.free:
	case <-abort:
		return errAborted
	}
	var p ngParser
	parsed, need := 0, 0 // in s.cur.buf: end of the whole blocks, size of the next
	for {
		b := s.cur
		for {
			blk, n, err := p.parse(b.buf[parsed:])
			if err == nil && n > len(b.buf)-parsed {
				need = n
				break
			}
			if err != nil {
				err = fmt.Errorf("read pcapng: %w", err)
			} else if blk.kind == ngPacket {
				err = s.check(blk)
			}
			if err != nil {
				b.buf = b.buf[:parsed]
				if herr := s.handOver(out, abort); herr != nil {
					return herr
				}
				return err
			}
			if blk.kind == ngPacket {
				id := s.firstOut + blk.iface
				binary.LittleEndian.PutUint32(b.buf[parsed+8:], uint32(id))
				b.pkts = append(b.pkts, pktRef{ts: blk.ts, off: parsed, n: blk.n, iface: id})
				s.received[blk.iface]++
				s.bytes[blk.iface] += uint64(blk.caplen)
			}
			parsed += n
		}
		// Hand the whole blocks over and carry the partial one (if any)
		// to the next batch, big enough for it and a read.
		if len(b.pkts) > 0 || cap(b.buf)-len(b.buf) < minRead || need > cap(b.buf)-parsed {
			tail := b.buf[parsed:]
			b.buf = b.buf[:parsed]
			if len(b.pkts) > 0 {
				if err := s.handOver(out, abort); err != nil {
					return err
				}
			}
			nb := s.cur
			if want := max(need, len(tail)) + minRead; cap(nb.buf) < want {
				nb.buf = make([]byte, 0, max(batchBytes, want))
			}
			nb.buf = append(nb.buf[:0], tail...) // may overlap when nb == b
			parsed = 0
		}
		b = s.cur
		n, err := r.Read(b.buf[len(b.buf):cap(b.buf)])
		b.buf = b.buf[:len(b.buf)+n]
		if err != nil && n == 0 {
			if errors.Is(err, io.EOF) && len(b.buf) > parsed {
				err = io.ErrUnexpectedEOF
			}
			if herr := s.handOver(out, abort); herr != nil {
				return herr
			}
			if errors.Is(err, io.EOF) {
				return err
			}
			return fmt.Errorf("read pcapng: %w", err)
		}
	}
}

// check refuses a packet the output could not hold: the output (and
// Wireshark) refuse such packets, so they end this source, not the whole
// capture.
func (s *source) check(blk ngBlock) error {
	if blk.iface >= len(s.ifaces) {
		return fmt.Errorf("agent sent a packet of interface %d, it announced %d", blk.iface, len(s.ifaces))
	}
	name := s.ifaces[blk.iface].Name
	if snap := s.snaplen(blk.iface); blk.caplen > snap {
		return fmt.Errorf("agent sent a packet of %d bytes on %s, over its snaplen %d", blk.caplen, name, snap)
	}
	if blk.length < blk.caplen {
		return fmt.Errorf("agent sent a packet on %s with %d bytes captured of a %d byte packet", name, blk.caplen, blk.length)
	}
	return nil
}

// snaplen is the largest packet the agent may send on interface i: the
// snaplen it announced, at most tunnel.MaxSnaplen.
func (s *source) snaplen(i int) int {
	snap := int(s.ifaces[i].Snaplen)
	if snap <= 0 || snap > tunnel.MaxSnaplen {
		snap = tunnel.MaxSnaplen
	}
	return snap
}

// handOver sends the current batch, if it has packets, and takes a free one.
func (s *source) handOver(out chan<- *batch, abort <-chan struct{}) error {
	if s.cur == nil || len(s.cur.pkts) == 0 {
		return nil
	}
	s.cur.arrived = time.Now()
	select {
	case out <- s.cur:
	case <-abort:
		return errAborted
	}
	select {
	case s.cur = <-s.free:
		return nil
	case <-abort:
		s.cur = nil
		return errAborted
	}
}

// finalStats waits (bounded by ctx) for the agent's final stats. Without
// them it also waits for the agent connection to end, if it is ending: a
// dead connection closes its channels first and reports its own end just
// after, and the reason given to the user depends on it.
func (s *source) finalStats(ctx context.Context) (tunnel.Stats, bool) {
	st, err := s.capture.Wait(ctx)
	final := err == nil && st.Final
	if !final && err == nil && s.agent != nil {
		select {
		case <-s.agent.Done():
		case <-ctx.Done():
		}
	}
	return st, final
}
