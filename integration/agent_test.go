package integration

import (
	"context"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
)

// container is a namespace holding a process with CF_INSTANCE_GUID set,
// linked by eth0 (198.18.0.2) to a peer namespace (198.18.0.1).
type container struct {
	NS   *testenv.Netns
	Peer *testenv.Netns
	GUID string
	Init *testenv.Proc
}

func newContainer(t *testing.T, guid string) *container {
	t.Helper()
	c := &container{NS: testenv.NewNetns(t), Peer: testenv.NewNetns(t), GUID: guid}
	testenv.Link(t, c.NS, "eth0", "198.18.0.2/24", c.Peer, "eth0", "198.18.0.1/24")
	c.Init = testenv.Start(t, testenv.StartOptions{Netns: c.NS, Env: []string{"CF_INSTANCE_GUID=" + guid}}, "sleep", "600")
	return c
}

func TestAgentCapturesContainerByInstanceGUID(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	api := newKeyPair(t, dir, "api")
	ag := startAgent(t, agentOptions{ClientKeys: []keyPair{api}})
	ct := newContainer(t, "6f1c2a3e-0000-4a5b-8c9d-000000000001")
	client := dialAgent(t, ag, api)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := client.OpenCapture(ctx, tunnel.CaptureRequest{
		Version:    tunnel.ProtocolVersion,
		Target:     tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: ct.GUID},
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
	if !st.Final || st.End != tunnel.EndStopped {
		t.Errorf("final stats = %+v, want final and stopped", st)
	}
	tot := st.Total()
	if tot.Packets != 57 || tot.Received != 57 || tot.KernelDropped != 0 || tot.AgentDropped != 0 {
		t.Errorf("stats = %+v, want 57 packets received and delivered, none dropped", tot)
	}
}
