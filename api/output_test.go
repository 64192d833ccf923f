package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/integration/testreq"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// tool runs a Wireshark command-line tool; when it is not installed the
// test is skipped, or fails under PCAP_REQUIRE_TOOLS.
func tool(t *testing.T, name string, args ...string) string {
	t.Helper()
	testreq.Tool(t, name, "apt-get install tshark")
	return testenv.Run(t, name, args...)
}

var testIfaces = []OutputInterface{
	{Name: "lb/0:eth0", Description: "agent 10.0.0.5:9494", Filter: "udp", LinkType: layers.LinkTypeEthernet, Snaplen: 65535},
	{Name: "lb/1:any", Description: "agent 10.0.0.6:9494", Filter: "udp", LinkType: layers.LinkTypeLinuxSLL2, Snaplen: 96},
	{Name: "lb/1:lo", Description: "agent 10.0.0.6:9494", Filter: "udp", LinkType: layers.LinkTypeEthernet, Snaplen: 262144},
}

func TestOutputPcapngIsReadByWireshark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	o, err := NewOutput(f, capturecmd.FormatPcapng, testIfaces)
	if err != nil {
		t.Fatalf("NewOutput: %v", err)
	}
	t0 := time.Unix(1700000000, 123456789)
	perIface := []int{3, 2, 1}
	n := 0
	for id, count := range perIface {
		for range count {
			data := bytes.Repeat([]byte{byte(n)}, 60)
			ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(n) * time.Millisecond), CaptureLength: 60, Length: 60 + id, InterfaceIndex: id}
			if err := o.WritePacket(ci, data); err != nil {
				t.Fatalf("WritePacket: %v", err)
			}
			n++
		}
	}
	counts := []InterfaceCounts{
		{Start: t0, End: t0.Add(2 * time.Second), Received: 10, KernelDropped: 1, IfDropped: 2, AgentDropped: 3, APIDropped: 1, Delivered: 3},
		{Start: t0, End: t0.Add(3 * time.Second), Received: 2, Delivered: 2},
		{Received: 1, Delivered: 1}, // no times: the block still reads
	}
	for id, c := range counts {
		if err := o.WriteStats(id, c); err != nil {
			t.Fatalf("WriteStats(%d): %v", id, err)
		}
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	info := tool(t, "capinfos", "-M", path)
	for _, want := range []string{
		"Number of packets:   6", "Number of interfaces in file: 3",
		"Name = lb/0:eth0", "Description = agent 10.0.0.5:9494", "Filter string = udp",
		"Name = lb/1:any", "Linux cooked-mode capture v2", "Capture length = 96",
		"Name = lb/1:lo", "Capture length = 262144", "Time precision = nanoseconds (9)",
	} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos lacks %q:\n%s", want, info)
		}
	}
	if got := strings.Count(info, "Number of stat entries = 1"); got != 3 {
		t.Errorf("capinfos shows %d interfaces with one statistics block, want 3:\n%s", got, info)
	}

	fields := tool(t, "tshark", "-r", path, "-T", "fields", "-e", "frame.interface_name", "-e", "frame.time_epoch", "-e", "frame.len")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(fields), "\n") {
		if !strings.HasPrefix(l, "Running as user") {
			lines = append(lines, l)
		}
	}
	want := []string{
		"lb/0:eth0\t1700000000.123456789\t60", "lb/0:eth0\t1700000000.124456789\t60", "lb/0:eth0\t1700000000.125456789\t60",
		"lb/1:any\t1700000000.126456789\t61", "lb/1:any\t1700000000.127456789\t61",
		"lb/1:lo\t1700000000.128456789\t62",
	}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("tshark fields\n got  %q\n want %q", lines, want)
	}

	// The counters, read back by a second implementation.
	rf, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer rf.Close()
	got := map[int]pcapgo.NgInterfaceStatistics{}
	r, err := pcapgo.NewNgReader(rf, pcapgo.NgReaderOptions{WantMixedLinkType: true,
		StatisticsCallback: func(id int, s pcapgo.NgInterfaceStatistics) { got[id] = s }})
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, _, err := r.ReadPacketData(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("read back: %v", err)
		}
	}
	if len(got) != 3 {
		t.Fatalf("read %d statistics blocks, want 3", len(got))
	}
	s0 := got[0]
	if s0.PacketsReceived != 10 || s0.PacketsDropped != 7 || !s0.StartTime.Equal(t0) || !s0.EndTime.Equal(t0.Add(2*time.Second)) ||
		s0.Comment != "pcap drops: kernel=1 interface=2 agent=3 api=1; delivered=3; unaccounted=0; out_of_order=0" {
		t.Errorf("statistics of lb/0:eth0 = %+v", s0)
	}
	if s1 := got[1]; s1.PacketsReceived != 2 || s1.PacketsDropped != 0 || s1.Comment != "pcap drops: kernel=0 interface=0 agent=0 api=0; delivered=2; unaccounted=0; out_of_order=0" {
		t.Errorf("statistics of lb/1:any = %+v", s1)
	}
	if s2 := got[2]; s2.PacketsReceived != 1 || !s2.StartTime.IsZero() || !s2.EndTime.IsZero() {
		t.Errorf("statistics of lb/1:lo = %+v", s2)
	}
}

