// Package agent is pcap-agent: an SSH server that captures packets with
// libpcap inside a target's network namespace and streams them as pcapng on
// a capture channel (see package tunnel for the protocol).
package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Agent serves [agentproto.ChannelCapture] channels. Set the fields before use;
// zero values take defaults.
type Agent struct {
	Locator Locator
	Logger  *slog.Logger

	// MaxCaptures bounds concurrent captures (default 4).
	MaxCaptures int
	// BufferSize is libpcap's kernel buffer per interface in bytes
	// (default [DefaultBufferSize]).
	BufferSize int
	// QueueBytes bounds the packets held between libpcap and the channel,
	// per capture, in pcapng bytes: the batch filling and the batch being
	// written together (default [DefaultQueueBytes]).
	QueueBytes int
	// StatsInterval is how often running stats are sent (default 1 s).
	StatsInterval time.Duration
	// WriteTimeout bounds how long the final flush may wait for a slow
	// client before the channel is closed without it (default 500 ms).
	WriteTimeout time.Duration

	once   sync.Once
	active atomic.Int32
}

func (a *Agent) init() {
	a.once.Do(func() {
		if a.Locator == nil {
			a.Locator = CellLocator{}
		}
		if a.Logger == nil {
			a.Logger = slog.New(slog.DiscardHandler)
		}
		if a.MaxCaptures <= 0 {
			a.MaxCaptures = 4
		}
		if a.BufferSize <= 0 {
			a.BufferSize = DefaultBufferSize
		}
		if a.QueueBytes <= 0 {
			a.QueueBytes = DefaultQueueBytes
		}
		if a.StatsInterval <= 0 {
			a.StatsInterval = time.Second
		}
		if a.WriteTimeout <= 0 {
			a.WriteTimeout = 500 * time.Millisecond
		}
	})
}

// Active returns the number of captures running.
func (a *Agent) Active() int { return int(a.active.Load()) }

// HandleChannel implements [tunnel.ChannelHandler]. It returns when the
// capture has ended and its goroutines have exited.
func (a *Agent) HandleChannel(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
	a.init()
	log := a.Logger.With("remote", conn.RemoteAddr().String(), "session", fmt.Sprintf("%x", conn.SessionID()[:6]))

	req, err := agentproto.DecodeCaptureRequest(nc.ExtraData())
	if err != nil {
		a.reject(log, nc, err)
		return
	}
	log = log.With("target", req.Target.String(), "interfaces", req.Interfaces)
	if n := a.active.Add(1); int(n) > a.MaxCaptures {
		a.active.Add(-1)
		a.reject(log, nc, tunnel.Reject(tunnel.CodeLimitReached, fmt.Sprintf("agent is running its maximum of %d captures", a.MaxCaptures)))
		return
	}
	release := sync.OnceFunc(func() { a.active.Add(-1) })
	defer release()

	nsPath, err := a.Locator.Locate(ctx, req.Target)
	if err != nil {
		a.reject(log, nc, err)
		return
	}
	filter := req.Filter
	if sameNamespace(nsPath) {
		filter = combineFilters(req.Filter, excludeConn(conn.LocalAddr(), conn.RemoteAddr()))
	}
	srcs, err := openSources(openOptions{
		nsPath:     nsPath,
		interfaces: req.Interfaces,
		filter:     filter,
		snaplen:    req.Snaplen,
		bufferSize: a.BufferSize,
	})
	if err != nil {
		a.reject(log, nc, err)
		return
	}
	closeSources := sync.OnceFunc(func() {
		for _, s := range srcs {
			s.close()
		}
	})
	defer closeSources()

	ch, reqs, err := nc.Accept()
	if err != nil {
		log.Warn("capture-accept-failed", "error", err.Error())
		return
	}
	log.Info("capture-started", "filter", req.Filter, "snaplen", req.Snaplen)
	start := time.Now()
	st := a.run(ctx, ch, reqs, srcs, req)
	// Free the handles and the capture slot, and log, before the final
	// stats tell the client the capture is over, so it may start the next
	// one at once.
	closeSources()
	release()
	t := st.Total()
	log.Info("capture-ended", "end", st.End, "error", st.Error, "duration_ms", time.Since(start).Milliseconds(),
		"packets", t.Packets, "bytes", t.Bytes, "received", t.Received,
		"kernel_dropped", t.KernelDropped, "if_dropped", t.IfDropped, "agent_dropped", t.AgentDropped,
		"unaccounted", t.Unaccounted)
	if t.Unaccounted != 0 {
		log.Error("capture-unaccounted", "unaccounted", t.Unaccounted, "received", t.Received,
			"packets", t.Packets, "kernel_dropped", t.KernelDropped, "agent_dropped", t.AgentDropped)
	}
	ch.SendRequest(agentproto.RequestStats, false, st.Marshal())
	ch.CloseWrite()
	ch.Close()
}

