package api

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
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
	capture  *agentproto.Capture
	ifaces   []agentproto.InterfaceStats // as the agent announced them
	firstOut int                         // output id of ifaces[0]
	started  time.Time
	// rank orders the sources in the summary: its target's index in
	// Session.Targets, or after them in the order followed targets joined.
	rank int

	// free holds batches the reader may fill; the merger returns them.
	// The reader allocates up to maxBatches (set by the merger before the
	// reader starts) as it needs them.
	free       chan *batch
	maxBatches int
	owned      int    // batches allocated; reader goroutine
	batchSize  int    // capacity of the batches it takes next; reader goroutine
	waited     bool   // the last take waited for the merger; reader goroutine
	cur        *batch // owned by the reader goroutine
	sentWm     int64  // newest watermark handed over; reader goroutine
	// waitingSince is when the reader began waiting for the agent to send
	// (unix ns), 0 while it parses or hands over: the merger's measure of
	// a hung agent.
	waitingSince atomic.Int64

	// Owned by the merger goroutine: packets written and of them written
	// out of timestamp order, per interface; the newest timestamp read per
	// interface; the source's watermark, when it last moved, whether it is
	// out of the merge for sending nothing, or finished (its last batch came);
	// batches it holds.
	// cutOff is set when the source was closed for not stopping in time.
	delivered  []uint64
	outOfOrder []uint64
	newest     []int64
	wm         int64
	late       bool
	finished   bool
	held       int    // batches in the merger
	tail       *batch // the last of them, which small batches join
	cutOff     bool
	// gone is set when a followed capture's resolver no longer lists the
	// source's target: it ends as EndInstanceGone.
	gone bool

	// received and bytes count packets and bytes read, per interface; owned
	// by the reader goroutine, read after done.
	received []uint64
	bytes    []uint64

	// Set by the reader goroutine before done is closed.
	done    chan struct{}
	readErr error
	ended   time.Time
}

func newSource(t Target, agent *tunnel.Client, c *agentproto.Capture, ifaces []agentproto.InterfaceStats, firstOut int) *source {
	now := time.Now()
	s := &source{
		t: t, agent: agent, capture: c, ifaces: ifaces, firstOut: firstOut, started: now,
		free:       make(chan *batch, maxBatches),
		maxBatches: minBatches,
		batchSize:  firstBatchBytes,
		delivered:  make([]uint64, len(ifaces)),
		outOfOrder: make([]uint64, len(ifaces)),
		newest:     make([]int64, len(ifaces)),
		received:   make([]uint64, len(ifaces)),
		bytes:      make([]uint64, len(ifaces)),
		done:       make(chan struct{}),
	}
	s.waitingSince.Store(now.UnixNano()) // for its first bytes
	return s
}

// release gives a written batch back to its source. It never blocks: the
// free channel holds every batch a source may own.
func (s *source) release(b *batch) {
	b.reset()
	s.free <- b
}

// dropIfDone lets go of the batch buffers of a source whose last batch
// came and was written: a followed capture may see many sources come and
// go, and an ended one needs no buffers. Merger goroutine.
func (s *source) dropIfDone() {
	if !s.finished || s.held > 0 {
		return
	}
	for {
		select {
		case <-s.free:
		default:
			return
		}
	}
}

// take returns a free batch, allocating one while the source owns fewer
// than maxBatches, or waits for the merger to return one (and notes that
// in waited). Its buffer holds at least batchSize bytes.
func (s *source) take(abort <-chan struct{}) (*batch, error) {
	s.waited = false
	select {
	case b := <-s.free:
		return s.sized(b), nil
	default:
	}
	if s.owned < s.maxBatches {
		s.owned++
		return &batch{src: s, buf: make([]byte, 0, s.batchSize)}, nil
	}
	s.waited = true
	select {
	case b := <-s.free:
		return s.sized(b), nil
	case <-abort:
		return nil, errAborted
	}
}

// sized gives a returned batch a buffer of batchSize if its own is
// smaller: the source has grown busier since it was made.
func (s *source) sized(b *batch) *batch {
	if cap(b.buf) < s.batchSize {
		b.buf = make([]byte, 0, s.batchSize)
	}
	return b
}

