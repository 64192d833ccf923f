package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gopacket/gopacket/layers"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// Session outcomes, for the exit status, metrics and the audit log.
const (
	OutcomeStopped      = "stopped"       // stopped by the user
	OutcomeLimitReached = "limit-reached" // duration, count or bytes
	OutcomePartial      = "partial"       // some targets failed or were lost
	OutcomeFailed       = "failed"        // nothing could be captured
	OutcomeClientGone   = "client-gone"   // the output could not be written
)

// Exit statuses of the capture command (defined with the command, which
// the clients share).
const (
	ExitOK      = capturecmd.ExitOK
	ExitFailed  = capturecmd.ExitFailed
	ExitPartial = capturecmd.ExitPartial
)

// Session is one capture over many targets, merged into one output.
type Session struct {
	Pool    *Pool
	Req     capturecmd.Request
	Targets []Target
	Skipped []Skipped
	Out     io.Writer          // the merged capture
	Status  *capturecmd.Status // status lines

	// OpenTimeout bounds connecting to an agent and opening its capture
	// (default 10 s); StopTimeout bounds the whole stop (default 2 s).
	OpenTimeout time.Duration
	StopTimeout time.Duration
	// ReorderWindow 0 keeps arrival order; any other value merges by
	// timestamp, as far as the agents' watermarks allow.
	ReorderWindow time.Duration
	// MaxOpen bounds agents being contacted at once (default 32).
	MaxOpen int
	// Metrics, when set, counts what the session forwards.
	Metrics *Metrics
	// Header is the section comment and application; Run adds the names
	// of the targets it captures.
	Header OutputHeader

	// Follow, when set, is asked for the targets again every
	// FollowInterval while the capture runs: a target it adds joins the
	// capture as new interfaces, a source it no longer lists ends as
	// EndInstanceGone. A failure is reported once and asked again; an
	// answer of tunnel.CodeTargetNotFound means no target.
	Follow         func(ctx context.Context) ([]Target, error)
	FollowInterval time.Duration // default DefaultFollowInterval
	// MaxTargets bounds the sources running at once, joins included: a
	// join over it is skipped with the reason (0: no bound).
	MaxTargets int

	// joins are the outcomes of joins that did not start (skipped,
	// failed); owned by stream, read by finish.
	joins []SourceResult
}

// Following: how often a followed capture resolves its targets again.
const (
	DefaultFollowInterval = 3 * time.Second
	MinFollowInterval     = 500 * time.Millisecond
)

// EndInstanceGone is how a followed source ends when its instance is no
// longer in the resolver's answer (scaled down, restarted elsewhere,
// deleted): it ends as it should, not lost.
const EndInstanceGone = "instance-gone"

// SourceResult is what happened to one target.
type SourceResult struct {
	Name   string
	State  string // "ended", "failed", "lost", "agent-stopped", "not-stopped", "skipped"
	Reason string
	Counts []InterfaceCounts
}

// Result summarises a session.
type Result struct {
	Outcome string
	Sources []SourceResult
	Packets uint64
	Bytes   uint64
	Dropped map[string]uint64 // by place: kernel, interface, agent, api
	// Unaccounted sums what the agents could not account for (see
	// tunnel.InterfaceStats); 0 unless something is wrong.
	Unaccounted int64
	// OutOfOrder counts packets written older than one before them.
	OutOfOrder uint64
}

// ExitStatus maps the outcome to the command's exit status.
func (r Result) ExitStatus() int {
	switch r.Outcome {
	case OutcomeStopped, OutcomeLimitReached:
		return ExitOK
	case OutcomePartial:
		return ExitPartial
	default:
		return ExitFailed
	}
}

type opened struct {
	t      Target
	agent  *tunnel.Client
	c      *tunnel.Capture
	ifaces []tunnel.InterfaceStats
	err    error
}

