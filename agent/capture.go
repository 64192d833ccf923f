package agent

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// readTimeout is libpcap's buffer timeout: how often a reader with no
// traffic wakes up to notice a stop, and the longest a packet waits in a
// partly filled ring block.
const readTimeout = 50 * time.Millisecond

// drainTime bounds how long a reader waits, after a stop, for the kernel
// to hand over packets it has already counted as received: TPACKET_V3
// closes a partly filled ring block only after readTimeout, later on a
// loaded machine. A stop with nothing left in the ring does not wait.
const drainTime = time.Second

// statsEvery is how often a reader refreshes libpcap's counters.
const statsEvery = 500 * time.Millisecond

// rejectAll is a filter no packet matches (a packet is never 0 bytes long).
const rejectAll = "less 0"

// source is one opened libpcap handle.
type source struct {
	idx      int
	name     string
	h        *pcap.Handle
	linkType layers.LinkType

	dropped atomic.Uint64 // refused by the queue, or lost with a failed write
	// checked is when the reader last found the ring empty, in Unix ns
	// (0: not yet; math.MaxInt64: the reader has ended): every packet the
	// kernel had handed over by then is in the queue or written. The
	// watermarks rest on it.
	checked atomic.Int64

	// Owned by the reader goroutine.
	base      pcap.Stats // libpcap's counters when the capture started (see fence)
	fenceAt   time.Time  // when they were taken
	prePlaced uint64     // packets in the ring at the fence: base received − base dropped
	pre       uint64     // packets read that the kernel counted before the fence
	reads     uint64     // packets read from libpcap (queued or refused)
	statsMark uint64     // reads when the counters were last considered
	r         *ringReader

	mu     sync.Mutex
	counts kernelCounts // latest, refreshed by the reader; final once it returns
	err    error        // read error that ended the reader
}

// kernelCounts are a source's libpcap counters since the capture started.
type kernelCounts struct {
	Received      uint64 // passed the filter: handed to the ring, or dropped for want of room
	KernelDropped uint64
	IfDropped     uint64
	// Unread counts packets the kernel put in the ring that were not read
	// before drainTime ran out after a stop.
	Unread uint64
}

// close closes the source's handle and the reader's poller descriptor;
// no read may be running.
func (s *source) close() {
	s.r.close()
	s.h.Close()
}

func (s *source) snapshot() (kernelCounts, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.counts, s.err
}

// fence starts the source's accounting. libpcap's counters include every
// packet the socket took before the filter was set, and libpcap silently
// filters those still in the ring in user space: a packet that did not
// match (on a host, often the agent's own tunnel) was "received" and
// never delivered. So the filter is set in two steps: first one that
// matches nothing, which freezes the kernel's counters; they are taken
// as the base; then the real filter. Packets read with a timestamp before
// the fence were counted in the base and are added back one by one (at
// most as many as the base holds); everything after is counted exactly by
// the kernel. A packet misjudged at the fence only moves the capture's
// start by one packet: it is counted exactly once either way.
func (s *source) fence(filter string) error {
	if err := s.h.SetBPFFilter(rejectAll); err != nil {
		return fmt.Errorf("set filter %q: %v", rejectAll, err)
	}
	st, err := s.h.Stats()
	if err != nil {
		return fmt.Errorf("read counters: %v", err)
	}
	s.base, s.fenceAt = *st, time.Now()
	s.prePlaced = placed(*st)
	return s.h.SetBPFFilter(filter)
}

// placed is the number of packets the kernel put into the ring: libpcap's
// received count includes the kernel's drops.
func placed(st pcap.Stats) uint64 {
	return uint64(st.PacketsReceived) - uint64(st.PacketsDropped)
}

// openOptions says how to open libpcap handles.
type openOptions struct {
	nsPath     string
	interfaces []string
	filter     string
	snaplen    int
	bufferSize int
}

// openSources opens one handle per interface inside the target's network
// namespace, with the filter compiled and set. Failures are
// *tunnel.RejectError values the user can read.
func openSources(o openOptions) ([]*source, error) {
	var srcs []*source
	err := inNamespace(o.nsPath, func() error {
		for i, name := range o.interfaces {
			s, err := openSource(i, name, o)
			if err != nil {
				return err
			}
			srcs = append(srcs, s)
		}
		return nil
	})
	if err != nil {
		for _, s := range srcs {
			s.close()
		}
		return nil, err
	}
	return srcs, nil
}