// read copies packets from the agent's stream into batches and sends them
// on out, until the stream ends or abort is closed. It closes s.done.
func (s *source) read(out chan<- *batch, abort <-chan struct{}) {
	defer close(s.done)
	defer func() { s.ended = time.Now() }()
	err := s.readLoop(s.capture, out, abort)
	if s.cur != nil {
		// The merger learns the end in order, after every packet.
		s.cur.last = true
		if herr := s.handOver(out, abort); herr != nil && err == nil {
			err = herr
		}
	}
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
	var err error
	if s.cur, err = s.take(abort); err != nil {
		return err
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
			if blk.kind == ngWatermark {
				b.wm = max(b.wm, blk.ts)
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
		if s.due(b) || cap(b.buf)-len(b.buf) < minRead || need > cap(b.buf)-parsed {
			tail := b.buf[parsed:]
			b.buf = b.buf[:parsed]
			if err := s.handOver(out, abort); err != nil {
				return err
			}
			nb := s.cur
			if want := max(need, len(tail)) + minRead; cap(nb.buf) < want {
				nb.buf = make([]byte, 0, max(s.batchSize, want))
			}
			nb.buf = append(nb.buf[:0], tail...) // may overlap when nb == b
			parsed = 0
		}
		b = s.cur
		s.waitingSince.Store(time.Now().UnixNano())
		room := cap(b.buf) - len(b.buf)
		n, err := r.Read(b.buf[len(b.buf):cap(b.buf)])
		s.waitingSince.Store(0)
		b.buf = b.buf[:len(b.buf)+n]
		if n == room && s.batchSize < batchBytes && !s.waited {
			// More was waiting: read in larger chunks. Not when the
			// reader had waited for the merger (targets still opening,
			// another source's watermark): what piled up meanwhile says
			// nothing about the rate, and fifty sources holding their
			// allowance in 128 KiB batches is what made pcap-api's heap.
			s.batchSize *= 2
		}
		s.waited = false
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
// snaplen it announced, at most agentproto.MaxSnaplen.
func (s *source) snaplen(i int) int {
	snap := int(s.ifaces[i].Snaplen)
	if snap <= 0 || snap > agentproto.MaxSnaplen {
		snap = agentproto.MaxSnaplen
	}
	return snap
}

// due says whether b has anything for the merger: packets, a newer
// watermark, or the end.
func (s *source) due(b *batch) bool {
	return len(b.pkts) > 0 || b.wm > s.sentWm || b.last
}

// handOver sends the current batch, if it is due, and takes a free one.
func (s *source) handOver(out chan<- *batch, abort <-chan struct{}) error {
	if s.cur == nil || !s.due(s.cur) {
		return nil
	}
	s.cur.arrived = time.Now()
	s.sentWm = max(s.sentWm, s.cur.wm)
	last := s.cur.last
	select {
	case out <- s.cur:
	case <-abort:
		return errAborted
	}
	s.cur = nil
	if last {
		return nil
	}
	var err error
	s.cur, err = s.take(abort)
	return err
}

// finalStatsWait bounds the wait for every source's final stats at the
// end of a session: one deadline shared by all, so a hundred silent agents
// cost one wait, not a hundred.
const finalStatsWait = time.Second

// sourceFinal is one source's final stats, and whether they are final.
type sourceFinal struct {
	st    agentproto.Stats
	final bool
}

// finalStatsAll waits for every source's final stats side by side, under
// one deadline of wait, and returns them in srcs' order.
func finalStatsAll(srcs []*source, wait time.Duration) []sourceFinal {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res := make([]sourceFinal, len(srcs))
	var wg sync.WaitGroup
	for i, src := range srcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res[i].st, res[i].final = src.finalStats(ctx)
		}()
	}
	wg.Wait()
	return res
}

// finalStats waits (bounded by ctx) for the agent's final stats. Without
// them it also waits for the agent connection to end, if it is ending: a
// dead connection closes its channels first and reports its own end just
// after, and the reason given to the user depends on it.
func (s *source) finalStats(ctx context.Context) (agentproto.Stats, bool) {
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
