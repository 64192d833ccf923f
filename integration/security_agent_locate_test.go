package integration

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Attacks on how the agent finds a container (issue 11, item 1). The
// agent finds an instance only through the bind mount the cell publishes
// under its GUID; these tests run the real pcap-agent over real SSH.

// spoofer starts a process in ns (nil: the root namespace, the host's)
// whose environment claims guid, and waits until it runs with it.
func spoofer(t *testing.T, ns *testenv.Netns, guid string) int {
	t.Helper()
	p := testenv.Start(t, testenv.StartOptions{Netns: ns, Env: []string{"CF_INSTANCE_GUID=" + guid}}, "sleep", "600")
	pid := p.Cmd.Process.Pid
	want := []byte("\x00CF_INSTANCE_GUID=" + guid + "\x00")
	deadline := time.Now().Add(10 * time.Second)
	for {
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if string(comm) == "sleep\n" && bytes.Contains(append([]byte{0}, env...), want) {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("spoofing process %d not running sleep with CF_INSTANCE_GUID=%s after 10s", pid, guid)
		}
		time.Sleep(5 * time.Millisecond) // polling interval
	}
}

// TestSecurityAgentSpoofedGUIDHasNoEffect: processes with lower PIDs, one
// in another tenant's container and one on the host, claim the victim's
// CF_INSTANCE_GUID (the old lookup took the lowest such PID). The capture
// runs in the victim's namespace all the same: the victim's packets, none
// of the spoofer's.
func TestSecurityAgentSpoofedGUIDHasNoEffect(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	attacker := newContainer(t, s.Agent.NetnsDir, agGUID(t))
	// The spoofers must have the lower PIDs: started first, they do,
	// unless the PIDs wrapped around (pid_max) in between; then the
	// scene is set again with a new victim GUID, once the PIDs have
	// started from the bottom again. (What a failed try started is
	// stopped at the end and claims a GUID nothing captures.)
	var victim *container
	for try := 1; ; try++ {
		victimGUID := agGUID(t)
		inAttacker := spoofer(t, attacker.NS, victimGUID)
		onHost := spoofer(t, nil, victimGUID)
		victim = newContainer(t, s.Agent.NetnsDir, victimGUID)
		vp := victim.Init.Cmd.Process.Pid
		if vp > inAttacker && vp > onHost {
			break
		}
		if try == 3 {
			t.Fatalf("precondition: victim pid %d is lower than the spoofers' %d and %d in 3 tries", vp, inAttacker, onHost)
		}
		t.Logf("PIDs wrapped around: victim %d, spoofers %d and %d; again", vp, inAttacker, onHost)
	}

	capt := agOpen(t, s.Client, agContainerReq(victim, "udp"))
	wait := drain(t, capt)
	agSend(t, attacker.NS, "198.18.0.1:9001", 15, 100, 2000)
	agSend(t, victim.NS, "198.18.0.1:9000", 20, 100, 2000)
	file, st := agStop(t, capt, wait, 2*time.Second)
	got := agCountBy(agFields(t, file, "udp.dstport", ""))
	if got["9000"] != 20 || got["9001"] != 0 || len(got) != 1 {
		t.Errorf("capture holds udp ports %v, want the victim's 20 to 9000 and none of the attacker's (9001)", got)
	}
	if st.Total().Packets != 20 {
		t.Errorf("stats count %d packets, want 20", st.Total().Packets)
	}
}

// TestSecurityAgentRefusesWhatIsNotAContainer: what is published under a
// GUID must be a network namespace other than the agent's and the host's.
// (The agent runs in the host's namespace here, as on a cell, so the
// host's namespace is also its own.)
func TestSecurityAgentRefusesWhatIsNotAContainer(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	dir := s.Agent.NetnsDir
	hostGUID, utsGUID, fileGUID, missingGUID := agGUID(t), agGUID(t), agGUID(t), agGUID(t)
	testenv.BindNetns(t, "/proc/thread-self/ns/net", dir, hostGUID)
	testenv.BindNetns(t, "/proc/thread-self/ns/uts", dir, utsGUID)
	if err := os.WriteFile(filepath.Join(dir, fileGUID), nil, 0o444); err != nil {
		t.Fatal(err)
	}
	notOne := func(g string) string {
		return "instance " + g + " has no network namespace on this host (what is published for it is not one)"
	}
	tests := []struct {
		name, guid, code, msg string
	}{
		{"host namespace", hostGUID, tunnel.CodeNotAllowed,
			"instance " + hostGUID + " is in the agent's own network namespace: refused (capture the host instead)"},
		{"uts namespace", utsGUID, tunnel.CodeTargetNotFound, notOne(utsGUID)},
		{"regular file", fileGUID, tunnel.CodeTargetNotFound, notOne(fileGUID)},
		{"unknown guid", missingGUID, tunnel.CodeTargetNotFound, "no container with instance guid " + missingGUID + " on this host"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			capt, err := agentproto.OpenCapture(ctx, s.Client, agentproto.CaptureRequest{Version: agentproto.ProtocolVersion,
				Target: agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: tt.guid}, Interfaces: []string{"lo"}})
			if err == nil {
				capt.Close()
			}
			agWantReject(t, err, tt.code, tt.msg)
		})
	}
	agLog(t, s.Agent, "capture-rejected", `"code":"not-allowed"`, 5*time.Second)
}

// TestSecurityAgentRefusesPathGUIDs: GUIDs that would name another file
// are refused as bad requests by the agent itself (sent raw, past the
// client's own checks), even when the file they name is a real namespace.
func TestSecurityAgentRefusesPathGUIDs(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	// A real container one directory above the agent's netns directory:
	// what "../<guid>" would reach.
	above := newContainer(t, filepath.Dir(s.Agent.NetnsDir), agGUID(t))

	raw := agRawDial(t, s)
	for _, guid := range []string{"../" + above.GUID, "a/b", "", "..", "6F1C2A3E-0000-4A5B-8C9D-0000", above.GUID + "0"} {
		t.Run(fmt.Sprintf("%q", guid), func(t *testing.T) {
			payload := fmt.Sprintf(`{"version":1,"target":{"kind":"cf-instance","instance_guid":%q},"interfaces":["eth0"]}`, guid)
			ch, _, err := raw.OpenChannel(agentproto.ChannelCapture, []byte(payload))
			if err == nil {
				ch.Close()
				t.Fatal("agent accepted the request")
			}
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) {
				t.Fatalf("open channel: %v", err)
			}
			var re *tunnel.RejectError
			if !errors.As(tunnel.ParseRejection(err), &re) || re.Code != tunnel.CodeBadRequest {
				t.Errorf("rejection = %v, want %s", err, tunnel.CodeBadRequest)
			}
		})
	}
}
