package api

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// The agents' pcapng stream is parsed here, in place, by hand: pcapgo's
// NgReader decodes every Enhanced Packet Block into a CaptureInfo and a
// time.Time and hides the block's bytes, which the API would then encode
// again. Here a packet block is checked, its timestamp read and its
// interface id rewritten where it lies in the batch buffer it was read
// into, and it goes to the output as it is: one copy from the channel into
// the batch, one from the batch into the output's buffer. pcapgo still
// writes the output's headers and classic pcap (see output.go).

// pcapng block types and constants the parser knows.
const (
	ngBlockSHB       = 0x0A0D0D0A
	ngBlockIDB       = 0x00000001
	ngBlockPB        = 0x00000002 // obsolete Packet Block
	ngBlockSPB       = 0x00000003
	ngBlockEPB       = 0x00000006
	ngByteOrderMagic = 0x1A2B3C4D
	ngOptEnd         = 0
	ngOptIfTsresol   = 9
	ngEPBHeaderLen   = 28 // type, length, interface, ts high, ts low, captured, original
	ngMinBlockLen    = 12 // type, length, trailing length
)

// maxBlockLen bounds one block of an agent's stream: the largest packet
// the protocol allows plus room for options.
const maxBlockLen = ngEPBHeaderLen + agentproto.MaxSnaplen + 4 + 64<<10

// Block kinds parse reports.
type ngKind int

const (
	ngOther     ngKind = iota // header, interface or unknown block: not written
	ngPacket                  // an Enhanced Packet Block, ready to write
	ngWatermark               // the agent's watermark
)

// ngBlock is one parsed block.
type ngBlock struct {
	kind ngKind
	// For ngPacket: the agent's interface id, timestamp in nanoseconds
	// since the epoch, captured and original length, and how many bytes
	// of the block go to the output (less than its size when a big-endian
	// block's options were dropped).
	iface          int
	ts             int64
	caplen, length int
	n              int
}

// ngIface is what the parser keeps of an Interface Description Block.
type ngIface struct {
	linkType uint16
	snaplen  uint32
	// Timestamp units to nanoseconds: ns = units*mul >> shift / div.
	mul, div uint64
	shift    uint
}

func (i ngIface) isNanos() bool { return i.mul == 1 && i.div == 1 && i.shift == 0 }

func (i ngIface) nanos(units uint64) (int64, bool) {
	if i.isNanos() {
		return int64(units), units <= math.MaxInt64
	}
	hi, lo := bits.Mul64(units, i.mul)
	if i.shift > 0 {
		lo = lo>>i.shift | hi<<(64-i.shift)
		hi >>= i.shift
	}
	if hi != 0 {
		return 0, false
	}
	lo /= i.div
	if lo > math.MaxInt64 {
		return 0, false
	}
	return int64(lo), true
}

// errNgFormat wraps every reason an agent's stream cannot be parsed.
var errNgFormat = errors.New("malformed pcapng")

// ngParser parses an agent's pcapng stream one block at a time. Not safe
// for concurrent use.
type ngParser struct {
	bo     binary.ByteOrder // of the current section; nil before the first
	little bool             // bo is little endian: blocks pass unchanged
	ifaces []ngIface
}

// parse looks at the block at the start of b. When b holds less than the
// whole block, it returns need > len(b): the bytes the block takes (or
// the bytes needed to learn that). Otherwise it returns the block and
// need, its size. A packet block is made ready for the output in place:
// little endian, nanosecond timestamp; its interface id is left for the
// caller to set.
func (p *ngParser) parse(b []byte) (blk ngBlock, need int, err error) {
	if len(b) < ngMinBlockLen {
		return blk, ngMinBlockLen, nil
	}
	if p.bo == nil && binary.LittleEndian.Uint32(b) != ngBlockSHB {
		return blk, 0, fmt.Errorf("%w: stream does not start with a section header", errNgFormat)
	}
	if binary.LittleEndian.Uint32(b) == ngBlockSHB {
		switch binary.LittleEndian.Uint32(b[8:]) {
		case ngByteOrderMagic:
			p.bo, p.little = binary.LittleEndian, true
		case 0x4D3C2B1A:
			p.bo, p.little = binary.BigEndian, false
		default:
			return blk, 0, fmt.Errorf("%w: bad byte-order magic in section header", errNgFormat)
		}
	}
	bo := p.bo
	typ, size := bo.Uint32(b), int(bo.Uint32(b[4:]))
	if size < ngMinBlockLen || size%4 != 0 || size > maxBlockLen {
		return blk, 0, fmt.Errorf("%w: block of type %#x declares %d bytes", errNgFormat, typ, size)
	}
	if len(b) < size {
		return blk, size, nil
	}
	b = b[:size]
	if int(bo.Uint32(b[size-4:])) != size {
		return blk, 0, fmt.Errorf("%w: block of type %#x: trailing length differs", errNgFormat, typ)
	}
	switch typ {
	case ngBlockSHB:
		if size < 28 || bo.Uint16(b[12:]) != 1 {
			return blk, 0, fmt.Errorf("%w: section header of %d bytes, version %d", errNgFormat, size, bo.Uint16(b[12:]))
		}
		p.ifaces = p.ifaces[:0]
	case ngBlockIDB:
		ifc, err := p.parseIDB(b)
		if err != nil {
			return blk, 0, err
		}
		p.ifaces = append(p.ifaces, ifc)
	case ngBlockEPB:
		blk, err = p.parseEPB(b)
		if err != nil {
			return blk, 0, err
		}
	case ngBlockSPB, ngBlockPB:
		return blk, 0, fmt.Errorf("%w: block type %#x has no interface or timestamp; agents send enhanced packet blocks", errNgFormat, typ)
	case agentproto.WatermarkBlockType:
		if ts, ok, err := agentproto.DecodeWatermark(b, bo); err != nil {
			return blk, 0, fmt.Errorf("%w: %w", errNgFormat, err)
		} else if ok {
			blk = ngBlock{kind: ngWatermark, ts: ts}
		}
	}
	return blk, size, nil
}

