package integration

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestAgentHostLoopbackExcludesOwnTunnel captures on the host's lo with a
// filter that would match the tunnel's own connection: the capture holds
// exactly the UDP datagrams sent, none of the tunnel's packets, and the
// same count as tcpdump on the same interface.
func TestAgentHostLoopbackExcludesOwnTunnel(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	_, portStr, err := net.SplitHostPort(s.Agent.Addr)
	if err != nil {
		t.Fatal(err)
	}
	udpPort, received := agUDPSink(t)
	truth := agTcpdump(t, nil, "lo", fmt.Sprintf("udp dst port %d", udpPort))

	filter := fmt.Sprintf("udp dst port %d or tcp port %s", udpPort, portStr)
	capt := agOpen(t, s.Client, agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     agentproto.Target{Kind: agentproto.TargetHost},
		Interfaces: []string{"lo"},
		Filter:     filter,
	})
	wait := drain(t, capt)
	const n = 150
	agSend(t, nil, fmt.Sprintf("127.0.0.1:%d", udpPort), n, 100, 2000)
	received(n)
	file, st := agStop(t, capt, wait, time.Second)
	truthFile, truthReceived := truth()

	capinfos(t, file)
	if got := countPackets(t, file, ""); got != n {
		t.Errorf("capture holds %d packets, want %d", got, n)
	}
	if got := countPackets(t, file, fmt.Sprintf("udp.dstport == %d && ip.src == 127.0.0.1", udpPort)); got != n {
		t.Errorf("capture holds %d of the datagrams, want %d", got, n)
	}
	if got := countPackets(t, file, "tcp.port == "+portStr); got != 0 {
		t.Errorf("capture holds %d packets of the tunnel (tcp port %s), want 0", got, portStr)
	}
	if got := countPackets(t, truthFile, ""); got != n {
		t.Errorf("tcpdump saw %d packets, want %d (the agent saw %d)", got, n, countPackets(t, file, ""))
	}
	if !st.Final || st.End != agentproto.EndStopped {
		t.Errorf("final stats %+v, want final and stopped", st)
	}
	// On lo the kernel hands every packet to a packet socket twice (out
	// and in); libpcap keeps one but counts both, as tcpdump's "received
	// by filter" shows. The agent has the kernel drop the outgoing copy
	// instead, so what it reports received is what it delivered.
	tot := st.Total()
	if tot.Packets != n || tot.Received != n || tot.KernelDropped != 0 || tot.AgentDropped != 0 {
		t.Errorf("stats = %+v, want %d delivered and received, none dropped", tot, n)
	}
	// tcpdump's count also holds what lo carried (from any test) between
	// its socket opening and its filter being set: at least both copies.
	if truthReceived < 2*n {
		t.Errorf("tcpdump received %d by filter, want at least %d (both copies of each packet on lo)", truthReceived, 2*n)
	}
	// The filter the agent really set leaves its own connection out; the
	// pcapng records the user's filter.
	ifs := agInterfaces(t, file)
	if len(ifs) != 1 || ifs[0].Name != "lo" || ifs[0].Filter != filter || ifs[0].LinkType != layers.LinkTypeEthernet {
		t.Errorf("interfaces = %+v, want lo, Ethernet, filter %q", ifs, filter)
	}
}

// TestAgentAnyInterfaceIsSLL2 captures on "any" inside a container: the
// file's link type is Linux cooked v2 and tshark decodes the packets
// through it.
func TestAgentAnyInterfaceIsSLL2(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})
	capt := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000", "any"))
	wait := drain(t, capt)
	agSend(t, ct.NS, "198.18.0.1:9000", 40, 100, 2000)
	agSend(t, ct.NS, "198.18.0.1:9001", 15, 100, 2000) // filtered out
	file, st := agStop(t, capt, wait, time.Second)

	if info := capinfos(t, file); !strings.Contains(info, "Linux cooked-mode capture v2") {
		t.Errorf("capinfos does not report Linux cooked-mode capture v2:\n%s", info)
	}
	encaps := agCountBy(agFields(t, file, "frame.encap_type", ""))
	if len(encaps) != 1 {
		t.Errorf("encapsulation types %v, want one", encaps)
	}
	if got := countPackets(t, file, "sll.ifindex && udp.dstport == 9000 && ip.src == 198.18.0.2 && ip.dst == 198.18.0.1"); got != 40 {
		t.Errorf("capture holds %d decoded SLL2 datagrams, want 40", got)
	}
	if got := countPackets(t, file, ""); got != 40 {
		t.Errorf("capture holds %d packets, want 40", got)
	}
	if len(st.Interfaces) != 1 || st.Interfaces[0].Name != "any" || st.Interfaces[0].LinkType != uint16(layers.LinkTypeLinuxSLL2) || st.Interfaces[0].Packets != 40 {
		t.Errorf("stats = %+v, want any, SLL2, 40 packets", st.Interfaces)
	}
}

