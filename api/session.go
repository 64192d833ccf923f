package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gopacket/gopacket/layers"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
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
	// failed), targets that failed to open after streaming began
	// included; owned by stream, read by Run.
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

// SourceState is how a target's capture went; its value is the event of
// the source's status line and of the audit log.
type SourceState string

// Source states.
const (
	StateEnded        SourceState = "ended"                    // ended as it should
	StateFailed       SourceState = "failed"                   // could not open
	StateSkipped      SourceState = "skipped"                  // not captured (not running, over a limit)
	StateLost         SourceState = "lost"                     // its agent or connection failed
	StateAgentStopped SourceState = agentproto.EndAgentStopped // its agent shut down mid-capture
	StateNotStopped   SourceState = "not-stopped"              // cut off, its agent did not stop in time
	StateNotStarted   SourceState = "not-started"              // the capture ended while it still opened
)

// SourceResult is what happened to one target.
type SourceResult struct {
	Name   string
	State  SourceState
	Reason string
	Counts []InterfaceCounts
}

// Drops counts dropped packets by the place they were dropped.
type Drops struct {
	Kernel    uint64 // the kernel's ring
	Interface uint64 // the interface (driver)
	Agent     uint64 // the agent's queue
	API       uint64 // pcap-api
}

// add adds an interface's drops.
func (d *Drops) add(c InterfaceCounts) {
	d.Kernel += c.KernelDropped
	d.Interface += c.IfDropped
	d.Agent += c.AgentDropped
	d.API += c.APIDropped
}

// Result summarises a session.
type Result struct {
	Outcome string
	Sources []SourceResult
	Packets uint64
	Bytes   uint64
	Dropped Drops
	// Unaccounted sums what the agents could not account for (see
	// agentproto.InterfaceStats); 0 unless something is wrong.
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
	c      *agentproto.Capture
	ifaces []agentproto.InterfaceStats
	at     time.Time // when its interfaces were announced
	err    error
	// cancelled: err is the open being given up (the capture ending),
	// not the target failing.
	cancelled bool
}

// newSource makes the source of an opened target, its interfaces
// output from firstOut on. Until its first watermark it promises
// nothing older than openedSlack before its interfaces were announced:
// it captures only from then on, and a source that just opened does not
// hold back the merge of those already running.
func (o opened) newSource(firstOut int) *source {
	src := newSource(o.t, o.agent, o.c, o.ifaces, firstOut)
	src.wm = o.at.Add(-openedSlack).UnixNano()
	return src
}

