package agent

import (
	"sync"
	"time"

	"github.com/gopacket/gopacket"
)

// pktMeta locates one packet inside a batch's buffer.
type pktMeta struct {
	iface  int
	ts     time.Time
	off    int
	caplen int
	length int
}

// batch is a run of packets copied out of libpcap, packed into one buffer.
type batch struct {
	buf  []byte
	pkts []pktMeta
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.pkts = b.pkts[:0]
}

// queue hands packets from the libpcap readers to the writer without ever
// blocking a reader: readers append to the current batch; the writer swaps
// it for an empty one. What does not fit is refused, and the reader counts
// it as dropped by the agent. Memory is bounded by two batches of at most
// maxBytes and maxPkts each.
type queue struct {
	maxBytes int
	maxPkts  int
	ready    chan struct{} // signalled (coalesced) when cur gained a packet

	mu  sync.Mutex
	cur *batch
}

func newQueue(maxBytes, maxPkts int) *queue {
	return &queue{
		maxBytes: maxBytes,
		maxPkts:  maxPkts,
		ready:    make(chan struct{}, 1),
		cur:      &batch{buf: make([]byte, 0, min(maxBytes, 64<<10))},
	}
}

// put copies data into the current batch. It returns false when the batch
// is full.
func (q *queue) put(iface int, ci gopacket.CaptureInfo, data []byte) bool {
	q.mu.Lock()
	b := q.cur
	if len(b.buf)+len(data) > q.maxBytes || len(b.pkts) >= q.maxPkts {
		q.mu.Unlock()
		return false
	}
	b.pkts = append(b.pkts, pktMeta{iface: iface, ts: ci.Timestamp, off: len(b.buf), caplen: len(data), length: ci.Length})
	b.buf = append(b.buf, data...)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
	return true
}

// swap takes the current batch and puts empty in its place.
func (q *queue) swap(empty *batch) *batch {
	empty.reset()
	q.mu.Lock()
	full := q.cur
	q.cur = empty
	q.mu.Unlock()
	return full
}