func openSource(idx int, name string, o openOptions) (*source, error) {
	if name != "any" {
		if _, err := net.InterfaceByName(name); err != nil {
			return nil, tunnel.Reject(tunnel.CodeUnknownInterface, fmt.Sprintf("no interface %q in the target's network namespace", name))
		}
	}
	in, err := pcap.NewInactiveHandle(name)
	if err != nil {
		return nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("open %s: %v", name, err))
	}
	defer in.CleanUp()
	if err := in.SetSnapLen(o.snaplen); err != nil {
		return nil, tunnel.Reject(tunnel.CodeBadSnaplen, fmt.Sprintf("snaplen %d: %v", o.snaplen, err))
	}
	// Not promiscuous: capture what the host or container sends and receives.
	in.SetPromisc(false)
	// Not immediate mode, like tcpdump: libpcap then uses TPACKET_V3,
	// whose ring holds packets back to back and hands them over a block
	// at a time (full, or after readTimeout). Immediate mode means
	// TPACKET_V2, one ring frame per packet sized for the snaplen: with
	// 65535 bytes an 8 MiB buffer holds about 128 packets, and a burst
	// overflows it (the benchmark lost packets at 50k pps with it).
	in.SetTimeout(readTimeout)
	if o.bufferSize > 0 {
		in.SetBufferSize(o.bufferSize)
	}
	h, err := in.Activate()
	if err != nil {
		return nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("activate capture on %s: %v", name, err))
	}
	r, err := newRingReader(h)
	if err != nil {
		h.Close()
		return nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("read capture on %s: %v", name, err))
	}
	if isLoopback(name) {
		if err := ignoreOutgoing(r.socket()); err != nil {
			r.close()
			h.Close()
			return nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("capture on %s: ignore outgoing copies: %v", name, err))
		}
	}
	if name == "any" {
		// SLL2 records the interface index of every packet; keep SLL where
		// this libpcap cannot.
		_ = h.SetLinkType(layers.LinkTypeLinuxSLL2)
	}
	// Compile first, so a bad filter is refused with libpcap's own text.
	if _, err := h.CompileBPFFilter(o.filter); err != nil {
		r.close()
		h.Close()
		return nil, tunnel.Reject(tunnel.CodeBadFilter, fmt.Sprintf("filter does not compile on %s: %s", name, bpfMessage(err)))
	}
	s := &source{idx: idx, name: name, h: h, linkType: h.LinkType(), r: r}
	if err := s.fence(kernelFilter(name, o.filter)); err != nil {
		s.close()
		return nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("start capture on %s: %v", name, err))
	}
	return s, nil
}

// A packet sent on a loopback interface reaches a packet socket twice,
// outgoing and incoming. libpcap drops the outgoing copy in user space,
// after the kernel counted both as received: a capture on lo would report
// twice what it delivered. So the outgoing copies are dropped in the
// kernel instead: on lo itself, the socket ignores outgoing packets; on
// "any", the filter rejects outgoing packets of lo. What is delivered does
// not change (one copy, as tcpdump shows), and the counters are true. (The
// filter cannot do it on lo: libpcap filters the first ring block again in
// user space, where the packet direction is unknown.)

// kernelFilter returns the filter to set on interface name for the user's
// filter.
func kernelFilter(name, user string) string {
	if lo := loopbackIndex(); lo != 0 && name == "any" {
		return combineFilters(user, fmt.Sprintf("outbound and ifindex %d", lo))
	}
	return user
}

// isLoopback says whether interface name of the calling thread's network
// namespace is a loopback interface.
func isLoopback(name string) bool {
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagLoopback != 0
}

// loopbackIndex returns the index of the loopback interface of the
// calling thread's network namespace, or 0.
func loopbackIndex() int {
	ifs, err := net.Interfaces()
	if err != nil {
		return 0
	}
	for _, ifi := range ifs {
		if ifi.Flags&net.FlagLoopback != 0 {
			return ifi.Index
		}
	}
	return 0
}

// bpfMessage strips gopacket's wrapping from a filter error, keeping
// libpcap's own text.
func bpfMessage(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 && strings.Contains(msg[i:], "error") {
		return strings.TrimSpace(msg[i+2:])
	}
	return msg
}