func (p *ngParser) parseIDB(b []byte) (ngIface, error) {
	bo := p.bo
	if len(b) < 20 {
		return ngIface{}, fmt.Errorf("%w: interface description of %d bytes", errNgFormat, len(b))
	}
	if len(p.ifaces) >= agentproto.MaxInterfaces {
		return ngIface{}, fmt.Errorf("%w: more than %d interfaces", errNgFormat, agentproto.MaxInterfaces)
	}
	ifc := ngIface{linkType: bo.Uint16(b[8:]), snaplen: bo.Uint32(b[12:]), mul: 1000, div: 1} // default: microseconds
	err := p.options(b[16:len(b)-4], func(code uint16, v []byte) error {
		if code != ngOptIfTsresol {
			return nil
		}
		if len(v) != 1 {
			return fmt.Errorf("%w: if_tsresol of %d bytes", errNgFormat, len(v))
		}
		r := v[0]
		switch {
		case r&0x80 != 0 && r&0x7f < 64:
			ifc.mul, ifc.div, ifc.shift = 1e9, 1, uint(r&0x7f)
		case r&0x80 == 0 && r <= 9:
			ifc.mul, ifc.div = pow10(9-r), 1
		case r&0x80 == 0 && r <= 18:
			ifc.mul, ifc.div = 1, pow10(r-9)
		default:
			return fmt.Errorf("%w: if_tsresol %#x", errNgFormat, r)
		}
		return nil
	})
	return ifc, err
}

func pow10(n uint8) uint64 {
	v := uint64(1)
	for range n {
		v *= 10
	}
	return v
}

func (p *ngParser) parseEPB(b []byte) (ngBlock, error) {
	bo := p.bo
	size := len(b)
	if size < ngEPBHeaderLen+4 {
		return ngBlock{}, fmt.Errorf("%w: enhanced packet block of %d bytes", errNgFormat, size)
	}
	id := bo.Uint32(b[8:])
	if int(id) >= len(p.ifaces) || id > math.MaxInt32 {
		return ngBlock{}, fmt.Errorf("%w: packet of interface %d, the section declares %d", errNgFormat, id, len(p.ifaces))
	}
	ifc := p.ifaces[id]
	caplen, length := bo.Uint32(b[20:]), bo.Uint32(b[24:])
	padded := (uint64(caplen) + 3) &^ 3
	if uint64(ngEPBHeaderLen)+padded+4 > uint64(size) {
		return ngBlock{}, fmt.Errorf("%w: packet of %d bytes in a block of %d", errNgFormat, caplen, size)
	}
	end := ngEPBHeaderLen + int(padded)
	if end < size-4 {
		if err := p.options(b[end:size-4], func(uint16, []byte) error { return nil }); err != nil {
			return ngBlock{}, err
		}
	}
	units := uint64(bo.Uint32(b[12:]))<<32 | uint64(bo.Uint32(b[16:]))
	ts, ok := ifc.nanos(units)
	if !ok {
		return ngBlock{}, fmt.Errorf("%w: packet timestamp out of range", errNgFormat)
	}
	blk := ngBlock{kind: ngPacket, iface: int(id), ts: ts, caplen: int(caplen), length: int(length), n: size}
	le := binary.LittleEndian
	if !p.little {
		// Options would need converting field by field: drop them.
		blk.n = end + 4
		le.PutUint32(b, ngBlockEPB)
		le.PutUint32(b[4:], uint32(blk.n))
		le.PutUint32(b[20:], caplen)
		le.PutUint32(b[24:], length)
		le.PutUint32(b[end:], uint32(blk.n))
	}
	if !ifc.isNanos() || !p.little {
		le.PutUint32(b[12:], uint32(uint64(ts)>>32))
		le.PutUint32(b[16:], uint32(ts))
	}
	return blk, nil
}

// options walks a block's options, calling f for each until opt_endofopt
// or the end; it refuses options that overrun the block.
func (p *ngParser) options(b []byte, f func(code uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return fmt.Errorf("%w: option header overruns its block", errNgFormat)
		}
		code, n := p.bo.Uint16(b), int(p.bo.Uint16(b[2:]))
		if code == ngOptEnd {
			return nil
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(b) {
			return fmt.Errorf("%w: option %d of %d bytes overruns its block", errNgFormat, code, n)
		}
		if err := f(code, b[4:4+n]); err != nil {
			return err
		}
		b = b[4+padded:]
	}
	return nil
}
