package integration

import (
	"context"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityNetworkCut cuts the network between the API and one
// agent mid-capture (its VM's link goes down: no FIN, no RST, packets just
// vanish). With keepalives every second on both sides, the API reports
// that source lost within a few seconds and the agent ends its capture by
// itself; the other sources keep capturing every packet, and the file is
// whole. When the link comes back, the next capture reaches the agent
// again. (With the default 15 s interval the loss is seen after 45-60 s:
// the bound below fails.)
func TestReliabilityNetworkCut(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	// Keepalives every second; three unanswered close the connection:
	// at most 4 s after the cut, plus slack for a loaded machine.
	const bound = 8 * time.Second
	c := newRelLab(t, relLabOptions{
		VMs:         3,
		AgentConfig: func(c *agent.Config) { c.KeepaliveInterval = time.Second },
		APIConfig:   func(c *api.Config) { c.Agents.KeepaliveInterval = time.Second },
	})
	cl, file := c.captureLab(t)
	for i := range 3 {
		relSendUDP(t, c.VMs[i], "198.18.0.1:7000", 10, 100)
	}
	endedBefore := relCount(c.Agents[1], `"msg":"capture-ended"`)

	cut := time.Now()
	testenv.Run(t, "ip", "-n", c.VMs[1].Name, "link", "set", "eth0", "down")
	cl.WaitLine(t, regexp.MustCompile(`^pcap: lab/1: lost reason="connection to agent 198.18.0.11:9494 lost"$`), 30*time.Second)
	d := time.Since(cut)
	t.Logf("the API reported the source lost %v after the cut", d)
	if d > bound {
		t.Errorf("the API reported the cut-off source lost %v after the cut, want within %v", d, bound)
	}
	relWaitCount(t, c.Agents[1], `"msg":"capture-ended"`, endedBefore+1, 30*time.Second)
	d = time.Since(cut)
	t.Logf("the cut-off agent ended its capture %v after the cut", d)
	if d > bound {
		t.Errorf("the cut-off agent ended its capture %v after the cut, want within %v", d, bound)
	}
	agLog(t, c.Agents[1], "connection-closed", "", 5*time.Second)

	// The others go on.
	relSendUDP(t, c.VMs[0], "198.18.0.1:7000", 20, 100)
	relSendUDP(t, c.VMs[2], "198.18.0.1:7000", 20, 100)
	select {
	case <-cl.Done():
		t.Fatalf("the capture ended with the cut:\n%s", cl.Output())
	default:
	}
	cl.Stdin.Close()
	wantPartial(t, cl, 20*time.Second)
	if outcome, sum := summary(t, cl); outcome != "partial" || sum["sources"] != 3 {
		t.Errorf("summary %s %v, want partial with 3 sources", outcome, sum)
	}
	wantLine(t, cl, `^pcap: lab/0: ended end=stopped packets=30 received=30 kernel_dropped=0 `)
	wantLine(t, cl, `^pcap: lab/2: ended end=stopped packets=30 received=30 kernel_dropped=0 `)
	wantLine(t, cl, `^pcap: lab/1: lost reason="connection to agent 198.18.0.11:9494 lost" packets=\d+ `)
	capinfos(t, file)
	per := perInterface(t, file)
	if per["lab/0:eth0"] != 30 || per["lab/2:eth0"] != 30 || per["lab/1:eth0"] > 10 || len(per) > 3 {
		t.Errorf("packets per interface %v, want lab/0 and lab/2 30 each, lab/1 at most 10", per)
	}
	if names, stats := statsBlocks(t, file); len(names) != 3 || len(stats) != 3 {
		t.Errorf("interfaces %v with %d statistics blocks, want 3 and 3", names, len(stats))
	}

	// The link comes back: the API dials the agent again.
	testenv.Run(t, "ip", "-n", c.VMs[1].Name, "link", "set", "eth0", "up")
	c.captureCounted(t, "capture after the link came back", 1, 7000, 4)
}

// TestReliabilityAgentRestart restarts an agent (gracefully, then by
// SIGKILL) while the API holds an idle connection to it from an earlier
// capture: the next capture reconnects and captures every packet.
func TestReliabilityAgentRestart(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 1})
	c.captureCounted(t, "", 0, 7000, 3)
	// The API keeps its connection open for the next capture.
	relWaitCount(t, c.Agents[0], `"msg":"capture-ended"`, 1, 5*time.Second)
	if n := relCount(c.Agents[0], `"msg":"connection-opened"`); n != 1 {
		t.Errorf("%d connections opened for one capture, want 1", n)
	}
	if n := relCount(c.Agents[0], `"msg":"connection-closed"`); n != 0 {
		t.Errorf("the API closed its connection after the capture (%d closes); want it kept", n)
	}

	// Not subtests: the restarted agent must outlive each step.
	for i, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGKILL} {
		c.Agents[0] = relRestartAgent(t, c.Agents[0], c.VMs[0], sig)
		c.captureCounted(t, "", 0, 7000, 5+i)
		relWaitCount(t, c.Agents[0], `"msg":"capture-ended"`, 1, 5*time.Second)
		if n := relCount(c.Agents[0], `"msg":"connection-opened"`); n != 1 {
			t.Errorf("after %v: the restarted agent logged %d connections, want the API's new one", sig, n)
		}
	}
}

