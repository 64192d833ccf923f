package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// agentStream writes what an agent sends on a capture channel: a pcapng
// header declaring ifaces, then packets.
type agentStream struct {
	t   testing.TB
	buf bytes.Buffer
	w   *pcapgo.NgWriter
}

func newAgentStream(t testing.TB, ifaces ...agentproto.InterfaceStats) *agentStream {
	t.Helper()
	a := &agentStream{t: t}
	ng := func(i agentproto.InterfaceStats) pcapgo.NgInterface {
		return pcapgo.NgInterface{Name: i.Name, LinkType: layers.LinkType(i.LinkType), SnapLength: i.Snaplen, TimestampResolution: 9}
	}
	w, err := pcapgo.NewNgWriterInterface(&a.buf, ng(ifaces[0]), pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifaces[1:] {
		if _, err := w.AddInterface(ng(i)); err != nil {
			t.Fatal(err)
		}
	}
	a.w = w
	a.flush()
	return a
}

func (a *agentStream) packet(iface int, ts time.Time, data []byte) {
	a.t.Helper()
	ci := gopacket.CaptureInfo{Timestamp: ts, CaptureLength: len(data), Length: len(data), InterfaceIndex: iface}
	if err := a.w.WritePacket(ci, data); err != nil {
		a.t.Fatal(err)
	}
	a.flush()
}

func (a *agentStream) flush() {
	if err := a.w.Flush(); err != nil {
		a.t.Fatal(err)
	}
}

var twoIfaces = []agentproto.InterfaceStats{
	{Name: "eth0", LinkType: uint16(layers.LinkTypeEthernet), Snaplen: 65535},
	{Name: "lo", LinkType: uint16(layers.LinkTypeEthernet), Snaplen: 128},
}

// readAll runs s.readLoop over r, giving every batch straight back, and
// returns the packets' payloads, the number of batches and the reader's
// error.
func readAll(t *testing.T, s *source, r io.Reader) ([]string, int, error) {
	t.Helper()
	out := make(chan *batch)
	abort := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.readLoop(r, out, abort) }()
	var got []string
	batches := 0
	timeout := time.After(10 * time.Second)
	for {
		select {
		case b := <-out:
			batches++
			for _, p := range b.pkts {
				got = append(got, string(epbData(b.buf[p.off:p.off+p.n])))
			}
			s.release(b)
		case err := <-done:
			return got, batches, err
		case <-timeout:
			close(abort)
			t.Fatal("reader did not end within 10s")
		}
	}
}

func TestSourceReadsAgentStream(t *testing.T) {
	a := newAgentStream(t, twoIfaces...)
	t0 := time.Unix(1700000000, 0)
	a.packet(0, t0, []byte("one"))
	a.packet(1, t0, []byte("two"))
	a.packet(0, t0, bytes.Repeat([]byte("x"), 60000))
	a.packet(0, t0, bytes.Repeat([]byte("y"), 60000))
	a.packet(0, t0, bytes.Repeat([]byte("z"), 60000)) // goes into a second batch
	a.packet(0, t0, []byte("four"))
	s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 3)
	got, batches, err := readAll(t, s, &a.buf)
	if !errors.Is(err, io.EOF) {
		t.Errorf("reader error = %v, want io.EOF", err)
	}
	if len(got) != 6 || got[0] != "one" || got[1] != "two" || got[4][0] != 'z' || got[5] != "four" {
		t.Errorf("packets = %.20q", got)
	}
	// 180 kB read into batches of 32 to 128 KiB, handed over before each read.
	if batches < 2 || batches > 6 {
		t.Errorf("%d batches handed over, want 2..6", batches)
	}
	if s.received[0] != 5 || s.received[1] != 1 || s.bytes[1] != 3 {
		t.Errorf("received = %v, bytes = %v", s.received, s.bytes)
	}
}