func (s *Session) defaults() {
	if s.OpenTimeout <= 0 {
		s.OpenTimeout = 10 * time.Second
	}
	if s.StopTimeout <= 0 {
		s.StopTimeout = 2 * time.Second
	}
	if s.MaxOpen <= 0 {
		s.MaxOpen = 32
	}
	if s.FollowInterval <= 0 {
		s.FollowInterval = DefaultFollowInterval
	}
	s.FollowInterval = max(s.FollowInterval, MinFollowInterval)
}

// Run captures until stop is closed, ctx ends, a limit is reached or every
// source has ended (followed, sources that left do not end it: new ones
// may come), then stops every agent (bounded by StopTimeout), writes the
// statistics blocks and returns the result. An error means nothing could
// be captured; it lists every reason.
func (s *Session) Run(ctx context.Context, stop <-chan struct{}) (Result, error) {
	s.defaults()
	res := Result{Dropped: map[string]uint64{}}
	for _, sk := range s.Skipped {
		s.Status.Line(sk.Name, "skipped", "reason", sk.Reason)
		res.Sources = append(res.Sources, SourceResult{Name: sk.Name, State: "skipped", Reason: sk.Reason})
	}

	all := s.openAll(ctx)
	var ok []opened
	var reasons []string
	for _, o := range all {
		if o.err != nil {
			re := tunnel.AsReject(o.err)
			s.Status.Line(o.t.Name, "failed", "code", re.Code, "reason", re.Message)
			res.Sources = append(res.Sources, SourceResult{Name: o.t.Name, State: "failed", Reason: re.Message})
			reasons = append(reasons, o.t.Name+": "+re.Message)
			continue
		}
		ok = append(ok, o)
	}
	if len(ok) == 0 {
		res.Outcome = OutcomeFailed
		for _, sk := range s.Skipped {
			reasons = append(reasons, sk.Name+": "+sk.Reason)
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "no target to capture")
		}
		return res, errors.New("no target could be captured: " + strings.Join(reasons, "; "))
	}

	// Declare every interface of every source up front.
	var ifaces []OutputInterface
	srcs := make([]*source, 0, len(ok))
	hdr := s.Header
	hdr.Names = nil
	for _, o := range ok {
		if o.t.Address.IsValid() {
			hdr.Names = append(hdr.Names, AddressName{Addr: o.t.Address, Name: o.t.Name})
		}
		src := newSource(o.t, o.agent, o.c, o.ifaces, len(ifaces))
		srcs = append(srcs, src)
		ifaces = append(ifaces, s.outputInterfaces(o)...)
	}
	out, err := NewOutputHeader(s.Out, s.Req.Format, ifaces, hdr)
	if err != nil {
		for _, src := range srcs {
			src.capture.Close()
		}
		res.Outcome = OutcomeFailed
		var mixed *ErrMixedLinkTypes
		if errors.As(err, &mixed) {
			return res, mixed
		}
		return res, fmt.Errorf("write capture header: %w", err)
	}
	for _, src := range srcs {
		s.Status.Line(src.t.Name, "started", "interfaces", src.ifaceNames(), "agent", src.t.Agent)
	}

	end, limit, clientErr := s.stream(ctx, stop, &srcs, out)
	// A target that could not join is missing from the capture, like one
	// that could not start.
	res.Sources = append(res.Sources, s.joins...)
	failedBefore := len(reasons) > 0 || len(s.Skipped) > 0 || len(s.joins) > 0
	return s.finish(res, srcs, out, end, limit, clientErr, failedBefore), nil
}

// outputInterfaces are the output's interfaces of an opened target.
func (s *Session) outputInterfaces(o opened) []OutputInterface {
	var ifaces []OutputInterface
	for _, i := range o.ifaces {
		ifaces = append(ifaces, OutputInterface{
			Name:        o.t.Name + ":" + i.Name,
			Description: strings.TrimSpace(o.t.Description),
			Filter:      s.Req.Filter,
			LinkType:    layers.LinkType(i.LinkType),
			Snaplen:     i.Snaplen,
		})
	}
	return ifaces
}

// ifaceNames lists the source's interfaces for a status line.
func (s *source) ifaceNames() string {
	names := make([]string, len(s.ifaces))
	for i, ifc := range s.ifaces {
		names[i] = ifc.Name
	}
	return strings.Join(names, ",")
}

