package api

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"code.cloudfoundry.org/pcap/tunnel"
)

// followResolveTimeout bounds one resolve of a followed capture.
const followResolveTimeout = 30 * time.Second

// followAnswer is one answer of Session.Follow.
type followAnswer struct {
	targets []Target
	err     error
}

// follower keeps a followed capture's sources in step with its
// resolver's answers. Its resolving and opening goroutines are owned by
// it and end with close; everything else is owned by the session's
// stream loop. Off (Session.Follow nil), it never answers.
type follower struct {
	s       *Session
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	answers chan followAnswer // nil when off
	opens   chan opened       // targets opened to join
	now     chan struct{}     // resolve at once

	stopped bool
	failing bool               // the last resolve failed (reported once)
	known   map[string]*source // sources not gone, by target key
	gens    map[string]int     // interfaces generations by resolved name
	opening map[string]bool    // target keys being opened
	failed  map[string]bool    // target keys that could not be opened
	skipped map[string]bool    // target keys reported skipped
	pending []*source          // ended by themselves: gone, or lost?
}

// targetKey tells instances apart: a re-placed instance keeps its name
// but has a new instance GUID or host.
func targetKey(t Target) string {
	return t.Agent + "|" + t.Capture.Kind + "|" + strconv.Itoa(t.Capture.PID) + "|" + t.Capture.InstanceGUID
}

// newFollower starts following when the session follows; srcs are the
// sources the capture started with.
func (s *Session) newFollower(ctx context.Context, srcs []*source) *follower {
	f := &follower{s: s, known: map[string]*source{}, gens: map[string]int{},
		opening: map[string]bool{}, failed: map[string]bool{}, skipped: map[string]bool{}}
	if s.Follow == nil {
		f.stopped = true
		return f
	}
	for _, t := range s.Targets {
		f.failed[targetKey(t)] = true // until found among the sources
	}
	for _, src := range srcs {
		k := targetKey(src.t)
		delete(f.failed, k)
		f.known[k] = src
		f.gens[src.t.Name] = 1
	}
	f.ctx, f.cancel = context.WithCancel(ctx)
	f.answers = make(chan followAnswer)
	f.opens = make(chan opened)
	f.now = make(chan struct{}, 1)
	f.wg.Add(1)
	go f.run()
	return f
}

// run resolves every FollowInterval, and at once when asked, until stop.
func (f *follower) run() {
	defer f.wg.Done()
	t := time.NewTicker(f.s.FollowInterval)
	defer t.Stop()
	for {
		select {
		case <-f.ctx.Done():
			return
		case <-t.C:
		case <-f.now:
		}
		ctx, cancel := context.WithTimeout(f.ctx, followResolveTimeout)
		targets, err := f.s.Follow(ctx)
		cancel()
		if f.ctx.Err() != nil {
			return
		}
		select {
		case f.answers <- followAnswer{targets, err}:
		case <-f.ctx.Done():
			return
		}
	}
}

// on says whether the capture still follows.
func (f *follower) on() bool { return !f.stopped }

// idle says whether nothing is joining and no ended source waits to be
// told gone or lost.
func (f *follower) idle() bool { return f.stopped || len(f.opening) == 0 && len(f.pending) == 0 }

// stop ends following (the capture is stopping); joins under way are
// dropped.
func (f *follower) stop() {
	if f.cancel != nil {
		f.cancel()
	}
	f.stopped = true
}

// close stops following and waits for its goroutines.
func (f *follower) close() {
	f.stop()
	f.wg.Wait()
}

// ended takes a source that ended by itself: the next answer, asked for
// at once, says whether its instance is gone.
func (f *follower) ended(src *source) {
	f.pending = append(f.pending, src)
	select {
	case f.now <- struct{}{}:
	default:
	}
}

// settle applies an answer: sources no longer in it are gone (stopped,
// if still running). It returns the sources that had ended by themselves
// and are not gone (the caller reports them), and reports a failing
// resolve once, and its recovery.
func (f *follower) settle(a followAnswer) []*source {
	pending := f.pending
	f.pending = nil
	if a.err != nil && tunnel.AsReject(a.err).Code != tunnel.CodeTargetNotFound {
		if !f.failing {
			f.failing = true
			f.s.Status.Line("follow", "resolve-failed", "reason", tunnel.AsReject(a.err).Message, "retry_in", f.s.FollowInterval)
		}
		return pending
	}
	if f.failing {
		f.failing = false
		f.s.Status.Line("follow", "resolve-resumed")
	}
	present := make(map[string]bool, len(a.targets))
	for _, t := range a.targets {
		present[targetKey(t)] = true
	}
	for k, src := range f.known {
		if present[k] {
			continue
		}
		delete(f.known, k)
		src.gone = true
		f.s.Status.Line(src.t.Name, "gone", "reason", "no longer among the running instances")
		select {
		case <-src.done:
		default:
			src.capture.Stop()
		}
	}
	return pending
}

// newTargets returns the targets of an answer to join, running sources
// running: those not known, not joining and not failed before, as many as
// Session.MaxTargets allows; the others are reported skipped, once.
func (f *follower) newTargets(a followAnswer, running int) []Target {
	if a.err != nil {
		return nil
	}
	var out []Target
	for _, t := range a.targets {
		k := targetKey(t)
		if f.known[k] != nil || f.opening[k] || f.failed[k] {
			continue
		}
		if max := f.s.MaxTargets; max > 0 && running+len(f.opening)+len(out) >= max {
			if !f.skipped[k] {
				f.skipped[k] = true
				f.s.skipJoin(t.Name, fmt.Sprintf("the capture has its maximum of %d targets", max))
			}
			continue
		}
		out = append(out, t)
	}
	return out
}

// open opens t to join, bounded by Session.OpenTimeout; the result comes
// on opens, or is closed when following stops first.
func (f *follower) open(t Target) {
	f.opening[targetKey(t)] = true
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		o := f.s.open(f.ctx, t)
		select {
		case f.opens <- o:
		case <-f.ctx.Done():
			if o.c != nil {
				o.c.Close()
			}
		}
	}()
}

// opened takes an open's result back.
func (f *follower) opened(o opened) {
	k := targetKey(o.t)
	delete(f.opening, k)
	if o.err != nil {
		f.failed[k] = true
	}
}

// joined records a source that joined.
func (f *follower) joined(src *source) { f.known[targetKey(src.t)] = src }

// name is the name a joining target's source takes: its own, or, when a
// source of that name was seen before (a re-placed instance), with "#2",
// "#3"… so that the interfaces are told apart.
func (f *follower) name(t Target) string {
	f.gens[t.Name]++
	if n := f.gens[t.Name]; n > 1 {
		return t.Name + "#" + strconv.Itoa(n)
	}
	return t.Name
}

// skipJoin reports a target that could not join.
func (s *Session) skipJoin(name, reason string) {
	s.Status.Line(name, "skipped", "reason", reason)
	s.joins = append(s.joins, SourceResult{Name: name, State: "skipped", Reason: reason})
}