func TestSourceRefusesBadPackets(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	cases := []struct {
		name    string
		stream  func() []byte
		ifaces  []agentproto.InterfaceStats
		wantErr string
	}{
		{"packet over the announced snaplen", func() []byte {
			a := newAgentStream(t, twoIfaces...)
			a.packet(1, t0, make([]byte, 129))
			return a.buf.Bytes()
		}, twoIfaces, "agent sent a packet of 129 bytes on lo, over its snaplen 128"},
		{"packet over the protocol's snaplen", func() []byte {
			a := newAgentStream(t, agentproto.InterfaceStats{Name: "eth0", LinkType: 1, Snaplen: 0})
			a.packet(0, t0, make([]byte, agentproto.MaxSnaplen+1))
			return a.buf.Bytes()
		}, []agentproto.InterfaceStats{{Name: "eth0", LinkType: 1}}, "agent sent a packet of 262145 bytes on eth0, over its snaplen 262144"},
		{"captured more than the packet's length", func() []byte {
			a := newAgentStream(t, twoIfaces...)
			at := a.buf.Len()
			a.packet(0, t0, make([]byte, 60))
			// Enhanced Packet Block: type, length, interface, ts high, ts
			// low, captured length, original length.
			binary.LittleEndian.PutUint32(a.buf.Bytes()[at+24:], 59)
			return a.buf.Bytes()
		}, twoIfaces, "agent sent a packet on eth0 with 60 bytes captured of a 59 byte packet"},
		{"interface not announced", func() []byte {
			a := newAgentStream(t, twoIfaces...)
			a.packet(1, t0, []byte("x"))
			return a.buf.Bytes()
		}, twoIfaces[:1], "agent sent a packet of interface 1, it announced 1"},
		{"not pcapng", func() []byte { return []byte("SSH-2.0-OpenSSH\r\n") }, twoIfaces, "read pcapng: malformed pcapng: stream does not start"},
		{"truncated packet", func() []byte {
			a := newAgentStream(t, twoIfaces...)
			a.packet(0, t0, make([]byte, 100))
			return a.buf.Bytes()[:a.buf.Len()-30]
		}, twoIfaces, "read pcapng: unexpected EOF"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newSource(Target{Name: "lb/0"}, nil, nil, c.ifaces, 0)
			got, _, err := readAll(t, s, bytes.NewReader(c.stream()))
			if err == nil || len(err.Error()) < len(c.wantErr) || err.Error()[:len(c.wantErr)] != c.wantErr {
				t.Errorf("reader error = %v, want %q", err, c.wantErr)
			}
			if len(got) != 0 {
				t.Errorf("bad stream gave packets %.20q", got)
			}
		})
	}
}