// openAll contacts every target, MaxOpen at a time, and waits for each
// capture's interface announcement.
func (s *Session) openAll(ctx context.Context) []opened {
	results := make([]opened, len(s.Targets))
	sem := make(chan struct{}, s.MaxOpen)
	var wg sync.WaitGroup
	for i, t := range s.Targets {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = opened{t: t, err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			results[i] = s.open(ctx, t)
		}()
	}
	wg.Wait()
	return results
}

func (s *Session) open(ctx context.Context, t Target) opened {
	ctx, cancel := context.WithTimeout(ctx, s.OpenTimeout)
	defer cancel()
	o := opened{t: t}
	client, err := s.Pool.Get(ctx, t.Agent)
	if err != nil {
		s.Metrics.agentError()
		o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("cannot reach agent %s: %v", t.Agent, unwrapAll(err)))
		return o
	}
	c, err := client.OpenCapture(ctx, tunnel.CaptureRequest{
		Version:    tunnel.ProtocolVersion,
		Target:     t.Capture,
		Interfaces: s.Req.Interfaces,
		Filter:     s.Req.Filter,
		Snaplen:    s.Req.Snaplen,
		Limits:     s.Req.Limits,
		Watermarks: true, // the merger orders sources by them
	})
	if err != nil {
		var re *tunnel.RejectError
		if !errors.As(err, &re) {
			s.Metrics.agentError()
			err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("agent %s: %v", t.Agent, unwrapAll(err)))
		}
		o.err = err
		return o
	}
	// The agent announces its interfaces before any packet.
	select {
	case <-c.Updates():
		st := c.Stats()
		if len(st.Interfaces) != len(s.Req.Interfaces) {
			c.Close()
			o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("agent %s announced %d interfaces for %d asked", t.Agent, len(st.Interfaces), len(s.Req.Interfaces)))
			return o
		}
		o.agent, o.c, o.ifaces = client, c, st.Interfaces
	case <-ctx.Done():
		c.Close()
		o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("agent %s did not start the capture within %v", t.Agent, s.OpenTimeout))
	}
	return o
}

// unwrapAll returns the innermost error's text, without package prefixes
// stacked up on the way.
func unwrapAll(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}

