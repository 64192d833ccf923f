package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// mergeRig is a merger writing into a buffer, with sources that have one
// interface each, declared in order.
type mergeRig struct {
	t    *testing.T
	buf  bytes.Buffer
	m    *merger
	srcs map[string]*source
	t0   time.Time
	late []string // onLate reports, "a late" / "a back"
}

func newMergeRig(t *testing.T, ordered bool, names ...string) *mergeRig {
	t.Helper()
	r := &mergeRig{t: t, srcs: map[string]*source{}, t0: time.Unix(1700000000, 0)}
	var ifaces []OutputInterface
	var srcs []*source
	for i, n := range names {
		s := newSource(Target{Name: n}, nil, nil, []agentproto.InterfaceStats{{Name: "eth0", LinkType: 1, Snaplen: 65535}}, i)
		r.srcs[n] = s
		srcs = append(srcs, s)
		ifaces = append(ifaces, OutputInterface{Name: n + ":eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535})
	}
	out, err := NewOutput(&r.buf, capturecmd.FormatPcapng, ifaces)
	if err != nil {
		t.Fatal(err)
	}
	r.m = newMerger(out, ordered, srcs, func(s *source, late bool) {
		r.late = append(r.late, fmt.Sprintf("%s %v", s.t.Name, map[bool]string{true: "late", false: "back"}[late]))
	})
	return r
}

// ms is t0 + v milliseconds, in nanoseconds.
func (r *mergeRig) ms(v int) int64 { return r.t0.Add(time.Duration(v) * time.Millisecond).UnixNano() }

// batch takes a batch of source name, fills it with packets whose
// timestamps are t0 + ms milliseconds and whose payload names them
// ("a@10"), with watermark wm (ms; < 0 for none), arrived at arrived.
func (r *mergeRig) batch(name string, arrived time.Time, wm int, ms ...int) *batch {
	r.t.Helper()
	s := r.srcs[name]
	b, err := s.take(nil)
	if err != nil {
		r.t.Fatal(err)
	}
	for _, v := range ms {
		data := fmt.Appendf(nil, "%s@%d", name, v)
		off := len(b.buf)
		b.buf = appendEPB(b.buf, binary.LittleEndian, uint32(s.firstOut), uint64(r.ms(v)), data)
		b.pkts = append(b.pkts, pktRef{ts: r.ms(v), off: off, n: len(b.buf) - off, iface: s.firstOut})
	}
	if wm >= 0 {
		b.wm = r.ms(wm)
	}
	b.arrived = arrived
	return b
}

func (r *mergeRig) add(b *batch) {
	r.t.Helper()
	b.src.waitingSince.Store(b.arrived.UnixNano()) // its reader waits again
	if err := r.m.add(b); err != nil {
		r.t.Fatalf("add: %v", err)
	}
}

func (r *mergeRig) emit(now time.Time, all bool) time.Time {
	r.t.Helper()
	next, err := r.m.emit(now, all)
	if err != nil {
		r.t.Fatalf("emit: %v", err)
	}
	return next
}

// written returns the payloads written so far, in order.
func (r *mergeRig) written() []string {
	r.t.Helper()
	if err := r.m.out.Flush(); err != nil {
		r.t.Fatal(err)
	}
	rd, err := pcapgo.NewNgReader(bytes.NewReader(r.buf.Bytes()), pcapgo.NgReaderOptions{})
	if err != nil {
		r.t.Fatal(err)
	}
	var got []string
	for {
		data, ci, err := rd.ReadPacketData()
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			r.t.Fatal(err)
		}
		name := string(bytes.SplitN(data, []byte("@"), 2)[0])
		if want := r.srcs[name].firstOut; ci.InterfaceIndex != want {
			r.t.Errorf("packet %s written on interface %d, want %d", data, ci.InterfaceIndex, want)
		}
		got = append(got, string(data))
	}
}

func (r *mergeRig) wantWritten(want ...string) {
	r.t.Helper()
	if got := r.written(); !reflect.DeepEqual(got, want) {
		r.t.Errorf("written\n got  %q\n want %q", got, want)
	}
}

// outOfOrder sums the merger's out-of-order counts.
func (r *mergeRig) outOfOrder() uint64 {
	var n uint64
	for _, s := range r.srcs {
		n += s.outOfOrder[0]
	}
	return n
}

func TestMergerUnorderedKeepsArrivalOrderAndCounts(t *testing.T) {
	r := newMergeRig(t, false, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, -1, 10, 20))
	r.add(r.batch("b", now, -1, 5, 15))
	r.add(r.batch("a", now, -1, 30, 1)) // a timestamp going back stays where it came
	if next := r.emit(now, false); !next.Equal(now.Add(flushDelay)) {
		t.Errorf("emit unordered asks to be called at %v, want when the output is due", next)
	}
	r.wantWritten("a@10", "a@20", "b@5", "b@15", "a@30", "a@1")
	if d := r.srcs["a"].delivered[0]; d != 4 {
		t.Errorf("a delivered %d, want 4", d)
	}
	if n := r.outOfOrder(); n != 3 { // b@5, b@15, a@1
		t.Errorf("out of order = %d, want 3", n)
	}
}