func (a *Agent) reject(log *slog.Logger, nc ssh.NewChannel, err error) {
	re := tunnel.AsReject(err)
	log.Info("capture-rejected", "code", re.Code, "reason", re.Message)
	tunnel.RejectChannel(nc, re)
}

// run streams the capture until it ends and returns the final stats; the
// caller sends them and closes ch.
func (a *Agent) run(ctx context.Context, ch ssh.Channel, reqs <-chan *ssh.Request, srcs []*source, req agentproto.CaptureRequest) agentproto.Stats {
	// Channel requests: "stop" ends the capture; the channel closing (by
	// the client, or by us at the end) ends this goroutine.
	stopReq := make(chan struct{})
	chClosed := make(chan struct{})
	go func() {
		defer close(chClosed)
		stopped := false
		for r := range reqs {
			ok := r.Type == agentproto.RequestStop
			if ok && !stopped {
				stopped = true
				close(stopReq)
			}
			if r.WantReply {
				r.Reply(ok, nil)
			}
		}
	}()

	w, err := newWriter(ch, srcs, req.Snaplen, req.Filter, req.Limits)
	if errors.Is(err, io.EOF) {
		return agentproto.Stats{Final: true, End: agentproto.EndStopped} // the client left at once
	}
	if err != nil {
		return agentproto.Stats{Final: true, End: agentproto.EndError, Error: err.Error()}
	}

	// Announce the interfaces before any packet.
	ch.SendRequest(agentproto.RequestStats, false, collectStats(srcs, w, false, "", "").Marshal())

	q := newQueue(a.QueueBytes)
	var stop atomic.Bool
	var readers sync.WaitGroup
	readersDone := make(chan struct{})
	for _, s := range srcs {
		readers.Add(1)
		go func() {
			defer readers.Done()
			s.read(q, &stop)
		}()
	}
	go func() {
		readers.Wait()
		close(readersDone)
	}()

	// The writer drains q onto the channel until told the readers are done,
	// and follows what it writes with a watermark, also while quiet (a
	// reader about to wait for its ring wakes it).
	writerErr := make(chan error, 1)
	finish := make(chan struct{})
	go func() {
		writerErr <- newPump(q, w, srcs, req.Watermarks).run(finish)
	}()

	var timer <-chan time.Time
	if req.Limits.Duration > 0 {
		t := time.NewTimer(req.Limits.Duration)
		defer t.Stop()
		timer = t.C
	}
	tick := time.NewTicker(a.StatsInterval)
	defer tick.Stop()

	end, endErr, limit := agentproto.EndStopped, "", ""
	writerDone, clientGone := false, false
loop:
	for {
		select {
		case <-ctx.Done():
			if errors.Is(context.Cause(ctx), tunnel.ErrServerClosed) {
				// The agent is shutting down: the capture ends early,
				// and the client must hear that it did.
				end = agentproto.EndAgentStopped
			}
			break loop
		case <-stopReq:
			break loop
		case <-chClosed:
			break loop
		case <-timer:
			end, limit = agentproto.EndLimitReached, agentproto.LimitDuration
			break loop
		case err := <-writerErr:
			writerDone = true
			switch {
			case errors.Is(err, errLimit):
				end, limit = agentproto.EndLimitReached, limitOf(err)
			case errors.Is(err, io.EOF):
				// The client closed the channel or the connection: a stop.
				clientGone = true
			case err != nil:
				end, endErr = agentproto.EndError, err.Error()
			}
			break loop
		case <-readersDone:
			// Every reader failed on its own (an interface went away).
			end, endErr = agentproto.EndError, readErrors(srcs)
			break loop
		case <-tick.C:
			ch.SendRequest(agentproto.RequestStats, false, collectStats(srcs, w, false, "", "").Marshal())
		}
	}

	// Stop: readers drain the ring (bounded) and record their counters,
	// then the writer writes what they queued and exits. A writer stuck on
	// a client that reads nothing is cut off by closing the channel.
	stop.Store(true)
	<-readersDone
	if !writerDone {
		close(finish)
		select {
		case err := <-writerErr:
			if errors.Is(err, io.EOF) {
				clientGone = true
			} else if err != nil && !errors.Is(err, errLimit) && end != agentproto.EndError {
				end, endErr = agentproto.EndError, err.Error()
			}
		case <-time.After(a.WriteTimeout):
			ch.Close()
			<-writerErr
			if end != agentproto.EndError {
				end, endErr = agentproto.EndError, "client did not read the capture in time"
			}
		}
	}
	if end == agentproto.EndStopped && endErr == "" {
		if msg := readErrors(srcs); msg != "" {
			end, endErr = agentproto.EndError, msg
		}
	}
	// Packets still queued when the writer failed were handed to us and
	// not delivered: count them as the agent's drops. After a limit they
	// are past the end of the capture and are neither.
	if end == agentproto.EndError || clientGone {
		for _, b := range q.take(nil) {
			for _, p := range b.pkts {
				srcs[p.iface].dropped.Add(1)
			}
			q.done(b)
		}
	}
	st := collectStats(srcs, w, true, end, endErr)
	if end == agentproto.EndLimitReached {
		st.Limit = limit
	}
	return st
}

