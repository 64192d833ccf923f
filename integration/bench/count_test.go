package bench

import (
	"bytes"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

func TestCounterCountsRecordsFedInPieces(t *testing.T) {
	const n = 300
	ci := func(i, iface int) gopacket.CaptureInfo {
		size := 1 + i%97 // odd sizes: pcapng pads them
		return gopacket.CaptureInfo{Timestamp: time.Unix(1, int64(i)), CaptureLength: size, Length: size, InterfaceIndex: iface}
	}
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "a", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{Name: "b", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}); err != nil {
		t.Fatal(err)
	}
	for i := range n {
		c := ci(i, i%2)
		if err := w.WritePacket(c, make([]byte, c.CaptureLength)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	// An Interface Statistics Block at the end is not a packet.
	ng.Write(encodeTestISB())

	var pc bytes.Buffer
	pw := pcapgo.NewWriterNanos(&pc)
	pw.WriteFileHeader(65535, layers.LinkTypeEthernet)
	for i := range n {
		c := ci(i, 0)
		pw.WritePacket(c, make([]byte, c.CaptureLength))
	}

	for _, tc := range []struct {
		name string
		data []byte
	}{{"pcapng", ng.Bytes()}, {"pcap", pc.Bytes()}} {
		for _, piece := range []int{1, 7, 4096, len(tc.data)} {
			var c counter
			for off := 0; off < len(tc.data); off += piece {
				if err := c.feed(tc.data[off:min(off+piece, len(tc.data))]); err != nil {
					t.Fatalf("%s in pieces of %d: %v", tc.name, piece, err)
				}
			}
			if c.packets != n {
				t.Errorf("%s in pieces of %d: counted %d packets, want %d", tc.name, piece, c.packets, n)
			}
		}
		// A record cut off at the end is not counted.
		var c counter
		if err := c.feed(tc.data[:len(tc.data)-30]); err != nil {
			t.Fatal(err)
		}
		if c.packets >= n {
			t.Errorf("%s cut short: counted %d packets", tc.name, c.packets)
		}
	}

	var c counter
	if err := c.feed(bytes.Repeat([]byte("not a capture"), 4)); err == nil {
		t.Error("no error for a stream that is neither pcap nor pcapng")
	}
}

// encodeTestISB is a minimal Interface Statistics Block for interface 0.
func encodeTestISB() []byte {
	return []byte{
		5, 0, 0, 0, 24, 0, 0, 0, // type, length
		0, 0, 0, 0, // interface id
		0, 0, 0, 0, 0, 0, 0, 0, // timestamp
		24, 0, 0, 0, // length
	}
}

func TestAnalyseFindsBestLossFreeRates(t *testing.T) {
	s := Full()
	s.Rates = []int{50_000, 100_000, 0}
	s.Sizes = []int{100}
	s.FanOut = nil
	r := &Results{Settings: s, Machine: map[string]string{"cpus": "2"}}
	pt := func(tool string, rate int, delivered, sent uint64) Point {
		return Point{Tool: tool, Size: 100, Rate: rate, Sent: sent, Delivered: delivered,
			DeliveredPPS: float64(delivered), OfferedPPS: float64(sent),
			LossPct: 100 * float64(sent-delivered) / float64(sent), APIPeakRSS: 20 << 20, WallSeconds: 1}
	}
	r.Points = []Point{
		pt(ToolLocal, 50_000, 50_000, 50_000), pt(ToolLocal, 100_000, 100_000, 100_000), pt(ToolLocal, 0, 300_000, 300_000),
		pt(ToolSSH, 50_000, 50_000, 50_000), pt(ToolSSH, 100_000, 90_000, 100_000), pt(ToolSSH, 0, 100_000, 300_000),
		pt(ToolPcap, 50_000, 50_000, 50_000), pt(ToolPcap, 100_000, 100_000, 100_000), pt(ToolPcap, 0, 299_000, 300_000),
	}
	r.analyse()
	want := map[string]float64{ToolLocal: 300_000, ToolSSH: 50_000, ToolPcap: 100_000}
	for _, b := range r.Best {
		if b.DeliveredPPS != want[b.Tool] {
			t.Errorf("best of %s = %v, want %v", b.Tool, b.DeliveredPPS, want[b.Tool])
		}
	}
	for _, ra := range r.Ratios {
		w := map[string]float64{ToolSSH: 2, ToolLocal: 0.333}[ra.Over]
		if ra.Ratio != w {
			t.Errorf("pcap / %s = %v, want %v", ra.Over, ra.Ratio, w)
		}
	}
	met := map[string]bool{}
	for _, tg := range r.Targets {
		met[tg.Name] = tg.Met
	}
	if !met["loss-free rate, 100-byte payloads: pcap / ssh-tcpdump"] || met["loss-free rate, 100-byte payloads: pcap / local-tcpdump"] {
		t.Errorf("targets: %+v", r.Targets)
	}
	if svg := r.SVG(); !bytes.Contains([]byte(svg), []byte("<polyline")) {
		t.Error("chart has no lines")
	}
}

func TestCounterCountsPacketsOutOfOrder(t *testing.T) {
	// Interface a: 1 3 2 5, b: 4 4, interleaved as written below.
	var ng bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&ng, pcapgo.NgInterface{Name: "a", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddInterface(pcapgo.NgInterface{Name: "b", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []struct{ ns, iface int }{{1, 0}, {3, 0}, {2, 0}, {4, 1}, {5, 0}, {4, 1}} {
		c := gopacket.CaptureInfo{Timestamp: time.Unix(100, int64(p.ns)), CaptureLength: 10, Length: 10, InterfaceIndex: p.iface}
		if err := w.WritePacket(c, make([]byte, 10)); err != nil {
			t.Fatal(err)
		}
	}
	w.Flush()
	var c counter
	if err := c.feed(ng.Bytes()); err != nil {
		t.Fatal(err)
	}
	// Late: 2 (after 3), and b's second 4 (after 5); on its own
	// interface only 2.
	if c.packets != 6 || c.outOfOrder != 2 || c.withinIface != 1 {
		t.Errorf("packets %d, out of order %d, within interface %d; want 6, 2, 1", c.packets, c.outOfOrder, c.withinIface)
	}
}