// TestAgentTwoInterfaces captures eth0 and eth1 of one container at once:
// two interface blocks, every packet attributed to its own interface.
func TestAgentTwoInterfaces(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})
	testenv.Link(t, ct.NS, "eth1", "198.18.1.2/24", ct.Peer, "eth1", "198.18.1.1/24")

	capt := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000", "eth0", "eth1"))
	wait := drain(t, capt)
	agSend(t, ct.NS, "198.18.0.1:9000", 30, 100, 2000) // out of eth0
	agSend(t, ct.NS, "198.18.1.1:9000", 20, 100, 2000) // out of eth1
	file, st := agStop(t, capt, wait, time.Second)

	if info := capinfos(t, file); !strings.Contains(info, "Number of interfaces in file: 2") {
		t.Errorf("capinfos does not report 2 interfaces:\n%s", info)
	}
	ifs := agInterfaces(t, file)
	if len(ifs) != 2 || ifs[0].Name != "eth0" || ifs[1].Name != "eth1" {
		t.Fatalf("interface blocks = %+v, want eth0 and eth1", ifs)
	}
	byIface := agCountBy(agFields(t, file, "frame.interface_name", ""))
	if byIface["eth0"] != 30 || byIface["eth1"] != 20 || len(byIface) != 2 {
		t.Errorf("packets per interface = %v, want eth0:30 eth1:20", byIface)
	}
	if got := countPackets(t, file, "frame.interface_id == 1 && ip.dst == 198.18.1.1"); got != 20 {
		t.Errorf("interface 1 holds %d packets to 198.18.1.1, want 20", got)
	}
	if len(st.Interfaces) != 2 || st.Interfaces[0].Packets != 30 || st.Interfaces[1].Packets != 20 ||
		st.Interfaces[0].Received != 30 || st.Interfaces[1].Received != 20 {
		t.Errorf("stats per interface = %+v, want eth0 30, eth1 20", st.Interfaces)
	}
}

// TestAgentCapturesByPID finds the container through a process id.
func TestAgentCapturesByPID(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})
	file, st := agCaptureSent(t, s, agentproto.CaptureRequest{
		Version: agentproto.ProtocolVersion,
		Target:  agentproto.Target{Kind: agentproto.TargetPID, PID: ct.Init.Cmd.Process.Pid},
		Filter:  "udp dst port 9000",
	}, ct.NS, 12)
	if got := countPackets(t, file, "ip.src == 198.18.0.2"); got != 12 || st.Total().Packets != 12 {
		t.Errorf("capture by pid holds %d packets (stats %d), want 12", got, st.Total().Packets)
	}
}