func TestMergerWaitsForEveryWatermark(t *testing.T) {
	r := newMergeRig(t, true, "a", "b", "c")
	now := time.Now()
	r.add(r.batch("a", now, 50, 10, 30, 50))
	r.add(r.batch("b", now, 40, 5, 20, 40))
	r.emit(now, false)
	r.wantWritten() // c has promised nothing yet

	r.add(r.batch("c", now, 25, 25))
	r.emit(now, false)
	r.wantWritten("b@5", "a@10", "b@20", "c@25")

	// c is quiet: a watermark alone moves the merge on.
	r.add(r.batch("c", now, 100))
	r.emit(now, false)
	r.wantWritten("b@5", "a@10", "b@20", "c@25", "a@30", "b@40")

	// A batch that arrives later with older packets than another source's
	// held ones still goes out in order.
	r.add(r.batch("b", now, 60, 45, 60))
	r.add(r.batch("a", now, 70, 55, 70))
	if next := r.emit(now, false); !next.Equal(now.Add(flushDelay)) {
		t.Errorf("next due = %v, want the output's flush", next)
	}
	if next := r.emit(now.Add(flushDelay), false); !next.Equal(now.Add(watermarkTimeout)) || r.m.out.Buffered() != 0 {
		t.Errorf("next due = %v with %d bytes buffered, want the watermark timeout after a flush", next, r.m.out.Buffered())
	}
	r.wantWritten("b@5", "a@10", "b@20", "c@25", "a@30", "b@40", "b@45", "a@50", "a@55", "b@60")
	if n := r.outOfOrder(); n != 0 {
		t.Errorf("out of order = %d", n)
	}
}

func TestMergerSortsASourcesInterfaces(t *testing.T) {
	// One agent's interfaces are read apart: its batch may interleave them.
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 30, 20, 10, 30))
	r.add(r.batch("b", now, 30, 15))
	r.emit(now, false)
	r.wantWritten("a@10", "b@15", "a@20", "a@30")
}

func TestMergerEndedSourceNoLongerHolds(t *testing.T) {
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 10, 10, 20))
	b := r.batch("b", now, -1, 5)
	b.last = true
	r.add(b)
	r.emit(now, false)
	r.wantWritten("b@5", "a@10") // a@20 waits for a's own promise
	r.add(r.batch("a", now, 20))
	r.emit(now, false)
	r.wantWritten("b@5", "a@10", "a@20")
}

func TestMergerCutsASilentSourceAndTakesItBack(t *testing.T) {
	r := newMergeRig(t, true, "a", "hung")
	now := time.Now()
	r.add(r.batch("a", now, 10, 10))
	next := r.emit(now, false)
	r.wantWritten()
	if want := time.Unix(0, r.srcs["hung"].waitingSince.Load()).Add(watermarkTimeout); !next.Equal(want) {
		t.Errorf("next due = %v, want %v", next, want)
	}
	// At the timeout, the hung source leaves the merge and is reported.
	r.emit(next, false)
	r.wantWritten("a@10")
	if !reflect.DeepEqual(r.late, []string{"hung late"}) {
		t.Errorf("reports = %q", r.late)
	}
	// It comes back: reported, and in the merge again.
	r.add(r.batch("hung", next, 15, 12))
	r.add(r.batch("a", next, 30, 20, 30))
	r.emit(next, false)
	r.wantWritten("a@10", "hung@12")
	if !reflect.DeepEqual(r.late, []string{"hung late", "hung back"}) {
		t.Errorf("reports = %q", r.late)
	}
}

