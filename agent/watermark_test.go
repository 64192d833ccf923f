package agent

import (
	"math"
	"testing"
	"time"
)

func TestWatermarker(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	srcs := []*source{{idx: 0}, {idx: 1}}
	m := newWatermarker(len(srcs))
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	checked := func(i int, d time.Duration) { srcs[i].checked.Store(at(d).UnixNano()) }
	want := func(w time.Time, advanced bool) {
		t.Helper()
		m.checking(srcs)
		got, ok := m.next()
		if got != w.UnixNano() || ok != advanced {
			t.Errorf("watermark %v (advanced %v), want %v (%v)", time.Unix(0, got).Sub(t0), ok, w.Sub(t0), advanced)
		}
	}
	batchOf := func(iface int, ts ...time.Duration) *batch {
		b := &batch{}
		for _, d := range ts {
			b.pkts = append(b.pkts, pktMeta{iface: int32(iface), ts: at(d).UnixNano()})
		}
		return b
	}

	// Until every reader has looked at its ring, nothing is promised.
	checked(0, time.Second)
	want(time.Unix(0, 0), false)

	// Both rings found empty: a ring latency behind the older look.
	checked(1, time.Second+10*time.Millisecond)
	want(at(time.Second-ringLatency), true)

	// Source 0 delivers: its newest packet (less the slack) speaks for it
	// beyond its reader's last look.
	m.observe(batchOf(0, 500*time.Millisecond, 900*time.Millisecond))
	checked(1, 2*time.Second)
	want(at(900*time.Millisecond-reorderSlack), true)
	checked(0, 2*time.Second)
	m.observe(batchOf(0, 1950*time.Millisecond))
	want(at(2*time.Second-ringLatency), true) // source 1 looked at 2 s
	m.observe(batchOf(0, 600*time.Millisecond))
	want(at(2*time.Second-ringLatency), false) // never goes back

	// Source 1's reader is kept from the CPU: it last looked at 2 s.
	// However much later the writer swaps, and however busy source 0 is,
	// the watermark stays where that look puts it: source 1's ring may
	// hold anything since. (Judged by the writer's clock it would have
	// moved to 5 s − ringLatency, ahead of packets still in that ring.)
	checked(0, 5*time.Second)
	m.observe(batchOf(0, 4*time.Second, 4900*time.Millisecond))
	want(at(2*time.Second-ringLatency), false)
	// Its reader runs again: its packets come after the watermark.
	m.observe(batchOf(1, 2100*time.Millisecond, 3*time.Second))
	want(at(3*time.Second-reorderSlack), true)
	checked(1, 5*time.Second)
	want(at(5*time.Second-ringLatency), true)

	// A reader that ended holds nothing back.
	srcs[0].checked.Store(math.MaxInt64)
	checked(1, 6*time.Second)
	want(at(6*time.Second-ringLatency), true)
}
