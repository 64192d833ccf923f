package agent

/*
#cgo LDFLAGS: -lpcap
#include <stdint.h>
#include <string.h>
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

// agent_dispatch copies up to cnt packets (-1: what the ring holds) into
// buf and pkts with pcap_dispatch on a non-blocking handle, without
// waiting. It returns the number of packets or a libpcap error; *lost
// counts packets that did not fit.
static int agent_dispatch(pcap_t *p, int cnt, unsigned char *buf, int cap, int room, agent_pkt *pkts, int max, int *used, int *lost) {
	agent_batch b = {p, buf, cap, 0, room, pkts, max, 0, 0, 0};
	int r = pcap_dispatch(p, cnt, agent_take, (unsigned char *)&b);
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
	"os"
	"reflect"
	"syscall"
	"time"
	"unsafe"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcap"
	"golang.org/x/sys/unix"
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
// runs, and close must be called when the handle is closed.
type ringReader struct {
	p     *C.pcap_t
	nanos bool // timestamps are in nanoseconds, not microseconds

	// wake is a duplicate of libpcap's socket registered with Go's
	// network poller: a reader that found the ring empty parks on it
	// like any goroutine waiting for the network, and the kernel wakes it
	// when it hands a ring block over. (Waiting in poll(2) inside the cgo
	// call held an OS thread in a system call for up to readTimeout; the
	// runtime's sysmon never sleeps while one does, and takes its P back
	// after 10 ms and then wakes every 20 µs for a while: most of an idle
	// capture's CPU.)
	wake *os.File
	rc   syscall.RawConn

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
// waits for the ring itself, in Go's network poller.
func newRingReader(h *pcap.Handle) (*ringReader, error) {
	p, err := pcapPointer(h)
	if err != nil {
		return nil, err
	}
	wake, err := pollable(int(C.pcap_get_selectable_fd(p)))
	if err != nil {
		return nil, err
	}
	rc, err := wake.SyscallConn()
	if err != nil {
		wake.Close()
		return nil, err
	}
	room := int(C.pcap_snapshot(p))
	if room <= 0 {
		room = 262144 // libpcap's largest snaplen
	}
	return &ringReader{
		p:     p,
		nanos: h.Resolution() == gopacket.TimestampResolutionNanosecond,
		wake:  wake,
		rc:    rc,
		buf:   make([]byte, max(ringBatchBytes, 2*room)),
		pkts:  make([]ringPkt, ringBatchPkts),
		room:  room,
	}, nil
}

// pollable returns a duplicate of fd, libpcap's non-blocking socket,
// registered with Go's network poller.
func pollable(fd int) (*os.File, error) {
	if fd < 0 {
		return nil, errors.New("libpcap has no selectable descriptor")
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return nil, fmt.Errorf("flags of libpcap's descriptor: %w", err)
	}
	if fl&unix.O_NONBLOCK == 0 {
		return nil, errors.New("libpcap's descriptor is not non-blocking")
	}
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("duplicate libpcap's descriptor: %w", err)
	}
	f := os.NewFile(uintptr(dup), "pcap")
	// Only a file in the poller takes a deadline.
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		f.Close()
		return nil, fmt.Errorf("wait on libpcap's descriptor: %w", err)
	}
	return f, nil
}

// close releases the poller's duplicate of the socket; the handle's
// owner closes the handle itself.
func (r *ringReader) close() { r.wake.Close() }

// socket is libpcap's packet socket descriptor of the handle: the handle
// owns it. (Looked up by comparing the process's packet sockets before
// and after activation, it was misjudged while other captures opened or
// closed theirs, and a capture on lo failed.)
func (r *ringReader) socket() int { return int(C.pcap_get_selectable_fd(r.p)) }

// read copies up to limit packets (0: no limit) into the batch and
// returns how many. With nothing in the ring it waits up to readTimeout
// for the kernel to hand a block over, and returns 0 if none came. Each
// time it found the ring empty and is about to wait, it calls idle (if
// not nil) with the time it looked.
func (r *ringReader) read(limit int, idle func(checked int64)) (int, error) {
	n, err := r.dispatch(limit)
	if n > 0 || err != nil {
		return n, err
	}
	if err := r.wake.SetReadDeadline(time.Now().Add(readTimeout)); err != nil {
		return 0, fmt.Errorf("wait for the ring: %w", err)
	}
	// The poller forgets an earlier readiness before the first try, so a
	// block handed over after a try that found nothing wakes the wait.
	var derr error
	werr := r.rc.Read(func(uintptr) bool {
		n, derr = r.dispatch(limit)
		if n > 0 || derr != nil {
			return true
		}
		if idle != nil {
			idle(r.checked)
		}
		return false
	})
	switch {
	case derr != nil:
		return 0, derr
	case werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded):
		return 0, fmt.Errorf("wait for the ring: %w", werr)
	}
	return n, nil
}

// dispatch copies what the ring holds, up to limit packets (0: no
// limit), without waiting, and notes when it looked.
func (r *ringReader) dispatch(limit int) (int, error) {
	cnt := C.int(-1)
	if limit > 0 && limit < len(r.pkts) {
		cnt = C.int(limit)
	}
	var used, lost C.int
	checked := time.Now().UnixNano()
	n := C.agent_dispatch(r.p, cnt, (*C.uchar)(unsafe.Pointer(&r.buf[0])), C.int(len(r.buf)), C.int(r.room),
		&r.pkts[0], C.int(len(r.pkts)), &used, &lost)
	r.lost = int(lost)
	r.checked = checked
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