// flushEvery bounds how long written packets wait in the writer's buffer
// while more keep coming. The buffer passes full SSH packets on by itself
// (tunnel.Packer); the rest is flushed once nothing waits, right away
// after a small batch (a quiet or slow source), and after a batch of a
// packet or more at the next step (a reader about to wait for its ring
// signals one), so a busy stream is not cut into a full and a short
// packet per batch.
const flushEvery = 10 * time.Millisecond

// pump moves batches from the queue onto the writer, followed by a
// watermark when asked for. Owned by one goroutine.
type pump struct {
	q          *queue
	w          *writer
	srcs       []*source
	wm         *watermarker
	watermarks bool
	taken      []*batch
	flushed    time.Time
}

func newPump(q *queue, w *writer, srcs []*source, watermarks bool) *pump {
	return &pump{q: q, w: w, srcs: srcs, wm: newWatermarker(len(srcs)), watermarks: watermarks}
}

// run writes what the queue holds, and a watermark when it advanced,
// whenever the queue signals (packets came, or a reader found its ring
// empty or ended), until finish is closed (then it writes what is left)
// or a write fails or reaches a limit. It returns that error.
func (p *pump) run(finish <-chan struct{}) error {
	for {
		last := false
		select {
		case <-p.q.ready:
		case <-finish:
			last = true
		}
		if err := p.step(last); err != nil || last {
			return err
		}
	}
}

// step writes what the queue holds. Writes are coalesced while more
// packets wait, and after a large batch, up to flushEvery (see there);
// the last step, and one that reaches a limit, flush what was written.
func (p *pump) step(last bool) error {
	swapped := time.Now()
	p.wm.checking(p.srcs)
	p.taken = p.q.take(p.taken[:0])
	size := 0
	for _, b := range p.taken {
		p.wm.observe(b)
		size += len(b.buf)
	}
	var err error
	for _, b := range p.taken {
		n := 0
		if err == nil {
			n, err = p.w.writeBatch(b)
		}
		if err != nil && !errors.Is(err, errLimit) {
			// The write failed: what it did not write is lost here.
			// (After a limit, the rest is past the end of the capture.)
			for _, pk := range b.pkts[n:] {
				p.srcs[pk.iface].dropped.Add(1)
			}
		}
		p.q.done(b)
	}
	clear(p.taken)
	if err == nil && p.watermarks {
		err = p.wm.write(p.w)
	}
	drained := !p.q.pending() && size < tunnel.MaxPayload
	if (err == nil && (last || drained || swapped.Sub(p.flushed) >= flushEvery)) || errors.Is(err, errLimit) {
		if ferr := p.w.flush(); ferr != nil {
			err = ferr
		}
		p.flushed = swapped
	}
	return err
}

