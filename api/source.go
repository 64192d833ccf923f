package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
)

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
	err := s.readLoop(out, abort)
	if errors.Is(err, io.EOF) {
		err = nil
	}
	s.readErr = err
}

func (s *source) readLoop(out chan<- *batch, abort <-chan struct{}) error {
	select {
	case s.cur = <-s.free:
	case <-abort:
		return errAborted
	}
	// Hand the batch over whenever the reader is about to wait for the
	// network: packets never sit in a batch while the source is quiet.
	fr := &flushingReader{r: s.capture, flush: func() error { return s.handOver(out, abort) }}
	ng, err := pcapgo.NewNgReader(fr, pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		return fmt.Errorf("read pcapng header: %w", err)
	}
	for {
		data, ci, err := ng.ZeroCopyReadPacketData()
		if err != nil {
			if herr := s.handOver(out, abort); herr != nil {
				return herr
			}
			if errors.Is(err, io.EOF) {
				return io.EOF
			}
			return fmt.Errorf("read pcapng: %w", err)
		}
		if ci.InterfaceIndex < 0 || ci.InterfaceIndex >= len(s.ifaces) {
			return fmt.Errorf("agent sent a packet of interface %d, it announced %d", ci.InterfaceIndex, len(s.ifaces))
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

// finalStats waits (bounded by ctx) for the agent's final stats.
func (s *source) finalStats(ctx context.Context) (tunnel.Stats, bool) {
	st, err := s.capture.Wait(ctx)
	return st, err == nil && st.Final
}
