package api

import (
	"bytes"
	"context"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/internal/syncbuf"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/tunneltest"
)

// fakeAgent serves capture channels like pcap-agent: interfaces first,
// then a pcapng stream of packets, then final stats ending with end; then
// it closes the channel. With end "" it waits for the stop and ends
// "stopped". Limit is sent with the final stats. FinalDelay makes it end
// its data at the stop and hold the final stats back that long. Hold,
// when set, makes it wait until Hold is closed before it announces its
// interfaces (a slow open); Refuse makes it then refuse the capture
// (no such interface) instead. Watermark makes it send a watermark at
// its last packet. OnStop, when set, is called as a capture's stop
// request comes.
type fakeAgent struct {
	Addr       string
	Packets    int
	End        string
	Limit      string
	FinalDelay time.Duration
	Hold       <-chan struct{}
	Refuse     bool
	Watermark  bool
	OnStop     func()
}

func startFakeAgent(t *testing.T, fa *fakeAgent) *fakeAgent {
	t.Helper()
	conf := &ssh.ServerConfig{NoClientAuth: true}
	conf.AddHostKey(tunneltest.Key(t))
	iface := agentproto.InterfaceStats{Name: "eth0", LinkType: uint16(layers.LinkTypeEthernet), Snaplen: 65535}
	h := tunnel.ChannelHandlerFunc(func(ctx context.Context, _ *ssh.ServerConn, nc ssh.NewChannel) {
		if fa.Hold != nil {
			select {
			case <-fa.Hold:
			case <-ctx.Done():
				return
			}
		}
		if fa.Refuse {
			tunnel.RejectChannel(nc, tunnel.Reject(tunnel.CodeUnknownInterface, "no interface eth0"))
			return
		}
		ch, reqs, err := nc.Accept()
		if err != nil {
			return
		}
		defer ch.Close()
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			for r := range reqs {
				if r.WantReply {
					r.Reply(r.Type == agentproto.RequestStop, nil)
				}
				if r.Type == agentproto.RequestStop {
					if fa.OnStop != nil {
						fa.OnStop()
					}
					return
				}
			}
		}()
		if _, err := ch.SendRequest(agentproto.RequestStats, false, agentproto.Stats{Interfaces: []agentproto.InterfaceStats{iface}}.Marshal()); err != nil {
			return
		}
		s := newAgentStream(t, iface)
		for i := range fa.Packets {
			s.packet(0, time.Unix(1700000000, int64(i)), bytes.Repeat([]byte{byte(i)}, 60))
		}
		if fa.Watermark && fa.Packets > 0 {
			s.buf.Write(agentproto.AppendWatermark(nil, time.Unix(1700000000, int64(fa.Packets-1)).UnixNano()))
		}
		if _, err := ch.Write(s.buf.Bytes()); err != nil {
			return
		}
		end := fa.End
		if end == "" {
			select {
			case <-stopped:
			case <-ctx.Done():
				return
			}
			end = agentproto.EndStopped
			if fa.FinalDelay > 0 {
				ch.CloseWrite()
				select {
				case <-time.After(fa.FinalDelay):
				case <-ctx.Done():
					return
				}
			}
		}
		final := iface
		final.Received, final.Packets = uint64(fa.Packets), uint64(fa.Packets)
		ch.SendRequest(agentproto.RequestStats, false, agentproto.Stats{Interfaces: []agentproto.InterfaceStats{final}, Final: true, End: end, Limit: fa.Limit}.Marshal())
		ch.CloseWrite()
	})
	fa.Addr = tunneltest.Start(t, &tunnel.Server{Config: conf, Handlers: map[string]tunnel.ChannelHandler{agentproto.ChannelCapture: h}})
	return fa
}

func runTestSession(t *testing.T, agents []*fakeAgent, stop <-chan struct{}) (Result, string, error) {
	t.Helper()
	return runTestSessionWith(t, agents, stop, nil)
}

