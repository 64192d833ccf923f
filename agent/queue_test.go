package agent

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// takeAll takes every batch the queue holds, as the writer does, and
// returns their packets as one batch; the queue is done with them.
func takeAll(q *queue) *batch {
	all := &batch{}
	for _, b := range q.take(nil) {
		for _, p := range b.pkts {
			p.off += int32(len(all.buf))
			all.pkts = append(all.pkts, p)
		}
		all.buf = append(all.buf, b.buf...)
		q.done(b)
	}
	return all
}

// queuedBytes is the packet bytes queued, not yet taken. q.mu is held.
func queuedBytes(q *queue) int64 {
	n := len(q.cur.buf)
	for _, b := range q.sealed {
		n += len(b.buf)
	}
	return int64(n)
}

// put queues one packet, as putRing does for each packet of a batch.
func put(q *queue, iface int, ts int64, data []byte, length int) bool {
	q.mu.Lock()
	ok := q.add(iface, ts, data, length)
	q.mu.Unlock()
	if ok {
		q.signal()
	}
	return ok
}

func TestEPBLen(t *testing.T) {
	for caplen, want := range map[int]int{0: 32, 1: 36, 3: 36, 4: 36, 5: 40, 1400: 1432, 1401: 1436} {
		if got := epbLen(caplen); got != want {
			t.Errorf("epbLen(%d) = %d, want %d", caplen, got, want)
		}
	}
}

// TestQueueBoundIsExact: the bytes the queue holds — the batch filling
// and the one the writer has not finished with — never exceed its bound,
// and a packet is refused as soon as it would.
func TestQueueBoundIsExact(t *testing.T) {
	q := newQueue(180)
	pkt := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	for i, tt := range []struct {
		n    int
		want bool
	}{
		{40, true},  // 72 bytes of pcapng
		{40, true},  // 144
		{21, false}, // 56 more would be 200
		{0, true},   // 32: 176
		{1, false},  // 36: 212
	} {
		if got := put(q, 0, 5, pkt(byte('a'+i), tt.n), tt.n+10); got != tt.want {
			t.Errorf("put #%d (%d bytes) = %v, want %v", i, tt.n, got, tt.want)
		}
	}
	taken := q.take(nil)
	if len(taken) != 1 || len(taken[0].pkts) != 3 || len(taken[0].buf) != 176 {
		t.Fatalf("took %d batches; want one of 3 packets, 176 bytes", len(taken))
	}
	// The writer holds the batch: its bytes still count.
	if put(q, 0, 5, nil, 0) {
		t.Error("put of 32 bytes accepted while the writer holds 176 of 180")
	}
	q.done(taken[0])
	if !put(q, 0, 5, pkt('z', 100), 100) {
		t.Error("put refused after the writer was done")
	}
}

// TestQueueNeverHoldsMoreThanItsBound runs readers and a slow writer
// against a small queue and checks, at every put, that the filling batch
// and the writer's batch together stay within the bound.
func TestQueueNeverHoldsMoreThanItsBound(t *testing.T) {
	const bound = 64 << 10
	q := newQueue(bound)
	var inflight atomic.Int64 // bytes of the batch the writer holds
	var over, attempts atomic.Int64
	var stop atomic.Bool
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(r), 1))
			data := make([]byte, 1500)
			for i := 0; i < 20000 && !stop.Load(); i++ {
				n := rng.IntN(len(data) + 1)
				attempts.Add(1)
				q.mu.Lock()
				q.add(r, int64(i), data[:n], n)
				// The writer may not have stored inflight yet after a swap,
				// or already cleared it before done: the sum can only be
				// too small then, never too large.
				if held := queuedBytes(q) + inflight.Load(); held > bound {
					over.Store(held)
				}
				q.mu.Unlock()
				q.signal()
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	var taken []*batch
	swaps := 0
	for finished := false; !finished; {
		select {
		case <-q.ready:
		case <-done:
			finished = true
		}
		taken = q.take(taken[:0])
		n := 0
		for _, b := range taken {
			n += len(b.buf)
		}
		inflight.Store(int64(n))
		// A slow writer: it holds the batch while the readers make 500
		// more puts, enough to fill the queue again.
		for from := attempts.Load(); attempts.Load()-from < 500 && !stop.Load(); {
			select {
			case <-done:
				stop.Store(true)
			default:
				runtime.Gosched()
			}
		}
		inflight.Store(0)
		for _, b := range taken {
			q.done(b)
		}
		swaps++
	}
	if o := over.Load(); o != 0 {
		t.Fatalf("the queue held %d bytes with a bound of %d", o, bound)
	}
	if q.held != 0 {
		t.Errorf("after the last done, %d bytes still counted", q.held)
	}
	t.Logf("%d swaps", swaps)
}

