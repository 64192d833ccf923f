package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPIStopWithHungAgent stops a capture while one agent is frozen
// (SIGSTOP): the stop is bounded, the frozen source is reported as not
// stopped, the others end cleanly and the file is whole.
func TestAPIStopWithHungAgent(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c, cl, file := newLabCapture(t, 3)
	for i := range 3 {
		c.send(t, i, 7000, 5)
	}
	freeze(t, c.Agents[1].Proc)

	// StopTimeout is 2 s; allow for the race detector and the final stats.
	if code := stopTimed(t, cl, 5*time.Second, "with a hung agent", "about 2s (at most 5s)"); code != 3 {
		t.Errorf("ssh exit status %d, want 3 (partial):\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: lab/1: not-stopped reason="agent did not stop within 2s" `)
	wantLine(t, cl, `^pcap: lab/0: ended end=stopped packets=5 `)
	wantLine(t, cl, `^pcap: lab/2: ended end=stopped packets=5 `)
	if outcome, _ := summary(t, cl); outcome != "partial" {
		t.Errorf("outcome %s, want partial", outcome)
	}
	capinfos(t, file)
	per := perInterface(t, file)
	if per["lab/0:eth0"] != 5 || per["lab/2:eth0"] != 5 || per["lab/1:eth0"] > 5 {
		t.Errorf("packets per interface %v, want 5, ≤5, 5", per)
	}
	if names, stats := statsBlocks(t, file); len(names) != 3 || len(stats) != 3 {
		t.Errorf("interfaces %v with %d statistics blocks, want 3 and 3", names, len(stats))
	}

	// The API still serves captures on the other agents.
	cl2, _ := c.captureFile(t, 0, "--duration", "1s", "lab/0")
	if code := exitCode(t, cl2, 15*time.Second); code != 0 {
		t.Errorf("next capture: exit status %d:\n%s", code, cl2.Output())
	}
}

// TestAPIStopWhileAnAgentOpens stops a capture while one agent, frozen
// (SIGSTOP) before the capture began, has not opened its capture: the
// stop gives that open up instead of waiting for it (pcap-api's 10 s open
// timeout), reports it not-started with no counts, and the capture is
// stopped (exit 0), not partial: the user asked it to end.
func TestAPIStopWhileAnAgentOpens(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{VMs: 3})
	freeze(t, c.Agents[1].Proc)

	cl, file := c.captureFile(t, 0, "-f", "'udp dst port 7000'", "lab")
	waitStarted(t, cl, "lab/0", "lab/2")
	c.send(t, 0, 7000, 5)
	// Waiting for the open would take up to 10 s; the stop itself needs
	// what the running agents take (allow for the race detector).
	if code := stopTimed(t, cl, 5*time.Second, "while an agent opened", "well under the 10s open timeout"); code != 0 {
		t.Errorf("ssh exit status %d, want 0 (stopped):\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: lab/1: not-started reason="the capture ended before this target's capture opened"$`)
	wantLine(t, cl, `^pcap: lab/0: ended end=stopped packets=5 `)
	wantLine(t, cl, `^pcap: lab/2: ended end=stopped packets=0 `)
	if len(cl.Lines(regexp.MustCompile(`^pcap: lab/1: (started|ended|failed)`))) != 0 {
		t.Errorf("lab/1 reported as started or failed:\n%s", cl.Output())
	}
	if outcome, sum := summary(t, cl); outcome != "stopped" || sum["sources"] != 3 {
		t.Errorf("summary %s %v, want stopped with 3 sources", outcome, sum)
	}
	capinfos(t, file)
	if names, stats := statsBlocks(t, file); len(names) != 2 || len(stats) != 2 {
		t.Errorf("interfaces %v with %d statistics blocks, want lab/0's and lab/2's", names, len(stats))
	}
}

// TestAPISIGTERMStopsCapturesCleanly sends SIGTERM to pcap-api while a
// capture runs: the client still gets the statistics blocks and the
// summary, and the API exits 0 in bounded time.
func TestAPISIGTERMStopsCapturesCleanly(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c, cl, file := newLabCapture(t, 2)
	c.send(t, 0, 7000, 8)
	c.send(t, 1, 7000, 9)

	start := time.Now()
	if err := c.API.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := exitCode(t, cl, 15*time.Second); code != 0 {
		t.Errorf("ssh exit status %d, want 0:\n%s", code, cl.Output())
	}
	err, ok := c.API.Wait(15 * time.Second)
	if !ok {
		t.Fatalf("pcap-api did not exit within 15s of SIGTERM")
	}
	if err != nil {
		t.Errorf("pcap-api exit: %v", err)
	}
	// stop_timeout (2 s) + 3 s is main's bound; the race detector adds.
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("pcap-api took %v to exit", d)
	}
	if outcome, sum := summary(t, cl); outcome != "stopped" || sum["packets"] != 17 {
		t.Errorf("summary %s %v, want stopped with 17 packets", outcome, sum)
	}
	capinfos(t, file)
	wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 8, "lab/1:eth0": 9})
	names, stats := statsBlocks(t, file)
	if len(names) != 2 || len(stats) != 2 {
		t.Fatalf("interfaces %v with %d statistics blocks, want 2 and 2", names, len(stats))
	}
	if s := stats["lab/1:eth0"]; s.PacketsReceived != 9 {
		t.Errorf("statistics of lab/1:eth0 say %d received, want 9", s.PacketsReceived)
	}
	wantLine(t, c.API.Proc, `"msg":"api-stopped","clean":true`)
}

