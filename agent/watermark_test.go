package agent

import (
	"testing"
	"time"
)

func TestWatermarker(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	srcs := []*source{{idx: 0}, {idx: 1}}
	m := newWatermarker(len(srcs))
	at := func(d time.Duration) time.Time { return t0.Add(d) }
	want := func(now time.Time, w time.Time, advanced bool) {
		t.Helper()
		m.dropping(srcs, now)
		got, ok := m.next(now)
		if got != w.UnixNano() || ok != advanced {
			t.Errorf("at %v: watermark %v (advanced %v), want %v (%v)", now.Sub(t0), time.Unix(0, got).Sub(t0), ok, w.Sub(t0), advanced)
		}
	}
	batchOf := func(iface int, ts ...time.Duration) *batch {
		b := &batch{}
		for _, d := range ts {
			b.pkts = append(b.pkts, pktMeta{iface: int32(iface), ts: at(d).UnixNano()})
		}
		return b
	}

	// Both idle from the start: a ring latency behind the swap.
	want(at(time.Second), at(time.Second-ringLatency), true)

	// Source 0 delivers: its newest packet (less the slack) holds the
	// watermark while it is busy, however old that packet is.
	now := at(2 * time.Second)
	m.observe(batchOf(0, 500*time.Millisecond, 900*time.Millisecond), now)
	want(now, at(900*time.Millisecond-reorderSlack), true)
	now = at(2*time.Second + 10*time.Millisecond)
	m.observe(batchOf(0, 600*time.Millisecond), now)
	want(now, at(900*time.Millisecond-reorderSlack), false) // never goes back
	m.observe(batchOf(0, 1950*time.Millisecond), now)
	want(now, now.Add(-ringLatency), true) // now source 1, idle, is the older

	// Source 0 goes quiet for a ring latency: idle again.
	now = now.Add(ringLatency)
	want(now, now.Add(-ringLatency), true)

	// Source 1's packets are refused by the full queue: busy, not idle,
	// so the watermark stays at its newest written packet.
	m.observe(batchOf(1, 2100*time.Millisecond), now)
	srcs[1].dropped.Add(5)
	later := now.Add(2 * ringLatency)
	want(later, at(2100*time.Millisecond-reorderSlack), true)
	// Once the refusals stop for a ring latency, it is idle.
	later = later.Add(ringLatency)
	want(later, later.Add(-ringLatency), true)
}
