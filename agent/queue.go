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
// batch under one lock; the writer takes every batch that holds packets,
// writes them, and then says it is done with each. What does not fit is
// refused, and counted as dropped by the agent.
//
// The bound is exact: the pcapng bytes of the packets queued and of the
// batches the writer has not finished with never exceed maxBytes
// together. A batch holds at most chunkBytes (or one packet, if larger):
// when the current one is full, it is sealed and the next packet starts
// another, taken from the batches the writer is done with when there is
// one. So the memory a capture touches follows what it holds, a chunk at
// a time, and is reused for the rest of the capture: a buffer that grew
// by doubling would touch about twice its bound in fresh pages, and copy
// what it held at every step, just when the writer has fallen behind.
type queue struct {
	maxBytes int
	chunk    int           // the most packet bytes a batch is given room for
	ready    chan struct{} // signalled (coalesced) when cur gained packets

	mu     sync.Mutex
	cur    *batch   // the batch filling
	sealed []*batch // full batches queued before cur, oldest first
	free   []*batch // batches the writer is done with, empty, for reuse
	held   int      // bytes queued and of the batches the writer holds
}

// chunkBytes is the size of a queue's batches once it holds more than a
// first small one: large enough that a busy writer passes many full SSH
// packets per batch, small enough that a queue uses its memory in steps.
const (
	chunkBytes      = 1 << 20
	firstBatchBytes = 64 << 10
)

func newQueue(maxBytes int) *queue {
	q := &queue{
		maxBytes: maxBytes,
		chunk:    min(maxBytes, chunkBytes),
		ready:    make(chan struct{}, 1),
	}
	q.cur = q.fresh(q.first())
	return q
}

// first is the room a new batch starts with when the queue is not busy.
func (q *queue) first() int { return min(q.chunk, firstBatchBytes) }

// fresh returns an empty batch: one the writer is done with, or a new one
// with room for size bytes. q.mu is held (or q is not shared yet).
func (q *queue) fresh(size int) *batch {
	if n := len(q.free); n > 0 {
		b := q.free[n-1]
		q.free[n-1] = nil
		q.free = q.free[:n-1]
		return b
	}
	return &batch{buf: make([]byte, 0, size)}
}

// add appends one packet to the current batch if it fits. q.mu is held.
func (q *queue) add(iface int, ts int64, data []byte, length int) bool {
	n := epbLen(len(data))
	if q.held+n > q.maxBytes {
		return false
	}
	b := q.cur
	if need := len(b.buf) + n; need > cap(b.buf) {
		if len(b.buf) > 0 && need > q.chunk {
			// Full: seal it. The queue is busy, so the next batch gets
			// room for a whole chunk at once.
			q.sealed = append(q.sealed, b)
			b = q.fresh(q.chunk)
			q.cur = b
			need = n
		}
		if need > cap(b.buf) {
			grown := make([]byte, len(b.buf), max(min(2*cap(b.buf), q.chunk), need))
			copy(grown, b.buf)
			b.buf = grown
		}
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
	// Counted under the lock: a take sees a source's refusals together
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

// take appends to dst every batch that holds packets, oldest first,
// and returns it; the queue goes on filling an empty batch. Their bytes
// still count against the bound until done is called with each.
func (q *queue) take(dst []*batch) []*batch {
	q.mu.Lock()
	defer q.mu.Unlock()
	dst = append(dst, q.sealed...)
	clear(q.sealed)
	q.sealed = q.sealed[:0]
	if len(q.cur.pkts) > 0 {
		dst = append(dst, q.cur)
		q.cur = q.fresh(q.first())
	}
	return dst
}

// done releases the bytes of b, a batch take returned, once the writer
// has finished with it, and keeps b for reuse.
func (q *queue) done(b *batch) {
	q.mu.Lock()
	q.held -= len(b.buf)
	b.reset()
	q.free = append(q.free, b)
	q.mu.Unlock()
}
