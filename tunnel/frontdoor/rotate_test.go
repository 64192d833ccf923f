package frontdoor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// clock is a test clock the rotator reads.
type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

// chunked writes to w in pieces of n bytes, so blocks arrive split.
type chunked struct {
	w io.Writer
	n int
}

func (c chunked) Write(p []byte) (int, error) {
	for i := 0; i < len(p); i += c.n {
		if _, err := c.w.Write(p[i:min(i+c.n, len(p))]); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// stream writes a pcapng stream into w: interface 0, packets numbered
// 0..n-1 in their first 4 bytes (interface 1 added halfway), then
// statistics for both interfaces. before runs before each packet.
func stream(t *testing.T, w io.Writer, n, size int, before func(i int)) {
	t.Helper()
	ng, err := pcapgo.NewNgWriterInterface(chunked{w, 7},
		pcapgo.NgInterface{Name: "a:eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}, pcapgo.DefaultNgWriterOptions)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if i == n/2 {
			if _, err := ng.AddInterface(pcapgo.NgInterface{Name: "b:eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535}); err != nil {
				t.Fatal(err)
			}
		}
		before(i)
		data := make([]byte, size)
		binary.BigEndian.PutUint32(data, uint32(i))
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1_800_000_000, int64(i)), CaptureLength: size, Length: size, InterfaceIndex: min(i/(n/2), 1)}
		if err := ng.WritePacket(ci, data); err != nil {
			t.Fatal(err)
		}
		if err := ng.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 2 {
		st := pcapgo.NgInterfaceStatistics{PacketsReceived: uint64(n), PacketsDropped: 0}
		if err := ng.WriteInterfaceStats(i, st); err != nil {
			t.Fatal(err)
		}
	}
	if err := ng.Flush(); err != nil {
		t.Fatal(err)
	}
}

// readBack reads one file as a complete pcapng file: its packet numbers,
// interface count, and whether it has statistics for interface 0.
func readBack(t *testing.T, name string) (nums []int, interfaces int, stats bool) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	for {
		data, ci, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if ci.InterfaceIndex >= r.NInterfaces() {
			t.Fatalf("%s: packet on interface %d of %d", name, ci.InterfaceIndex, r.NInterfaces())
		}
		nums = append(nums, int(binary.BigEndian.Uint32(data)))
	}
	intf, err := r.Interface(0)
	if err != nil {
		t.Fatal(err)
	}
	return nums, r.NInterfaces(), intf.Statistics.PacketsReceived != 0 && intf.Statistics.PacketsReceived != pcapgo.NgNoValue64
}

// capFiles lists the directory's files, sorted.
func capFiles(t *testing.T, dir string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

// TestRotatorBySizeKeepsNewestThree: a stream cut by size with Files 3
// leaves the three newest files, each a complete pcapng file with every
// interface seen so far, holding together the newest packets in order;
// statistics are in the last one.
func TestRotatorBySizeKeepsNewestThree(t *testing.T) {
	dir := t.TempDir()
	clk := &clock{time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)}
	r, err := newRotator(filepath.Join(dir, "cap.pcapng"), Rotation{Size: 2000, Files: 3}, false, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	const n, size = 100, 200
	stream(t, r, n, size, func(int) {})
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := capFiles(t, dir)
	if len(files) != 3 {
		t.Fatalf("files: %v, want 3", files)
	}
	if got := r.Files(); fmt.Sprint(got) != fmt.Sprint(files) {
		t.Errorf("Files() = %v, on disk %v", got, files)
	}
	re := regexp.MustCompile(`/cap_(\d{5})_20261205T010203Z\.pcapng$`)
	var all []int
	var seqs []string
	for i, f := range files {
		m := re.FindStringSubmatch(f)
		if m == nil {
			t.Fatalf("%s: not named prefix_NNNNN_TIMESTAMP.pcapng", f)
		}
		seqs = append(seqs, m[1])
		nums, intfs, stats := readBack(t, f)
		if len(nums) == 0 {
			t.Errorf("%s: no packets", f)
		}
		if intfs != 2 { // the newest files all come after interface 1 appeared
			t.Errorf("%s: %d interfaces, want 2", f, intfs)
		}
		if last := i == len(files)-1; stats != last {
			t.Errorf("%s: statistics %v, want %v", f, stats, last)
		}
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v", f, fi.Mode())
		}
		if i < len(files)-1 && (fi.Size() < 2000 || fi.Size() >= 2000+size+64) {
			t.Errorf("%s: %d bytes, want 2000 up to one packet block more", f, fi.Size())
		}
		all = append(all, nums...)
	}
	// Consecutive sequence numbers, the newest kept.
	var first int
	fmt.Sscanf(seqs[0], "%d", &first)
	for i, s := range seqs {
		if want := fmt.Sprintf("%05d", first+i); s != want {
			t.Errorf("sequence numbers %v are not consecutive", seqs)
		}
	}
	if first+2 != r.seq || first < 4 {
		t.Errorf("kept files %v of %d made", seqs, r.seq)
	}
	// The kept packets are the newest ones, each once, in order.
	if len(all) == 0 || all[len(all)-1] != n-1 {
		t.Fatalf("packets kept: %v, want a tail ending with %d", all, n-1)
	}
	for i, v := range all {
		if v != n-len(all)+i {
			t.Fatalf("packets kept: %v, not the newest %d in order", all, len(all))
		}
	}
}

// TestRotatorByTime: with Every, a new file starts before the first packet
// after the interval, named with the time it was opened; nothing is lost
// without Files.
func TestRotatorByTime(t *testing.T) {
	dir := t.TempDir()
	start := time.Date(2026, 12, 5, 1, 2, 3, 0, time.UTC)
	clk := &clock{start}
	r, err := newRotator(filepath.Join(dir, "night"), Rotation{Every: 3 * time.Second}, false, clk.now)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	stream(t, r, n, 60, func(i int) { clk.t = start.Add(time.Duration(i) * time.Second) })
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := capFiles(t, dir)
	want := []string{
		"night_00001_20261205T010203Z", // packets 0,1,2
		"night_00002_20261205T010206Z", // 3,4,5
		"night_00003_20261205T010209Z", // 6,7,8
		"night_00004_20261205T010212Z", // 9
	}
	if len(files) != len(want) {
		t.Fatalf("files %v, want %v", files, want)
	}
	total := 0
	for i, f := range files {
		if filepath.Base(f) != want[i] {
			t.Errorf("file %d is %s, want %s", i, filepath.Base(f), want[i])
		}
		nums, _, _ := readBack(t, f)
		if len(nums) == 0 || nums[0] != 3*i {
			t.Errorf("%s: packets %v, want from %d", f, nums, 3*i)
		}
		total += len(nums)
	}
	if total != n {
		t.Errorf("%d packets across files, sent %d", total, n)
	}
}

// beBlock is one big-endian pcapng block.
func beBlock(typ uint32, body []byte) []byte {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	l := uint32(12 + len(body))
	b := binary.BigEndian.AppendUint32(nil, typ)
	b = binary.BigEndian.AppendUint32(b, l)
	b = append(b, body...)
	return binary.BigEndian.AppendUint32(b, l)
}

// TestRotatorBigEndian: a big-endian section is cut and repeated as well.
func TestRotatorBigEndian(t *testing.T) {
	var s []byte
	shb := binary.BigEndian.AppendUint32(nil, 0x1A2B3C4D)
	shb = binary.BigEndian.AppendUint16(shb, 1)
	shb = binary.BigEndian.AppendUint16(shb, 0)
	shb = binary.BigEndian.AppendUint64(shb, ^uint64(0))
	s = append(s, beBlock(blockSHB, shb)...)
	idb := binary.BigEndian.AppendUint16(nil, uint16(layers.LinkTypeEthernet))
	idb = binary.BigEndian.AppendUint16(idb, 0)
	idb = binary.BigEndian.AppendUint32(idb, 65535)
	s = append(s, beBlock(blockIDB, idb)...)
	for i := range 5 {
		epb := binary.BigEndian.AppendUint32(nil, 0) // interface
		epb = binary.BigEndian.AppendUint32(epb, 0)
		epb = binary.BigEndian.AppendUint32(epb, uint32(i))
		epb = binary.BigEndian.AppendUint32(epb, 4)
		epb = binary.BigEndian.AppendUint32(epb, 4)
		epb = binary.BigEndian.AppendUint32(epb, uint32(i))
		s = append(s, beBlock(blockEPB, epb)...)
	}
	dir := t.TempDir()
	r, err := newRotator(filepath.Join(dir, "be.pcapng"), Rotation{Size: 1}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (chunked{r, 5}).Write(s); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	files := capFiles(t, dir)
	if len(files) != 5 {
		t.Fatalf("files %v, want one per packet", files)
	}
	for i, f := range files {
		nums, intfs, _ := readBack(t, f)
		if len(nums) != 1 || nums[0] != i || intfs != 1 {
			t.Errorf("%s: packets %v on %d interfaces, want [%d] on 1", f, nums, intfs, i)
		}
	}
}

// TestRotatorRefusesBadStreams: what is not pcapng stops the capture.
func TestRotatorRefusesBadStreams(t *testing.T) {
	for name, in := range map[string][]byte{
		"no section header": beBlock(blockEPB, make([]byte, 20)),
		"no magic":          beBlock(blockSHB, make([]byte, 16)),
		"huge block":        append(beBlock(blockSHB, binary.BigEndian.AppendUint32(make([]byte, 0, 16), 0x1A2B3C4D)), 0, 0, 0, 6, 0x7f, 0, 0, 0),
		"odd length":        append(beBlock(blockSHB, binary.BigEndian.AppendUint32(make([]byte, 0, 16), 0x1A2B3C4D)), 0, 0, 0, 6, 0, 0, 0, 13),
	} {
		t.Run(name, func(t *testing.T) {
			r, err := newRotator(filepath.Join(t.TempDir(), "x.pcapng"), Rotation{Size: 1}, false, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			if _, err := r.Write(in); !errors.Is(err, errNotPcapng) {
				t.Errorf("Write: %v, want errNotPcapng", err)
			}
		})
	}
}

// TestRotatorEmptyLeavesNoFile: a capture refused before its first byte
// leaves no file behind; one cut short keeps every byte received.
func TestRotatorEmptyLeavesNoFile(t *testing.T) {
	dir := t.TempDir()
	r, err := newRotator(filepath.Join(dir, "x.pcapng"), Rotation{Every: time.Hour}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if files := capFiles(t, dir); len(files) != 0 {
		t.Errorf("files left: %v", files)
	}

	var full bytes.Buffer
	stream(t, &full, 4, 100, func(int) {})
	cut := full.Bytes()[:full.Len()-50]
	r, err = newRotator(filepath.Join(dir, "y.pcapng"), Rotation{Every: time.Hour}, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Write(cut); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(r.Files()[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, cut) {
		t.Errorf("file holds %d bytes, received %d", len(got), len(cut))
	}
}

// TestRotationChecks: rotation flags are checked before any network call.
func TestRotationChecks(t *testing.T) {
	dir := t.TempDir()
	existing := filepath.Join(dir, "old.pcapng")
	if err := os.WriteFile(existing, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		r      Rotation
		out    string
		format string
		ok     bool
	}{
		{Rotation{Size: 1000}, filepath.Join(dir, "a.pcapng"), capturecmd.FormatPcapng, true},
		{Rotation{Every: time.Minute, Files: 3}, existing, capturecmd.FormatPcapng, true}, // the name itself is never written
		{Rotation{Size: 1000}, "-", capturecmd.FormatPcapng, false},
		{Rotation{Size: 1000}, filepath.Join(dir, "a.pcap"), capturecmd.FormatPcap, false},
		{Rotation{Files: 3}, filepath.Join(dir, "a.pcapng"), capturecmd.FormatPcapng, false},
		{Rotation{Size: -1}, filepath.Join(dir, "a.pcapng"), capturecmd.FormatPcapng, false},
		{Rotation{}, existing, capturecmd.FormatPcapng, false}, // plain CheckOutput
		{Rotation{}, "-", capturecmd.FormatPcap, true},
	} {
		err := c.r.CheckOutput(c.out, c.format, false)
		if (err == nil) != c.ok {
			t.Errorf("%+v -o %s --format %s: %v, want ok=%v", c.r, c.out, c.format, err, c.ok)
		}
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"1000": 1000, "100MB": 100e6, "100mb": 100e6, "1GiB": 1 << 30, "64KiB": 64 << 10,
		"2k": 2000, "5 MB": 5e6, "7B": 7, "1TB": 1e12,
	} {
		if got, err := ParseSize(in); err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v, want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MB", "1.5GB", "-1", "10XB", "99999999999TiB", "1e6"} {
		if got, err := ParseSize(in); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", in, got)
		}
	}
}

// TestRunRotates: Run with Rotate writes the stream from the front door
// into complete files and says nothing was lost; a refused capture leaves
// no file; a stream that is not pcapng stops the capture with an error
// naming the files.
func TestRunRotates(t *testing.T) {
	var s bytes.Buffer
	stream(t, &s, 40, 100, func(int) {})
	fd := startFrontDoor(t, &frontDoor{Chunk: s.Bytes(), Limit: s.Len()})
	dir := t.TempDir()
	o := options(fd, filepath.Join(dir, "cap.pcapng"), io.Discard, io.Discard)
	o.Rotate = Rotation{Size: 1000}
	if status, err := run(t, o); status != 0 || err != nil {
		t.Fatalf("Run = %d, %v", status, err)
	}
	files := capFiles(t, dir)
	if len(files) < 4 {
		t.Fatalf("files %v, want one about every 1000 bytes", files)
	}
	total := 0
	for _, f := range files {
		nums, _, _ := readBack(t, f)
		total += len(nums)
	}
	if total != 40 {
		t.Errorf("%d packets in %d files, sent 40", total, len(files))
	}

	refused := startFrontDoor(t, &frontDoor{Limit: -1, Stderr: "pcap: error: not-allowed\n", Exit: 1})
	dir = t.TempDir()
	o = options(refused, filepath.Join(dir, "cap.pcapng"), io.Discard, io.Discard)
	o.Rotate = Rotation{Every: time.Minute, Files: 2}
	if status, err := run(t, o); status != 1 || err != nil {
		t.Errorf("Run refused = %d, %v; want 1, nil", status, err)
	}
	if files := capFiles(t, dir); len(files) != 0 {
		t.Errorf("files after a refusal: %v", files)
	}

	garbage := startFrontDoor(t, &frontDoor{Chunk: []byte("not a pcapng stream at all"), Limit: 26})
	dir = t.TempDir()
	o = options(garbage, filepath.Join(dir, "cap.pcapng"), io.Discard, io.Discard)
	o.Rotate = Rotation{Size: 1000}
	if _, err := run(t, o); !errors.Is(err, errNotPcapng) || !strings.Contains(err.Error(), "cap_00001_") {
		t.Errorf("Run on garbage: %v, want errNotPcapng naming the file", err)
	}

	o.Request.Format = capturecmd.FormatPcap
	if _, err := run(t, o); !errors.Is(err, ErrRotation) {
		t.Errorf("Run rotating --format pcap: %v, want ErrRotation", err)
	}
}