func TestEncodeISBGolden(t *testing.T) {
	start := time.Unix(0, 0x0000000100000002)
	end := time.Unix(0, 0x0000000300000004)
	got := encodeISB(7, InterfaceCounts{Start: start, End: end, Received: 9, KernelDropped: 1, IfDropped: 2, AgentDropped: 3, APIDropped: 4, Delivered: 5, OutOfOrder: 6})
	comment := "pcap drops: kernel=1 interface=2 agent=3 api=4; delivered=5; unaccounted=0; out_of_order=6" // 90 bytes, 2 bytes of padding
	le := binary.LittleEndian
	var w []byte
	w = le.AppendUint32(w, 5)   // block type: Interface Statistics Block
	w = le.AppendUint32(w, 208) // block total length
	w = le.AppendUint32(w, 7)   // interface id
	w = le.AppendUint32(w, 3)   // timestamp (the end time) high
	w = le.AppendUint32(w, 4)   // timestamp low
	w = le.AppendUint16(w, 1)   // opt_comment
	w = le.AppendUint16(w, uint16(len(comment)))
	w = append(w, comment...)
	w = append(w, 0, 0)       // padding to 32 bits
	w = le.AppendUint16(w, 2) // isb_starttime
	w = le.AppendUint16(w, 8)
	w = le.AppendUint32(w, 1) // high
	w = le.AppendUint32(w, 2) // low
	w = le.AppendUint16(w, 3) // isb_endtime
	w = le.AppendUint16(w, 8)
	w = le.AppendUint32(w, 3)
	w = le.AppendUint32(w, 4)
	for _, o := range []struct {
		code uint16
		v    uint64
	}{
		{4, 9},             // isb_ifrecv: libpcap's received
		{5, 1 + 2 + 3 + 4}, // isb_ifdrop: dropped anywhere
		{6, 9},             // isb_filteraccept
		{7, 1},             // isb_osdrop: the kernel's drops
		{8, 5},             // isb_usrdeliv: delivered to the output
	} {
		w = le.AppendUint16(w, o.code)
		w = le.AppendUint16(w, 8)
		w = le.AppendUint64(w, o.v)
	}
	w = le.AppendUint32(w, 0)   // opt_endofopt
	w = le.AppendUint32(w, 208) // block total length, again
	if len(w) != 208 {
		t.Fatalf("golden block is %d bytes", len(w))
	}
	if !bytes.Equal(got, w) {
		t.Errorf("encodeISB\n got  %x\n want %x", got, w)
	}
}

func TestOutputPcapClassic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "out.pcap")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	ifaces := []OutputInterface{
		{Name: "lb/0:eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 128},
		{Name: "lb/1:eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 1500},
	}
	o, err := NewOutput(f, capturecmd.FormatPcap, ifaces)
	if err != nil {
		t.Fatalf("NewOutput: %v", err)
	}
	t0 := time.Unix(1700000000, 987654321)
	for i := range 4 {
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i)), CaptureLength: 64, Length: 64, InterfaceIndex: i % 2}
		if err := o.WritePacket(ci, make([]byte, 64)); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.WriteStats(0, InterfaceCounts{Received: 4}); err != nil {
		t.Errorf("WriteStats on classic pcap: %v", err)
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()
	info := tool(t, "capinfos", "-M", path)
	for _, want := range []string{"File type:           nsecpcap", "Number of packets:   4",
		"Packet size limit:   file hdr: 1500 bytes", "nanoseconds"} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos lacks %q:\n%s", want, info)
		}
	}
	if out := tool(t, "tshark", "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-c", "1"); !strings.Contains(out, "1700000000.987654321") {
		t.Errorf("first timestamp not kept to the nanosecond: %q", out)
	}
}

func TestOutputPcapMixedLinkTypes(t *testing.T) {
	var w bytes.Buffer
	o, err := NewOutput(&w, capturecmd.FormatPcap, testIfaces)
	var mixed *ErrMixedLinkTypes
	if !errors.As(err, &mixed) {
		t.Fatalf("NewOutput = %v, %v; want *ErrMixedLinkTypes", o, err)
	}
	want := "--format pcap needs one link type for all sources, but lb/0:eth0 is Ethernet, lb/1:any is Linux SLL2, lb/1:lo is Ethernet; use pcapng"
	if err.Error() != want {
		t.Errorf("error\n got  %q\n want %q", err, want)
	}
	if w.Len() != 0 {
		t.Errorf("%d bytes written before the refusal", w.Len())
	}
}

