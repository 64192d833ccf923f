package api

import (
	"container/heap"
	"time"
)

// batchBytes is the size a source's batch is handed over at, at the
// latest; batchesPerSource how many batches a source owns. Together they
// bound the API's packet memory per source.
const (
	batchBytes       = 128 << 10
	batchesPerSource = 3
)

// pktRef locates a packet's Enhanced Packet Block, ready for the output,
// inside a batch buffer: n bytes at off. ts is its timestamp in
// nanoseconds since the epoch; iface is the output interface id.
type pktRef struct {
	ts    int64
	off   int
	n     int
	iface int
}

// batch is a run of packets from one source, in the source's order.
type batch struct {
	src     *source
	arrived time.Time
	buf     []byte
	pkts    []pktRef
	next    int // first packet not yet written
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.pkts = b.pkts[:0]
	b.next = 0
}

// merger writes batches from many sources to one Output. With a zero
// window packets go out in arrival order; otherwise each source's packets
// wait up to window so that packets of all sources go out by timestamp.
// Order within a source is always kept. It is owned by one goroutine.
type merger struct {
	out    *Output
	window time.Duration

	// pending holds, per source, batches not yet fully written, oldest
	// first; heads orders sources by their next packet's timestamp.
	pending map[*source][]*batch
	heads   headHeap
	held    int // batches held in pending
	// starved counts sources holding all their batches in pending: their
	// readers wait for one back, so emission cannot wait for the window.
	starved int
}

func newMerger(out *Output, window time.Duration) *merger {
	return &merger{out: out, window: window, pending: make(map[*source][]*batch)}
}

// add takes a batch from a source.
func (m *merger) add(b *batch) error {
	if m.window <= 0 {
		err := m.writeAll(b)
		b.src.release(b)
		return err
	}
	q := m.pending[b.src]
	m.pending[b.src] = append(q, b)
	m.held++
	if len(q)+1 == batchesPerSource {
		m.starved++
	}
	if len(q) == 0 {
		heap.Push(&m.heads, b.src.headOf(b))
	}
	return nil
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
	b.src.delivered[p.iface-b.src.firstOut]++
	return nil
}

// emit writes, in timestamp order, every packet that has waited out the
// window (or all of them when flushAll; or, while any source has no free
// batch left and would stall, the oldest packets of all sources until it
// has one again). It returns when the next packet becomes due, or zero
// when nothing is held.
func (m *merger) emit(now time.Time, flushAll bool) (time.Time, error) {
	for m.heads.Len() > 0 {
		h := m.heads[0]
		q := m.pending[h.src]
		b := q[0]
		if !flushAll && m.starved == 0 && now.Sub(b.arrived) < m.window {
			return b.arrived.Add(m.window), nil
		}
		if err := m.write(b, b.next); err != nil {
			return time.Time{}, err
		}
		b.next++
		if b.next == len(b.pkts) {
			if len(q) == batchesPerSource {
				m.starved--
			}
			q = q[1:]
			m.held--
			b.src.release(b)
			if len(q) == 0 {
				delete(m.pending, h.src)
				heap.Pop(&m.heads)
				continue
			}
			m.pending[h.src] = q
			b = q[0]
		}
		m.heads[0] = h.src.headOf(b)
		heap.Fix(&m.heads, 0)
	}
	return time.Time{}, nil
}

// head is a source's next packet to write.
type head struct {
	src *source
	ts  int64
}

func (s *source) headOf(b *batch) head { return head{src: s, ts: b.pkts[b.next].ts} }

type headHeap []head

func (h headHeap) Len() int           { return len(h) }
func (h headHeap) Less(i, j int) bool { return h[i].ts < h[j].ts }
func (h headHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *headHeap) Push(x any)        { *h = append(*h, x.(head)) }
func (h *headHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