// openedSlack covers, in an opened source's first promise, how long the
// agent took to announce its capture and the agent's and pcap-api's
// clocks disagreeing: it is what the agent's first watermark promises
// (two ring timeouts and 50 ms before its first queue swap). A packet it
// still delivers older than what was written is counted out of order.
const openedSlack = 150 * time.Millisecond

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
	var res Result
	for _, sk := range s.Skipped {
		res.Sources = append(res.Sources, s.skip(sk.Name, sk.Reason))
	}

	op := s.startOpens(ctx)
	defer op.cancel()
	var ok, fails, gaveUp []openResult
	// Targets that do not open before the stream starts are reported
	// once it does (or once none could open), in target order: the same
	// capture gives the same lines however the opens raced.
	take := func(r openResult) {
		switch {
		case r.err != nil && r.cancelled:
			gaveUp = append(gaveUp, r)
		case r.err != nil:
			fails = append(fails, r)
		default:
			ok = append(ok, r)
		}
	}
	// Streaming starts with the first capture that opens, and whatever
	// else has opened by then; the others join as they open. A classic
	// pcap file declares one link type in its header: it waits for all.
	// A stop before then gives up the other opens once one target is
	// open (a file needs one), as the stream does: it is not waited for
	// longer than the first open.
	early, stopped := stop, false
	for op.n > 0 && (len(ok) == 0 || s.Req.Format == capturecmd.FormatPcap) {
		select {
		case r := <-op.results:
			op.took(r)
			take(r)
		case <-early:
			early, stopped = nil, true
		}
		if stopped && len(ok) > 0 {
			op.cancel()
		}
	}
	for more := true; more && op.n > 0; {
		select {
		case r := <-op.results:
			op.took(r)
			take(r)
		default:
			more = false
		}
	}
	byIndex := func(a, b openResult) int { return a.i - b.i }
	slices.SortFunc(ok, byIndex)
	slices.SortFunc(fails, byIndex)
	notOpen := slices.Concat(fails, gaveUp)
	slices.SortFunc(notOpen, byIndex)
	for _, r := range notOpen {
		if r.cancelled {
			res.Sources = append(res.Sources, s.notStarted(r.opened))
		} else {
			res.Sources = append(res.Sources, s.openFailed(r.opened))
		}
	}
	if len(ok) == 0 {
		res.Outcome = OutcomeFailed
		var reasons []string
		for _, f := range notOpen {
			reasons = append(reasons, f.t.Name+": "+tunnel.AsReject(f.err).Message)
		}
		for _, sk := range s.Skipped {
			reasons = append(reasons, sk.Name+": "+sk.Reason)
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "no target to capture")
		}
		return res, errors.New("no target could be captured: " + strings.Join(reasons, "; "))
	}

	// Declare every interface of the sources open so far up front.
	var ifaces []OutputInterface
	srcs := make([]*source, 0, len(ok))
	hdr := s.Header
	hdr.Names = nil
	for _, r := range ok {
		o := r.opened
		if o.t.Address.IsValid() {
			hdr.Names = append(hdr.Names, AddressName{Addr: o.t.Address, Name: o.t.Name})
		}
		src := o.newSource(len(ifaces))
		src.rank = r.i
		srcs = append(srcs, src)
		ifaces = append(ifaces, s.outputInterfaces(o)...)
	}
	out, err := NewOutputHeader(s.Out, s.Req.Format, ifaces, hdr)
	if err != nil {
		for _, src := range srcs {
			src.capture.Close()
		}
		op.closeRest()
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

	end, limit, clientErr := s.stream(ctx, stop, &srcs, out, op)
	// Reported in target order, whenever they opened.
	slices.SortStableFunc(srcs, func(a, b *source) int { return a.rank - b.rank })
	// A target that could not join is missing from the capture, like one
	// that could not start.
	res.Sources = append(res.Sources, s.joins...)
	failedBefore := len(fails) > 0 || len(s.Skipped) > 0 || slices.ContainsFunc(s.joins, func(sr SourceResult) bool {
		return sr.State != StateNotStarted // given up as asked: not missing
	})
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

// openResult is the open of Session.Targets[i].
type openResult struct {
	i int
	opened
}

// opens are the session's targets being opened. Their goroutines end
// within OpenTimeout of starting, and never wait for a reader: results
// holds every result. Whoever takes n to 0 has taken them all.
type opens struct {
	started time.Time // when the opens began
	results chan openResult
	n       int                // results not taken yet
	pending map[int]Target     // not taken yet, by index
	cancel  context.CancelFunc // gives up those not done
}

// startOpens contacts every target, MaxOpen at a time; each open waits
// for its capture's interface announcement.
func (s *Session) startOpens(ctx context.Context) *opens {
	ctx, cancel := context.WithCancel(ctx)
	op := &opens{started: time.Now(), results: make(chan openResult, len(s.Targets)), n: len(s.Targets),
		pending: make(map[int]Target, len(s.Targets)), cancel: cancel}
	sem := make(chan struct{}, s.MaxOpen)
	for i, t := range s.Targets {
		op.pending[i] = t
		go func() {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				op.results <- openResult{i, opened{t: t}.givenUp()}
				return
			}
			defer func() { <-sem }()
			op.results <- openResult{i, s.open(ctx, t)}
		}()
	}
	return op
}

// next takes the next result.
func (op *opens) next() openResult {
	r := <-op.results
	op.took(r)
	return r
}

// took accounts for a result taken from results.
func (op *opens) took(r openResult) {
	op.n--
	delete(op.pending, r.i)
}

// closeRest gives up the opens not taken yet and closes what they opened.
func (op *opens) closeRest() {
	op.cancel()
	for op.n > 0 {
		if r := op.next(); r.c != nil {
			r.c.Close()
		}
	}
}

// targets are the targets still opening.
func (op *opens) targets() []Target {
	var ts []Target
	for _, t := range op.pending {
		ts = append(ts, t)
	}
	return ts
}

// openFailed reports a target whose capture could not open.
func (s *Session) openFailed(o opened) SourceResult {
	re := tunnel.AsReject(o.err)
	s.Status.Line(o.t.Name, string(StateFailed), "code", re.Code, "reason", re.Message)
	return SourceResult{Name: o.t.Name, State: StateFailed, Reason: re.Message}
}

// notStarted reports a target whose open was given up because the
// capture ended first (stopped, its duration, the client gone): it
// captured nothing, and that is what the user asked for, not a failure.
func (s *Session) notStarted(o opened) SourceResult {
	const reason = "the capture ended before this target's capture opened"
	s.Status.Line(o.t.Name, string(StateNotStarted), "reason", reason)
	return SourceResult{Name: o.t.Name, State: StateNotStarted, Reason: reason}
}

// skip reports a target that is not captured.
func (s *Session) skip(name, reason string) SourceResult {
	s.Status.Line(name, string(StateSkipped), "reason", reason)
	return SourceResult{Name: name, State: StateSkipped, Reason: reason}
}

func (s *Session) open(ctx context.Context, t Target) opened {
	ctx, cancel := context.WithTimeout(ctx, s.OpenTimeout)
	defer cancel()
	o := opened{t: t}
	client, err := s.Pool.Get(ctx, t.Agent)
	if errors.Is(err, context.Canceled) {
		return o.givenUp()
	}
	if err != nil {
		s.Metrics.agentError()
		o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("cannot reach agent %s: %v", t.Agent, unwrapAll(err)))
		return o
	}
	c, err := agentproto.OpenCapture(ctx, client, agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     t.Capture,
		Interfaces: s.Req.Interfaces,
		Filter:     s.Req.Filter,
		Snaplen:    s.Req.Snaplen,
		Limits:     s.Req.Limits,
		Watermarks: true, // the merger orders sources by them
	})
	if errors.Is(err, context.Canceled) {
		return o.givenUp()
	}
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
		o.agent, o.c, o.ifaces, o.at = client, c, st.Interfaces, time.Now()
	case <-ctx.Done():
		c.Close()
		if errors.Is(ctx.Err(), context.Canceled) {
			return o.givenUp()
		}
		o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("agent %s did not start the capture within %v", t.Agent, s.OpenTimeout))
	}
	return o
}

