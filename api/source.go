package api

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
)

// readBufferSize is how much of an agent's stream is read at once; the
// reader hands its batch over before each read.
const readBufferSize = 64 << 10

// errAborted ends a source reader whose merger has gone.
var errAborted = errors.New("api: capture aborted")

// source is one target's capture inside a session: it reads the agent's
// pcapng stream into batches for the merger.
type source struct {
	t        Target
	agent    *tunnel.Client
	capture  *tunnel.Capture
	ifaces   []tunnel.InterfaceStats // as the agent announced them
	firstOut int                     // output id of ifaces[0]
	started  time.Time

	free chan *batch // batches the reader may fill; the merger returns them
	cur  *batch      // owned by the reader goroutine

	// delivered counts packets written, per interface; owned by the
	// merger goroutine. cutOff is set by it when the source was closed
	// for not stopping in time.
	delivered []uint64
	cutOff    bool

	// received and bytes count packets and bytes read, per interface; owned
	// by the reader goroutine, read after done.
	received []uint64
	bytes    []uint64

	// Set by the reader goroutine before done is closed.
	done    chan struct{}
	readErr error
	ended   time.Time
}

func newSource(t Target, agent *tunnel.Client, c *tunnel.Capture, ifaces []tunnel.InterfaceStats, firstOut int) *source {
	s := &source{
		t: t, agent: agent, capture: c, ifaces: ifaces, firstOut: firstOut, started: time.Now(),
		free:      make(chan *batch, batchesPerSource),
		delivered: make([]uint64, len(ifaces)),
		received:  make([]uint64, len(ifaces)),
		bytes:     make([]uint64, len(ifaces)),
		done:      make(chan struct{}),
	}
	for range batchesPerSource {
		s.free <- &batch{src: s, buf: make([]byte, 0, batchBytes)}
	}
	return s
}

// release gives a written batch back to its source. It never blocks: a
// source owns exactly batchesPerSource batches.
func (s *source) release(b *batch) {
	b.reset()
	s.free <- b
}

// read copies packets from the agent's stream into batches and sends them
// on out, until the stream ends or abort is closed. It closes s.done.
func (s *source) read(out chan<- *batch, abort <-chan struct{}) {
	defer close(s.done)
	defer func() { s.ended = time.Now() }()
	err := s.readLoop(s.capture, out, abort)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	s.readErr = err
}

// readLoop reads the agent's pcapng stream from r (the capture channel).
func (s *source) readLoop(r io.Reader, out chan<- *batch, abort <-chan struct{}) error {
	select {
	case s.cur = <-s.free:
	case <-abort:
		return errAborted
	}
	// Hand the batch over whenever the reader is about to wait for the
	// network: packets never sit in a batch while the source is quiet.
	// Under load, reads of up to readBufferSize keep batches large.
	fr := &flushingReader{r: r, flush: func() error { return s.handOver(out, abort) }}
	ng, err := pcapgo.NewNgReader(bufio.NewReaderSize(fr, readBufferSize), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return fmt.Errorf("read pcapng header: %w", err)
	}
	for {
		data, ci, err := ng.ZeroCopyReadPacketData()
		switch {
		case errors.Is(err, io.EOF):
		case err != nil:
			err = fmt.Errorf("read pcapng: %w", err)
		default:
			err = s.check(data, ci)
		}
		if err != nil {
			// What was read before the end goes out.
			if herr := s.handOver(out, abort); herr != nil {
				return herr
			}
			return err
		}
		if len(s.cur.buf)+len(data) > batchBytes && len(s.cur.pkts) > 0 {
			if err := s.handOver(out, abort); err != nil {
				return err
			}
		}
		s.received[ci.InterfaceIndex]++
		s.bytes[ci.InterfaceIndex] += uint64(len(data))
		b := s.cur
		b.pkts = append(b.pkts, pktRef{ts: ci.Timestamp, off: len(b.buf), caplen: len(data), length: ci.Length, iface: s.firstOut + ci.InterfaceIndex})
		b.buf = append(b.buf, data...)
	}
}

// check refuses a packet the output could not hold: the output (and
// Wireshark) refuse such packets, so they end this source, not the whole
// capture.
func (s *source) check(data []byte, ci gopacket.CaptureInfo) error {
	if ci.InterfaceIndex < 0 || ci.InterfaceIndex >= len(s.ifaces) {
		return fmt.Errorf("agent sent a packet of interface %d, it announced %d", ci.InterfaceIndex, len(s.ifaces))
	}
	name := s.ifaces[ci.InterfaceIndex].Name
	if snap := s.snaplen(ci.InterfaceIndex); len(data) > snap {
		return fmt.Errorf("agent sent a packet of %d bytes on %s, over its snaplen %d", len(data), name, snap)
	}
	if ci.Length < len(data) {
		return fmt.Errorf("agent sent a packet on %s with %d bytes captured of a %d byte packet", name, len(data), ci.Length)
	}
	return nil
}

// snaplen is the largest packet the agent may send on interface i: the
// snaplen it announced, at most tunnel.MaxSnaplen.
func (s *source) snaplen(i int) int {
	snap := int(s.ifaces[i].Snaplen)
	if snap <= 0 || snap > tunnel.MaxSnaplen {
		snap = tunnel.MaxSnaplen
	}
	return snap
}

// handOver sends the current batch, if it has packets, and takes a free one.
func (s *source) handOver(out chan<- *batch, abort <-chan struct{}) error {
	if s.cur == nil || len(s.cur.pkts) == 0 {
		return nil
	}
	s.cur.arrived = time.Now()
	select {
	case out <- s.cur:
	case <-abort:
		return errAborted
	}
	select {
	case s.cur = <-s.free:
		return nil
	case <-abort:
		s.cur = nil
		return errAborted
	}
}

// flushingReader calls flush before each read of the underlying stream.
type flushingReader struct {
	r     io.Reader
	flush func() error
}

func (f *flushingReader) Read(p []byte) (int, error) {
	if err := f.flush(); err != nil {
		return 0, err
	}
	return f.r.Read(p)
}

// finalStats waits (bounded by ctx) for the agent's final stats. Without
// them it also waits for the agent connection to end, if it is ending: a
// dead connection closes its channels first and reports its own end just
// after, and the reason given to the user depends on it.
func (s *source) finalStats(ctx context.Context) (tunnel.Stats, bool) {
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
