package bench

import (
	"encoding/binary"
	"fmt"
	"io"
	"os"
)

// counter counts the packets of a classic pcap or a pcapng stream fed to
// it in pieces of any size, keeping only an incomplete record between
// calls. It does not decode packets: every record in the file passed the
// capture filter already.
type counter struct {
	buf     []byte
	started bool
	ng      bool
	order   binary.ByteOrder
	packets uint64
	// outOfOrder counts packets whose timestamp is older than one before
	// them. Raw timestamps are compared: a pcapng stream's interfaces must
	// share one resolution (pcap-api declares nanoseconds for all).
	outOfOrder uint64
	newest     uint64
	// withinIface counts packets older than one before them on the same
	// pcapng interface: the source's own order, not the merge's.
	withinIface   uint64
	newestByIface map[uint32]uint64
}

func (c *counter) stamp(ts uint64) {
	if ts < c.newest {
		c.outOfOrder++
	} else {
		c.newest = ts
	}
}

func (c *counter) stampIface(id uint32, ts uint64) {
	if c.newestByIface == nil {
		c.newestByIface = map[uint32]uint64{}
	}
	if ts < c.newestByIface[id] {
		c.withinIface++
	} else {
		c.newestByIface[id] = ts
	}
}

// pcapng block types that carry a packet.
const (
	blockEPB = 0x00000006
	blockSPB = 0x00000003
	blockPB  = 0x00000002
	blockSHB = 0x0A0D0D0A
)

func (c *counter) feed(p []byte) error {
	c.buf = append(c.buf, p...)
	off := 0
	defer func() {
		n := copy(c.buf, c.buf[off:])
		c.buf = c.buf[:n]
	}()
	if !c.started {
		if len(c.buf) < 24 {
			return nil
		}
		switch m := binary.LittleEndian.Uint32(c.buf); m {
		case 0xa1b2c3d4, 0xa1b23c4d:
			c.order = binary.LittleEndian
		case 0xd4c3b2a1, 0x4d3cb2a1:
			c.order = binary.BigEndian
		case blockSHB:
			c.ng = true
		default:
			return fmt.Errorf("bench: not a pcap or pcapng stream (magic %08x)", m)
		}
		c.started = true
		if !c.ng {
			off = 24
		}
	}
	for {
		rest := c.buf[off:]
		if c.ng {
			if len(rest) < 12 {
				return nil
			}
			typ := binary.LittleEndian.Uint32(rest)
			if typ == blockSHB {
				// The section's byte order is in its byte-order magic.
				if binary.LittleEndian.Uint32(rest[8:]) == 0x1A2B3C4D {
					c.order = binary.LittleEndian
				} else {
					c.order = binary.BigEndian
				}
			} else if c.order == nil {
				return fmt.Errorf("bench: pcapng block before a section header")
			}
			typ = c.order.Uint32(rest)
			n := int(c.order.Uint32(rest[4:]))
			if n < 12 || n%4 != 0 {
				return fmt.Errorf("bench: bad pcapng block length %d", n)
			}
			if len(rest) < n {
				return nil
			}
			if typ == blockEPB || typ == blockSPB || typ == blockPB {
				c.packets++
			}
			if (typ == blockEPB || typ == blockPB) && n >= 28 {
				ts := uint64(c.order.Uint32(rest[12:]))<<32 | uint64(c.order.Uint32(rest[16:]))
				c.stamp(ts)
				if typ == blockEPB {
					c.stampIface(c.order.Uint32(rest[8:]), ts)
				}
			}
			off += n
			continue
		}
		if len(rest) < 16 {
			return nil
		}
		n := 16 + int(c.order.Uint32(rest[8:]))
		if len(rest) < n {
			return nil
		}
		c.packets++
		c.stamp(uint64(c.order.Uint32(rest))<<32 | uint64(c.order.Uint32(rest[4:])))
		off += n
	}
}

// fileCounter counts the packets of a capture file that is still being
// written, reading only what was appended since the last call.
type fileCounter struct {
	path string
	off  int64
	c    counter
}

// poll reads what was appended and returns the packets counted so far.
func (f *fileCounter) poll() (uint64, error) {
	fh, err := os.Open(f.path)
	if err != nil {
		return f.c.packets, err
	}
	defer fh.Close()
	if _, err := fh.Seek(f.off, io.SeekStart); err != nil {
		return f.c.packets, err
	}
	buf := make([]byte, 1<<20)
	for {
		n, err := fh.Read(buf)
		if n > 0 {
			f.off += int64(n)
			if ferr := f.c.feed(buf[:n]); ferr != nil {
				return f.c.packets, ferr
			}
		}
		if err == io.EOF {
			return f.c.packets, nil
		}
		if err != nil {
			return f.c.packets, err
		}
	}
}

// fileCounters count several files as one output.
type fileCounters []*fileCounter

func countersFor(paths []string) fileCounters {
	var fcs fileCounters
	for _, p := range paths {
		fcs = append(fcs, &fileCounter{path: p})
	}
	return fcs
}

// poll polls every file and returns the packets counted in all; a file
// not made yet counts nothing.
func (fcs fileCounters) poll() (uint64, error) {
	var n uint64
	var first error
	for _, f := range fcs {
		k, err := f.poll()
		n += k
		if err != nil && first == nil {
			first = err
		}
	}
	return n, first
}

// outOfOrder sums the files' out-of-order counts, and of them those out
// of order on their own interface.
func (fcs fileCounters) outOfOrder() (all, withinIface uint64) {
	for _, f := range fcs {
		all += f.c.outOfOrder
		withinIface += f.c.withinIface
	}
	return all, withinIface
}