// finalCounts returns the counters of source i at the end of a capture.
// After a packet or byte limit, packets read past it are not part of the
// capture, so received counts only what led up to the limit. Otherwise
// received is the kernel's count, and whatever it does not match is
// reported as unaccounted.
func finalCounts(s *source, written uint64, end string) agentproto.InterfaceStats {
	kc, _ := s.snapshot()
	is := agentproto.InterfaceStats{
		Received:      kc.Received,
		KernelDropped: kc.KernelDropped,
		IfDropped:     kc.IfDropped,
		AgentDropped:  s.dropped.Load(),
		Packets:       written,
	}
	known := is.Packets + is.KernelDropped + is.AgentDropped
	if end == agentproto.EndLimitReached && kc.Unread == 0 && known <= is.Received {
		is.Received = known
	}
	is.Unaccounted = int64(is.Received) - int64(known)
	return is
}

func readErrors(srcs []*source) string {
	var msgs []string
	for _, s := range srcs {
		if _, err := s.snapshot(); err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	return strings.Join(msgs, "; ")
}

func collectStats(srcs []*source, w *writer, final bool, end, errMsg string) agentproto.Stats {
	st := agentproto.Stats{Final: final, End: end, Error: errMsg}
	for i, s := range srcs {
		var is agentproto.InterfaceStats
		if final {
			is = finalCounts(s, w.packets[i].Load(), end)
		} else {
			kc, _ := s.snapshot()
			is = agentproto.InterfaceStats{Received: kc.Received, KernelDropped: kc.KernelDropped,
				IfDropped: kc.IfDropped, AgentDropped: s.dropped.Load(), Packets: w.packets[i].Load()}
		}
		is.Name, is.LinkType, is.Snaplen = s.name, uint16(s.linkType), uint32(s.h.SnapLen())
		is.Bytes = w.bytes[i].Load()
		st.Interfaces = append(st.Interfaces, is)
	}
	return st
}

// Watermarks (format in tunnel/agentproto/control_watermark.go) let the API merge
// agents by timestamp: after each batch, and each time a reader finds
// its ring empty (at least every readTimeout while quiet), the writer
// promises that no packet older than T follows.
//
// T is the minimum over the capture's sources of what each can still
// deliver. A reader hands packets over in ring order, so a source's next
// packet is no older than the last one written (less reorderSlack for
// packets the kernel timestamped out of order). And when its reader last
// found the ring empty, at C, every block the kernel had handed over was
// read; a packet stays in a partly filled block for at most ringLatency
// (TPACKET_V3 hands such a block over within two readTimeouts), so none
// older than C − ringLatency is left: T is at least that. C is the
// reader's own observation, not the writer's clock: a reader kept from
// the CPU (a loaded cell) holds the watermark back instead of letting
// packets it has not read yet fall behind it, and a reader that ended no
// longer holds it.
const (
	ringLatency  = 2*readTimeout + 50*time.Millisecond
	reorderSlack = time.Millisecond
)

// watermarker tracks what each source has delivered; owned by the writer.
type watermarker struct {
	newest  []int64 // per source: newest timestamp written, ns
	checked []int64 // per source: its reader's last empty ring, as of the last take
	sent    int64
	block   []byte
}

func newWatermarker(n int) *watermarker {
	return &watermarker{newest: make([]int64, n), checked: make([]int64, n)}
}

// checking notes, just before a take, when each source's reader last
// found its ring empty: what the kernel had handed over by then is in the
// batches being taken, or was written before.
func (m *watermarker) checking(srcs []*source) {
	for i, s := range srcs {
		m.checked[i] = s.checked.Load()
	}
}

// observe notes the packets of a batch taken from the queue.
func (m *watermarker) observe(b *batch) {
	for _, p := range b.pkts {
		m.newest[p.iface] = max(m.newest[p.iface], p.ts)
	}
}

// next returns the watermark as of the last take, and whether it
// advanced since the last one sent.
func (m *watermarker) next() (int64, bool) {
	t := int64(math.MaxInt64)
	for i := range m.newest {
		ti := m.newest[i] - int64(reorderSlack)
		if c := m.checked[i]; c > 0 {
			ti = max(ti, c-int64(ringLatency))
		}
		t = min(t, ti)
	}
	if t <= m.sent {
		return m.sent, false
	}
	m.sent = t
	return t, true
}

// write appends a watermark to w when it advanced since the last one.
func (m *watermarker) write(w *writer) error {
	t, ok := m.next()
	if !ok {
		return nil
	}
	if err := w.ng.Flush(); err != nil {
		return fmt.Errorf("agent: flush: %w", err)
	}
	m.block = agentproto.AppendWatermark(m.block[:0], t)
	if _, err := w.bw.Write(m.block); err != nil {
		return fmt.Errorf("agent: write watermark: %w", err)
	}
	return nil
}