// stream runs readers and the merger until the capture should end, then
// stops the sources and drains them (bounded). It returns why it ended,
// the limit that ended it when pcap-api's own duration did (tunnel.Limit*),
// and the output error, if the client went away. Followed, sources join
// and leave *srcs while it runs.
func (s *Session) stream(ctx context.Context, stop <-chan struct{}, srcsp *[]*source, out *Output) (string, string, error) {
	srcs := *srcsp
	defer func() { *srcsp = srcs }()
	in := make(chan *batch, len(srcs))
	abort := make(chan struct{})
	ended := make(chan *source, len(srcs))
	m := newMerger(out, s.ReorderWindow > 0, srcs, func(src *source, late bool) {
		if late {
			s.Status.Line(src.t.Name, "watermark-late", "after", watermarkTimeout, "effect", "merged without waiting for it")
		} else {
			s.Status.Line(src.t.Name, "watermark-resumed")
		}
	})
	// readers and the follower's goroutines end before stream returns.
	var readers sync.WaitGroup
	defer readers.Wait()
	startReader := func(src *source) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			src.read(in, abort)
			ended <- src
		}()
	}
	for _, src := range srcs {
		startReader(src)
	}
	running := len(srcs)
	// A source that ends while the capture runs is reported at once, not
	// only in the summary; reporters wait (bounded) for its final stats.
	var reporters sync.WaitGroup
	defer reporters.Wait()
	report := func(src *source) {
		reporters.Add(1)
		go func() {
			defer reporters.Done()
			s.reportEarlyEnd(src)
		}()
	}
	f := s.newFollower(ctx, srcs)
	defer f.close()

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

	var due *time.Timer
	var dueC <-chan time.Time
	end, limit := "", ""
	var outErr error
	var stopDeadline <-chan time.Time
	ctxDone := ctx.Done()
	stopping, aborted := false, false
	endedByItself := false // a source ended for another reason than leaving
	beginStop := func(why string) {
		if stopping {
			return
		}
		stopping, end = true, why
		f.stop()
		for _, src := range srcs {
			src.capture.Stop()
		}
		stopDeadline = time.After(s.StopTimeout)
	}
	handle := func(b *batch) {
		if outErr != nil {
			b.src.release(b)
			return
		}
		s.Metrics.forwarded(b)
		if err := m.add(b); err != nil {
			outErr = err
		}
	}
	flush := func(now time.Time, all bool) {
		if outErr != nil {
			return
		}
		next, err := m.emit(now, all) // flushes the output when due
		if err != nil {
			outErr = err
			return
		}
		dueC = nil
		if !next.IsZero() {
			if due == nil {
				due = time.NewTimer(time.Until(next))
			} else {
				due.Reset(time.Until(next))
			}
			dueC = due.C
		}
	}
	// join adds an opened target as a new source, its interfaces declared
	// in the output before its first packet.
	join := func(o opened) {
		if stopping || outErr != nil {
			o.c.Close() // never started for the user: nothing to report
			return
		}
		o.t.Name = f.name(o.t)
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
				outErr = err
				return
			}
		}
		if o.t.Address.IsValid() {
			if err := out.WriteNames([]AddressName{{Addr: o.t.Address, Name: o.t.Name}}); err != nil {
				o.c.Close()
				outErr = err
				return
			}
		}
		src := newSource(o.t, o.agent, o.c, o.ifaces, first)
		m.join(src)
		srcs = append(srcs, src)
		f.joined(src)
		running++
		s.Status.Line(src.t.Name, "joined", "interfaces", src.ifaceNames(), "agent", src.t.Agent)
		startReader(src)
	}

	// The loop ends only when every reader is done and no target is
	// joining: a stop asks the agents to finish, and sources still running
	// when StopTimeout passes are cut off, so it ends in bounded time.
	// Followed, a capture whose sources have all left waits for new ones.
	for {
		if running == 0 && f.idle() && (stopping || endedByItself || !f.on()) {
			break
		}
		select {
		case b := <-in:
			handle(b)
			for more := true; more; { // take what else is ready, flush once
				select {
				case b := <-in:
					handle(b)
				default:
					more = false
				}
			}
			flush(time.Now(), false)
		case now := <-dueC:
			dueC = nil
			flush(now, false)
		case src := <-ended:
			running--
			switch {
			case stopping || src.gone:
			case f.on():
				// Gone from the resolver's answer, or lost? Ask now.
				f.ended(src)
			default:
				endedByItself = true
				report(src)
			}
		case a := <-f.answers:
			for _, src := range f.settle(a) {
				if src.gone {
					continue
				}
				endedByItself = true
				report(src)
			}
			if !stopping {
				for _, t := range f.newTargets(a, running) {
					f.open(t)
				}
			}
		case o := <-f.opens:
			f.opened(o)
			if o.err != nil {
				if !stopping {
					re := tunnel.AsReject(o.err)
					s.Status.Line(o.t.Name, "failed", "code", re.Code, "reason", re.Message)
					s.joins = append(s.joins, SourceResult{Name: o.t.Name, State: "failed", Reason: re.Message})
				}
				continue
			}
			join(o)
		case <-stop:
			stop = nil
			beginStop(OutcomeStopped)
		case <-ctxDone:
			ctxDone = nil
			beginStop(OutcomeStopped)
		case <-durationC:
			if !stopping {
				limit = tunnel.LimitDuration
			}
			beginStop(OutcomeLimitReached)
		case <-stopDeadline:
			stopDeadline = nil
			for _, src := range srcs {
				select {
				case <-src.done:
				default:
					// An agent that has not stopped by now is hung: it
					// would answer a channel close no better than the
					// stop, and a channel has no read deadline. Closing
					// the connection ends the read at once (and whatever
					// else is stuck on that agent).
					src.cutOff = true
					src.capture.Close()
					src.agent.Close()
				}
			}
		case <-progressC:
			for _, src := range srcs {
				if src.gone {
					continue
				}
				st := src.capture.Stats().Total()
				s.Status.Line(src.t.Name, "progress", "packets", st.Packets, "bytes", st.Bytes,
					"dropped", st.KernelDropped+st.IfDropped+st.AgentDropped)
			}
		}
		if outErr != nil && !aborted {
			// The client is gone: nothing more can be written.
			aborted = true
			close(abort)
			stopping = false
			beginStop(OutcomeClientGone)
		}
	}
	if due != nil {
		due.Stop()
	}
	for more := true; more; {
		select {
		case b := <-in:
			handle(b)
		default:
			more = false
		}
	}
	flush(time.Now(), true)
	if end == "" {
		end = OutcomeLimitReached // every source ended by itself
	}
	if outErr != nil {
		end = OutcomeClientGone
	}
	return end, limit, outErr
}

