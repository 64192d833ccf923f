package agent

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// BenchmarkReadPath measures the agent's per-packet work between libpcap
// and the SSH channel: the capture's own reader and pump (ring, queue,
// pcapng writer with watermarks) onto io.Discard, which stands in for the
// channel. One op is one packet. Each round first fills the kernel ring of a real veth capture
// (in namespaces the benchmark makes) with the timer stopped, then times
// reading and writing exactly those packets, so the sender's system calls
// are not part of the figure. cpu-ns/pkt is the process's CPU time (user
// + system) over the timed parts, per packet.
//
//	sudo go test -run '^$' -bench ReadPath -benchmem -benchtime=2s ./agent/
func BenchmarkReadPath(b *testing.B) {
	testenv.RequireRoot(b)
	a, c := testenv.NewNetns(b), testenv.NewNetns(b)
	testenv.Link(b, a, "eth0", "10.98.0.1/24", c, "eth0", "10.98.0.2/24")
	udpIn(b, c, "10.98.0.2:7000")
	for _, size := range []int{100, 1400} {
		b.Run(fmt.Sprintf("payload=%d", size), func(b *testing.B) {
			benchReadPath(b, a, c, size)
		})
	}
}

func benchReadPath(b *testing.B, from, to *testenv.Netns, size int) {
	const perRound = 20000 // fits the 64 MiB ring below at 1400 bytes
	srcs, err := openSources(openOptions{nsPath: to.Path(), interfaces: []string{"eth0"}, filter: "udp dst port 7000", snaplen: 65535, bufferSize: 64 << 20})
	if err != nil {
		b.Fatal(err)
	}
	s := srcs[0]
	defer s.close()
	sender := udpIn(b, from, ":0")
	dst, _ := net.ResolveUDPAddr("udp", "10.98.0.2:7000")
	payload := bytes.Repeat([]byte{'x'}, size)

	w, err := newWriter(io.Discard, srcs, 65535, "", agentproto.Limits{})
	if err != nil {
		b.Fatal(err)
	}
	const bound = 64 << 20
	q := newQueue(bound)
	pm := newPump(q, w, srcs, true)
	// The queue filled to its bound once and written out, as a busy
	// capture's queue keeps its batches: what is left to allocate is per
	// packet.
	pad := make([]byte, size)
	for put(q, 0, 0, pad, size) {
	}
	for _, bt := range q.take(nil) {
		q.done(bt)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	var cpu time.Duration
	// The first round is a warm-up.
	b.ReportAllocs()
	b.ResetTimer()
	b.StopTimer()
	for left, warm := b.N, true; left > 0; warm = false {
		k := min(left, perRound)
		if !warm {
			left -= k
		}
		for range k {
			if _, err := sender.WriteToUDP(payload, dst); err != nil {
				b.Fatal(err)
			}
		}
		// The kernel closes a partly filled ring block on its own after
		// libpcap's timeout; waiting for that here keeps the wait out of
		// the figure (nothing is synchronised by it: a late block only
		// makes the round slower).
		time.Sleep(3 * readTimeout)

		before, cpuBefore := w.total.packets, cpuTime()
		if !warm {
			b.StartTimer()
		}
		go func() {
			defer func() { done <- struct{}{} }()
			s.read(q, &stop)
		}()
		written := 0
		deadline := time.After(10 * time.Second)
		for written < k {
			select {
			case <-q.ready:
			case <-deadline:
				b.Fatalf("wrote %d of %d packets", written, k)
			}
			if err := pm.step(false); err != nil {
				b.Fatal(err)
			}
			written = int(w.total.packets - before)
		}
		// Every packet is written: the reader's wait for more (up to
		// readTimeout) before it sees the stop is not per-packet work.
		if !warm {
			b.StopTimer()
			cpu += cpuTime() - cpuBefore
		}
		stop.Store(true)
		<-done
		stop.Store(false)
	}
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/pkt")
	if d := s.dropped.Load(); d != 0 {
		b.Fatalf("the queue refused %d packets", d)
	}
}

// cpuTime returns the CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
