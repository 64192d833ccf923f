package api

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strconv"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Hand-made pcapng blocks, in either byte order, for what pcapgo's writer
// cannot produce (big endian, other timestamp resolutions, watermarks).

type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func appendBlock(b []byte, bo byteOrder, typ uint32, body []byte) []byte {
	n := uint32(12 + (len(body)+3)&^3)
	b = bo.AppendUint32(b, typ)
	b = bo.AppendUint32(b, n)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return bo.AppendUint32(b, n)
}

func appendSHB(b []byte, bo byteOrder) []byte {
	var body []byte
	body = bo.AppendUint32(body, ngByteOrderMagic)
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint64(body, ^uint64(0)) // section length unknown
	return appendBlock(b, bo, ngBlockSHB, body)
}

// appendIDB declares an Ethernet interface; tsresol < 0 leaves the option
// out (microseconds).
func appendIDB(b []byte, bo byteOrder, snaplen uint32, tsresol int) []byte {
	var body []byte
	body = bo.AppendUint16(body, 1)
	body = bo.AppendUint16(body, 0)
	body = bo.AppendUint32(body, snaplen)
	if tsresol >= 0 {
		body = bo.AppendUint16(body, ngOptIfTsresol)
		body = bo.AppendUint16(body, 1)
		body = append(body, byte(tsresol), 0, 0, 0)
		body = bo.AppendUint32(body, 0) // opt_endofopt
	}
	return appendBlock(b, bo, ngBlockIDB, body)
}

// appendEPB appends an Enhanced Packet Block; ts is in the interface's
// units.
func appendEPB(b []byte, bo byteOrder, iface uint32, ts uint64, data []byte) []byte {
	var body []byte
	body = bo.AppendUint32(body, iface)
	body = bo.AppendUint32(body, uint32(ts>>32))
	body = bo.AppendUint32(body, uint32(ts))
	body = bo.AppendUint32(body, uint32(len(data)))
	body = bo.AppendUint32(body, uint32(len(data)))
	body = append(body, data...)
	return appendBlock(b, bo, ngBlockEPB, body)
}

// epbData returns the packet inside an output-ready Enhanced Packet Block.
func epbData(epb []byte) []byte {
	return epb[ngEPBHeaderLen : ngEPBHeaderLen+int(binary.LittleEndian.Uint32(epb[20:]))]
}

// parseAll parses a whole stream and returns its blocks.
func parseAll(stream []byte) ([]ngBlock, error) {
	var p ngParser
	var blks []ngBlock
	for len(stream) > 0 {
		blk, n, err := p.parse(stream)
		if err != nil {
			return blks, err
		}
		if n > len(stream) {
			return blks, errors.New("truncated")
		}
		blks = append(blks, blk)
		stream = stream[n:]
	}
	return blks, nil
}

func TestParserPassesBlocksThrough(t *testing.T) {
	t0 := time.Unix(1700000000, 123456789)
	cases := []struct {
		name    string
		bo      byteOrder
		tsresol int
		units   uint64
		want    int64 // nanoseconds
	}{
		{"little endian, nanoseconds", binary.LittleEndian, 9, uint64(t0.UnixNano()), t0.UnixNano()},
		{"little endian, microseconds by default", binary.LittleEndian, -1, uint64(t0.UnixMicro()), t0.UnixMicro() * 1000},
		{"big endian, milliseconds", binary.BigEndian, 3, uint64(t0.UnixMilli()), t0.UnixMilli() * 1e6},
		{"little endian, 2^-10 s", binary.LittleEndian, 0x80 | 10, 1700000000 << 10, 1700000000 * 1e9},
		{"little endian, 10^-12 s", binary.LittleEndian, 12, 1e6*1e12 + 5000, 1e6*1e9 + 5},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := appendSHB(nil, c.bo)
			s = appendIDB(s, c.bo, 65535, c.tsresol)
			at := len(s)
			s = appendEPB(s, c.bo, 0, c.units, []byte("hello"))
			var p ngParser
			for off := 0; off < at; {
				_, n, err := p.parse(s[off:])
				if err != nil {
					t.Fatal(err)
				}
				off += n
			}
			blk, n, err := p.parse(s[at:])
			if err != nil || n != len(s)-at {
				t.Fatalf("parse = %d bytes, %v", n, err)
			}
			if blk.kind != ngPacket || blk.ts != c.want || blk.caplen != 5 || blk.length != 5 || blk.iface != 0 {
				t.Errorf("block = %+v, want a 5-byte packet at %d", blk, c.want)
			}
			// The block is now little endian with a nanosecond timestamp.
			epb := s[at : at+blk.n]
			le := binary.LittleEndian
			if le.Uint32(epb) != ngBlockEPB || int(le.Uint32(epb[4:])) != blk.n || int(le.Uint32(epb[blk.n-4:])) != blk.n {
				t.Errorf("block header not little endian: % x", epb[:8])
			}
			if ts := int64(uint64(le.Uint32(epb[12:]))<<32 | uint64(le.Uint32(epb[16:]))); ts != c.want {
				t.Errorf("timestamp in block = %d, want %d", ts, c.want)
			}
			if string(epbData(epb)) != "hello" {
				t.Errorf("data = %q", epbData(epb))
			}
		})
	}
}