func TestSourceHandsOverWhenQuiet(t *testing.T) {
	// A packet must not wait in a half-filled batch for more traffic.
	a := newAgentStream(t, twoIfaces...)
	a.packet(0, time.Unix(1700000000, 0), []byte("lonely"))
	pr, pw := io.Pipe()
	defer pw.Close()
	go func() {
		pw.Write(a.buf.Bytes()) // then nothing: the agent is quiet
	}()
	s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 0)
	out := make(chan *batch)
	abort := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.readLoop(pr, out, abort) }()
	select {
	case b := <-out:
		if len(b.pkts) != 1 || string(epbData(b.buf[b.pkts[0].off:])) != "lonely" {
			t.Errorf("batch = %d packets %q", len(b.pkts), b.buf)
		}
		s.release(b)
	case <-time.After(10 * time.Second):
		t.Error("the packet was not handed over while the stream was quiet")
	}
	close(abort)
	pw.Close()
	select {
	case err := <-done:
		if !errors.Is(err, errAborted) && !errors.Is(err, io.EOF) {
			t.Errorf("reader error after abort = %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("reader did not end after abort")
	}
}

func TestSourceAbortUnblocksReader(t *testing.T) {
	// The merger is gone: a reader holding a full batch must not block.
	a := newAgentStream(t, twoIfaces...)
	a.packet(0, time.Unix(1700000000, 0), []byte("x"))
	s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 0)
	out := make(chan *batch) // nobody receives
	abort := make(chan struct{})
	done := make(chan error, 1)
	go func() { done <- s.readLoop(&a.buf, out, abort) }()
	close(abort)
	select {
	case err := <-done:
		if !errors.Is(err, errAborted) {
			t.Errorf("reader error = %v, want errAborted", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reader blocked after abort")
	}
}

// maxFuzzStream bounds a fuzzed stream, and with it the memory a packet
// declared larger than its bytes can take.
const maxFuzzStream = 1 << 20

func FuzzSourceStream(f *testing.F) {
	t0 := time.Unix(1700000000, 0)
	a := newAgentStream(f, twoIfaces...)
	for i := range 20 {
		a.packet(i%2, t0.Add(time.Duration(i)*time.Millisecond), bytes.Repeat([]byte{byte(i)}, 10+i))
	}
	valid := bytes.Clone(a.buf.Bytes())
	f.Add(valid, uint8(0))
	f.Add(valid, uint8(50))
	f.Add(valid[:len(valid)-7], uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Add([]byte("\x0a\x0d\x0d\x0a"), uint8(0))
	big := newAgentStream(f, twoIfaces...)
	big.packet(0, t0, make([]byte, 70000))
	f.Add(big.buf.Bytes(), uint8(3))

	f.Fuzz(func(t *testing.T, stream []byte, windowMs uint8) { // odd: ordered
		if len(stream) > maxFuzzStream {
			return // bounded input: larger streams add nothing but time
		}
		var outBuf bytes.Buffer
		out, err := NewOutput(&outBuf, capturecmd.FormatPcapng, []OutputInterface{
			{Name: "f/0:eth0", LinkType: layers.LinkTypeEthernet, Snaplen: 65535},
			{Name: "f/0:lo", LinkType: layers.LinkTypeEthernet, Snaplen: 128},
		})
		if err != nil {
			t.Fatal(err)
		}
		s := newSource(Target{Name: "f/0"}, nil, nil, twoIfaces, 0)
		m := newMerger(out, windowMs%2 == 1, []*source{s}, nil)
		in := make(chan *batch, 1)
		abort := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- s.readLoop(bytes.NewReader(stream), in, abort) }()
		handle := func(b *batch) {
			if err := m.add(b); err != nil {
				t.Fatalf("merger refused a packet the reader accepted: %v", err)
			}
			if _, err := m.emit(time.Now(), false); err != nil {
				t.Fatalf("emit: %v", err)
			}
		}
		timeout := time.After(30 * time.Second)
	loop:
		for {
			select {
			case b := <-in:
				handle(b)
			case <-done:
				break loop
			case <-timeout:
				close(abort)
				t.Fatal("reader did not finish within 30s")
			}
		}
		for more := true; more; {
			select {
			case b := <-in:
				handle(b)
			default:
				more = false
			}
		}
		if _, err := m.emit(time.Now(), true); err != nil {
			t.Fatalf("final emit: %v", err)
		}
		if err := out.Flush(); err != nil {
			t.Fatal(err)
		}
		if m.held != 0 || m.runs.Len() != 0 {
			t.Errorf("merger still holds %d batches", m.held)
		}
		if free := len(s.free); free != s.owned && (s.cur == nil || free != s.owned-1) {
			t.Errorf("source has %d free batches and cur %v, want all %d back", free, s.cur != nil, s.owned)
		}

		// Every packet read is written, and the output reads back.
		var received, delivered uint64
		for i := range s.received {
			received += s.received[i]
			delivered += s.delivered[i]
		}
		if received != delivered {
			t.Errorf("received %d packets, delivered %d", received, delivered)
		}
		r, err := pcapgo.NewNgReader(&outBuf, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Fatalf("output does not read back: %v", err)
		}
		var n uint64
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("output packet %d does not read back: %v", n, err)
			}
			if len(data) > int(twoIfaces[ci.InterfaceIndex].Snaplen) || ci.Length < len(data) {
				t.Errorf("output packet %d: %d bytes of %d on interface %d", n, len(data), ci.Length, ci.InterfaceIndex)
			}
			n++
		}
		if n != delivered {
			t.Errorf("output holds %d packets, %d were delivered", n, delivered)
		}
	})
}

func TestSourceDeliversWhatPrecedesABadPacket(t *testing.T) {
	a := newAgentStream(t, twoIfaces...)
	t0 := time.Unix(1700000000, 0)
	a.packet(0, t0, []byte("good"))
	a.packet(1, t0, make([]byte, 129)) // over lo's snaplen
	a.packet(0, t0, []byte("after"))
	s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 0)
	got, _, err := readAll(t, s, &a.buf)
	if err == nil || err.Error() != "agent sent a packet of 129 bytes on lo, over its snaplen 128" {
		t.Errorf("reader error = %v", err)
	}
	if len(got) != 1 || got[0] != "good" {
		t.Errorf("packets = %.20q, want the one before the bad packet", got)
	}
	if s.received[0] != 1 || s.received[1] != 0 {
		t.Errorf("received = %v, want [1 0]", s.received)
	}
}

// trickle returns at most n bytes per Read: an agent whose stream comes
// in small pieces, a little at a time.
type trickle struct {
	r io.Reader
	n int
}

func (t trickle) Read(p []byte) (int, error) { return t.r.Read(p[:min(len(p), t.n)]) }