// reportEarlyEnd reports a source that ended before the capture was
// stopped, when it was lost (and not ended by its own limits).
func (s *Session) reportEarlyEnd(src *source) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	st, final := src.finalStats(ctx)
	cancel()
	if state, reason := s.endState(src, false, st, final, false); state != "ended" {
		s.Status.Line(src.t.Name, state, "reason", reason)
	}
}

// endState says how a source's capture ended: "ended", or "lost" or
// "not-stopped" with the reason. src's reader must be done.
func (s *Session) endState(src *source, cutOff bool, st tunnel.Stats, final, clientGone bool) (string, string) {
	switch {
	case src.gone:
		// Its instance went away (scaled down, restarted elsewhere): what
		// it captured is all there was, however its agent ended it.
		return "ended", ""
	case cutOff:
		return "not-stopped", fmt.Sprintf("agent did not stop within %v", s.StopTimeout)
	case src.readErr != nil && !errors.Is(src.readErr, errAborted):
		return "lost", src.readErr.Error()
	case !final && !clientGone:
		if src.agent != nil {
			select {
			case <-src.agent.Done():
				return "lost", fmt.Sprintf("connection to agent %s lost", src.t.Agent)
			default:
			}
		}
		return "lost", "agent sent no final statistics"
	case st.End == tunnel.EndError:
		return "lost", st.Error
	case st.End == tunnel.EndAgentStopped:
		// The agent finished its part cleanly, but what it would have
		// captured after its shutdown is missing: partial.
		return tunnel.EndAgentStopped, fmt.Sprintf("agent %s was shut down during the capture", src.t.Agent)
	}
	return "ended", ""
}

