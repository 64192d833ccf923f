package agent

/*
#cgo LDFLAGS: -lpcap
#include <poll.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <pcap/pcap.h>

// One packet copied out of the ring; mirrored by ringPkt.
typedef struct {
	int64_t sec;
	int64_t frac; // microseconds or nanoseconds, as the handle gives them
	uint32_t caplen;
	uint32_t len;
} agent_pkt;

typedef struct {
	pcap_t *p;
	unsigned char *buf;
	int cap, used, room;
	agent_pkt *pkts;
	int max, n;
	int full, lost;
} agent_batch;

// agent_take copies one packet into the batch, and stops the dispatch
// once the batch could not take another packet of snaplen bytes.
static void agent_take(unsigned char *user, const struct pcap_pkthdr *h, const unsigned char *data) {
	agent_batch *b = (agent_batch *)user;
	if (b->n >= b->max || h->caplen > (unsigned)(b->cap - b->used)) {
		b->lost++; // not expected: the batch stops while a whole packet still fits
		b->full = 1;
		pcap_breakloop(b->p);
		return;
	}
	memcpy(b->buf + b->used, data, h->caplen);
	agent_pkt *k = &b->pkts[b->n++];
	k->sec = h->ts.tv_sec;
	k->frac = h->ts.tv_usec;
	k->caplen = h->caplen;
	k->len = h->len;
	b->used += h->caplen;
	if (b->n == b->max || b->cap - b->used < b->room) {
		b->full = 1;
		pcap_breakloop(b->p);
	}
}

// agent_now is the wall clock in Unix nanoseconds, the kernel's packet
// timestamps' clock.
static int64_t agent_now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

// agent_dispatch copies up to cnt packets (-1: what the ring holds) into
// buf and pkts with pcap_dispatch on a non-blocking handle; when the ring
// holds nothing, it waits up to wait_ms for a block and tries once more.
// It returns the number of packets or a libpcap error; *lost counts
// packets that did not fit. *checked is when the last dispatch began: if
// it found nothing, every block the kernel had handed over by then was
// read before.
static int agent_dispatch(pcap_t *p, int cnt, unsigned char *buf, int cap, int room, agent_pkt *pkts, int max, int wait_ms, int *used, int *lost, int64_t *checked) {
	agent_batch b = {p, buf, cap, 0, room, pkts, max, 0, 0, 0};
	*checked = agent_now();
	int r = pcap_dispatch(p, cnt, agent_take, (unsigned char *)&b);
	if (r == 0 && b.n == 0 && wait_ms > 0) {
		struct pollfd pfd = {pcap_get_selectable_fd(p), POLLIN, 0};
		// Readable, timed out, an error to report, or EINTR: dispatch
		// says which, and a fresh look at an empty ring says it is
		// empty now.
		poll(&pfd, 1, wait_ms);
		*checked = agent_now();
		r = pcap_dispatch(p, cnt, agent_take, (unsigned char *)&b);
	}
	*used = b.used;
	*lost = b.lost;
	if (r >= 0 || r == PCAP_ERROR_BREAK) {
		return b.n;
	}
	return r;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"reflect"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcap"
)

// Ring batch sizes: one dispatch copies at most ringBatchBytes (or
// ringBatchPkts packets) before the reader hands them to the queue, so a
// stop is noticed within one batch and the copy stays in the CPU cache.
const (
	ringBatchBytes = 256 << 10
	ringBatchPkts  = 4096
)

// ringPkt mirrors agent_pkt.
type ringPkt = C.agent_pkt

// ringReader reads a libpcap handle a batch at a time: one cgo call and
// one pcap_dispatch copy every packet the ring holds (up to a batch) into
// a reusable buffer, instead of a cgo call, a lock and a copy per packet.
// Not safe for concurrent use; the handle must not be closed while a read
// runs.
type ringReader struct {
	p     *C.pcap_t
	nanos bool // timestamps are in nanoseconds, not microseconds

	buf  []byte
	pkts []ringPkt
	room int // bytes the batch keeps free: the largest packet

	// The last batch: packets n, their bytes at offsets in buf.
	n    int
	lost int // packets consumed from the ring that did not fit (not expected)
	// checked is when the read last looked at the ring (Unix ns); when n
	// is 0, the ring held nothing the kernel had handed over by then.
	checked int64
}

// errHandleLayout reports a gopacket whose pcap.Handle no longer keeps
// the libpcap pointer where this package reads it (see pcapPointer).
var errHandleLayout = errors.New("gopacket's pcap.Handle has no libpcap pointer field")

// pcapPointer returns the pcap_t of h. gopacket does not export it, and
// reading a batch needs it; the field is looked up by name and type, so a
// gopacket that changes it fails here, at open, not with a wild pointer.
func pcapPointer(h *pcap.Handle) (*C.pcap_t, error) {
	f, ok := reflect.TypeFor[pcap.Handle]().FieldByName("cptr")
	if !ok || f.Type.Kind() != reflect.Pointer || f.Type.Size() != unsafe.Sizeof(uintptr(0)) {
		return nil, errHandleLayout
	}
	p := *(**C.pcap_t)(unsafe.Add(unsafe.Pointer(h), f.Offset))
	if p == nil {
		return nil, errHandleLayout
	}
	return p, nil
}

// newRingReader prepares batch reads of h. gopacket makes the handle
// non-blocking, which it must stay: blocking, libpcap waits for a
// TPACKET_V3 block without a timeout, and the kernel never closes an
// empty block, so a quiet capture could not notice a stop. ringReader
// waits for the ring itself, up to readTimeout.
func newRingReader(h *pcap.Handle) (*ringReader, error) {
	p, err := pcapPointer(h)
	if err != nil {
		return nil, err
	}
	room := int(C.pcap_snapshot(p))
	if room <= 0 {
		room = 262144 // libpcap's largest snaplen
	}
	return &ringReader{
		p:     p,
		nanos: h.Resolution() == gopacket.TimestampResolutionNanosecond,
		buf:   make([]byte, max(ringBatchBytes, 2*room)),
		pkts:  make([]ringPkt, ringBatchPkts),
		room:  room,
	}, nil
}

// socket is libpcap's packet socket descriptor of the handle: the handle
// owns it. (Looked up by comparing the process's packet sockets before
// and after activation, it was misjudged while other captures opened or
// closed theirs, and a capture on lo failed.)
func (r *ringReader) socket() int { return int(C.pcap_get_selectable_fd(r.p)) }

// read copies up to limit packets (0: no limit) into the batch and
// returns how many; 0 when none came within the handle's timeout.
func (r *ringReader) read(limit int) (int, error) {
	cnt := C.int(-1)
	if limit > 0 && limit < len(r.pkts) {
		cnt = C.int(limit)
	}
	var used, lost C.int
	var checked C.int64_t
	n := C.agent_dispatch(r.p, cnt, (*C.uchar)(unsafe.Pointer(&r.buf[0])), C.int(len(r.buf)), C.int(r.room),
		&r.pkts[0], C.int(len(r.pkts)), C.int(readTimeout.Milliseconds()), &used, &lost, &checked)
	r.lost = int(lost)
	r.checked = int64(checked)
	if n < 0 {
		r.n = 0
		return 0, fmt.Errorf("%s", C.GoString(C.pcap_geterr(r.p)))
	}
	r.n = int(n)
	return r.n, nil
}

// packet returns packet i of the last batch, whose bytes start at off in
// buf: its timestamp in Unix nanoseconds, its captured bytes and its
// length on the wire. Packets are walked in ring order, off advancing by
// each packet's captured length.
func (r *ringReader) packet(i, off int) (ts int64, data []byte, length int) {
	k := &r.pkts[i]
	ts = int64(k.sec) * 1e9
	if r.nanos {
		ts += int64(k.frac)
	} else {
		ts += int64(k.frac) * 1e3
	}
	c := int(k.caplen)
	return ts, r.buf[off : off+c : off+c], int(k.len)
}