func TestQueueCopiesAndSignals(t *testing.T) {
	q := newQueue(1 << 10)
	select {
	case <-q.ready:
		t.Fatal("an empty queue signalled ready")
	default:
	}
	data := []byte("original")
	put(q, 0, 1, data, len(data))
	put(q, 0, 2, data, len(data))
	copy(data, "CHANGED!") // libpcap reuses its buffer
	if !q.pending() {
		t.Fatal("put did not signal ready")
	}
	<-q.ready
	if q.pending() {
		t.Fatal("two puts signalled twice; signals should coalesce")
	}
	taken := q.take(nil)
	if len(taken) != 1 {
		t.Fatalf("took %d batches, want 1", len(taken))
	}
	b := taken[0]
	for i, p := range b.pkts {
		if got := string(b.buf[int(p.off)+epbHeaderLen : int(p.off)+epbHeaderLen+int(p.caplen)]); got != "original" {
			t.Errorf("packet %d = %q, want the data as it was put", i, got)
		}
	}
	q.done(b)
	if again := q.take(nil); len(again) != 0 {
		t.Errorf("second take = %d batches, want none", len(again))
	}
	// A batch the writer is done with is emptied and filled again: the
	// one that took its place is taken next, then it comes back.
	put(q, 0, 3, data[:3], 3)
	second := q.take(nil)
	if len(second) != 1 || second[0] == b {
		t.Fatalf("second take = %v, want the batch that replaced the first", second)
	}
	q.done(second[0])
	put(q, 0, 4, data[:3], 3)
	if third := q.take(nil); len(third) != 1 || third[0] != b || len(third[0].pkts) != 1 || len(third[0].buf) != epbLen(3) {
		t.Errorf("third take = %v, want the first batch again, holding only the new packet", third)
	}
}

