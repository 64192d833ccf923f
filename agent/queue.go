package agent

import (
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// pktMeta locates one packet inside a batch's buffer.
type pktMeta struct {
	ts     int64 // Unix nanoseconds
	off    int32 // where its Enhanced Packet Block starts in buf
	caplen int32
	iface  int32
}

// batch is a run of packets copied out of libpcap, each already encoded
// as a pcapng Enhanced Packet Block, back to back in one buffer: the
// writer sends a batch with one write.
type batch struct {
	buf  []byte
	pkts []pktMeta
}

func (b *batch) reset() {
	b.buf = b.buf[:0]
	b.pkts = b.pkts[:0]
}

// pcapng Enhanced Packet Block: type, length, interface, timestamp high
// and low, captured length, original length, data padded to 4 bytes, no
// options, length again.
const (
	ngBlockEPB     = 0x00000006
	epbHeaderLen   = 28
	epbOverheadLen = epbHeaderLen + 4
)

// epbLen returns the length of the Enhanced Packet Block of a packet of
// caplen captured bytes.
func epbLen(caplen int) int { return epbOverheadLen + (caplen+3)&^3 }

// appendEPB appends the Enhanced Packet Block of one packet to b. The
// timestamp is in nanoseconds, the resolution every interface of the
// agent's section announces.
func appendEPB(b []byte, iface int, ts int64, data []byte, length int) []byte {
	n := epbLen(len(data))
	le := binary.LittleEndian
	b = le.AppendUint32(b, ngBlockEPB)
	b = le.AppendUint32(b, uint32(n))
	b = le.AppendUint32(b, uint32(iface))
	b = le.AppendUint32(b, uint32(uint64(ts)>>32))
	b = le.AppendUint32(b, uint32(ts))
	b = le.AppendUint32(b, uint32(len(data)))
	b = le.AppendUint32(b, uint32(length))
	b = append(b, data...)
	b = append(b, make([]byte, n-epbOverheadLen-len(data))...) // padding; does not allocate
	return le.AppendUint32(b, uint32(n))
}

// queue hands packets from the libpcap readers to the writer without ever
// blocking a reader: a reader appends a whole ring batch to the current
// batch under one lock; the writer swaps it for an empty one, writes it,
// and then says it is done with it. What does not fit is refused, and
// counted as dropped by the agent.
//
// The bound is exact: the pcapng bytes of the packets in the current
// batch and in the batch the writer holds never exceed maxBytes together.
// (Each batch's buffer grows on demand and never beyond maxBytes.)
type queue struct {
	maxBytes int
	ready    chan struct{} // signalled (coalesced) when cur gained packets

	mu   sync.Mutex
	cur  *batch
	held int // bytes of cur and of the batch the writer holds
}

func newQueue(maxBytes int) *queue {
	return &queue{
		maxBytes: maxBytes,
		ready:    make(chan struct{}, 1),
		cur:      &batch{buf: make([]byte, 0, min(maxBytes, 64<<10))},
	}
}

// add appends one packet to the current batch if it fits. q.mu is held.
func (q *queue) add(iface int, ts int64, data []byte, length int) bool {
	n := epbLen(len(data))
	if q.held+n > q.maxBytes {
		return false
	}
	b := q.cur
	if need := len(b.buf) + n; need > cap(b.buf) {
		grown := make([]byte, len(b.buf), min(max(2*cap(b.buf), need), q.maxBytes))
		copy(grown, b.buf)
		b.buf = grown
	}
	b.pkts = append(b.pkts, pktMeta{ts: ts, off: int32(len(b.buf)), caplen: int32(len(data)), iface: int32(iface)})
	b.buf = appendEPB(b.buf, iface, ts, data, length)
	q.held += n
	return true
}

// putRing queues the last batch r read for source iface, adding each
// packet that does not fit to dropped, and returns how many it queued.
func (q *queue) putRing(iface int, r *ringReader, dropped *atomic.Uint64) int {
	queued, off := 0, 0
	q.mu.Lock()
	for i := range r.n {
		ts, data, length := r.packet(i, off)
		off += len(data)
		if q.add(iface, ts, data, length) {
			queued++
		}
	}
	// Counted under the lock: a swap sees a source's refusals together
	// with the packets it queued before them.
	if refused := r.n - queued + r.lost; refused > 0 {
		dropped.Add(uint64(refused))
	}
	q.mu.Unlock()
	if queued > 0 {
		q.signal()
	}
	return queued
}

func (q *queue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// pending says whether packets are waiting.
func (q *queue) pending() bool { return len(q.ready) > 0 }

// swap takes the current batch and puts empty in its place. Its bytes
// still count against the bound until done is called with it.
func (q *queue) swap(empty *batch) *batch {
	empty.reset()
	q.mu.Lock()
	full := q.cur
	q.cur = empty
	q.mu.Unlock()
	return full
}

// done releases the bytes of b, a batch swap returned, once the writer
// has finished with it.
func (q *queue) done(b *batch) {
	q.mu.Lock()
	q.held -= len(b.buf)
	q.mu.Unlock()
}