func TestOutputNoInterfaces(t *testing.T) {
	if _, err := NewOutput(io.Discard, capturecmd.FormatPcapng, nil); err == nil {
		t.Error("output with no interfaces accepted")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestOutputWriteErrors(t *testing.T) {
	if _, err := NewOutput(errWriter{}, capturecmd.FormatPcapng, testIfaces[:1]); err == nil || !strings.HasPrefix(err.Error(), "api: flush: ") {
		t.Errorf("NewOutput on a broken writer: %v", err)
	}
	var buf bytes.Buffer
	o, err := NewOutput(&buf, capturecmd.FormatPcapng, testIfaces[:1])
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 60)
	ci := gopacket.CaptureInfo{CaptureLength: 60, Length: 60}
	if err := o.WritePacket(ci, data); err != nil {
		t.Fatal(err)
	}
	bad := gopacket.CaptureInfo{CaptureLength: 60, Length: 59}
	if err := o.WritePacket(bad, data); err == nil || !strings.HasPrefix(err.Error(), "api: write packet: ") {
		t.Errorf("packet with caplen > len: %v", err)
	}
}

// udpFrame builds an Ethernet frame carrying UDP from src to dst.
func udpFrame(t *testing.T, src, dst netip.Addr) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: []byte{2, 0, 0, 0, 0, 1}, DstMAC: []byte{2, 0, 0, 0, 0, 2}}
	udp := &layers.UDP{SrcPort: 4000, DstPort: 5000}
	var ip gopacket.NetworkLayer
	if src.Is4() {
		eth.EthernetType = layers.EthernetTypeIPv4
		ip = &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip = &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	}
	if err := udp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		eth, ip.(gopacket.SerializableLayer), udp, gopacket.Payload("names"))
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestOutputNamesAndCommentReadByWireshark(t *testing.T) {
	path := filepath.Join(t.TempDir(), "names.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	v4, v6 := netip.MustParseAddr("10.0.0.5"), netip.MustParseAddr("fd00::6")
	peer4, peer6 := netip.MustParseAddr("10.0.0.99"), netip.MustParseAddr("fd00::99")
	hdr := OutputHeader{
		Comment:     "pcap v9.8.7: capture --app web -f udp",
		Application: "pcap-api v9.8.7",
		Names: []AddressName{
			{Addr: v4, Name: "web/0"},
			{Addr: v6, Name: "router/2"},
			{Addr: netip.Addr{}, Name: "unknown/0"}, // no address: left out
		},
	}
	o, err := NewOutputHeader(f, capturecmd.FormatPcapng, testIfaces[:1], hdr)
	if err != nil {
		t.Fatalf("NewOutputHeader: %v", err)
	}
	t0 := time.Unix(1700000000, 0)
	for i, p := range [][2]netip.Addr{{v4, peer4}, {v6, peer6}} {
		data := udpFrame(t, p[0], p[1])
		ci := gopacket.CaptureInfo{Timestamp: t0.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(data), Length: len(data)}
		if err := o.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	fields := tool(t, "tshark", "-r", path, "-N", "n", "-T", "fields", "-E", "separator=,",
		"-e", "ip.src_host", "-e", "ipv6.src_host", "-e", "ip.dst_host", "-e", "ipv6.dst_host")
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(fields), "\n") {
		if !strings.HasPrefix(l, "Running as user") {
			lines = append(lines, l)
		}
	}
	// Names come from the file; the peers have none (no DNS here).
	want := []string{"web/0,,10.0.0.99,", ",router/2,,fd00::99"}
	if !reflect.DeepEqual(lines, want) {
		t.Errorf("tshark -N n source names\n got  %q\n want %q", lines, want)
	}

	info := tool(t, "capinfos", path)
	for _, want := range []string{"Capture comment:     pcap v9.8.7: capture --app web -f udp", "Capture application: pcap-api v9.8.7"} {
		if !strings.Contains(info, want) {
			t.Errorf("capinfos lacks %q:\n%s", want, info)
		}
	}
}

func TestEncodeNRB(t *testing.T) {
	if b := encodeNRB(nil); b != nil {
		t.Errorf("no names: got a %d-byte block, want none", len(b))
	}
	ambiguous := []AddressName{{Addr: netip.MustParseAddr("10.9.9.9"), Name: "a/0"}, {Addr: netip.MustParseAddr("::ffff:10.9.9.9"), Name: "b/0"}}
	if b := encodeNRB(ambiguous); b != nil {
		t.Errorf("one address, two names: got a %d-byte block, want none", len(b))
	}
	b := encodeNRB([]AddressName{{Addr: netip.MustParseAddr("10.1.2.3"), Name: "lab/0"}, {Addr: netip.MustParseAddr("10.1.2.3"), Name: "lab/0"}})
	le := binary.LittleEndian
	// type, length, record (type 1, len 4+6, 10.1.2.3 "lab/0\0", pad 2), end record, length.
	want := []byte{4, 0, 0, 0, 32, 0, 0, 0, 1, 0, 10, 0, 10, 1, 2, 3, 'l', 'a', 'b', '/', '0', 0, 0, 0, 0, 0, 0, 0, 32, 0, 0, 0}
	if !bytes.Equal(b, want) || le.Uint32(b[4:]) != uint32(len(b)) {
		t.Errorf("NRB\n got  %v\n want %v", b, want)
	}
}
