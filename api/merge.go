package api

import (
	"container/heap"
	"math"
	"slices"
	"time"
)

// batchBytes is the largest size of a batch buffer (larger only for a
// larger block). A source starts with batches of firstBatchBytes and
// doubles the size of those it takes next each time a read fills all the
// room a batch offered, up to batchBytes: a quiet or slow source (one of
// fifty in a capture) holds a few small buffers, a busy one reads in large
// chunks. A source starts with one batch and allocates more as the merger
// holds them, up to its share of mergeBudget, between minBatches and
// maxBatches. Together they bound the API's packet memory per capture.
const (
	batchBytes      = 128 << 10
	firstBatchBytes = 32 << 10
	smallBatch      = 16 << 10 // joins the last held batch of its source
	mergeBudget     = 24 << 20
	minBatches      = 4
	maxBatches      = 64
)

// watermarkTimeout is how long the api may wait for anything from a
// source's agent (which sends a watermark at least every 50 ms) before the
// merge stops waiting for it: one hung agent cannot stall the live stream.
// It is reported, and taken back into the merge when it sends again.
const watermarkTimeout = 2 * time.Second

// The output passes full SSH packets (32 KiB) on to the client as they
// fill (tunnel.Packer), and the rest when its oldest unflushed packet has
// waited flushDelay, or at the end: one channel write per handful of
// small batches instead of one per batch (each is an SSH packet,
// encrypted, and a syscall).
const flushDelay = 5 * time.Millisecond

// interfaceSlack is how far back in time the kernel may deliver a packet
// after a newer one on the same interface (the agent allows the same).
const interfaceSlack = time.Millisecond

// pktRef locates a packet's Enhanced Packet Block, ready for the output,
// inside a batch buffer: n bytes at off. ts is its timestamp in
// nanoseconds since the epoch; iface is the output interface id.
type pktRef struct {
	ts    int64
	off   int
	n     int
	iface int
}

// batch is a run of packets from one source, in the source's order until
// the merger sorts it by timestamp. wm is the newest watermark read with
// them (0: none); last marks the source's final batch.
type batch struct {
	src     *source
	arrived time.Time
	buf     []byte
	pkts    []pktRef
	next    int // first packet not yet written
	wm      int64
	last    bool
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.pkts = b.pkts[:0]
	b.next = 0
	b.wm = 0
	b.last = false
}

// merger writes batches from many sources to one Output. Ordered, it
// writes packets in strict timestamp order: a packet goes out once every
// source still in the merge has promised (by its watermark, or by its
// packets) that nothing older follows. A source whose watermark has not
// moved for watermarkTimeout leaves the merge until it moves again
// (onLate reports both); a source that has ended no longer holds it back.
// A source that holds every batch it may have waits, its reader blocked:
// the others' watermarks move on without it (or they leave the merge), so
// it never waits for long, and order is never given up for memory; what
// its agent cannot send meanwhile is counted as the agent's drops.
// Unordered, packets go out as they arrive. Either way, a packet older
// than one already written is counted as out of order. It is owned by one
// goroutine.
type merger struct {
	out     *Output
	ordered bool
	srcs    []*source
	onLate  func(src *source, late bool)
	// expected is how many sources the batch allowance is shared by.
	expected int

	runs runHeap // batches with packets to write, by next timestamp
	held int     // batches in runs
	// floor, until floorUntil, caps the merge for targets still opening
	// (see holdBack); zero floorUntil: none.
	floor      int64
	floorUntil time.Time
	newest     int64     // newest timestamp written
	unflushed  time.Time // when the output's oldest unflushed packet was written
}

// newMerger merges srcs into out, by timestamp when ordered. It sizes the
// sources' batch allowance, so it must run before their readers start.
func newMerger(out *Output, ordered bool, srcs []*source, onLate func(*source, bool)) *merger {
	n := batchesEach(len(srcs))
	for _, s := range srcs {
		s.maxBatches = n
	}
	if onLate == nil {
		onLate = func(*source, bool) {}
	}
	return &merger{out: out, ordered: ordered, srcs: srcs, onLate: onLate}
}

