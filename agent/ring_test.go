package agent

import (
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// A quiet capture must cost next to nothing: its reader waits for the
// ring in Go's network poller, not in a system call (which keeps the
// runtime's sysmon awake and, on a cell with 50 captures, cost most of a
// core), and it wakes the writer each time it found the ring empty, so
// the watermark of a quiet source moves on without a timer of its own.
func TestQuietReaderParksAndWakesTheWriter(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	srcs, err := openSources(openOptions{nsPath: ns.Path(), interfaces: []string{"lo"}, filter: "udp port 9", snaplen: 65535, bufferSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	s := srcs[0]
	defer s.close()
	q := newQueue(1 << 20)
	defer startReader(t, s, q)()

	// Quiet: the reader signals the queue at least every readTimeout,
	// each time with a later look at the ring.
	var last int64
	for i := range 4 {
		select {
		case <-q.ready:
		case <-time.After(10 * readTimeout):
			t.Fatalf("signal %d: the quiet reader did not wake the writer within %v", i, 10*readTimeout)
		}
		c := s.checked.Load()
		if c <= last {
			t.Fatalf("signal %d: checked %d, not after %d", i, c, last)
		}
		last = c
		q.mu.Lock()
		n := len(q.cur.pkts)
		q.mu.Unlock()
		if n > 0 {
			t.Fatalf("signal %d: %d packets queued on a quiet capture", i, n)
		}
	}

	// While it waits, the reader is parked in the poller ("IO wait"),
	// not in a system call or a cgo call ("syscall").
	deadline := time.Now().Add(5 * time.Second)
	state := ""
	for time.Now().Before(deadline) {
		state = readerState(t)
		if state == "IO wait" {
			break
		}
		runtime.Gosched()
	}
	if state != "IO wait" {
		t.Fatalf("the quiet reader waits in state %q, want IO wait", state)
	}

	// The kernel still wakes the parked reader when it hands a block
	// over (a partly filled one after the ring's timeout).
	var c net.Conn
	if err := netlab.Do(ns, func() error {
		var derr error
		c, derr = net.Dial("udp", "127.0.0.1:9")
		return derr
	}); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("wake")); err != nil {
		t.Fatal(err)
	}
	for end := time.After(10 * time.Second); ; {
		select {
		case <-q.ready:
		case <-end:
			t.Fatal("the packet was not queued within 10 s")
		}
		if b := takeAll(q); len(b.pkts) > 0 {
			break
		}
	}
}

// readerState returns the scheduler state of the goroutine in
// ringReader.read, or "" if there is none.
func readerState(t *testing.T) string {
	t.Helper()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if !strings.Contains(g, "(*ringReader).read(") {
			continue
		}
		head, _, _ := strings.Cut(g, "\n")
		// "goroutine 7 [IO wait, 1 minutes]:"
		_, st, ok := strings.Cut(head, "[")
		if !ok {
			return ""
		}
		st, _, _ = strings.Cut(st, "]")
		st, _, _ = strings.Cut(st, ",")
		return st
	}
	return ""
}
