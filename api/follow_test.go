package api

import (
	"bytes"
	"context"
	"io"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/internal/syncbuf"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// lineBuffer is status output a test reads while the session writes it.
type lineBuffer struct{ syncbuf.Buffer }

// waitFor waits (bounded) until the status output holds want.
func (b *lineBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(b.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("no %q in the status lines:\n%s", want, b.String())
		}
		time.Sleep(10 * time.Millisecond) // a poll of the output, bounded above
	}
}

// followSession runs a followed session whose resolver answers what
// answer holds at each call; it returns the result when stop is closed.
func followSession(t *testing.T, first []Target, answer *atomic.Pointer[[]Target], stop chan struct{}, status *lineBuffer, edit func(*Session)) (Result, string) {
	t.Helper()
	pool := &Pool{Config: tunnel.ClientConfig{User: "api", HostKeyCallback: sshInsecure()}}
	t.Cleanup(pool.Close)
	var out bytes.Buffer
	s := &Session{
		Pool: pool, Targets: first, Out: &out, Status: capturecmd.NewStatus(status),
		Req:            capturecmd.Request{Interfaces: []string{"eth0"}, Snaplen: 65535, Format: capturecmd.FormatPcapng},
		FollowInterval: MinFollowInterval,
		Follow: func(context.Context) ([]Target, error) {
			if a := answer.Load(); a != nil {
				return *a, nil
			}
			return nil, tunnel.Reject(tunnel.CodeInternal, "cloud controller is down")
		},
	}
	if edit != nil {
		edit(s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := s.Run(ctx, stop)
	if err != nil {
		t.Fatal(err)
	}
	return res, out.String()
}

func hostTarget(name, addr string) Target {
	return Target{Name: name, Agent: addr, Capture: agentproto.Target{Kind: agentproto.TargetHost}}
}

// TestSessionFollow: a followed capture takes in a new instance and a
// re-placed one (same name, new agent) as new sources, named apart, lets
// go of the one no longer listed as instance-gone, keeps running through
// a failing resolve, and ends stopped (exit 0), each source's packets
// accounted for.
func TestSessionFollow(t *testing.T) {
	a := startFakeAgent(t, &fakeAgent{Packets: 2})
	b := startFakeAgent(t, &fakeAgent{Packets: 3})
	b2 := startFakeAgent(t, &fakeAgent{Packets: 4})
	c := startFakeAgent(t, &fakeAgent{Packets: 5})
	first := []Target{hostTarget("web/0", a.Addr), hostTarget("web/1", b.Addr)}
	var answer atomic.Pointer[[]Target]
	answer.Store(&first)
	stop := make(chan struct{})
	status := &lineBuffer{}
	type outcome struct {
		res Result
		out string
	}
	done := make(chan outcome, 1)
	go func() {
		res, out := followSession(t, first, &answer, stop, status, nil)
		done <- outcome{res, out}
	}()
	status.waitFor(t, "pcap: web/1: started ")
	answer.Store(nil) // the resolver fails for a while
	status.waitFor(t, `pcap: follow: resolve-failed reason="cloud controller is down"`)
	next := []Target{hostTarget("web/0", a.Addr), hostTarget("web/1", b2.Addr), hostTarget("web/2", c.Addr)}
	answer.Store(&next)
	status.waitFor(t, "pcap: web/1#2: joined interfaces=eth0 agent="+b2.Addr)
	status.waitFor(t, "pcap: web/2: joined interfaces=eth0 agent="+c.Addr)
	status.waitFor(t, "pcap: web/1: gone ")
	close(stop)
	o := <-done
	st := status.String()
	if o.res.Outcome != OutcomeStopped || o.res.ExitStatus() != ExitOK {
		t.Errorf("outcome %s, exit %d; want stopped, 0\n%s", o.res.Outcome, o.res.ExitStatus(), st)
	}
	for _, want := range []string{
		"pcap: follow: resolve-resumed",
		"pcap: web/0: ended end=stopped packets=2 ",
		"pcap: web/1: ended end=instance-gone packets=3 ",
		"pcap: web/1#2: ended end=stopped packets=4 ",
		"pcap: web/2: ended end=stopped packets=5 ",
		"pcap: summary: stopped sources=4 packets=14 ",
	} {
		if !strings.Contains(st, want) {
			t.Errorf("status lacks %q:\n%s", want, st)
		}
	}
	if n := strings.Count(st, "resolve-failed"); n != 1 {
		t.Errorf("resolve-failed reported %d times, want once:\n%s", n, st)
	}
	// Every source's packets are accounted for, joined and gone ones too.
	for _, sr := range o.res.Sources {
		for _, c := range sr.Counts {
			if c.Delivered+c.KernelDropped+c.IfDropped+c.AgentDropped+c.APIDropped != c.Received {
				t.Errorf("%s: delivered %d + drops != received %d", sr.Name, c.Delivered, c.Received)
			}
		}
	}
	// The joined interfaces are declared in the file before their packets.
	names := interfaceNames(t, o.out)
	// The first targets open side by side, and so do the joins: each
	// group's interfaces come in the order they opened.
	slices.Sort(names[:2])
	slices.Sort(names[2:])
	if got := strings.Join(names, ","); got != "web/0:eth0,web/1:eth0,web/1#2:eth0,web/2:eth0" {
		t.Errorf("interfaces %s", got)
	}
}

// TestSessionFollowLimit: a join over the capture's target limit is
// reported skipped with the reason, not dropped silently, and makes the
// capture partial (what the user asked for is not all there).
func TestSessionFollowLimit(t *testing.T) {
	a := startFakeAgent(t, &fakeAgent{Packets: 1})
	b := startFakeAgent(t, &fakeAgent{Packets: 1})
	first := []Target{hostTarget("web/0", a.Addr)}
	var answer atomic.Pointer[[]Target]
	next := []Target{hostTarget("web/0", a.Addr), hostTarget("web/1", b.Addr)}
	answer.Store(&next)
	stop := make(chan struct{})
	status := &lineBuffer{}
	done := make(chan Result, 1)
	go func() {
		res, _ := followSession(t, first, &answer, stop, status, func(s *Session) { s.MaxTargets = 1 })
		done <- res
	}()
	status.waitFor(t, `pcap: web/1: skipped reason="the capture has its maximum of 1 targets"`)
	close(stop)
	res := <-done
	if res.Outcome != OutcomePartial {
		t.Errorf("outcome %s, want partial\n%s", res.Outcome, status.String())
	}
	if strings.Contains(status.String(), "joined") {
		t.Errorf("a join over the limit:\n%s", status.String())
	}
}

// interfaceNames reads a whole pcapng stream and lists its interfaces,
// those declared after packets included.
func interfaceNames(t *testing.T, stream string) []string {
	t.Helper()
	r, err := pcapgo.NewNgReader(strings.NewReader(stream), pcapgo.NgReaderOptions{WantMixedLinkType: true})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			if err != io.EOF {
				t.Fatalf("read pcapng: %v", err)
			}
			break
		}
	}
	var names []string
	for i := range r.NInterfaces() {
		ifc, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, ifc.Name)
	}
	return names
}

