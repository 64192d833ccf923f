package api

import (
	"context"
	"fmt"
	"sync"
	"time"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// stream is one session's capture loop: it runs the sources' readers and
// the merger, takes in targets as they open (and, followed, as they come
// and go), and stops the sources when the capture should end. Everything
// but the readers, reporters and follower goroutines it starts (which
// end before run returns) is owned by the goroutine that calls run.
type stream struct {
	s   *Session
	out *Output
	m   *merger
	f   *follower
	op  *opens

	srcs    []*source
	in      chan *batch  // batches from the readers
	ended   chan *source // readers that are done
	abort   chan struct{}
	opening <-chan openResult // nil once every target opened or failed
	running int               // sources whose reader runs

	readers   sync.WaitGroup
	reporters sync.WaitGroup // early ends waiting (bounded) for final stats

	due          *time.Timer // the merger's next emit
	dueC         <-chan time.Time
	stopDeadline <-chan time.Time

	end, limit    string // why it ended, pcap-api's own limit that did
	outErr        error  // the output failed: the client is gone
	stopping      bool
	aborted       bool
	endedByItself bool // a source ended for another reason than leaving
}

// stream runs readers and the merger until the capture should end, then
// stops the sources and drains them (bounded). It returns why it ended,
// the limit that ended it when pcap-api's own duration did (agentproto.Limit*),
// and the output error, if the client went away. The targets still in op
// join *srcs as they open; followed, sources join and leave it while it
// runs.
func (s *Session) stream(ctx context.Context, stop <-chan struct{}, srcsp *[]*source, out *Output, op *opens) (string, string, error) {
	st := &stream{s: s, out: out, op: op, srcs: *srcsp,
		in:    make(chan *batch, len(*srcsp)+op.n),
		ended: make(chan *source, len(*srcsp)+op.n),
		abort: make(chan struct{}),
	}
	defer func() { *srcsp = st.srcs }()
	return st.run(ctx, stop)
}

func (st *stream) run(ctx context.Context, stop <-chan struct{}) (string, string, error) {
	s := st.s
	st.m = newMerger(st.out, s.ReorderWindow > 0, st.srcs, func(src *source, late bool) {
		if late {
			s.Status.Line(src.t.Name, "watermark-late", "after", watermarkTimeout, "effect", "merged without waiting for it")
		} else {
			s.Status.Line(src.t.Name, "watermark-resumed")
		}
	})
	st.m.expect(len(st.srcs) + st.op.n)
	if st.op.n > 0 {
		// The targets still opening capture from when they open: what the
		// running sources have that is newer waits for them, a bounded
		// time.
		st.m.holdBack(st.op.started.Add(-openedSlack).UnixNano(), st.op.started.Add(openHoldBack))
	}
	defer st.readers.Wait()
	for _, src := range st.srcs {
		st.startReader(src)
	}
	st.running = len(st.srcs)
	defer st.reporters.Wait()
	st.f = s.newFollower(ctx, st.srcs, st.op.targets())
	defer st.f.close()
	if st.op.n > 0 {
		st.opening = st.op.results
	}

	var durationC <-chan time.Time
	if s.Req.Limits.Duration > 0 {
		t := time.NewTimer(s.Req.Limits.Duration)
		defer t.Stop()
		durationC = t.C
	}
	var progressC <-chan time.Time
	if s.Req.Progress {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		progressC = t.C
	}
	ctxDone := ctx.Done()

	// The loop ends only when every reader is done and no target is
	// joining: a stop asks the agents to finish, and sources still running
	// when StopTimeout passes are cut off, so it ends in bounded time.
	// Followed, a capture whose sources have all left waits for new ones.
	for !st.done() {
		select {
		case b := <-st.in:
			st.handle(b)
			st.handleReady()
			st.flush(time.Now(), false)
		case now := <-st.dueC:
			st.dueC = nil
			st.flush(now, false)
		case src := <-st.ended:
			st.sourceEnded(src)
		case a := <-st.f.answers:
			st.answer(a)
		case r := <-st.opening:
			st.opened(r)
		case o := <-st.f.opens:
			st.f.opened(o)
			if o.err != nil {
				if !st.stopping {
					s.joins = append(s.joins, s.openFailed(o))
				}
				continue
			}
			st.join(o, len(s.Targets)+len(st.srcs), false)
		case <-stop:
			stop = nil
			st.beginStop(OutcomeStopped)
		case <-ctxDone:
			ctxDone = nil
			st.beginStop(OutcomeStopped)
		case <-durationC:
			if !st.stopping {
				st.limit = agentproto.LimitDuration
			}
			st.beginStop(OutcomeLimitReached)
		case <-st.stopDeadline:
			st.stopDeadline = nil
			st.cutOff()
		case <-progressC:
			st.progress()
		}
		if st.outErr != nil && !st.aborted {
			// The client is gone: nothing more can be written.
			st.aborted = true
			close(st.abort)
			st.op.cancel()
			st.stopping = false
			st.beginStop(OutcomeClientGone)
		}
	}
	if st.due != nil {
		st.due.Stop()
	}
	st.handleReady()
	st.flush(time.Now(), true)
	if st.end == "" {
		st.end = OutcomeLimitReached // every source ended by itself
	}
	if st.outErr != nil {
		st.end = OutcomeClientGone
	}
	return st.end, st.limit, st.outErr
}

// done says whether the loop may end: every reader done, no target
// joining, and the capture stopping or ended.
func (st *stream) done() bool {
	return st.running == 0 && st.op.n == 0 && st.f.idle() && (st.stopping || st.endedByItself || !st.f.on())
}

func (st *stream) startReader(src *source) {
	st.readers.Add(1)
	go func() {
		defer st.readers.Done()
		src.read(st.in, st.abort)
		st.ended <- src
	}()
}

// report reports a source that ended while the capture runs at once, not
// only in the summary.
func (st *stream) report(src *source) {
	st.reporters.Add(1)
	go func() {
		defer st.reporters.Done()
		st.s.reportEarlyEnd(src)
	}()
}

func (st *stream) beginStop(why string) {
	if st.stopping {
		return
	}
	st.stopping, st.end = true, why
	// Targets still opening are given up, not waited for (up to
	// OpenTimeout): each is reported not-started.
	st.op.cancel()
	st.m.release()
	st.f.stop()
	for _, src := range st.srcs {
		src.capture.Stop()
	}
	st.stopDeadline = time.After(st.s.StopTimeout)
}

func (st *stream) handle(b *batch) {
	if st.outErr != nil {
		b.src.release(b)
		return
	}
	st.s.Metrics.forwarded(b)
	if err := st.m.add(b); err != nil {
		st.outErr = err
	}
}

// handleReady takes the batches that are ready without waiting.
func (st *stream) handleReady() {
	for {
		select {
		case b := <-st.in:
			st.handle(b)
		default:
			return
		}
	}
}

func (st *stream) flush(now time.Time, all bool) {
	if st.outErr != nil {
		return
	}
	next, err := st.m.emit(now, all) // flushes the output when due
	if err != nil {
		st.outErr = err
		return
	}
	st.dueC = nil
	if !next.IsZero() {
		if st.due == nil {
			st.due = time.NewTimer(time.Until(next))
		} else {
			st.due.Reset(time.Until(next))
		}
		st.dueC = st.due.C
	}
}

func (st *stream) sourceEnded(src *source) {
	st.running--
	switch {
	case st.stopping || src.gone:
	case st.f.on():
		// Gone from the resolver's answer, or lost? Ask now.
		st.f.ended(src)
	default:
		st.endedByItself = true
		st.report(src)
	}
}

// answer applies the follower's answer.
func (st *stream) answer(a followAnswer) {
	for _, src := range st.f.settle(a) {
		if src.gone {
			continue
		}
		st.endedByItself = true
		st.report(src)
	}
	if !st.stopping {
		for _, t := range st.f.newTargets(a, st.running) {
			st.f.open(t)
		}
	}
}

// opened takes one of the session's targets that opened, or failed to,
// after the stream began.
func (st *stream) opened(r openResult) {
	st.op.took(r)
	if st.op.n == 0 {
		st.opening = nil
		st.m.release()
		defer st.flush(time.Now(), false)
	}
	st.f.opened(r.opened)
	switch {
	case r.err != nil && r.cancelled:
		// Given up because the capture ends (beginStop, or the
		// session's context, which stops it too).
		st.s.joins = append(st.s.joins, st.s.notStarted(r.opened))
		return
	case r.err != nil:
		// Reported whenever it fails, as if the stream had waited.
		st.s.joins = append(st.s.joins, st.s.openFailed(r.opened))
		return
	}
	st.join(r.opened, r.i, true)
}

// join adds an opened target as a new source, its interfaces declared in
// the output before its first packet: one of the session's targets that
// opened after the stream began (started), or one the follower found
// (joined). rank places it in the summary.
func (st *stream) join(o opened, rank int, started bool) {
	s, out := st.s, st.out
	if st.outErr != nil || st.stopping && !started {
		o.c.Close() // never started for the user: nothing to report
		return
	}
	if !started {
		o.t.Name = st.f.name(o.t)
	}
	ifaces := s.outputInterfaces(o)
	if out.pc != nil {
		for _, i := range ifaces {
			if i.LinkType != out.ifaces[0].LinkType {
				o.c.Close()
				s.skipJoin(o.t.Name, fmt.Sprintf("its link type %s cannot go into a pcap file of %s; use pcapng", i.LinkType, out.ifaces[0].LinkType))
				return
			}
		}
	}
	first := len(out.ifaces)
	for _, i := range ifaces {
		if _, err := out.AddInterface(i); err != nil {
			o.c.Close()
			st.outErr = err
			return
		}
	}
	if o.t.Address.IsValid() {
		if err := out.WriteNames([]AddressName{{Addr: o.t.Address, Name: o.t.Name}}); err != nil {
			o.c.Close()
			st.outErr = err
			return
		}
	}
	src := o.newSource(first)
	src.rank = rank
	st.m.join(src)
	st.srcs = append(st.srcs, src)
	st.f.joined(src)
	st.running++
	state := "joined"
	if started {
		state = "started"
	}
	s.Status.Line(src.t.Name, state, "interfaces", src.ifaceNames(), "agent", src.t.Agent)
	st.startReader(src)
	if st.stopping {
		// It opened while the capture stopped: it stops at once, and has
		// its own StopTimeout.
		src.capture.Stop()
		st.stopDeadline = time.After(s.StopTimeout)
	}
}

// cutOff closes the sources that have not stopped by the stop deadline.
func (st *stream) cutOff() {
	for _, src := range st.srcs {
		select {
		case <-src.done:
		default:
			// An agent that has not stopped by now is hung: it would
			// answer a channel close no better than the stop, and a
			// channel has no read deadline. Closing the connection ends
			// the read at once (and whatever else is stuck on that agent).
			src.cutOff = true
			src.capture.Close()
			src.agent.Close()
		}
	}
}

// progress reports each running source's counts (--progress).
func (st *stream) progress() {
	for _, src := range st.srcs {
		if src.gone {
			continue
		}
		t := src.capture.Stats().Total()
		st.s.Status.Line(src.t.Name, "progress", "packets", t.Packets, "bytes", t.Bytes,
			"dropped", t.KernelDropped+t.IfDropped+t.AgentDropped)
	}
}
