package integration

import (
	"context"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// container is an app instance's network namespace, linked by eth0
// (198.18.0.2) to a peer namespace (198.18.0.1), published in a cell's
// netns directory under its instance GUID the way cf-networking's
// garden-external-networker does (a bind mount named by the container
// handle, which Diego sets to the instance GUID). Init is a process
// running inside it.
type container struct {
	NS   *testenv.Netns
	Peer *testenv.Netns
	GUID string
	Init *testenv.Proc
}

// newContainer makes a container and publishes it in netnsDir (an
// agent's NetnsDir: the cell it runs on).
func newContainer(t *testing.T, netnsDir, guid string) *container {
	t.Helper()
	c := &container{NS: testenv.NewNetns(t), Peer: testenv.NewNetns(t), GUID: guid}
	testenv.Link(t, c.NS, "eth0", "198.18.0.2/24", c.Peer, "eth0", "198.18.0.1/24")
	testenv.BindNetns(t, c.NS.Path(), netnsDir, guid)
	c.Init = testenv.Start(t, testenv.StartOptions{Netns: c.NS}, "sleep", "600")
	c.waitReady(t)
	return c
}

// waitReady waits until the container's process has entered the
// namespace and exec'd sleep (`ip netns exec` does both), so a capture by
// its PID finds the container.
func (c *container) waitReady(t *testing.T) {
	t.Helper()
	pid := c.Init.Cmd.Process.Pid
	proc := func(name string) string { return fmt.Sprintf("/proc/%d/%s", pid, name) }
	var want syscall.Stat_t
	if err := syscall.Stat(c.NS.Path(), &want); err != nil {
		t.Fatal(err)
	}
	ready := func() bool {
		var st syscall.Stat_t
		if err := syscall.Stat(proc("ns/net"), &st); err != nil || st.Ino != want.Ino || st.Dev != want.Dev {
			return false
		}
		comm, err := os.ReadFile(proc("comm"))
		return err == nil && string(comm) == "sleep\n"
	}
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			t.Fatalf("container process %d not in %s running sleep after 10s", pid, c.NS.Name)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

func TestAgentCapturesContainerByInstanceGUID(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	dir := t.TempDir()
	api := newKeyPair(t, dir, "api")
	ag := startAgent(t, agentOptions{ClientKeys: []keyPair{api}})
	ct := newContainer(t, ag.NetnsDir, "6f1c2a3e-0000-4a5b-8c9d-000000000001")
	client := dialAgent(t, ag, api)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := agentproto.OpenCapture(ctx, client, agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: ct.GUID},
		Interfaces: []string{"eth0"},
		Filter:     "udp dst port 9000",
	})
	if err != nil {
		t.Fatalf("open capture: %v", err)
	}
	wait := drain(t, capt)

	sendUDP(t, ct.NS, "198.18.0.1:9000", 57)
	sendUDP(t, ct.NS, "198.18.0.1:9001", 23) // filtered out

	stopAt := time.Now()
	if err := capt.Stop(); err != nil {
		t.Fatal(err)
	}
	file := wait()
	st, err := capt.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(stopAt); d > time.Second {
		t.Errorf("stop took %v, want under 1s", d)
	}

	capinfos(t, file)
	if n := countPackets(t, file, ""); n != 57 {
		t.Errorf("capture holds %d packets, want 57", n)
	}
	if n := countPackets(t, file, "udp.dstport == 9000 && ip.src == 198.18.0.2"); n != 57 {
		t.Errorf("capture holds %d matching packets, want 57", n)
	}
	if !st.Final || st.End != agentproto.EndStopped {
		t.Errorf("final stats = %+v, want final and stopped", st)
	}
	tot := st.Total()
	if tot.Packets != 57 || tot.Received != 57 || tot.KernelDropped != 0 || tot.AgentDropped != 0 {
		t.Errorf("stats = %+v, want 57 packets received and delivered, none dropped", tot)
	}
}
