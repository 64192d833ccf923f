package agent

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
)

// readTimeout is libpcap's buffer timeout: how often a reader with no
// traffic wakes up to notice a stop, and the longest a packet waits in a
// partly filled ring block.
const readTimeout = 50 * time.Millisecond

// drainTime bounds how long readers keep reading what is already in the
// kernel ring after a stop.
const drainTime = 250 * time.Millisecond

// statsEvery is how often a reader refreshes libpcap's counters.
const statsEvery = 500 * time.Millisecond

// source is one opened libpcap handle.
type source struct {
	idx      int
	name     string
	h        *pcap.Handle
	linkType layers.LinkType

	dropped atomic.Uint64 // refused by the queue

	mu    sync.Mutex
	stats pcap.Stats // latest libpcap counters, refreshed by the reader
	err   error      // read error that ended the reader
}

func (s *source) snapshot() (pcap.Stats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats, s.err
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
			s.h.Close()
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
	if name == "any" {
		// SLL2 records the interface index of every packet; keep SLL where
		// this libpcap cannot.
		_ = h.SetLinkType(layers.LinkTypeLinuxSLL2)
	}
	if o.filter != "" {
		if err := h.SetBPFFilter(o.filter); err != nil {
			h.Close()
			return nil, tunnel.Reject(tunnel.CodeBadFilter, fmt.Sprintf("filter does not compile on %s: %s", name, bpfMessage(err)))
		}
	}
	return &source{idx: idx, name: name, h: h, linkType: h.LinkType()}, nil
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

// read copies packets from libpcap into q until stop is set, then reads
// what is left in the ring for at most drainTime, records the final
// libpcap counters, and returns. It never blocks on q.
func (s *source) read(q *queue, stop *atomic.Bool) {
	var drainFrom, drainUntil time.Time
	lastStats := time.Now()
	n := 0
	for {
		data, ci, err := s.h.ZeroCopyReadPacketData()
		if err == nil {
			if !q.put(s.idx, ci, data) {
				s.dropped.Add(1)
			}
		}
		n++
		// The stop flag is checked on every packet: under steady traffic
		// reads never time out, and 1024 packets can take seconds.
		if err != nil || n&1023 == 0 || stop.Load() {
			now := time.Now()
			if now.Sub(lastStats) >= statsEvery {
				s.refreshStats()
				lastStats = now
			}
			if stop.Load() {
				if drainUntil.IsZero() {
					drainFrom, drainUntil = now, now.Add(drainTime)
				}
				// An empty read ends the drain only once the kernel has
				// handed over the ring block that was filling at the
				// stop: TPACKET_V3 closes a partly filled block within
				// two readTimeouts, and until then its packets, already
				// counted as received, cannot be read.
				empty := errors.Is(err, pcap.NextErrorTimeoutExpired)
				if (err != nil && !empty) || (empty && now.Sub(drainFrom) > 2*readTimeout) || now.After(drainUntil) {
					break
				}
			}
		}
		if err == nil || errors.Is(err, pcap.NextErrorTimeoutExpired) {
			continue
		}
		if !errors.Is(err, io.EOF) {
			s.mu.Lock()
			s.err = fmt.Errorf("read from %s: %v (%v)", s.name, err, s.h.Error())
			s.mu.Unlock()
		}
		break
	}
	s.refreshStats()
}

func (s *source) refreshStats() {
	st, err := s.h.Stats()
	if err != nil {
		return
	}
	s.mu.Lock()
	s.stats = *st
	s.mu.Unlock()
}

// writer encodes batches from q as pcapng onto w. Not safe for concurrent
// use; owned by one capture.
type writer struct {
	bw     *bufio.Writer
	ng     *pcapgo.NgWriter
	limits tunnel.Limits

	packets []atomic.Uint64 // per source: written
	bytes   []atomic.Uint64
	total   struct{ packets, bytes uint64 }
}

func newWriter(w io.Writer, srcs []*source, snaplen int, filter string, limits tunnel.Limits) (*writer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
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
		packets: make([]atomic.Uint64, len(srcs)), bytes: make([]atomic.Uint64, len(srcs))}
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

// errLimit is returned by writeBatch when a packet or byte limit is reached.
var errLimit = errors.New("agent: capture limit reached")

// writeBatch writes b's packets. It returns errLimit when a limit stops it.
func (w *writer) writeBatch(b *batch) error {
	for _, p := range b.pkts {
		if w.limits.Packets > 0 && w.total.packets >= w.limits.Packets {
			return errLimit
		}
		if w.limits.Bytes > 0 && w.total.bytes+uint64(p.caplen) > w.limits.Bytes {
			return errLimit
		}
		ci := gopacket.CaptureInfo{Timestamp: p.ts, CaptureLength: p.caplen, Length: p.length, InterfaceIndex: p.iface}
		if err := w.ng.WritePacket(ci, b.buf[p.off:p.off+p.caplen]); err != nil {
			return fmt.Errorf("agent: write packet: %w", err)
		}
		w.total.packets++
		w.total.bytes += uint64(p.caplen)
		w.packets[p.iface].Add(1)
		w.bytes[p.iface].Add(uint64(p.caplen))
	}
	if w.limits.Packets > 0 && w.total.packets >= w.limits.Packets {
		return errLimit
	}
	return nil
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