// finish collects final stats, writes the statistics blocks and the
// summary, and closes every capture.
func (s *Session) finish(res Result, srcs []*source, out *Output, end, limit string, outErr error, failedBefore bool) Result {
	partial := failedBefore
	var srcLimits []string // the limits that ended sources, in order, once each
	id := 0
	finals := finalStatsAll(srcs, finalStatsWait)
	for n, src := range srcs {
		st, final := finals[n].st, finals[n].final
		src.capture.Close()

		sr := SourceResult{Name: src.t.Name}
		sr.State, sr.Reason = s.endState(src, src.cutOff, st, final, outErr != nil)
		if sr.State != "ended" {
			partial = true
		}
		for i := range src.ifaces {
			var is tunnel.InterfaceStats
			if i < len(st.Interfaces) {
				is = st.Interfaces[i]
			}
			c := InterfaceCounts{
				Start: src.started, End: src.ended,
				Received: is.Received, KernelDropped: is.KernelDropped, IfDropped: is.IfDropped,
				AgentDropped: is.AgentDropped, Unaccounted: is.Unaccounted, Delivered: src.delivered[i], OutOfOrder: src.outOfOrder[i],
			}
			if sent := max(is.Packets, src.received[i]); sent > c.Delivered {
				c.APIDropped = sent - c.Delivered
			}
			sr.Counts = append(sr.Counts, c)
			if outErr == nil {
				if err := out.WriteStats(id, c); err != nil {
					outErr = err
				}
			}
			id++
			res.Packets += c.Delivered
			res.Bytes += src.bytes[i]
			res.Dropped["kernel"] += c.KernelDropped
			res.Dropped["interface"] += c.IfDropped
			res.Dropped["agent"] += c.AgentDropped
			res.Dropped["api"] += c.APIDropped
			res.Unaccounted += c.Unaccounted
			res.OutOfOrder += c.OutOfOrder
		}
		t := sumCounts(sr.Counts)
		kv := []any{"packets", t.Delivered, "received", t.Received, "kernel_dropped", t.KernelDropped,
			"if_dropped", t.IfDropped, "agent_dropped", t.AgentDropped, "api_dropped", t.APIDropped,
			"unaccounted", t.Unaccounted}
		switch sr.State {
		case "ended":
			head := []any{"end", st.End}
			if src.gone {
				head = []any{"end", EndInstanceGone}
			} else if st.End == tunnel.EndLimitReached && st.Limit != "" {
				head = append(head, "limit", st.Limit)
				if !slices.Contains(srcLimits, st.Limit) {
					srcLimits = append(srcLimits, st.Limit)
				}
			}
			s.Status.Line(src.t.Name, "ended", append(head, kv...)...)
		case tunnel.EndAgentStopped:
			s.Status.Line(src.t.Name, sr.State, append([]any{"reason", sr.Reason, "end", st.End}, kv...)...)
		default:
			s.Status.Line(src.t.Name, sr.State, append([]any{"reason", sr.Reason}, kv...)...)
		}
		res.Sources = append(res.Sources, sr)
		s.Metrics.dropped(c2m(t))
	}
	if outErr == nil {
		outErr = out.Flush()
	}
	switch {
	case outErr != nil:
		res.Outcome = OutcomeClientGone
	case partial:
		res.Outcome = OutcomePartial
	default:
		res.Outcome = end
	}
	if res.Packets == 0 && outErr == nil {
		// A valid file with no packet is easy to take for a success.
		s.Status.Line("warning", "no-packets", "reason", noPacketsHint(s.Req))
	}
	sum := []any{"sources", len(res.Sources), "packets", res.Packets, "bytes", res.Bytes,
		"kernel_dropped", res.Dropped["kernel"], "if_dropped", res.Dropped["interface"],
		"agent_dropped", res.Dropped["agent"], "api_dropped", res.Dropped["api"], "unaccounted", res.Unaccounted,
		"out_of_order", res.OutOfOrder}
	if res.Outcome == OutcomeLimitReached {
		// pcap-api's own duration, or else what ended the sources.
		if limit == "" {
			limit = strings.Join(srcLimits, ",")
		}
		if limit != "" {
			sum = append(sum, "limit", limit)
		}
	}
	s.Status.Line("summary", res.Outcome, sum...)
	return res
}

// noPacketsHint says what to check when a capture delivered no packet.
func noPacketsHint(req capturecmd.Request) string {
	what := "no packets captured: check that traffic passed interface " + strings.Join(req.Interfaces, ",")
	if req.Filter != "" {
		what += " and matched filter " + strconv.Quote(req.Filter)
	}
	return what
}

func sumCounts(cs []InterfaceCounts) InterfaceCounts {
	var t InterfaceCounts
	for _, c := range cs {
		t.Received += c.Received
		t.KernelDropped += c.KernelDropped
		t.IfDropped += c.IfDropped
		t.AgentDropped += c.AgentDropped
		t.APIDropped += c.APIDropped
		t.Unaccounted += c.Unaccounted
		t.Delivered += c.Delivered
	}
	return t
}

func c2m(c InterfaceCounts) map[string]uint64 {
	m := map[string]uint64{"kernel": c.KernelDropped, "interface": c.IfDropped, "agent": c.AgentDropped, "api": c.APIDropped}
	if c.Unaccounted > 0 {
		m["unaccounted"] = uint64(c.Unaccounted)
	}
	return m
}