// TestReliabilityAPIKilled kills pcap-api (SIGKILL: no stop, no goodbye)
// while it captures three app instances on two cells: every agent ends
// its captures by itself within a bound, no agent thread is left in a
// container's network namespace, and no capture goroutine or connection
// is left behind (checked in the agents' own goroutine dumps).
func TestReliabilityAPIKilled(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const bound = 5 * time.Second
	e := startCFEnv(t)
	tok, err := e.UAA.MintToken("developer", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan relResult, 1)
	go func() {
		done <- relExec(ctx, e.API, "cf", ssh.Password(tok), "capture --app "+cfApp+" --instance 0,1,2 -f 'udp dst port 9317'")
	}()
	started := `"msg":"capture-started".*"filter":"udp dst port 9317"`
	relWaitCount(t, e.Cells[0].Agent, started, 1, 30*time.Second)
	relWaitCount(t, e.Cells[1].Agent, started, 2, 30*time.Second)
	for _, ct := range e.Containers {
		sendUDP(t, ct.NS, "198.18.0.1:9317", 5)
	}

	killed := time.Now()
	if err := e.API.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.API.Wait(10 * time.Second); !ok {
		t.Fatal("pcap-api did not die")
	}
	for i, want := range []int{1, 2} {
		relWaitCount(t, e.Cells[i].Agent, `"msg":"capture-ended"`, want, 30*time.Second)
		if d := time.Since(killed); d > bound {
			t.Errorf("cell %d's agent ended its captures %v after the API died, want within %v", i, d, bound)
		}
		agLog(t, e.Cells[i].Agent, "connection-closed", "", 5*time.Second)
	}
	select {
	case r := <-done:
		if r.Status != -1 || r.Err == nil {
			t.Errorf("the client's session: status %d, err %v; want it lost", r.Status, r.Err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the client did not notice the API died")
	}

	for i, cell := range e.Cells {
		pid := cell.Agent.Cmd.Process.Pid
		if out := relThreadsOutsideNetns(t, pid); len(out) > 0 {
			t.Errorf("cell %d's agent has threads in other network namespaces: %v", i, out)
		}
		dump := relGoroutineDump(t, cell.Agent.Proc)
		if left := relGoroutinesIn(dump, "agent.(*Agent).HandleChannel", "agent.(*Agent).run", "agent.(*source).read",
			"tunnel.(*Server).serveConn", "ssh.(*handshakeTransport)"); len(left) > 0 {
			t.Errorf("cell %d's agent still runs capture or connection goroutines after the API died:\n%s", i, strings.Join(left, "\n\n"))
		}
	}
}