func TestParserRefusesMalformedBlocks(t *testing.T) {
	le := binary.LittleEndian
	head := appendIDB(appendSHB(nil, le), le, 65535, 9)
	good := appendEPB(nil, le, 0, 1, []byte("abcdefgh"))
	patch := func(b []byte, at int, v uint32) []byte {
		b = bytes.Clone(b)
		le.PutUint32(b[at:], v)
		return b
	}
	cases := map[string][]byte{
		"no section header":          good,
		"interface not declared":     append(bytes.Clone(head), patch(good, 8, 1)...),
		"caplen beyond the block":    append(bytes.Clone(head), patch(good, 20, 9)...),
		"length not a multiple of 4": append(bytes.Clone(head), patch(good, 4, 42)...),
		"trailing length differs":    append(bytes.Clone(head), patch(good, 36, 44)...),
		"block too large":            append(bytes.Clone(head), patch(good, 4, maxBlockLen+4)...),
		"simple packet block":        appendBlock(bytes.Clone(head), le, ngBlockSPB, []byte{4, 0, 0, 0, 1, 2, 3, 4}),
		"option overruns the block":  appendBlock(bytes.Clone(head), le, ngBlockEPB, append(good[8:36:36], 1, 0, 200, 0)),
		"bad tsresol":                appendIDB(appendSHB(nil, le), le, 65535, 19),
		"bad watermark":              appendBlock(bytes.Clone(head), le, agentproto.WatermarkBlockType, le.AppendUint32(le.AppendUint32(nil, agentproto.WatermarkPEN), 1)),
	}
	for name, stream := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := parseAll(stream); !errors.Is(err, errNgFormat) {
				t.Errorf("parse error = %v, want errNgFormat", err)
			}
		})
	}
}

func TestParserReadsWatermarksAndSkipsUnknownBlocks(t *testing.T) {
	le := binary.LittleEndian
	s := appendIDB(appendSHB(nil, le), le, 65535, 9)
	s = appendBlock(s, le, 0x00000BAD, le.AppendUint32(nil, 12345)) // someone else's custom block
	s = appendBlock(s, le, 0x00000004, make([]byte, 8))             // name resolution
	s = agentproto.AppendWatermark(s, 1700000000123456789)
	blks, err := parseAll(s)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []ngKind{}
	for _, b := range blks {
		kinds = append(kinds, b.kind)
	}
	if len(blks) != 5 || blks[4].kind != ngWatermark || blks[4].ts != 1700000000123456789 {
		t.Errorf("blocks = %v (%+v)", kinds, blks[len(blks)-1])
	}
}

// BenchmarkParseEPB is the API's work per packet on the way in: parse,
// check and ready one 1400-byte Enhanced Packet Block in place.
func BenchmarkParseEPB(b *testing.B) {
	for _, size := range []int{100, 1400} {
		b.Run(strconv.Itoa(size), func(b *testing.B) {
			le := binary.LittleEndian
			var p ngParser
			head := appendIDB(appendSHB(nil, le), le, 65535, 9)
			if _, err := parseAll(head); err != nil {
				b.Fatal(err)
			}
			p.bo, p.little, p.ifaces = le, true, []ngIface{{linkType: 1, snaplen: 65535, mul: 1, div: 1}}
			epb := appendEPB(nil, le, 0, uint64(time.Now().UnixNano()), make([]byte, size))
			b.SetBytes(int64(len(epb)))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := p.parse(epb); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// FuzzParser feeds arbitrary streams to the block parser: it must never
// panic or read out of bounds, and every packet it accepts must be an
// output-ready block that lies within what it was given.
func FuzzParser(f *testing.F) {
	le := binary.LittleEndian
	s := appendIDB(appendSHB(nil, le), le, 65535, 9)
	s = appendEPB(s, le, 0, 1, []byte("abc"))
	s = agentproto.AppendWatermark(s, 5)
	f.Add(s)
	be := appendIDB(appendSHB(nil, binary.BigEndian), binary.BigEndian, 128, 6)
	f.Add(appendEPB(be, binary.BigEndian, 0, 1, []byte("abcdefgh")))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, stream []byte) {
		var p ngParser
		for len(stream) > 0 {
			blk, n, err := p.parse(stream)
			if err != nil || n > len(stream) {
				return
			}
			if n < ngMinBlockLen {
				t.Fatalf("block of %d bytes accepted", n)
			}
			if blk.kind == ngPacket {
				epb := stream[:blk.n]
				if blk.n > n || int(le.Uint32(epb[4:])) != blk.n || int(le.Uint32(epb[blk.n-4:])) != blk.n {
					t.Fatalf("packet block of %d bytes (of %d) not output-ready", blk.n, n)
				}
				if ngEPBHeaderLen+blk.caplen+4 > blk.n || blk.iface >= len(p.ifaces) {
					t.Fatalf("packet %+v overruns its block", blk)
				}
			}
			stream = stream[n:]
		}
	})
}