func TestMergerFlushAllIgnoresWatermarks(t *testing.T) {
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, -1, 3))
	r.add(r.batch("b", now, -1, 1, 2))
	if next := r.emit(now, true); !next.IsZero() {
		t.Errorf("next due = %v after flushing all", next)
	}
	r.wantWritten("b@1", "b@2", "a@3")
}

func TestMergerStarvedSourceWaitsInOrder(t *testing.T) {
	// a holds all the batches it may have while b has promised nothing
	// beyond its first packet: a waits (its reader blocks) rather than
	// go out before what b may still send.
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("b", now, -1, 1))
	a := r.srcs["a"]
	var want []string
	for i := range a.maxBatches {
		v := 100 * (i + 1)
		a.tail = nil // as if each batch were too large to join the last
		r.add(r.batch("a", now, v+1, v, v+1))
		want = append(want, fmt.Sprintf("a@%d", v), fmt.Sprintf("a@%d", v+1))
	}
	if len(a.free) != 0 || a.owned != a.maxBatches {
		t.Fatalf("a owns %d of %d, %d free", a.owned, a.maxBatches, len(a.free))
	}
	r.emit(now, false)
	r.wantWritten()
	// b moves on: everything goes out, in order, and a can read again.
	r.add(r.batch("b", now, 100000))
	r.emit(now, false)
	r.wantWritten(append([]string{"b@1"}, want...)...)
	if len(a.free) != a.maxBatches {
		t.Errorf("a has %d free batches, want %d", len(a.free), a.maxBatches)
	}
	if n := r.outOfOrder(); n != 0 {
		t.Errorf("out of order = %d", n)
	}
}

func TestMergerFullSourceOfTinyBatchesMovesOn(t *testing.T) {
	// a's agent sent a burst, one packet per batch, all within the
	// slack: a holds every batch it may have and cannot read the
	// watermark behind them. Its packets must still go out.
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	a := r.srcs["a"]
	var want []string
	for range a.maxBatches {
		a.tail = nil // as if each batch were too large to join the last
		r.add(r.batch("a", now, -1, 100))
		want = append(want, "a@100")
	}
	r.add(r.batch("b", now, 1000))
	r.emit(now, false)
	r.wantWritten(want...)
	if len(a.free) != a.maxBatches || len(r.late) != 0 {
		t.Errorf("a has %d free batches, reports %q", len(a.free), r.late)
	}
}

func TestMergerSmallBatchesJoinTheLastHeld(t *testing.T) {
	// One packet per batch: a source holds far more packets than batches.
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	a := r.srcs["a"]
	var want []string
	for i := range 10 * a.maxBatches {
		r.add(r.batch("a", now, -1, 100+i))
		want = append(want, fmt.Sprintf("a@%d", 100+i))
		if len(a.free) == 0 && a.owned == a.maxBatches {
			t.Fatalf("a holds all its batches after %d one-packet batches", i+1)
		}
	}
	r.add(r.batch("a", now, -1, 50)) // older than a's run: a run of its own
	r.add(r.batch("b", now, 100000))
	r.emit(now, false)
	r.wantWritten(append([]string{"a@50"}, want[:len(want)-1]...)...) // the newest within a's slack waits
	r.add(r.batch("a", now, 100000))
	r.emit(now, false)
	r.wantWritten(append([]string{"a@50"}, want...)...)
	if len(a.free) != a.owned {
		t.Errorf("a has %d of %d batches back", len(a.free), a.owned)
	}
}

func TestMergerPacketsSpeakForTheirSource(t *testing.T) {
	// Without watermarks (an older agent), a source's own packets still
	// tell the merge how far it has got.
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, -1, 10, 50))
	r.add(r.batch("b", now, -1, 20, 40))
	r.emit(now, false)
	r.wantWritten("a@10", "b@20") // under 39 ms: b's newest less the slack
}

func TestMergerSharesTheBudget(t *testing.T) {
	few := newMergeRig(t, true, "a", "b", "c")
	if n := few.srcs["a"].maxBatches; n != maxBatches {
		t.Errorf("3 sources may hold %d batches each, want %d", n, maxBatches)
	}
	names := make([]string, 200)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	many := newMergeRig(t, true, names...)
	if n := many.srcs["0"].maxBatches; n != minBatches {
		t.Errorf("200 sources may hold %d batches each, want %d", n, minBatches)
	}
	fifty := newMergeRig(t, true, names[:50]...)
	if n := fifty.srcs["0"].maxBatches; n*50*batchBytes > max(mergeBudget, 50*minBatches*batchBytes) {
		t.Errorf("50 sources may hold %d batches each: over the budget", n)
	}
}