// join takes a source into the merge while it runs (a target that opened
// late, a followed capture's new instance), before its reader starts.
// Until its first watermark it holds the merge back at the promise it
// joined with (see opened.newSource), at most watermarkTimeout.
func (m *merger) join(s *source) {
	m.srcs = append(m.srcs, s)
	s.maxBatches = batchesEach(max(len(m.srcs), m.expected))
}

// openHoldBack bounds how long the session's targets still opening hold
// the merge back (see holdBack): a target slower to open than that joins
// late, and those of its first packets older than what was written by
// then are counted out of order.
const openHoldBack = time.Second

// holdBack caps the merge at floor until until, or until release: the
// session's targets still opening will deliver packets from when their
// capture opened, no older than floor (when the opens began, less
// openedSlack), and the packets of the sources already running that are
// newer must wait for them, or the file would not be in time order.
func (m *merger) holdBack(floor int64, until time.Time) {
	m.floor, m.floorUntil = floor, until
}

// release ends a holdBack: every target opened, failed, or was given up.
func (m *merger) release() { m.floorUntil = time.Time{} }

// expect sizes the batch allowance of the sources, before their readers
// start, for n sources in all: targets still opening get the same share
// when they join, so together they stay within mergeBudget.
func (m *merger) expect(n int) {
	m.expected = n
	for _, s := range m.srcs {
		s.maxBatches = batchesEach(max(len(m.srcs), n))
	}
}

// batchesEach is the batch allowance of each of n sources.
func batchesEach(n int) int {
	return min(max(mergeBudget/batchBytes/max(n, 1), minBatches), maxBatches)
}

// add takes a batch from a source.
func (m *merger) add(b *batch) error {
	s := b.src
	// A source's packets also speak for it: each of its interfaces
	// delivers in timestamp order (within the agent's reorder slack), so
	// once every interface has sent, nothing older than the oldest of
	// their newest packets follows.
	for _, p := range b.pkts {
		k := p.iface - s.firstOut
		s.newest[k] = max(s.newest[k], p.ts)
	}
	s.wm = max(s.wm, b.wm, s.newestAll()-int64(interfaceSlack))
	if s.late {
		s.late = false
		m.onLate(s, false)
	}
	if b.last {
		s.finished = true
	}
	if !m.ordered || len(b.pkts) == 0 {
		err := m.writeAll(b)
		s.release(b)
		s.dropIfDone()
		return err
	}
	// One source's interfaces are read by separate readers: sort the
	// batch into one timestamp-ordered run (it usually is one already).
	if !slices.IsSortedFunc(b.pkts, cmpTs) {
		slices.SortStableFunc(b.pkts, cmpTs)
	}
	// A small batch joins the source's last held run when it follows it
	// in time, and its buffer goes back at once: an agent at a low rate
	// sends about a packet per message, and a batch per packet would let
	// a source hold only a few packets before its reader must wait.
	if t := s.tail; t != nil && len(b.buf) <= smallBatch && cap(t.buf)-len(t.buf) >= len(b.buf) &&
		b.pkts[0].ts >= t.pkts[len(t.pkts)-1].ts {
		off := len(t.buf)
		t.buf = append(t.buf, b.buf...)
		for _, p := range b.pkts {
			p.off += off
			t.pkts = append(t.pkts, p)
		}
		s.release(b)
		return nil
	}
	heap.Push(&m.runs, b)
	m.held++
	s.held++
	s.tail = b
	return nil
}

// newestAll is the oldest of the source's interfaces' newest packets: no
// packet older follows (within interfaceSlack); 0 until each has sent.
func (s *source) newestAll() int64 {
	if len(s.newest) == 0 {
		return 0
	}
	return slices.Min(s.newest)
}

// promised is how far the merge may go for source s. A source holding
// every batch it may have cannot read its next watermark: its own newest
// packets must speak for it without the slack, or, when they are all
// within the slack of each other, nothing would ever go out.
func (s *source) promised() int64 {
	if s.held >= s.maxBatches {
		return max(s.wm, s.newestAll())
	}
	return s.wm
}

