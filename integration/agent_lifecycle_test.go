package integration

import (
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestAgentMaxCaptures: with max_captures 1 the second capture is refused
// while the first keeps working, and the slot is free as soon as the
// first has ended.
func TestAgentMaxCaptures(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{MaxCaptures: 1})

	first := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000"))
	wait := drain(t, first)

	_, err := agentproto.OpenCapture(t.Context(), s.Client, agentproto.CaptureRequest{
		Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost}, Interfaces: []string{"lo"},
	})
	agWantReject(t, err, tunnel.CodeLimitReached, "agent is running its maximum of 1 captures")

	agSend(t, ct.NS, "198.18.0.1:9000", 25, 100, 2000)
	file, st := agStop(t, first, wait, time.Second)
	if got := countPackets(t, file, "udp.dstport == 9000"); got != 25 || st.Total().Packets != 25 {
		t.Errorf("first capture holds %d packets (stats %d), want 25", got, st.Total().Packets)
	}

	// The first capture has ended (final stats, channel closed): its slot
	// is free for the very next request.
	file, _ = agCaptureSent(t, s, agContainerReq(ct, "udp dst port 9000"), ct.NS, 4)
	if got := countPackets(t, file, ""); got != 4 {
		t.Errorf("capture after the slot was freed holds %d packets, want 4", got)
	}
}

// TestAgentEndsCaptureWhenClientGoes: a channel closed without a stop, and
// a connection that goes away, both end the capture on the agent.
func TestAgentEndsCaptureWhenClientGoes(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})

	byChannel := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000"))
	agLog(t, s.Agent, "capture-started", `"target":"instance `+ct.GUID+`"`, 5*time.Second)
	closedAt := time.Now()
	if err := byChannel.Close(); err != nil {
		t.Fatal(err)
	}
	agLog(t, s.Agent, "capture-ended", `"target":"instance `+ct.GUID+`".*"end":"stopped"`, 5*time.Second)
	if d := time.Since(closedAt); d > 2*time.Second {
		t.Errorf("capture ended %v after its channel closed", d)
	}

	// The whole connection goes: a host capture on it ends too.
	other := dialAgent(t, s.Agent, s.Key)
	agOpen(t, other, agentproto.CaptureRequest{
		Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost}, Interfaces: []string{"lo"},
		Filter: "udp dst port 9",
	})
	closedAt = time.Now()
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	agLog(t, s.Agent, "capture-ended", `"target":"host".*"end":"stopped"`, 5*time.Second)
	if d := time.Since(closedAt); d > 2*time.Second {
		t.Errorf("capture ended %v after its connection closed", d)
	}
	agLog(t, s.Agent, "connection-closed", "", 5*time.Second)

	// The first connection is unaffected.
	if file, _ := agCaptureSent(t, s, agContainerReq(ct, "udp dst port 9000"), ct.NS, 3); countPackets(t, file, "") != 3 {
		t.Errorf("capture on the remaining connection does not hold 3 packets")
	}
}

// TestAgentSIGTERMDuringCapture: the agent shuts down gracefully: the
// client gets every packet, final stats and EOF, and the process exits 0.
func TestAgentSIGTERMDuringCapture(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})
	capt := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000"))
	wait := drain(t, capt)
	agSend(t, ct.NS, "198.18.0.1:9000", 20, 100, 2000)

	sentAt := time.Now()
	if err := s.Agent.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	file := wait()
	st := agFinal(t, capt)
	if d := time.Since(sentAt); d > 3*time.Second {
		t.Errorf("SIGTERM → EOF and final stats took %v, want under 3s", d)
	}
	// The client must learn the capture was cut short by the agent, not
	// stopped by itself.
	if tot := st.Total(); st.End != agentproto.EndAgentStopped || tot.Packets != 20 || tot.Received != 20 || tot.Unaccounted != 0 {
		t.Errorf("final stats %+v, want agent-stopped with 20 packets of 20 received", st)
	}
	if got := countPackets(t, file, "udp.dstport == 9000"); got != 20 {
		t.Errorf("capture holds %d packets, want 20", got)
	}
	err, exited := s.Agent.Wait(10 * time.Second)
	if !exited {
		t.Fatal("agent did not exit within 10s of SIGTERM")
	}
	if err != nil {
		t.Errorf("agent exited with %v, want status 0", err)
	}
	agLog(t, s.Agent, "agent-stopped", "", time.Second)
	select {
	case <-s.Client.Done():
	case <-time.After(5 * time.Second):
		t.Error("client connection still open after the agent exited")
	}
}