// benchStream is an agent's stream of count packets of size bytes.
func benchStream(b *testing.B, size, count int) []byte {
	a := newAgentStream(b, twoIfaces[0])
	t0 := time.Unix(1700000000, 0)
	data := make([]byte, size)
	for i := range count {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Microsecond), CaptureLength: size, Length: size}
		if err := a.w.WritePacket(ci, data); err != nil {
			b.Fatal(err)
		}
	}
	a.flush()
	return a.buf.Bytes()
}

// benchPerPacket runs body on a stream of 10,000 packets of 100 and of
// 1400 bytes, and reports the time per packet.
func benchPerPacket(b *testing.B, body func(b *testing.B, stream []byte)) {
	for _, size := range []int{100, 1400} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			const count = 10000
			stream := benchStream(b, size, count)
			b.ReportAllocs()
			for b.Loop() {
				body(b, stream)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*count), "ns/packet")
		})
	}
}

// BenchmarkAPIPath is pcap-api's work per packet from an agent's stream
// to the client's: read into batches and parse in place (source), merge,
// write the block through (output).
func BenchmarkAPIPath(b *testing.B) {
	benchPerPacket(b, func(b *testing.B, stream []byte) {
		out, err := NewOutput(io.Discard, capturecmd.FormatPcapng, []OutputInterface{{Name: "a/0:eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535}})
		if err != nil {
			b.Fatal(err)
		}
		s := newSource(Target{Name: "a/0"}, nil, nil, twoIfaces[:1], 0)
		m := newMerger(out, false, []*source{s}, nil)
		in := make(chan *batch, maxBatches)
		done := make(chan error, 1)
		go func() { done <- s.readLoop(bytes.NewReader(stream), in, nil) }()
		for running := true; running; {
			select {
			case bt := <-in:
				if err := m.add(bt); err != nil {
					b.Fatal(err)
				}
			case <-done:
				running = false
			}
		}
		for len(in) > 0 {
			m.add(<-in)
		}
		if err := out.Flush(); err != nil {
			b.Fatal(err)
		}
	})
}

// BenchmarkDecodeEncode is the reference the API used before blocks
// passed through: pcapgo decodes each packet and encodes it again.
func BenchmarkDecodeEncode(b *testing.B) {
	benchPerPacket(b, func(b *testing.B, stream []byte) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(stream), pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			b.Fatal(err)
		}
		w, err := pcapgo.NewNgWriterInterface(io.Discard, pcapgo.NgInterface{Name: "a/0:eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}, pcapgo.NgWriterOptions{})
		if err != nil {
			b.Fatal(err)
		}
		for {
			data, ci, err := r.ZeroCopyReadPacketData()
			if err != nil {
				break
			}
			if err := w.WritePacket(ci, data); err != nil {
				b.Fatal(err)
			}
		}
		w.Flush()
	})
}

// join adds a source to the rig mid-stream, its interface declared in
// the output after the packets written so far.
func (r *mergeRig) join(name string) {
	r.t.Helper()
	id, err := r.m.out.AddInterface(OutputInterface{Name: name + ":eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535})
	if err != nil {
		r.t.Fatal(err)
	}
	s := newSource(Target{Name: name}, nil, nil, []agentproto.InterfaceStats{{Name: "eth0", LinkType: 1, Snaplen: 65535}}, id)
	r.srcs[name] = s
	r.m.join(s)
}

// TestMergerSourcesJoinAndLeave: a source joining mid-stream holds the
// merge until it promises, then merges in strict order; its packets older
// than what was written are counted out of order, not dropped; a source
// that leaves (its last batch) no longer holds the merge.
func TestMergerSourcesJoinAndLeave(t *testing.T) {
	r := newMergeRig(t, true, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 20, 10, 20))
	r.add(r.batch("b", now, 15, 15))
	r.emit(now, false)
	r.wantWritten("a@10", "b@15")

	r.join("c")
	if s := r.srcs["c"]; s.maxBatches < minBatches || s.firstOut != 2 {
		t.Errorf("joined source: %d batches, first interface %d", s.maxBatches, s.firstOut)
	}
	r.add(r.batch("a", now, 40, 30, 40))
	r.add(r.batch("b", now, 40, 35))
	r.emit(now, false)
	r.wantWritten("a@10", "b@15") // c has promised nothing yet: a@20 waits

	r.add(r.batch("c", now, 32, 12, 25, 32)) // c@12 is older than b@15
	r.emit(now, false)
	r.wantWritten("a@10", "b@15", "c@12", "a@20", "c@25", "a@30", "c@32")
	if n := r.srcs["c"].outOfOrder[0]; n != 1 {
		t.Errorf("c out of order = %d, want 1 (c@12)", n)
	}

	// b leaves: its last batch; a and c go on without it.
	last := r.batch("b", now, -1)
	last.last = true
	r.add(last)
	r.add(r.batch("c", now, 50, 45))
	r.add(r.batch("a", now, 50, 50))
	r.emit(now, false)
	r.wantWritten("a@10", "b@15", "c@12", "a@20", "c@25", "a@30", "c@32", "b@35", "a@40", "c@45", "a@50")
	if n := len(r.srcs["b"].free); n != 0 {
		t.Errorf("b has left but keeps %d batch buffers", n)
	}
	for name, want := range map[string]uint64{"a": 5, "b": 2, "c": 4} {
		if d := r.srcs[name].delivered[0]; d != want {
			t.Errorf("%s delivered %d, want %d", name, d, want)
		}
	}
}

// TestMergerOpenedSourceDoesNotStallTheMerge: a source that joins (a
// target that opened late) promises, until its first watermark, nothing
// older than openedSlack before it announced its interfaces: the packets
// of the sources already running that are older go out at once, newer
// ones wait for it, and the file stays in order.
func TestMergerOpenedSourceDoesNotStallTheMerge(t *testing.T) {
	r := newMergeRig(t, true, "a")
	now := time.Now()
	r.add(r.batch("a", now, 500, 10, 20, 500))

	o := opened{t: Target{Name: "b"}, ifaces: []agentproto.InterfaceStats{{Name: "eth0", LinkType: 1, Snaplen: 65535}},
		at: r.t0.Add(300 * time.Millisecond)}
	id, err := r.m.out.AddInterface(OutputInterface{Name: "b:eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535})
	if err != nil {
		t.Fatal(err)
	}
	b := o.newSource(id)
	r.srcs["b"] = b
	r.m.join(b)
	r.emit(now, false)
	if got, want := r.written(), []string{"a@10", "a@20"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("written %v before b's first watermark, want %v (older than 300 ms - openedSlack)", got, want)
	}
	r.add(r.batch("b", now, 600, 400))
	r.emit(now, false)
	if got, want := r.written(), []string{"a@10", "a@20", "b@400", "a@500"}; !reflect.DeepEqual(got, want) {
		t.Errorf("written %v, want %v", got, want)
	}
	if b.outOfOrder[0] != 0 || r.srcs["a"].outOfOrder[0] != 0 {
		t.Errorf("out of order: a %d, b %d; want none", r.srcs["a"].outOfOrder[0], b.outOfOrder[0])
	}
}

// TestMergerHoldsBackForTargetsOpening: while the session's targets
// still open, the packets of the running sources newer than when the
// opens began (less openedSlack) wait, so that what the late ones capture
// does not fall behind them; up to a bound, or until every target is in.
func TestMergerHoldsBackForTargetsOpening(t *testing.T) {
	r := newMergeRig(t, true, "a")
	now := time.Now()
	until := now.Add(openHoldBack)
	r.m.holdBack(r.ms(100), until)
	r.add(r.batch("a", now, 400, 50, 150, 300))
	r.emit(now, false)
	// Once the output is flushed, the next emit is due when the
	// hold-back ends.
	if due := r.emit(now.Add(flushDelay), false); !due.Equal(until) {
		t.Errorf("next emit due %v after now, want the hold-back's end (%v)", due.Sub(now), openHoldBack)
	}
	r.wantWritten("a@50")
	r.emit(now.Add(openHoldBack/2), false)
	r.wantWritten("a@50")
	r.m.release() // every target opened
	r.emit(now.Add(openHoldBack/2), false)
	r.wantWritten("a@50", "a@150", "a@300")

	// A target that takes longer than the bound no longer holds it.
	r.m.holdBack(r.ms(350), until)
	r.add(r.batch("a", now, 700, 600))
	r.emit(now, false)
	r.wantWritten("a@50", "a@150", "a@300")
	r.emit(until, false)
	r.wantWritten("a@50", "a@150", "a@300", "a@600")
	if n := r.outOfOrder(); n != 0 {
		t.Errorf("%d out of order", n)
	}
}