// TestBatchIsPcapng: what the queue encodes and the writer sends is read
// back by gopacket's pcapng reader, packet for packet.
func TestBatchIsPcapng(t *testing.T) {
	srcs := []*source{{name: "eth0", linkType: layers.LinkTypeEthernet}, {idx: 1, name: "lo", linkType: layers.LinkTypeEthernet}}
	var out bytes.Buffer
	w, err := newWriter(&out, srcs, 65535, "udp", agentproto.Limits{})
	if err != nil {
		t.Fatal(err)
	}
	type pkt struct {
		iface  int
		ts     int64
		data   []byte
		length int
	}
	want := []pkt{
		{0, 1700000000123456789, []byte("abc"), 3},
		{1, 1700000000223456789, []byte("four"), 1500},
		{0, 1700000000323456789, nil, 60},
		{1, 1700000000423456789, bytes.Repeat([]byte{7}, 1401), 1401},
	}
	q := newQueue(1 << 20)
	for _, p := range want {
		if !put(q, p.iface, p.ts, p.data, p.length) {
			t.Fatal("put refused")
		}
	}
	if n, err := w.writeBatch(takeAll(q)); n != len(want) || err != nil {
		t.Fatalf("writeBatch = %d, %v", n, err)
	}
	if err := w.flush(); err != nil {
		t.Fatal(err)
	}
	r, err := pcapgo.NewNgReader(&out, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i, p := range want {
		data, ci, err := r.ReadPacketData()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		if ci.InterfaceIndex != p.iface || ci.Timestamp.UnixNano() != p.ts || ci.Length != p.length || !bytes.Equal(data, p.data) {
			t.Errorf("packet %d = %+v %q, want %+v", i, ci, data, p)
		}
	}
	if _, _, err := r.ReadPacketData(); !errors.Is(err, io.EOF) {
		t.Errorf("after the last packet: %v, want EOF", err)
	}
	if got := w.packets[1].Load(); got != 2 {
		t.Errorf("source 1 written = %d, want 2", got)
	}
}

// testPump is a pump without watermarks for one Ethernet source, writing
// to out through a queue of queueBytes.
func testPump(t *testing.T, out io.Writer, queueBytes int, limits agentproto.Limits) (*pump, *queue, *writer, *source) {
	t.Helper()
	srcs := []*source{{name: "eth0", linkType: layers.LinkTypeEthernet}}
	w, err := newWriter(out, srcs, 65535, "", limits)
	if err != nil {
		t.Fatal(err)
	}
	q := newQueue(queueBytes)
	return newPump(q, w, srcs, false), q, w, srcs[0]
}

// countingWriter counts the writes that reach it.
type countingWriter struct {
	writes int
	bytes.Buffer
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.writes++
	return c.Buffer.Write(p)
}

// TestPumpCoalescesWhileBusyAndFlushesWhenIdle: a batch written while more
// packets wait stays in the writer's buffer; once nothing waits, what was
// written reaches the channel at once.
func TestPumpCoalescesWhileBusyAndFlushesWhenIdle(t *testing.T) {
	out := &countingWriter{}
	p, q, w, _ := testPump(t, out, 1<<20, agentproto.Limits{})
	header := out.Len()

	put(q, 0, 1, []byte("first"), 5)
	<-q.ready // as run's select takes the signal
	put(q, 0, 2, []byte("second"), 6)
	p.flushed = time.Now().Add(time.Hour) // keep flushEvery out of this step
	if err := p.step(false); err != nil {
		t.Fatal(err)
	}
	if out.Len() != header {
		t.Fatalf("with a packet waiting, the step flushed %d bytes", out.Len()-header)
	}
	<-q.ready
	if err := p.step(false); err != nil {
		t.Fatal(err)
	}
	if want := header + epbLen(5) + epbLen(6); out.Len() != want {
		t.Fatalf("with nothing waiting, %d bytes reached the channel, want %d", out.Len(), want)
	}
	if got := w.packets[0].Load(); got != 2 {
		t.Errorf("written = %d, want 2", got)
	}
}

// TestPumpSendsFullPacketsOfALargeBatch: a batch of an SSH packet or more
// reaches the channel as full 32 KiB writes even with nothing waiting;
// the rest follows at the next step, which a reader about to wait for its
// ring triggers, or once flushEvery passed.
func TestPumpSendsFullPacketsOfALargeBatch(t *testing.T) {
	out := &recordingWriter{}
	p, q, _, _ := testPump(t, out, 1<<20, agentproto.Limits{})
	header := out.total()

	data := bytes.Repeat([]byte{'x'}, 1400)
	n := 0
	for ; n < 40; n++ { // about 58 KiB of blocks
		put(q, 0, int64(n+1), data, len(data))
	}
	<-q.ready
	p.flushed = time.Now() // keep flushEvery out of this step
	if err := p.step(false); err != nil {
		t.Fatal(err)
	}
	sent := out.total() - header
	if sent == 0 || sent%tunnel.MaxPayload != 0 {
		t.Fatalf("the large batch reached the channel as %d bytes, want whole %d byte packets", sent, tunnel.MaxPayload)
	}
	for i, s := range out.sizes[1:] {
		if s%tunnel.MaxPayload != 0 {
			t.Fatalf("write %d of %d bytes, want whole %d byte packets", i+1, s, tunnel.MaxPayload)
		}
	}
	// The reader found its ring empty: an empty batch flushes the rest.
	q.signal()
	<-q.ready
	if err := p.step(false); err != nil {
		t.Fatal(err)
	}
	if want := header + n*epbLen(len(data)); out.total() != want {
		t.Fatalf("after the next step %d bytes reached the channel, want %d", out.total(), want)
	}
}

// recordingWriter notes the size of every write.
type recordingWriter struct{ sizes []int }

func (r *recordingWriter) Write(p []byte) (int, error) {
	r.sizes = append(r.sizes, len(p))
	return len(p), nil
}

func (r *recordingWriter) total() int {
	n := 0
	for _, s := range r.sizes {
		n += s
	}
	return n
}

// TestQueueMemoryFollowsWhatItHolds: a queue that fills up, is written
// out and fills up again keeps its buffers within its bound and two
// chunks (the one filling while the writer holds the rest, and a partly
// filled one), and reuses them: filling it again allocates nothing. (A single buffer
// that grew by doubling held up to twice the bound, the writer's and the
// readers', and left its smaller steps behind as garbage.)
func TestQueueMemoryFollowsWhatItHolds(t *testing.T) {
	const bound = 8 << 20
	q := newQueue(bound)
	data := make([]byte, 1400)
	fill := func() int {
		n := 0
		for put(q, 0, int64(n), data, len(data)) {
			n++
		}
		return n
	}
	seen := map[*batch]bool{}
	var taken []*batch
	cycle := func() {
		fill()
		taken = q.take(taken[:0])
		for _, b := range taken {
			seen[b] = true
		}
		for _, b := range taken {
			q.done(b)
		}
	}
	if n := fill(); n != bound/epbLen(len(data)) {
		t.Fatalf("queued %d packets, want %d", n, bound/epbLen(len(data)))
	}
	taken = q.take(nil)
	for _, b := range taken {
		seen[b] = true
	}
	// The writer still holds the first fill: nothing fits.
	if put(q, 0, 0, data, len(data)) {
		t.Fatal("a packet fit while the writer held the whole bound")
	}
	for _, b := range taken {
		q.done(b)
	}
	cycle()
	seen[q.cur] = true
	total := 0
	for b := range seen {
		total += cap(b.buf)
	}
	if limit := bound + 2*chunkBytes; total > limit {
		t.Errorf("the queue's %d batches hold %d bytes of buffers; want at most %d (bound %d)", len(seen), total, limit, bound)
	}
	if allocs := testing.AllocsPerRun(3, cycle); allocs != 0 {
		t.Errorf("filling, taking and releasing the queue again made %.0f allocations, want 0", allocs)
	}
}

// failingWriter takes ok bytes, then fails every write.
type failingWriter struct{ ok int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.ok {
		n := f.ok
		f.ok = 0
		return n, errors.New("connection lost")
	}
	f.ok -= len(p)
	return len(p), nil
}

// TestPumpAccountsForEveryBatch: with several batches queued, a write
// that fails midway leaves every packet either written or counted as the
// agent's drop, and a limit reached in a later batch writes exactly up to
// it and drops nothing.
func TestPumpAccountsForEveryBatch(t *testing.T) {
	data := bytes.Repeat([]byte{'x'}, 1400)
	fill := func(q *queue) int {
		n := 0
		for ; n < 3000; n++ { // about 4 MiB: several batches
			if !put(q, 0, int64(n+1), data, len(data)) {
				t.Fatalf("put %d refused", n)
			}
		}
		return n
	}
	t.Run("write fails", func(t *testing.T) {
		p, q, w, src := testPump(t, &failingWriter{ok: 3 << 20 / 2}, 8<<20, agentproto.Limits{})
		n := fill(q)
		if batches := len(q.sealed) + 1; batches < 3 {
			t.Fatalf("%d batches queued, want several", batches)
		}
		if err := p.step(false); err == nil {
			t.Fatal("the step did not report the failed write")
		}
		written, dropped := w.packets[0].Load(), src.dropped.Load()
		if written == 0 || dropped == 0 || written+dropped != uint64(n) {
			t.Errorf("written %d + dropped %d, want %d with both above 0", written, dropped, n)
		}
		if q.held != 0 {
			t.Errorf("%d bytes still counted after the step", q.held)
		}
	})
	t.Run("limit", func(t *testing.T) {
		const limit = 2000 // in the second or a later batch
		p, q, w, src := testPump(t, io.Discard, 8<<20, agentproto.Limits{Packets: limit})
		fill(q)
		if err := p.step(false); !errors.Is(err, errLimit) {
			t.Fatalf("step = %v, want the limit", err)
		}
		if written, dropped := w.packets[0].Load(), src.dropped.Load(); written != limit || dropped != 0 {
			t.Errorf("written %d, dropped %d; want %d and none", written, dropped, limit)
		}
	})
}
