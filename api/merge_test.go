package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"testing"
	"time"

	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
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
}

func newMergeRig(t *testing.T, window time.Duration, names ...string) *mergeRig {
	t.Helper()
	r := &mergeRig{t: t, srcs: map[string]*source{}, t0: time.Unix(1700000000, 0)}
	var ifaces []OutputInterface
	for i, n := range names {
		s := newSource(Target{Name: n}, nil, nil, []tunnel.InterfaceStats{{Name: "eth0", LinkType: 1, Snaplen: 65535}}, i)
		r.srcs[n] = s
		ifaces = append(ifaces, OutputInterface{Name: n + ":eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535})
	}
	out, err := NewOutput(&r.buf, capturecmd.FormatPcapng, ifaces)
	if err != nil {
		t.Fatal(err)
	}
	r.m = newMerger(out, window)
	return r
}

// batch takes a free batch of source name, fills it with packets whose
// timestamps are t0 + ms milliseconds and whose payload names them
// ("a@10"), and marks it arrived at arrived.
func (r *mergeRig) batch(name string, arrived time.Time, ms ...int) *batch {
	r.t.Helper()
	s := r.srcs[name]
	var b *batch
	select {
	case b = <-s.free:
	default:
		r.t.Fatalf("source %s has no free batch", name)
	}
	for _, v := range ms {
		data := fmt.Appendf(nil, "%s@%d", name, v)
		b.pkts = append(b.pkts, pktRef{ts: r.t0.Add(time.Duration(v) * time.Millisecond), off: len(b.buf),
			caplen: len(data), length: len(data), iface: s.firstOut})
		b.buf = append(b.buf, data...)
	}
	b.arrived = arrived
	return b
}

func (r *mergeRig) add(b *batch) {
	r.t.Helper()
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

func (r *mergeRig) wantFree(name string, n int) {
	r.t.Helper()
	if got := len(r.srcs[name].free); got != n {
		r.t.Errorf("source %s has %d free batches, want %d", name, got, n)
	}
}

func TestMergerWindowZeroKeepsArrivalOrder(t *testing.T) {
	r := newMergeRig(t, 0, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 10, 20))
	r.add(r.batch("b", now, 5, 15))
	r.add(r.batch("a", now, 30, 1)) // a timestamp going back stays where it came
	if next := r.emit(now, false); !next.IsZero() {
		t.Errorf("emit with window 0 asks to be called at %v", next)
	}
	r.wantWritten("a@10", "a@20", "b@5", "b@15", "a@30", "a@1")
	r.wantFree("a", batchesPerSource)
	r.wantFree("b", batchesPerSource)
	if d := r.srcs["a"].delivered[0]; d != 4 {
		t.Errorf("a delivered %d, want 4", d)
	}
}

func TestMergerWindowOrdersByTimestamp(t *testing.T) {
	const window = 100 * time.Millisecond
	r := newMergeRig(t, window, "a", "b", "c")
	now := time.Now()
	r.add(r.batch("a", now, 10, 30, 50))
	r.add(r.batch("b", now, 5, 20, 40))
	r.add(r.batch("c", now.Add(10*time.Millisecond), 25))

	// Nothing is due yet: the first batch waits out the window.
	if next := r.emit(now.Add(window-time.Nanosecond), false); !next.Equal(now.Add(window)) {
		t.Errorf("next due = %v, want %v", next, now.Add(window))
	}
	r.wantWritten()

	// At the window, a and b are due; c's packet at 25 came later and
	// waits, so only what precedes it in time goes out.
	next := r.emit(now.Add(window), false)
	r.wantWritten("b@5", "a@10", "b@20")
	if want := now.Add(10*time.Millisecond + window); !next.Equal(want) {
		t.Errorf("next due = %v, want %v (c's batch)", next, want)
	}
	r.wantFree("a", batchesPerSource-1)

	next = r.emit(now.Add(10*time.Millisecond+window), false)
	r.wantWritten("b@5", "a@10", "b@20", "c@25", "a@30", "b@40", "a@50")
	if !next.IsZero() {
		t.Errorf("next due = %v with nothing held", next)
	}
	for _, n := range []string{"a", "b", "c"} {
		r.wantFree(n, batchesPerSource)
	}
}

func TestMergerWindowKeepsSourceOrder(t *testing.T) {
	// A source's own order wins over timestamps: its clock may step back.
	r := newMergeRig(t, time.Second, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 50, 10))
	r.add(r.batch("a", now, 5))
	r.add(r.batch("b", now, 20, 60))
	r.emit(now, true)
	r.wantWritten("b@20", "a@50", "a@10", "a@5", "b@60")
}

func TestMergerFlushAllIgnoresWindow(t *testing.T) {
	r := newMergeRig(t, time.Hour, "a", "b")
	now := time.Now()
	r.add(r.batch("a", now, 3))
	r.add(r.batch("b", now, 1, 2))
	if next := r.emit(now, true); !next.IsZero() {
		t.Errorf("next due = %v after flushing all", next)
	}
	r.wantWritten("b@1", "b@2", "a@3")
}

func TestMergerStarvedSourceForcesEmission(t *testing.T) {
	const window = time.Hour // nothing is ever due by time
	r := newMergeRig(t, window, "a")
	now := time.Now()
	for i := range batchesPerSource {
		r.add(r.batch("a", now, 10*i, 10*i+1))
	}
	r.wantFree("a", 0)
	// a holds every batch it owns: its reader would stall for an hour.
	r.emit(now, false)
	r.wantWritten("a@0", "a@1")
	r.wantFree("a", 1)
}

func TestMergerStarvedSourceBehindAnotherForcesEmission(t *testing.T) {
	// b's packet is older than everything a holds, and not due; a holds
	// all its batches. Emission must still happen, in timestamp order: b's
	// packet first, then a's until a has a batch to read into again.
	const window = time.Hour
	r := newMergeRig(t, window, "a", "b")
	now := time.Now()
	r.add(r.batch("b", now, 1, 500))
	for i := range batchesPerSource {
		r.add(r.batch("a", now, 100*(i+1), 100*(i+1)+1))
	}
	r.wantFree("a", 0)
	r.emit(now, false)
	r.wantWritten("b@1", "a@100", "a@101")
	r.wantFree("a", 1)
	r.wantFree("b", batchesPerSource-1) // b's batch still holds b@500

	// Nothing else is forced: the rest waits for its window.
	r.emit(now, false)
	r.wantWritten("b@1", "a@100", "a@101")
}

func TestMergerBoundedHeld(t *testing.T) {
	// However batches arrive, a source never has more than it owns held,
	// and after every emit each source can read again.
	r := newMergeRig(t, time.Hour, "a", "b", "c")
	now := time.Now()
	names := []string{"a", "b", "c"}
	for round := range 50 {
		for i, n := range names {
			if len(r.srcs[n].free) == 0 {
				t.Fatalf("round %d: source %s stalled", round, n)
			}
			r.add(r.batch(n, now, round*10+i))
		}
		r.emit(now, false)
		if r.m.held > len(names)*batchesPerSource {
			t.Fatalf("round %d: %d batches held", round, r.m.held)
		}
	}
	r.emit(now, true)
	if got := len(r.written()); got != 150 {
		t.Errorf("%d packets written, want 150", got)
	}
}