// TestAgentLimits: each limit ends the capture by itself, at exactly the
// limit, and says so in the final stats.
func TestAgentLimits(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	// sendPastLimit captures in a new container with limits, sends 30
	// datagrams and waits for the capture to end without a stop.
	sendPastLimit := func(t *testing.T, limits agentproto.Limits) (string, agentproto.Stats) {
		t.Helper()
		ct := newContainer(t, s.Agent.NetnsDir, agGUID(t))
		req := agContainerReq(ct, "udp dst port 9000")
		req.Limits = limits
		capt := agOpen(t, s.Client, req)
		wait := drain(t, capt)
		agSend(t, ct.NS, "198.18.0.1:9000", 30, 100, 2000)
		file := wait() // ends without a stop
		return file, agFinal(t, capt)
	}

	t.Run("packets", func(t *testing.T) {
		file, st := sendPastLimit(t, agentproto.Limits{Packets: 10})
		if got := countPackets(t, file, "udp.dstport == 9000"); got != 10 {
			t.Errorf("capture holds %d packets, want exactly the limit of 10", got)
		}
		if st.End != agentproto.EndLimitReached || st.Limit != agentproto.LimitPackets || st.Total().Packets != 10 {
			t.Errorf("final stats %+v, want limit-reached (packets) after 10 packets", st)
		}
	})

	t.Run("bytes", func(t *testing.T) {
		// Each datagram is 14 + 20 + 8 + 100 = 142 bytes on eth0: seven fit
		// in 1000 bytes, the eighth ends the capture.
		file, st := sendPastLimit(t, agentproto.Limits{Bytes: 1000})
		if got := countPackets(t, file, "frame.len == 142"); got != 7 || countPackets(t, file, "") != 7 {
			t.Errorf("capture holds %d packets of 142 bytes, want 7", got)
		}
		if st.End != agentproto.EndLimitReached || st.Limit != agentproto.LimitBytes || st.Total().Packets != 7 || st.Total().Bytes != 7*142 {
			t.Errorf("final stats %+v, want limit-reached (bytes) after 7 packets, 994 bytes", st)
		}
	})

	t.Run("duration", func(t *testing.T) {
		ct := newContainer(t, s.Agent.NetnsDir, agGUID(t))
		req := agContainerReq(ct, "udp dst port 9000")
		const limit = 700 * time.Millisecond
		req.Limits.Duration = limit
		start := time.Now()
		capt := agOpen(t, s.Client, req)
		wait := drain(t, capt)
		file := wait() // ends without a stop, within drain's 10 s
		st := agFinal(t, capt)
		d := time.Since(start)
		if d < limit || d > limit+5*time.Second {
			t.Errorf("capture with a %v limit ended after %v", limit, d)
		}
		if st.End != agentproto.EndLimitReached || st.Limit != agentproto.LimitDuration {
			t.Errorf("final stats %+v, want limit-reached (duration)", st)
		}
		capinfos(t, file)
	})
}

// TestAgentSlowReaderDropsAreCounted: a client that does not read lets
// the agent's bounded queue overflow; the file stays valid and every
// packet sent is either in it or counted as dropped.
func TestAgentSlowReaderDropsAreCounted(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{Config: func(c *agent.Config) { c.QueueBytes = 524288 }})
	capt := agOpen(t, s.Client, agContainerReq(ct, "udp dst port 9000"))

	// 6000 × 1442 bytes ≈ 8.7 MB: far more than the SSH window (2 MiB)
	// plus the agent's queue (512 KiB) can hold while nobody reads.
	const n = 6000
	agSend(t, ct.NS, "198.18.0.1:9000", n, 1400, 20000)

	// Without reading, wait until libpcap has handed the agent everything.
	deadline := time.After(20 * time.Second)
	for {
		tot := capt.Stats().Total()
		if tot.Received >= n && tot.AgentDropped > 0 {
			break
		}
		select {
		case <-capt.Updates():
		case <-deadline:
			t.Fatalf("running stats %+v after 20s, want %d received and agent drops", tot, n)
		}
	}

	wait := drain(t, capt)
	file, st := agStop(t, capt, wait, 5*time.Second)
	capinfos(t, file)
	inFile := countPackets(t, file, "udp.dstport == 9000")
	tot := st.Total()
	if st.End != agentproto.EndStopped {
		t.Errorf("final stats %+v, want stopped", st)
	}
	if uint64(inFile) != tot.Packets {
		t.Errorf("file holds %d packets, stats say %d", inFile, tot.Packets)
	}
	if tot.AgentDropped == 0 {
		t.Errorf("stats %+v: no agent drops from a client that did not read", tot)
	}
	if got := tot.Packets + tot.AgentDropped + tot.KernelDropped; got != n {
		t.Errorf("packets %d + agent dropped %d + kernel dropped %d = %d, want every one of the %d sent",
			tot.Packets, tot.AgentDropped, tot.KernelDropped, got, n)
	}
	if tot.Received != n {
		t.Errorf("libpcap received %d, want %d", tot.Received, n)
	}
	t.Logf("slow reader: %d delivered, %d dropped by the agent, %d by the kernel", tot.Packets, tot.AgentDropped, tot.KernelDropped)
}
