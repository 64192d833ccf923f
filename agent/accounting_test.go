package agent

import (
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// udpIn opens a UDP socket inside ns bound to addr.
func udpIn(t testing.TB, ns *testenv.Netns, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	err := netlab.Do(ns, func() error {
		a, err := net.ResolveUDPAddr("udp", addr)
		if err != nil {
			return err
		}
		c, err = net.ListenUDP("udp", a)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// startReader runs s.read into q and returns what stops it: it sets the
// stop flag and waits (at most 10 s) for the reader to return.
func startReader(t *testing.T, s *source, q *queue) (stop func()) {
	t.Helper()
	var flag atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.read(q, &flag)
	}()
	return func() {
		t.Helper()
		flag.Store(true)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the reader did not stop within 10 s")
		}
	}
}

// captureOnce opens a capture of "udp dst port 7000" on iface inside ns
// while noise (packets the filter does not match) flows, sends want
// matching packets, stops, and returns the final counters.
func captureOnce(t *testing.T, ns *testenv.Netns, iface, dst string, noise, sender *net.UDPConn, want int) agentproto.InterfaceStats {
	t.Helper()
	noiseTo, _ := net.ResolveUDPAddr("udp", net.JoinHostPort(dst, "9"))
	signalTo, _ := net.ResolveUDPAddr("udp", net.JoinHostPort(dst, "7000"))

	// Noise during the open: the packets a host capture sees from the
	// agent's own tunnel before the filter is set.
	var stopNoise atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 200000 && !stopNoise.Load(); i++ {
			noise.WriteToUDP([]byte("noise"), noiseTo)
		}
	}()
	srcs, err := openSources(openOptions{nsPath: ns.Path(), interfaces: []string{iface}, filter: "udp dst port 7000", snaplen: 65535, bufferSize: 2 << 20})
	stopNoise.Store(true)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	s := srcs[0]
	defer s.close()

	q := newQueue(4 << 20)
	stopReader := startReader(t, s, q)
	for i := range want {
		if _, err := sender.WriteToUDP([]byte(fmt.Sprintf("signal %d", i)), signalTo); err != nil {
			t.Fatal(err)
		}
	}
	stopReader()
	got := uint64(len(takeAll(q).pkts))
	return finalCounts(s, got, agentproto.EndStopped)
}

// TestAccountingExact opens and stops captures while packets the filter
// does not match flow, and checks that every packet the kernel counted is
// delivered or dropped: libpcap counts what the socket took before the
// filter was set, and the agent must not report those as received.
func TestAccountingExact(t *testing.T) {
	testenv.RequireRoot(t)
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Link(t, a, "eth0", "10.99.0.1/24", b, "eth0", "10.99.0.2/24")
	for _, c := range []struct {
		name, iface, dst string
		ns               *testenv.Netns
	}{
		{"veth", "eth0", "10.99.0.2", b},
		{"loopback", "lo", "127.0.0.1", a},
		{"any", "any", "10.99.0.2", b},
		{"any-loopback", "any", "127.0.0.1", a},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := a
			udpIn(t, c.ns, net.JoinHostPort(c.dst, "7000"))
			udpIn(t, c.ns, net.JoinHostPort(c.dst, "9"))
			noise := udpIn(t, src, ":0")
			sender := udpIn(t, src, ":0")
			const rounds, want = 15, 40
			for r := range rounds {
				st := captureOnce(t, c.ns, c.iface, c.dst, noise, sender, want)
				if st.Received != want || st.Packets != want || st.KernelDropped != 0 || st.AgentDropped != 0 || st.Unaccounted != 0 {
					t.Fatalf("round %d: %+v, want %d received and delivered, nothing dropped or unaccounted", r, st, want)
				}
			}
		})
	}
}