// TestAPISlowClient captures a burst through a client that reads slowly:
// the API's memory stays bounded, drops are counted where they happen and
// every packet sent is either delivered or counted as dropped; another
// operator's capture on another VM at the same time loses nothing.
func TestAPISlowClient(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const (
		burst      = 100_000
		other      = 3000
		maxRSS     = 200 << 10 // KiB; binaries are built with -race
		slowChunk  = 4 << 10   // bytes read per tick while slow
		slowPeriod = 5 * time.Millisecond
	)
	// VM 0's agent buffers much less than the burst's 34 MB, so it must
	// drop: its defaults (32 MiB ring and queue) would hold the burst.
	c := newCapLab(t, capLabOptions{VMs: 2, Operators: 2,
		AgentConfig: func(i int, c *agent.Config) {
			if i == 0 {
				c.BufferSize, c.QueueBytes = 8<<20, 4<<20
			}
		}})
	apiPID := c.API.Cmd.Process.Pid // ip netns exec execs: this is pcap-api

	// The slow client reads its stdout through a pipe, a little per tick,
	// until told to hurry; it keeps everything in a file.
	pr, pw := io.Pipe()
	slowFile := filepath.Join(t.TempDir(), "slow.pcapng")
	f, err := os.Create(slowFile)
	if err != nil {
		t.Fatal(err)
	}
	hurry := make(chan struct{})
	var maxSeen int
	var readerWG sync.WaitGroup
	readerWG.Add(1)
	go func() {
		defer readerWG.Done()
		defer f.Close()
		buf := make([]byte, slowChunk)
		tick := time.NewTicker(slowPeriod)
		defer tick.Stop()
		sample := 0
		for slow := true; slow; {
			select {
			case <-hurry:
				slow = false
				continue
			case <-tick.C:
			}
			n, err := pr.Read(buf)
			f.Write(buf[:n])
			if err != nil {
				return
			}
			if sample++; sample%20 == 0 {
				// Keep reading whatever happens: ssh must be able to end.
				if rss, err := rssKiB(apiPID); err != nil {
					t.Errorf("RSS of pcap-api: %v", err)
				} else {
					maxSeen = max(maxSeen, rss)
				}
			}
		}
		if _, err := io.Copy(f, pr); err != nil {
			t.Errorf("read the slow capture: %v", err)
		}
	}()
	// Runs after ssh is stopped: the reader reads until then.
	t.Cleanup(func() {
		pw.Close() // the reader sees EOF, also when the test ends early
		readerWG.Wait()
	})
	slow := c.capture(t, 0, pw, "--progress", "-f", "'udp dst port 7100'", "lab/0")
	waitStarted(t, slow, "lab/0")
	steady, steadyFile := c.captureFile(t, 1, "-f", "'udp dst port 7200'", "lab/1")
	waitStarted(t, steady, "lab/1")

	// The burst as fast as it goes, and steady traffic beside it.
	bin := testenv.Binaries(t)
	var senders sync.WaitGroup
	send := func(vm int, port, count, size, rate int) {
		defer senders.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.VMs[vm].Name, filepath.Join(bin, "pcap-traffic"),
			"-to", fmt.Sprintf("198.18.0.1:%d", port), "-count", strconv.Itoa(count), "-size", strconv.Itoa(size),
			"-rate", strconv.Itoa(rate), "-max-time", "80s").CombinedOutput()
		if err != nil {
			t.Errorf("pcap-traffic from vm %d: %v\n%s", vm, err, out)
		}
	}
	senders.Add(2)
	go send(0, 7100, burst, 300, 0)
	go send(1, 7200, other, 100, 2000)
	senders.Wait()

	// Drain the slow client, wait until the agent has accounted for the
	// whole burst (written or dropped), then stop.
	close(hurry)
	waitAccounted(t, slow, burst)
	slow.Stdin.Close()
	steady.Stdin.Close()
	slowCode := exitCode(t, slow, 60*time.Second)
	pw.Close()
	readerWG.Wait()
	steadyCode := exitCode(t, steady, 30*time.Second)

	// Memory: sampled during the burst, and once more now.
	rss, err := rssKiB(apiPID)
	if err != nil {
		t.Fatalf("RSS of pcap-api: %v", err)
	}
	maxSeen = max(maxSeen, rss)
	t.Logf("pcap-api max RSS %d KiB (bound %d KiB)", maxSeen, maxRSS)
	if maxSeen > maxRSS {
		t.Errorf("pcap-api RSS reached %d KiB, over the %d KiB bound", maxSeen, maxRSS)
	}

	// The slow capture: drops counted, every packet accounted for.
	if slowCode != 0 {
		t.Errorf("slow client exit status %d, want 0:\n%s", slowCode, slow.Output())
	}
	outcome, sum := summary(t, slow)
	t.Logf("slow capture: %s %v", outcome, sum)
	if sum["agent_dropped"] == 0 {
		t.Errorf("no packet dropped by the agent for a client that could not keep up: %v", sum)
	}
	s, _, wantDrops := wantSentAccounted(t, slowFile, sum, burst)
	if s.PacketsDropped != wantDrops || !strings.Contains(s.Comment, fmt.Sprintf("agent=%d", sum["agent_dropped"])) {
		t.Errorf("statistics block of lab/0:eth0 = %+v, want %d dropped", s, wantDrops)
	}

	// The other operator's capture lost nothing.
	if steadyCode != 0 {
		t.Errorf("steady client exit status %d:\n%s", steadyCode, steady.Output())
	}
	if outcome, sum := summary(t, steady); outcome != "stopped" || sum["packets"] != other ||
		sum["kernel_dropped"]+sum["agent_dropped"]+sum["api_dropped"] != 0 {
		t.Errorf("steady capture: %s %v, want stopped, %d packets, none dropped", outcome, sum, other)
	}
	wantCounts(t, perInterface(t, steadyFile), map[string]int{"lab/1:eth0": other})
}

// waitUntil polls cond (bounded) until it holds.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
	}
}
