package integration

import (
	"fmt"
	"regexp"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityLoad runs 20 captures at once, each by another user
// (operator key), on one API over 10 agents: every capture takes two
// VMs with a filter of its own, so each agent runs 4 captures side by
// side. With limits.max_captures 20, a 21st capture is refused while they
// run. All 20 complete, and each file holds exactly the packets of its
// own filter from its own two VMs: no cross-talk between captures.
// Under PCAP_SOAK=1 the traffic goes on for 100 rounds instead of one.
func TestReliabilityLoad(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const (
		vms      = 10
		captures = 20
	)
	rounds := 1
	if relSoak() {
		rounds = 100
	}
	start := time.Now()
	c := newRelLab(t, relLabOptions{
		VMs:       vms,
		Operators: captures + 1,
		APIConfig: func(c *api.Config) { c.Limits.MaxCaptures, c.Limits.MaxCapturesPerUser = captures, 1 },
	})
	t.Logf("lab of %d VMs up in %v", vms, time.Since(start))

	type capt struct {
		cl      *sshClient
		file    string
		port    int
		vms     [2]int
		perSend [2]int // datagrams per round from each VM
	}
	caps := make([]*capt, captures)
	for k := range captures {
		cp := &capt{port: 7200 + k, vms: [2]int{k % vms, (k + 1) % vms}, perSend: [2]int{3 + k, 4 + 2*k}}
		cp.cl, cp.file = c.captureFile(t, k, "-f", fmt.Sprintf("'udp dst port %d'", cp.port),
			fmt.Sprintf("lab/%d", cp.vms[0]), fmt.Sprintf("lab/%d", cp.vms[1]))
		caps[k] = cp
	}
	for _, cp := range caps {
		waitStarted(t, cp.cl, fmt.Sprintf("lab/%d", cp.vms[0]), fmt.Sprintf("lab/%d", cp.vms[1]))
	}
	t.Logf("%d captures running %v after the start", captures, time.Since(start))

	// The 21st is refused: the API runs its maximum.
	extra, _ := c.captureFile(t, captures, "lab/0")
	if code := exitCode(t, extra, 20*time.Second); code != 1 {
		t.Errorf("21st capture: exit status %d, want 1:\n%s", code, extra.Output())
	}
	wantLine(t, extra, `^pcap: error: limit-reached reason="the API is running its maximum of 20 captures; try again later"$`)

	// Each VM sends, in parallel with the others, what each of its
	// captures should see.
	for range rounds {
		var wg sync.WaitGroup
		for vm := range vms {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, cp := range caps {
					for j, v := range cp.vms {
						if v == vm {
							if err := relTrySendUDP(c.VMs[vm], fmt.Sprintf("198.18.0.1:%d", cp.port), cp.perSend[j], 100); err != nil {
								t.Error(err)
							}
						}
					}
				}
			}()
		}
		wg.Wait()
	}
	for _, cp := range caps {
		cp.cl.Stdin.Close()
	}
	for k, cp := range caps {
		if code := exitCode(t, cp.cl, 30*time.Second); code != 0 {
			t.Errorf("capture %d: exit status %d:\n%s", k, code, cp.cl.Output())
			continue
		}
		want := map[string]int{}
		total := 0
		for j, v := range cp.vms {
			want[fmt.Sprintf("lab/%d:eth0", v)] = cp.perSend[j] * rounds
			total += cp.perSend[j] * rounds
		}
		wantCounts(t, perInterface(t, cp.file), want)
		if n := countPackets(t, cp.file, fmt.Sprintf("udp.dstport == %d", cp.port)); n != total {
			t.Errorf("capture %d: %d packets to its port %d, want %d", k, n, cp.port, total)
		}
		if outcome, sum := summary(t, cp.cl); outcome != "stopped" || sum["packets"] != total ||
			sum["kernel_dropped"]+sum["agent_dropped"]+sum["api_dropped"] != 0 {
			t.Errorf("capture %d: summary %s %v, want stopped, %d packets, none dropped", k, outcome, sum, total)
		}
	}
	relWaitCount(t, c.API, `"msg":"capture-refused".*"code":"limit-reached"`, 1, 5*time.Second)
	if n := relCount(c.API, `"msg":"capture-started"`); n != captures {
		t.Errorf("the API started %d captures, want %d", n, captures)
	}
	if n := relCount(c.API, `"msg":"capture-refused".*"code":"limit-reached"`); n != 1 {
		t.Errorf("the API refused %d captures for the limit, want 1", n)
	}
	re := regexp.MustCompile(`"msg":"capture-ended".*"outcome":"stopped"`)
	waitUntil(t, 10*time.Second, "20 captures audited as stopped", func() bool { return len(c.API.Lines(re)) == captures })
	t.Logf("load test took %v", time.Since(start))
}