// excludeConn returns a BPF expression matching the TCP connection between
// local and remote, so a host capture never captures its own tunnel.
func excludeConn(local, remote net.Addr) string {
	l, lok := local.(*net.TCPAddr)
	r, rok := remote.(*net.TCPAddr)
	if !lok || !rok {
		return ""
	}
	ip := func(a net.IP) string {
		if v4 := a.To4(); v4 != nil {
			return v4.String()
		}
		return a.String()
	}
	return fmt.Sprintf("tcp and host %s and host %s and port %d and port %d", ip(l.IP), ip(r.IP), l.Port, r.Port)
}

// combineFilters returns "user and not (exclude)", or either alone.
func combineFilters(user, exclude string) string {
	switch {
	case exclude == "":
		return user
	case user == "":
		return "not (" + exclude + ")"
	default:
		return "(" + user + ") and not (" + exclude + ")"
	}
}

// read copies packets from libpcap into q, a ring batch at a time, until
// stop is set, then reads what the kernel had counted by then (bounded by
// drainTime), records the final counters, and returns. It never blocks on
// q.
func (s *source) read(q *queue, stop *atomic.Bool) {
	lastStats := time.Now()
	// Before the reader waits for the ring, it tells the writer how far
	// the source has been read: a quiet source's watermark moves on at
	// the pace of its reader, without a timer of the writer's own.
	idle := func(checked int64) {
		s.checked.Store(checked)
		q.signal()
	}
	// The stop flag is checked on every batch: under steady traffic reads
	// never time out.
	for !stop.Load() {
		n, err := s.r.read(0, idle)
		if err != nil {
			s.readFailed(err)
			break
		}
		s.take(q)
		if n == 0 || s.reads&^1023 != s.statsMark {
			s.statsMark = s.reads &^ 1023
			if now := time.Now(); now.Sub(lastStats) >= statsEvery {
				s.refreshStats()
				lastStats = now
			}
		}
	}
	s.drain(q)
	s.checked.Store(math.MaxInt64) // nothing more will come
	q.signal()
}

// take hands the ring batch just read to q, counting it.
func (s *source) take(q *queue) {
	s.reads += uint64(s.r.n)
	if s.pre < s.prePlaced {
		fence := s.fenceAt.UnixNano()
		off := 0
		for i := range s.r.n {
			ts, data, _ := s.r.packet(i, off)
			off += len(data)
			if s.pre < s.prePlaced && ts < fence {
				s.pre++
			}
		}
	}
	q.putRing(s.idx, s.r, &s.dropped)
}

func (s *source) readFailed(err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	s.mu.Lock()
	s.err = fmt.Errorf("read from %s: %v", s.name, err)
	s.mu.Unlock()
}

// drain reads, after a stop, exactly the packets the kernel had put in the
// ring by then: the ring is first in, first out, so once as many packets
// were read as it counted, nothing counted is left (a batch asks for no
// more than are left). What drainTime does not allow to be read is
// recorded as unread.
func (s *source) drain(q *queue) {
	st, err := s.h.Stats()
	if err != nil {
		s.refreshStats() // keeps the last counters, which say less but are true
		return
	}
	target := func() uint64 { return s.pre + placed(*st) - s.prePlaced }
	deadline := time.Now().Add(drainTime)
	for s.reads < target() && time.Now().Before(deadline) {
		if _, err := s.r.read(int(min(target()-s.reads, math.MaxInt32)), nil); err != nil {
			s.readFailed(err)
			break
		}
		s.take(q)
	}
	c := s.since(*st)
	if t := target(); s.reads < t {
		c.Unread = t - s.reads
	}
	s.mu.Lock()
	s.counts = c
	s.mu.Unlock()
}

// since returns the counters of st relative to the fence.
func (s *source) since(st pcap.Stats) kernelCounts {
	return kernelCounts{
		Received:      s.pre + uint64(st.PacketsReceived) - uint64(s.base.PacketsReceived),
		KernelDropped: uint64(st.PacketsDropped) - uint64(s.base.PacketsDropped),
		IfDropped:     uint64(st.PacketsIfDropped) - uint64(s.base.PacketsIfDropped),
	}
}

func (s *source) refreshStats() {
	st, err := s.h.Stats()
	if err != nil {
		return
	}
	c := s.since(*st)
	s.mu.Lock()
	s.counts = c
	s.mu.Unlock()
}