// A slow source (one of fifty in a capture) keeps small batch buffers; a
// busy one, whose reads fill what a batch offers, reads into larger ones.
func TestSourceBatchesGrowOnlyWhenBusy(t *testing.T) {
	stream := func() *agentStream {
		a := newAgentStream(t, twoIfaces...)
		t0 := time.Unix(1700000000, 0)
		for i := range 400 {
			a.packet(0, t0.Add(time.Duration(i)), bytes.Repeat([]byte{byte(i)}, 1400))
		}
		return a
	}
	caps := func(r io.Reader) (*source, map[int]int) {
		s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 0)
		out := make(chan *batch)
		abort := make(chan struct{})
		done := make(chan error, 1)
		go func() { done <- s.readLoop(r, out, abort) }()
		seen := map[int]int{}
		for {
			select {
			case b := <-out:
				seen[cap(b.buf)]++
				s.release(b)
			case err := <-done:
				if !errors.Is(err, io.EOF) {
					t.Fatalf("reader error = %v, want io.EOF", err)
				}
				return s, seen
			case <-time.After(10 * time.Second):
				close(abort)
				t.Fatal("reader did not end within 10s")
			}
		}
	}

	slow, seen := caps(trickle{&stream().buf, 2000})
	if slow.batchSize != firstBatchBytes {
		t.Errorf("slow source: batch size grew to %d, want %d", slow.batchSize, firstBatchBytes)
	}
	for c := range seen {
		if c != firstBatchBytes {
			t.Errorf("slow source: batches of %d bytes %v, want only %d", c, seen, firstBatchBytes)
		}
	}

	busy, seen := caps(&stream().buf)
	if busy.batchSize != batchBytes {
		t.Errorf("busy source: batch size %d, want %d", busy.batchSize, batchBytes)
	}
	if seen[batchBytes] == 0 {
		t.Errorf("busy source: no batch of %d bytes among %v", batchBytes, seen)
	}
}

// gatedReader hands over block bytes per read until open is closed, then
// fills the room of one read with what is left, and ends.
type gatedReader struct {
	data   []byte
	block  int
	open   chan struct{}
	filled bool
}

func (g *gatedReader) Read(p []byte) (int, error) {
	select {
	case <-g.open:
		if g.filled || len(g.data) == 0 {
			return 0, io.EOF
		}
		g.filled = true
		n := copy(p, g.data)
		g.data = g.data[n:]
		return n, nil
	default:
	}
	n := copy(p, g.data[:min(g.block, len(g.data))])
	g.data = g.data[n:]
	return n, nil
}

// waitBlockedIn waits (bounded) until a goroutine waits in a select
// inside fn.
func waitBlockedIn(t *testing.T, fn string) {
	t.Helper()
	buf := make([]byte, 1<<20)
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); runtime.Gosched() {
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[select") && strings.Contains(g, fn) {
				return
			}
		}
	}
	t.Fatalf("no goroutine waits in %s", fn)
}

// TestSourceBatchesDoNotGrowFromWaiting: a quiet source whose batches the
// merger holds (targets still opening, another source's watermark) finds
// its backlog piled up when it gets one back; that read fills the batch,
// but says nothing about the rate, so the batch size stays. Fifty sources
// growing their held batches to 128 KiB this way made most of pcap-api's
// heap with 50 agents.
func TestSourceBatchesDoNotGrowFromWaiting(t *testing.T) {
	a := newAgentStream(t, twoIfaces...)
	t0 := time.Unix(1700000000, 0)
	for i := range 200 {
		a.packet(0, t0.Add(time.Duration(i)), bytes.Repeat([]byte{byte(i)}, 1400))
	}
	r := &gatedReader{data: a.buf.Bytes(), block: 1000, open: make(chan struct{})}
	s := newSource(Target{Name: "lb/0"}, nil, nil, twoIfaces, 0)
	s.maxBatches = 2
	out := make(chan *batch)
	abort := make(chan struct{})
	defer close(abort)
	done := make(chan error, 1)
	go func() { done <- s.readLoop(r, out, abort) }()
	recv := func() *batch {
		select {
		case b := <-out:
			return b
		case err := <-done:
			t.Fatalf("reader ended: %v", err)
		case <-time.After(5 * time.Second):
			t.Fatal("no batch within 5s")
		}
		return nil
	}
	held := []*batch{recv(), recv()} // the merger holds both
	waitBlockedIn(t, "(*source).take")
	close(r.open) // what piled up meanwhile
	s.release(held[0])
	for {
		select {
		case b := <-out:
			s.release(b)
			continue
		case err := <-done:
			if !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("reader error = %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("reader did not end within 5s")
		}
		break
	}
	if !r.filled {
		t.Fatal("no read after the wait filled its batch")
	}
	if s.batchSize != firstBatchBytes {
		t.Errorf("batch size %d after a wait, want %d", s.batchSize, firstBatchBytes)
	}
}
