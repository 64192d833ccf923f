package integration

import (
	"fmt"
	"regexp"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityClientKilled kills the user's ssh client (SIGKILL: its
// socket just closes) mid-capture: the API ends the capture and audits
// it, every agent ends its capture, and the user's only capture slot
// (max_captures_per_user 1) is free again: the same user's next capture
// works.
func TestReliabilityClientKilled(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const bound = 5 * time.Second
	c := newRelLab(t, relLabOptions{VMs: 2, APIConfig: func(c *api.Config) { c.Limits.MaxCapturesPerUser = 1 }})
	cl, _ := c.captureLab(t)
	relSendUDP(t, c.VMs[0], "198.18.0.1:7000", 10, 100)
	relSendUDP(t, c.VMs[1], "198.18.0.1:7000", 10, 100)

	killed := time.Now()
	if err := cl.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := cl.Wait(10 * time.Second); !ok {
		t.Fatal("ssh did not die")
	}
	line := c.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-ended".*"outcome":"([a-z-]+)"`), 30*time.Second)
	d := time.Since(killed)
	t.Logf("the API ended the capture %v after the client died: %s", d, line[0])
	if d > bound {
		t.Errorf("the API ended the capture %v after its client died, want within %v", d, bound)
	}
	if line[1] != "stopped" && line[1] != "client-gone" {
		t.Errorf("capture-ended outcome %q, want stopped or client-gone", line[1])
	}
	for i, a := range c.Agents {
		agLog(t, a, "capture-ended", `"end":"stopped"`, 30*time.Second)
		if d := time.Since(killed); d > bound {
			t.Errorf("agent %d ended its capture %v after the client died, want within %v", i, d, bound)
		}
	}

	// The slot is free: the same user captures again.
	c.captureCounted(t, "the next capture of the same user", 1, 7001, 3)
}

// TestReliabilityClientStall freezes the user's ssh client (SIGSTOP: it
// reads nothing, its TCP window closes) while a burst is sent, then lets
// it go on (SIGCONT): the capture carries on, the file is valid, and
// every packet sent is either in the file or counted as dropped, by
// place. The stall is 3 s (30 s under PCAP_SOAK=1): what matters is that
// every buffer on the way fills, which takes well under a second here.
func TestReliabilityClientStall(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	stall := 3 * time.Second
	if relSoak() {
		stall = 30 * time.Second
	}
	const sent = 10000
	c := newRelLab(t, relLabOptions{VMs: 1})
	cl, file := c.captureFile(t, 0, "--progress", "-f", "'udp dst port 7000'", "lab/0")
	waitStarted(t, cl, "lab/0")

	pid := cl.Cmd.Process.Pid // ip netns exec execs ssh: this is ssh
	if err := cl.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Signal(syscall.SIGCONT) })
	waitState(t, pid, "T", 5*time.Second)
	stalled := time.Now()
	// About 10 MB in 2.5 s, at a rate the agent keeps up with when its
	// client reads.
	agSend(t, c.VMs[0], "198.18.0.1:7000", sent, 1000, 4000)
	// The stall itself is the scenario (a user's terminal suspended), so
	// it is timed, not awaited.
	if rest := stall - time.Since(stalled); rest > 0 {
		time.Sleep(rest)
	}
	select {
	case <-cl.Done():
		t.Fatalf("ssh ended during the stall:\n%s", cl.Output())
	default:
	}
	if err := cl.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}

	// Wait until the agent has accounted for every packet (written or
	// dropped), then stop.
	waitAccounted(t, cl, sent)
	cl.Stdin.Close()
	if code := exitCode(t, cl, 30*time.Second); code != 0 {
		t.Fatalf("ssh exit status %d after the stall, want 0:\n%s", code, cl.Output())
	}
	outcome, sum := summary(t, cl)
	t.Logf("after a %v stall: %s %v", stall, outcome, sum)
	if outcome != "stopped" {
		t.Errorf("outcome %s, want stopped", outcome)
	}
	if s, ok, wantDrops := wantSentAccounted(t, file, sum, sent); !ok || s.PacketsDropped != wantDrops {
		t.Errorf("statistics block of lab/0:eth0 = %+v (present %v), want %d dropped", s, ok, wantDrops)
	}
}

// TestReliabilityStopRightAfterTraffic stops captures (stdin EOF) at once
// after the last packet was sent, 20 times: every packet sent before the
// stop is delivered, on every source, every time. (Under load, packets
// still in a ring block the kernel had not handed over were once lost
// uncounted at the stop.)
func TestReliabilityStopRightAfterTraffic(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 2})
	for i := range 20 {
		port := 7300 + i
		cl, file := c.captureFile(t, 0, "-f", fmt.Sprintf("'udp dst port %d'", port), "lab")
		waitStarted(t, cl, "lab/0", "lab/1")
		relSendUDP(t, c.VMs[0], fmt.Sprintf("198.18.0.1:%d", port), 20, 100)
		relSendUDP(t, c.VMs[1], fmt.Sprintf("198.18.0.1:%d", port), 20, 100)
		cl.Stdin.Close()
		if code := exitCode(t, cl, 20*time.Second); code != 0 {
			t.Fatalf("round %d: exit status %d:\n%s", i, code, cl.Output())
		}
		if outcome, sum := summary(t, cl); outcome != "stopped" || sum["packets"] != 40 {
			t.Errorf("round %d: summary %s %v, want stopped with the 40 packets sent:\n%s", i, outcome, sum, cl.Output())
			continue
		}
		wantLine(t, cl, `^pcap: lab/0: ended end=stopped packets=20 `)
		wantLine(t, cl, `^pcap: lab/1: ended end=stopped packets=20 `)
		if i == 0 {
			wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 20, "lab/1:eth0": 20})
		}
	}
}