// runTestSessionWith is runTestSession with edit applied to the session
// before it runs.
func runTestSessionWith(t *testing.T, agents []*fakeAgent, stop <-chan struct{}, edit func(*Session)) (Result, string, error) {
	t.Helper()
	pool := &Pool{Config: tunnel.ClientConfig{User: "api", HostKeyCallback: ssh.InsecureIgnoreHostKey()}}
	t.Cleanup(pool.Close)
	var targets []Target
	for i, a := range agents {
		targets = append(targets, Target{Name: "web/" + strconv.Itoa(i), Agent: a.Addr, Capture: agentproto.Target{Kind: agentproto.TargetHost}})
	}
	var out, stderr bytes.Buffer
	s := &Session{
		Pool: pool, Targets: targets, Out: &out, Status: capturecmd.NewStatus(&stderr),
		Req: capturecmd.Request{Interfaces: []string{"eth0"}, Snaplen: 65535, Format: capturecmd.FormatPcapng},
	}
	if edit != nil {
		edit(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Run(ctx, stop)
	return res, stderr.String(), err
}

// TestSessionAgentStopped: an agent shut down mid-capture sends its final
// stats with end=agent-stopped. Its source is reported as such (not
// "ended"), the other source keeps capturing, and the outcome is partial
// (exit 3), not the limit-reached of a capture that ended by itself.
func TestSessionAgentStopped(t *testing.T) {
	gone := startFakeAgent(t, &fakeAgent{Packets: 2, End: agentproto.EndAgentStopped})
	steady := startFakeAgent(t, &fakeAgent{Packets: 3})
	stop := make(chan struct{})
	type outcome struct {
		res    Result
		stderr string
		err    error
	}
	done := make(chan outcome, 1)
	var status lineBuffer
	go func() {
		res, _, err := runTestSessionWith(t, []*fakeAgent{gone, steady}, stop, func(s *Session) {
			s.Status = capturecmd.NewStatus(&status)
		})
		done <- outcome{res, status.String(), err}
	}()
	// The user's stop, once both run (a target still opening would be
	// given up): the steady agent waits for it; the other ends with
	// agent-stopped whatever it is sent.
	status.waitFor(t, "pcap: web/0: started ")
	status.waitFor(t, "pcap: web/1: started ")
	close(stop)
	o := <-done
	if o.err != nil {
		t.Fatal(o.err)
	}
	if o.res.Outcome != OutcomePartial || o.res.ExitStatus() != ExitPartial {
		t.Errorf("outcome %s, exit %d; want partial, %d\n%s", o.res.Outcome, o.res.ExitStatus(), ExitPartial, o.stderr)
	}
	want := `pcap: web/0: agent-stopped reason="agent ` + gone.Addr + ` was shut down during the capture" end=agent-stopped packets=2 `
	if !strings.Contains(o.stderr, want) {
		t.Errorf("stderr lacks %q:\n%s", want, o.stderr)
	}
	if !strings.Contains(o.stderr, "pcap: web/1: ended end=stopped packets=3 ") {
		t.Errorf("stderr lacks the steady source's end:\n%s", o.stderr)
	}
	if o.res.Packets != 5 {
		t.Errorf("%d packets, want 5", o.res.Packets)
	}
}

// TestSessionNoPacketsWarns: a capture that delivered nothing says so
// before its summary, with what to check.
func TestSessionNoPacketsWarns(t *testing.T) {
	a := startFakeAgent(t, &fakeAgent{End: agentproto.EndLimitReached})
	res, stderr, err := runTestSession(t, []*fakeAgent{a}, nil)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	want := `pcap: warning: no-packets reason="no packets captured: check that traffic passed interface eth0"`
	if len(lines) < 2 || lines[len(lines)-2] != want || !strings.HasPrefix(lines[len(lines)-1], "pcap: summary: limit-reached ") {
		t.Errorf("stderr does not end with %q and the summary:\n%s", want, stderr)
	}
	if res.ExitStatus() != ExitOK {
		t.Errorf("exit %d, want %d", res.ExitStatus(), ExitOK)
	}

	// With packets: no warning.
	b := startFakeAgent(t, &fakeAgent{Packets: 1, End: agentproto.EndLimitReached})
	_, stderr, err = runTestSession(t, []*fakeAgent{b}, nil)
	if err != nil || strings.Contains(stderr, "no-packets") {
		t.Errorf("a capture with a packet: %v\n%s", err, stderr)
	}
}

// TestSessionNamesTheLimit: a source that ended at a limit says which,
// right after end=, and the summary names the limits that ended the
// capture: the sources' own, or pcap-api's duration.
func TestSessionNamesTheLimit(t *testing.T) {
	a := startFakeAgent(t, &fakeAgent{Packets: 2, End: agentproto.EndLimitReached, Limit: agentproto.LimitPackets})
	b := startFakeAgent(t, &fakeAgent{Packets: 1, End: agentproto.EndLimitReached, Limit: agentproto.LimitBytes})
	c := startFakeAgent(t, &fakeAgent{Packets: 3, End: agentproto.EndLimitReached, Limit: agentproto.LimitPackets})
	res, stderr, err := runTestSession(t, []*fakeAgent{a, b, c}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"pcap: web/0: ended end=limit-reached limit=packets packets=2 received=2 kernel_dropped=0 ",
		"pcap: web/1: ended end=limit-reached limit=bytes packets=1 received=1 kernel_dropped=0 ",
		"pcap: web/2: ended end=limit-reached limit=packets packets=3 received=3 kernel_dropped=0 ",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if res.Outcome != OutcomeLimitReached || !strings.HasSuffix(stderr, " limit=packets,bytes\n") {
		t.Errorf("outcome %s; summary does not end with limit=packets,bytes:\n%s", res.Outcome, stderr)
	}

	// pcap-api's own duration stops agents that know no limit.
	d := startFakeAgent(t, &fakeAgent{Packets: 1})
	res, stderr, err = runTestSessionWith(t, []*fakeAgent{d}, nil, func(s *Session) {
		s.Req.Limits.Duration = 100 * time.Millisecond
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr, "pcap: web/0: ended end=stopped packets=1 ") {
		t.Errorf("stderr lacks the stopped source:\n%s", stderr)
	}
	if res.Outcome != OutcomeLimitReached || !strings.HasSuffix(stderr, " out_of_order=0 limit=duration\n") {
		t.Errorf("outcome %s; summary does not end with limit=duration:\n%s", res.Outcome, stderr)
	}

	// A user's stop names no limit.
	stop := make(chan struct{})
	close(stop)
	e := startFakeAgent(t, &fakeAgent{Packets: 1})
	_, stderr, err = runTestSession(t, []*fakeAgent{e}, stop)
	if err != nil || strings.Contains(stderr, "limit=") {
		t.Errorf("a stopped capture: %v\n%s", err, stderr)
	}
}

var sourceLineRe = regexp.MustCompile(`(?m)^pcap: (web/\d+): (\S+) `)

// TestSessionFinalStatsShareOneDeadline: at the end, the final stats of
// every source are waited for side by side under one deadline, not one
// wait per source after another; the lines still come in target order.
func TestSessionFinalStatsShareOneDeadline(t *testing.T) {
	const n = 20
	run := func(delay time.Duration) (string, time.Duration) {
		var agents []*fakeAgent
		for range n {
			agents = append(agents, startFakeAgent(t, &fakeAgent{Packets: 1, FinalDelay: delay}))
		}
		stop := make(chan struct{})
		var status lineBuffer
		ended := make(chan time.Time, 1)
		start := time.Now()
		go func() {
			_, _, err := runTestSessionWith(t, agents, stop, func(s *Session) {
				s.Status = capturecmd.NewStatus(&status)
			})
			if err != nil {
				t.Error(err)
			}
			ended <- time.Now()
		}()
		// Stopped once every target runs (one still opening would be
		// given up).
		for i := range n {
			status.waitFor(t, "pcap: web/"+strconv.Itoa(i)+": started ")
		}
		close(stop)
		took := (<-ended).Sub(start)
		return status.String(), took
	}
	ends := func(stderr, state string) []string {
		var names []string
		for _, m := range sourceLineRe.FindAllStringSubmatch(stderr, -1) {
			if m[2] == state {
				names = append(names, m[1])
			}
		}
		return names
	}
	var want []string
	for i := range n {
		want = append(want, "web/"+strconv.Itoa(i))
	}

	// Final stats that come after half the deadline arrive for every
	// source (one after another, they would miss from the second on).
	stderr, _ := run(finalStatsWait / 2)
	if got := ends(stderr, "ended"); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("ended %v, want %v:\n%s", got, want, stderr)
	}

	// Agents that never send them cost one deadline in all, not n.
	stderr, took := run(time.Hour)
	if got := ends(stderr, "lost"); strings.Join(got, " ") != strings.Join(want, " ") || !strings.Contains(stderr, "reason=\"agent sent no final statistics\"") {
		t.Errorf("lost %v, want %v:\n%s", got, want, stderr)
	}
	if took < finalStatsWait || took > 4*finalStatsWait {
		t.Errorf("the capture took %v to end; want one wait of %v (plus setup), far below %v", took, finalStatsWait, n*finalStatsWait)
	}
}

// TestSessionStreamsBeforeEveryTargetOpened: the capture streams as soon
// as one target's capture has opened. Targets that open later join with
// "started" (their interfaces declared before their first packet, ids in
// the order they joined), their packets older than what was written are
// counted out of order, and one that fails to open late is reported
// failed, as if the stream had waited for it.
func TestSessionStreamsBeforeEveryTargetOpened(t *testing.T) {
	hold := make(chan struct{})
	agents := []*fakeAgent{
		startFakeAgent(t, &fakeAgent{Packets: 5, Watermark: true}),
		startFakeAgent(t, &fakeAgent{Packets: 3, Watermark: true, Hold: hold}),
		startFakeAgent(t, &fakeAgent{Hold: hold, Refuse: true}),
	}
	pr, pw := io.Pipe()
	t.Cleanup(func() { pr.Close() })
	stop := make(chan struct{})
	type pkt struct {
		iface int
		ts    time.Time
	}
	read := make(chan []pkt, 1)
	names := make(chan []string, 1)
	// The stop waits for web/2's refusal to be reported: it comes after
	// the hold like web/1's packets, and either may be first.
	stderr := &statusWatch{prefix: "pcap: web/2: failed ", seen: make(chan struct{})}
	go func() {
		defer io.Copy(io.Discard, pr)
		var got []pkt
		defer func() { read <- got }()
		r, err := pcapgo.NewNgReader(pr, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Errorf("read the stream: %v", err)
			return
		}
		defer func() {
			var ns []string
			for i := range r.NInterfaces() {
				ifc, _ := r.Interface(i)
				ns = append(ns, ifc.Name)
			}
			names <- ns
		}()
		for {
			_, ci, err := r.ReadPacketData()
			if err != nil {
				return
			}
			got = append(got, pkt{ci.InterfaceIndex, ci.Timestamp})
			switch len(got) {
			case 1:
				close(hold) // the first packet came before the others opened
			case 5 + 3:
				select {
				case <-stderr.seen:
				case <-time.After(10 * time.Second):
					t.Error("web/2's failure was not reported within 10s of the last packet")
				}
				close(stop)
			}
		}
	}()
	res, _, err := func() (Result, string, error) {
		defer pw.Close()
		return runTestSessionWith(t, agents, stop, func(s *Session) {
			s.Out = pw
			s.Status = capturecmd.NewStatus(stderr)
			s.ReorderWindow = time.Second
		})
	}()
	if err != nil {
		t.Fatal(err)
	}
	got := <-read
	status := stderr.String()
	if res.Outcome != OutcomePartial || res.ExitStatus() != ExitPartial {
		t.Errorf("outcome %s (exit %d), want partial (web/2 failed):\n%s", res.Outcome, res.ExitStatus(), status)
	}
	for _, re := range []string{
		`(?m)^pcap: web/0: started interfaces=eth0 agent=`,
		`(?m)^pcap: web/1: started interfaces=eth0 agent=`,
		`(?m)^pcap: web/2: failed code=unknown-interface reason="no interface eth0"$`,
		`(?m)^pcap: web/[01]: ended end=stopped packets=[35] `,
		`(?m)^pcap: summary: partial sources=3 packets=8 .* out_of_order=3$`,
	} {
		if !regexp.MustCompile(re).MatchString(status) {
			t.Errorf("no line matches %q in:\n%s", re, status)
		}
	}
	if ns := <-names; !slices.Equal(ns, []string{"web/0:eth0", "web/1:eth0"}) {
		t.Errorf("interfaces %q, want web/0:eth0 then web/1:eth0", ns)
	}
	per := map[int]int{}
	for _, p := range got {
		per[p.iface]++
	}
	if len(got) != 8 || per[0] != 5 || per[1] != 3 || got[0].iface != 0 {
		t.Errorf("packets by interface %v (%d in all, first on %d), want 5 on 0 first, 3 on 1", per, len(got), got[0].iface)
	}
	if res.Packets != 8 || res.OutOfOrder != 3 || len(res.Sources) != 3 {
		t.Errorf("result: %d packets, %d out of order, %d sources; want 8, 3 (web/1's, older than web/0's), 3", res.Packets, res.OutOfOrder, len(res.Sources))
	}
}

// TestSessionStopWhileATargetOpens: a stop that comes while targets are
// still opening does not wait for their opens (up to OpenTimeout): they
// are given up and reported not-started, with no counts, and the capture
// is stopped (exit 0), not partial: the user asked it to end.
func TestSessionStopWhileATargetOpens(t *testing.T) {
	const held = 4
	hold := make(chan struct{}) // never closed before the session ends
	defer close(hold)
	agents := []*fakeAgent{startFakeAgent(t, &fakeAgent{Packets: 2})}
	for range held {
		agents = append(agents, startFakeAgent(t, &fakeAgent{Packets: 3, Hold: hold}))
	}
	const openTimeout = 25 * time.Second
	stop := make(chan struct{})
	var status lineBuffer
	type ended struct {
		res Result
		at  time.Time
	}
	done := make(chan ended, 1)
	go func() {
		res, _, err := runTestSessionWith(t, agents, stop, func(s *Session) {
			s.Status = capturecmd.NewStatus(&status)
			s.OpenTimeout = openTimeout
		})
		if err != nil {
			t.Error(err)
		}
		done <- ended{res, time.Now()}
	}()
	status.waitFor(t, "pcap: web/0: started ")
	stopped := time.Now()
	close(stop)
	e := <-done
	res, st := e.res, status.String()
	// Waiting for the held opens would take openTimeout; a stop takes
	// what the agent that runs needs to stop, well under StopTimeout.
	if took := e.at.Sub(stopped); took > openTimeout/4 {
		t.Errorf("the stop took %v; the opens were waited for (open timeout %v)", took, openTimeout)
	}
	if res.Outcome != OutcomeStopped || res.ExitStatus() != ExitOK || res.Packets != 2 {
		t.Errorf("outcome %s (exit %d), %d packets; want stopped, 0, 2:\n%s", res.Outcome, res.ExitStatus(), res.Packets, st)
	}
	want := []string{
		`(?m)^pcap: web/0: ended end=stopped packets=2 `,
		`(?m)^pcap: summary: stopped sources=` + strconv.Itoa(1+held) + ` packets=2 `,
	}
	for i := 1; i <= held; i++ {
		want = append(want, `(?m)^pcap: web/`+strconv.Itoa(i)+`: not-started reason="the capture ended before this target's capture opened"$`)
	}
	for _, re := range want {
		if !regexp.MustCompile(re).MatchString(st) {
			t.Errorf("no line matches %q in:\n%s", re, st)
		}
	}
	if n := strings.Count(st, " started "); n != 1 {
		t.Errorf("%d started lines, want web/0's alone:\n%s", n, st)
	}
	notStarted := 0
	for _, sr := range res.Sources {
		if sr.State == StateNotStarted {
			notStarted++
			if sr.Counts != nil {
				t.Errorf("%s never started but has counts %v", sr.Name, sr.Counts)
			}
		}
	}
	if notStarted != held || len(res.Sources) != 1+held {
		t.Errorf("%d not-started of %d sources, want %d of %d", notStarted, len(res.Sources), held, 1+held)
	}
	// The clients read the lines as written: an event and its reason, no
	// counts to add up.
	for _, l := range strings.Split(strings.TrimSpace(st), "\n") {
		sl, err := capturecmd.ParseLine(l)
		if err != nil {
			t.Errorf("%q does not parse: %v", l, err)
			continue
		}
		if sl.Event == string(StateNotStarted) && (len(sl.Fields) != 1 || sl.Fields[0].Key != "reason") {
			t.Errorf("%q: fields %v, want the reason alone", l, sl.Fields)
		}
	}
}

// TestSessionOpenFailedBeforeStopStaysFailed: a target whose open failed
// while the capture ran is still a failure when the capture is then
// stopped (partial, exit 3), while one still opening at the stop is
// given up (not-started).
func TestSessionOpenFailedBeforeStopStaysFailed(t *testing.T) {
	refuse := make(chan struct{})
	hold := make(chan struct{})
	defer close(hold)
	agents := []*fakeAgent{
		startFakeAgent(t, &fakeAgent{Packets: 2}),
		startFakeAgent(t, &fakeAgent{Hold: refuse, Refuse: true}),
		startFakeAgent(t, &fakeAgent{Packets: 3, Hold: hold}),
	}
	stop := make(chan struct{})
	var status lineBuffer
	done := make(chan Result, 1)
	go func() {
		res, _, err := runTestSessionWith(t, agents, stop, func(s *Session) {
			s.Status = capturecmd.NewStatus(&status)
			s.OpenTimeout = 25 * time.Second
		})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	status.waitFor(t, "pcap: web/0: started ")
	close(refuse)
	status.waitFor(t, "pcap: web/1: failed ")
	close(stop)
	res := <-done
	st := status.String()
	if res.Outcome != OutcomePartial || res.ExitStatus() != ExitPartial {
		t.Errorf("outcome %s (exit %d), want partial (web/1 failed):\n%s", res.Outcome, res.ExitStatus(), st)
	}
	for _, re := range []string{
		`(?m)^pcap: web/1: failed code=unknown-interface reason="no interface eth0"$`,
		`(?m)^pcap: web/2: not-started reason=`,
		`(?m)^pcap: summary: partial sources=3 packets=2 `,
	} {
		if !regexp.MustCompile(re).MatchString(st) {
			t.Errorf("no line matches %q in:\n%s", re, st)
		}
	}
}

// TestSessionStopBeforeStreaming: a stop that came before the stream
// began waits for the first open (the file needs one target) but not for
// the others, whether the stream starts at once (pcapng) or would wait
// for every open (a classic pcap file): they are not-started, and the
// capture is stopped (exit 0).
func TestSessionStopBeforeStreaming(t *testing.T) {
	const openTimeout = 25 * time.Second
	for _, format := range []string{capturecmd.FormatPcapng, capturecmd.FormatPcap} {
		t.Run(format, func(t *testing.T) {
			hold := make(chan struct{})
			defer close(hold)
			agents := []*fakeAgent{
				startFakeAgent(t, &fakeAgent{Packets: 3, Hold: hold}),
				startFakeAgent(t, &fakeAgent{Packets: 2}),
				startFakeAgent(t, &fakeAgent{Packets: 3, Hold: hold}),
			}
			stop := make(chan struct{})
			close(stop)
			start := time.Now()
			res, st, err := runTestSessionWith(t, agents, stop, func(s *Session) {
				s.OpenTimeout = openTimeout
				s.Req.Format = format
			})
			if err != nil {
				t.Fatalf("%v:\n%s", err, st)
			}
			if took := time.Since(start); took > openTimeout/4 {
				t.Errorf("the capture took %v; the held opens were waited for (open timeout %v)", took, openTimeout)
			}
			if res.Outcome != OutcomeStopped || res.ExitStatus() != ExitOK || res.Packets != 2 {
				t.Errorf("outcome %s (exit %d), %d packets; want stopped, 0, 2:\n%s", res.Outcome, res.ExitStatus(), res.Packets, st)
			}
			for _, re := range []string{
				`(?m)^pcap: web/0: not-started reason=`,
				`(?m)^pcap: web/1: ended end=stopped packets=2 `,
				`(?m)^pcap: web/2: not-started reason=`,
				`(?m)^pcap: summary: stopped sources=3 packets=2 `,
			} {
				if !regexp.MustCompile(re).MatchString(st) {
					t.Errorf("no line matches %q in:\n%s", re, st)
				}
			}
		})
	}
}

// statusWatch collects status lines and closes seen once a line starting
// with prefix was written (capturecmd.Status writes a line at a time).
type statusWatch struct {
	syncbuf.Buffer
	prefix string
	seen   chan struct{}
	once   sync.Once
}

func (w *statusWatch) Write(p []byte) (int, error) {
	if bytes.HasPrefix(p, []byte(w.prefix)) {
		defer w.once.Do(func() { close(w.seen) })
	}
	return w.Buffer.Write(p)
}