// writer encodes batches from q as pcapng onto w. Not safe for concurrent
// use; owned by one capture.
type writer struct {
	bw     *tunnel.Packer
	ng     *pcapgo.NgWriter
	limits agentproto.Limits

	packets []atomic.Uint64 // per source: written
	bytes   []atomic.Uint64
	total   struct{ packets, bytes uint64 }

	batchPkts, batchBytes []uint64 // per source: in the batch being written
}

func newWriter(w io.Writer, srcs []*source, snaplen int, filter string, limits agentproto.Limits) (*writer, error) {
	bw := tunnel.NewPacker(w)
	opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
		Hardware:    runtime.GOARCH,
		OS:          runtime.GOOS,
		Application: "pcap-agent",
	}}
	ng, err := pcapgo.NewNgWriterInterface(bw, ngInterface(srcs[0], snaplen, filter), opts)
	if err != nil {
		return nil, fmt.Errorf("agent: write pcapng header: %w", err)
	}
	for _, s := range srcs[1:] {
		if _, err := ng.AddInterface(ngInterface(s, snaplen, filter)); err != nil {
			return nil, fmt.Errorf("agent: write pcapng interface: %w", err)
		}
	}
	wr := &writer{bw: bw, ng: ng, limits: limits,
		packets: make([]atomic.Uint64, len(srcs)), bytes: make([]atomic.Uint64, len(srcs)),
		batchPkts: make([]uint64, len(srcs)), batchBytes: make([]uint64, len(srcs))}
	return wr, wr.flush()
}

func ngInterface(s *source, snaplen int, filter string) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:                s.name,
		Filter:              filter,
		OS:                  runtime.GOOS,
		LinkType:            s.linkType,
		SnapLength:          uint32(snaplen),
		TimestampResolution: 9,
	}
}

// errLimit is returned (wrapped) by writeBatch when a packet or byte limit
// is reached; errPacketLimit and errByteLimit say which.
var (
	errLimit       = errors.New("agent: capture limit reached")
	errPacketLimit = fmt.Errorf("%w: %s", errLimit, agentproto.LimitPackets)
	errByteLimit   = fmt.Errorf("%w: %s", errLimit, agentproto.LimitBytes)
)

// limitOf names the limit err reports, or "".
func limitOf(err error) string {
	switch {
	case errors.Is(err, errPacketLimit):
		return agentproto.LimitPackets
	case errors.Is(err, errByteLimit):
		return agentproto.LimitBytes
	}
	return ""
}

// writeBatch writes b's packets, already encoded, with one write, and
// returns how many it wrote. It returns errLimit when a limit stops it;
// after a failed write it reports none written.
func (w *writer) writeBatch(b *batch) (int, error) {
	n, end := len(b.pkts), len(b.buf)
	var limit error
	pkts, bytes := w.total.packets, w.total.bytes
	for i, p := range b.pkts {
		if w.limits.Packets > 0 && pkts >= w.limits.Packets {
			n, end, limit = i, int(p.off), errPacketLimit
			break
		}
		if w.limits.Bytes > 0 && bytes+uint64(p.caplen) > w.limits.Bytes {
			n, end, limit = i, int(p.off), errByteLimit
			break
		}
		pkts++
		bytes += uint64(p.caplen)
		w.batchPkts[p.iface]++
		w.batchBytes[p.iface] += uint64(p.caplen)
	}
	_, err := w.bw.Write(b.buf[:end])
	for i := range w.batchPkts {
		if err == nil && w.batchPkts[i] > 0 {
			w.packets[i].Add(w.batchPkts[i])
			w.bytes[i].Add(w.batchBytes[i])
		}
		w.batchPkts[i], w.batchBytes[i] = 0, 0
	}
	if err != nil {
		// The packets may be partly in the buffer, but the write that
		// would send them failed.
		return 0, fmt.Errorf("agent: write packets: %w", err)
	}
	w.total.packets, w.total.bytes = pkts, bytes
	if limit == nil && w.limits.Packets > 0 && pkts >= w.limits.Packets {
		limit = errPacketLimit
	}
	return n, limit
}

func (w *writer) flush() error {
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("agent: flush: %w", err)
	}
	if err := w.bw.Flush(); err != nil {
		return fmt.Errorf("agent: flush: %w", err)
	}
	return nil
}
