package agent

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
)

func TestQueueRefusesWhenFullByBytes(t *testing.T) {
	q := newQueue(100, 1000)
	ts := time.Unix(1700000000, 5)
	pkt := func(b byte, n int) []byte { return bytes.Repeat([]byte{b}, n) }
	for i, tt := range []struct {
		n    int
		want bool
	}{
		{40, true},
		{40, true},
		{21, false}, // 101 bytes
		{20, true},  // exactly 100
		{1, false},
		{0, true}, // an empty packet still fits
	} {
		if got := q.put(0, gopacket.CaptureInfo{Timestamp: ts, Length: tt.n + 10}, pkt(byte('a'+i), tt.n)); got != tt.want {
			t.Errorf("put #%d (%d bytes) = %v, want %v", i, tt.n, got, tt.want)
		}
	}
	full := q.swap(&batch{})
	if len(full.pkts) != 4 || len(full.buf) != 100 {
		t.Fatalf("batch holds %d packets, %d bytes; want 4, 100", len(full.pkts), len(full.buf))
	}
	// Each packet is where its metadata says, with its own bytes.
	wantFill := []byte{'a', 'b', 'd', 'f'}
	wantLen := []int{40, 40, 20, 0}
	for i, p := range full.pkts {
		data := full.buf[p.off : p.off+p.caplen]
		if p.caplen != wantLen[i] || p.length != wantLen[i]+10 || !p.ts.Equal(ts) || !bytes.Equal(data, pkt(wantFill[i], wantLen[i])) {
			t.Errorf("packet %d = %+v %q", i, p, data)
		}
	}
	// After the swap there is room again.
	if !q.put(0, gopacket.CaptureInfo{}, pkt('z', 100)) {
		t.Error("put after swap refused")
	}
}

func TestQueueRefusesWhenFullByCount(t *testing.T) {
	q := newQueue(1<<20, 3)
	for i := range 3 {
		if !q.put(i%2, gopacket.CaptureInfo{}, []byte{byte(i)}) {
			t.Fatalf("put #%d refused", i)
		}
	}
	if q.put(0, gopacket.CaptureInfo{}, []byte{9}) {
		t.Error("fourth put accepted with a limit of 3 packets")
	}
	b := q.swap(&batch{})
	if len(b.pkts) != 3 || b.pkts[1].iface != 1 || b.pkts[2].iface != 0 {
		t.Errorf("batch = %+v", b.pkts)
	}
}

func TestQueueCopiesAndSignals(t *testing.T) {
	q := newQueue(1<<10, 10)
	select {
	case <-q.ready:
		t.Fatal("an empty queue signalled ready")
	default:
	}
	data := []byte("original")
	q.put(0, gopacket.CaptureInfo{}, data)
	q.put(0, gopacket.CaptureInfo{}, data)
	copy(data, "CHANGED!") // libpcap reuses its buffer
	select {
	case <-q.ready:
	default:
		t.Fatal("put did not signal ready")
	}
	select {
	case <-q.ready:
		t.Fatal("two puts signalled twice; signals should coalesce")
	default:
	}
	spare := &batch{buf: []byte("stale"), pkts: []pktMeta{{caplen: 5}}}
	b := q.swap(spare)
	if string(b.buf) != "originaloriginal" {
		t.Errorf("batch bytes = %q, want the data as it was put", b.buf)
	}
	// The spare was emptied before it became the current batch.
	if again := q.swap(&batch{}); again != spare || len(again.pkts) != 0 || len(again.buf) != 0 {
		t.Errorf("second swap = %+v, want the emptied spare", again)
	}
}