// givenUp is o given up because the capture ended (stopped, the client
// gone) while it opened, not because its target failed.
func (o opened) givenUp() opened {
	o.err = tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("the capture ended before agent %s opened it", o.t.Agent))
	o.cancelled = true
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

// reportEarlyEnd reports a source that ended before the capture was
// stopped, when it was lost (and not ended by its own limits).
func (s *Session) reportEarlyEnd(src *source) {
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	st, final := src.finalStats(ctx)
	cancel()
	if state, reason := s.endState(src, false, st, final, false); state != StateEnded {
		s.Status.Line(src.t.Name, string(state), "reason", reason)
	}
}

// endState says how a source's capture ended: StateEnded, or another
// state with the reason. src's reader must be done.
func (s *Session) endState(src *source, cutOff bool, st agentproto.Stats, final, clientGone bool) (SourceState, string) {
	switch {
	case src.gone:
		// Its instance went away (scaled down, restarted elsewhere): what
		// it captured is all there was, however its agent ended it.
		return StateEnded, ""
	case cutOff:
		return StateNotStopped, fmt.Sprintf("agent did not stop within %v", s.StopTimeout)
	case src.readErr != nil && !errors.Is(src.readErr, errAborted):
		return StateLost, src.readErr.Error()
	case !final && !clientGone:
		if src.agent != nil {
			select {
			case <-src.agent.Done():
				return StateLost, fmt.Sprintf("connection to agent %s lost", src.t.Agent)
			default:
			}
		}
		return StateLost, "agent sent no final statistics"
	case st.End == agentproto.EndError:
		return StateLost, st.Error
	case st.End == agentproto.EndAgentStopped:
		// The agent finished its part cleanly, but what it would have
		// captured after its shutdown is missing: partial.
		return StateAgentStopped, fmt.Sprintf("agent %s was shut down during the capture", src.t.Agent)
	}
	return StateEnded, ""
}

// finish collects final stats, writes the statistics blocks and the
// summary, and closes every capture.
func (s *Session) finish(res Result, srcs []*source, out *Output, end, limit string, outErr error, failedBefore bool) Result {
	partial := failedBefore
	var srcLimits []string // the limits that ended sources, in order, once each
	finals := finalStatsAll(srcs, finalStatsWait)
	for n, src := range srcs {
		st, final := finals[n].st, finals[n].final
		src.capture.Close()

		sr := SourceResult{Name: src.t.Name}
		sr.State, sr.Reason = s.endState(src, src.cutOff, st, final, outErr != nil)
		if sr.State != StateEnded {
			partial = true
		}
		for i := range src.ifaces {
			var is agentproto.InterfaceStats
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
				if err := out.WriteStats(src.firstOut+i, c); err != nil {
					outErr = err
				}
			}
			res.Packets += c.Delivered
			res.Bytes += src.bytes[i]
			res.Dropped.add(c)
			res.Unaccounted += c.Unaccounted
			res.OutOfOrder += c.OutOfOrder
		}
		t := sumCounts(sr.Counts)
		kv := []any{"packets", t.Delivered, "received", t.Received, "kernel_dropped", t.KernelDropped,
			"if_dropped", t.IfDropped, "agent_dropped", t.AgentDropped, "api_dropped", t.APIDropped,
			"unaccounted", t.Unaccounted}
		switch sr.State {
		case StateEnded:
			head := []any{"end", st.End}
			if src.gone {
				head = []any{"end", EndInstanceGone}
			} else if st.End == agentproto.EndLimitReached && st.Limit != "" {
				head = append(head, "limit", st.Limit)
				if !slices.Contains(srcLimits, st.Limit) {
					srcLimits = append(srcLimits, st.Limit)
				}
			}
			s.Status.Line(src.t.Name, string(sr.State), append(head, kv...)...)
		case StateAgentStopped:
			s.Status.Line(src.t.Name, string(sr.State), append([]any{"reason", sr.Reason, "end", st.End}, kv...)...)
		default:
			s.Status.Line(src.t.Name, string(sr.State), append([]any{"reason", sr.Reason}, kv...)...)
		}
		res.Sources = append(res.Sources, sr)
		var d Drops
		d.add(t)
		s.Metrics.dropped(d, t.Unaccounted)
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
		"kernel_dropped", res.Dropped.Kernel, "if_dropped", res.Dropped.Interface,
		"agent_dropped", res.Dropped.Agent, "api_dropped", res.Dropped.API, "unaccounted", res.Unaccounted,
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