func sshInsecure() ssh.HostKeyCallback { return ssh.InsecureIgnoreHostKey() }

// TestSessionFollowAgentEnds: a followed source whose agent ends it by
// itself (its container went away) ends as instance-gone when the next
// answer no longer lists it, and the capture goes on; one still listed is
// lost, as without following.
func TestSessionFollowAgentEnds(t *testing.T) {
	for _, listed := range []bool{false, true} {
		t.Run(map[bool]string{false: "gone", true: "still listed"}[listed], func(t *testing.T) {
			steady := startFakeAgent(t, &fakeAgent{Packets: 1})
			ends := startFakeAgent(t, &fakeAgent{Packets: 2, End: agentproto.EndError})
			first := []Target{hostTarget("web/0", steady.Addr), hostTarget("web/1", ends.Addr)}
			var answer atomic.Pointer[[]Target]
			next := first[:1]
			if listed {
				next = first
			}
			answer.Store(&next)
			stop := make(chan struct{})
			status := &lineBuffer{}
			done := make(chan Result, 1)
			go func() {
				res, _ := followSession(t, first, &answer, stop, status, nil)
				done <- res
			}()
			if listed {
				status.waitFor(t, "pcap: web/1: lost ")
			} else {
				status.waitFor(t, "pcap: web/1: gone ")
			}
			status.waitFor(t, "pcap: web/0: started ") // not given up still opening
			close(stop)
			res := <-done
			st := status.String()
			wantOutcome, wantLine := OutcomeStopped, "pcap: web/1: ended end=instance-gone packets=2 "
			if listed {
				wantOutcome, wantLine = OutcomePartial, "pcap: web/1: lost "
			}
			if res.Outcome != wantOutcome {
				t.Errorf("outcome %s, want %s\n%s", res.Outcome, wantOutcome, st)
			}
			if !strings.Contains(st, wantLine) || !strings.Contains(st, "pcap: web/0: ended end=stopped packets=1 ") {
				t.Errorf("status lacks %q or web/0's end:\n%s", wantLine, st)
			}
		})
	}
}