func cmpTs(a, b pktRef) int {
	switch {
	case a.ts < b.ts:
		return -1
	case a.ts > b.ts:
		return 1
	}
	return 0
}

func (m *merger) writeAll(b *batch) error {
	for i := b.next; i < len(b.pkts); i++ {
		if err := m.write(b, i); err != nil {
			return err
		}
	}
	b.next = len(b.pkts)
	return nil
}

func (m *merger) write(b *batch, i int) error {
	p := b.pkts[i]
	if err := m.out.WriteBlock(b.buf[p.off : p.off+p.n]); err != nil {
		return err
	}
	k := p.iface - b.src.firstOut
	b.src.delivered[k]++
	if p.ts < m.newest {
		b.src.outOfOrder[k]++
	} else {
		m.newest = p.ts
	}
	return nil
}

// emit writes, in timestamp order, every held packet no newer than the
// smallest watermark of the sources in the merge (all of them when
// flushAll), and flushes the output when it is due. It returns when to
// call it again: when the output or a source's watermark timeout is due,
// or zero when nothing is held or buffered.
func (m *merger) emit(now time.Time, flushAll bool) (time.Time, error) {
	due, err := m.writeHeld(now, flushAll)
	if err != nil {
		return time.Time{}, err
	}
	if m.out.Buffered() == 0 {
		return due, nil
	}
	if m.unflushed.IsZero() {
		m.unflushed = now
	}
	if flushAll || now.Sub(m.unflushed) >= flushDelay {
		m.unflushed = time.Time{}
		return due, m.out.Flush()
	}
	if at := m.unflushed.Add(flushDelay); due.IsZero() || at.Before(due) {
		due = at
	}
	return due, nil
}

// writeHeld writes what emit may write and returns when a source's
// watermark timeout is due, or zero when nothing is held.
func (m *merger) writeHeld(now time.Time, flushAll bool) (time.Time, error) {
	limit, due := m.limit(now)
	for m.runs.Len() > 0 {
		b := m.runs[0]
		if b.pkts[b.next].ts > limit && !flushAll {
			return due, nil
		}
		if err := m.write(b, b.next); err != nil {
			return time.Time{}, err
		}
		b.next++
		if b.next < len(b.pkts) {
			heap.Fix(&m.runs, 0)
			continue
		}
		heap.Pop(&m.runs)
		m.held--
		b.src.held--
		if b.src.tail == b {
			b.src.tail = nil
		}
		b.src.release(b)
		b.src.dropIfDone()
	}
	return time.Time{}, nil
}

// limit returns the smallest watermark of the sources in the merge, after
// taking out those that timed out, capped by a holdBack, and when the
// next would time out or the holdBack end.
func (m *merger) limit(now time.Time) (int64, time.Time) {
	limit := int64(math.MaxInt64)
	var due time.Time
	if !m.floorUntil.IsZero() {
		if now.Before(m.floorUntil) {
			limit, due = m.floor, m.floorUntil
		} else {
			m.floorUntil = time.Time{}
		}
	}
	for _, s := range m.srcs {
		if s.finished || s.late {
			continue
		}
		// Only an agent that sends nothing times out: a source the api
		// does not read (its batches held, or the merger busy) is not
		// late, and the merge waits for it.
		if ws := s.waitingSince.Load(); ws != 0 {
			at := time.Unix(0, ws).Add(watermarkTimeout)
			if !now.Before(at) {
				s.late = true
				m.onLate(s, true)
				continue
			}
			if due.IsZero() || at.Before(due) {
				due = at
			}
		}
		limit = min(limit, s.promised())
	}
	return limit, due
}

// runHeap orders batches by their next packet's timestamp.
type runHeap []*batch

func (h runHeap) Len() int { return len(h) }
func (h runHeap) Less(i, j int) bool {
	return h[i].pkts[h[i].next].ts < h[j].pkts[h[j].next].ts
}
func (h runHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *runHeap) Push(x any)   { *h = append(*h, x.(*batch)) }
func (h *runHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
