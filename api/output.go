package api

import (
	"encoding/binary"
	"fmt"
	"io"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// OutputInterface describes one (source, interface) of the merged output.
type OutputInterface struct {
	Name        string // "web/2:eth0"
	Description string
	Filter      string
	LinkType    layers.LinkType
	Snaplen     uint32
}

// InterfaceCounts are the final counters of one output interface, written
// as an Interface Statistics Block.
type InterfaceCounts struct {
	Start, End    time.Time
	Received      uint64 // libpcap ps_recv
	KernelDropped uint64
	IfDropped     uint64
	AgentDropped  uint64
	APIDropped    uint64
	Unaccounted   int64  // see agentproto.InterfaceStats
	Delivered     uint64 // packets written to this output
	OutOfOrder    uint64 // of them, written older than a packet before
}

// Output writes the merged capture as pcapng (or classic pcap) to a
// writer. Interfaces are declared up front, and more may join later with
// AddInterface. Not safe for concurrent use; call Flush to push buffered
// packets out.
type Output struct {
	format string
	bw     *tunnel.Packer
	ng     *pcapgo.NgWriter
	pc     *pcapgo.Writer
	ifaces []OutputInterface
}

// ErrMixedLinkTypes is returned by NewOutput for classic pcap output from
// interfaces with different link types.
type ErrMixedLinkTypes struct{ Interfaces []OutputInterface }

func (e *ErrMixedLinkTypes) Error() string {
	var parts []string
	for _, i := range e.Interfaces {
		parts = append(parts, fmt.Sprintf("%s is %s", i.Name, i.LinkType))
	}
	return "--format pcap needs one link type for all sources, but " + strings.Join(parts, ", ") + "; use pcapng"
}

// OutputHeader is what the pcapng section header and Name Resolution
// Block say besides the interfaces. Classic pcap has no place for it.
type OutputHeader struct {
	Comment     string // shb_comment, e.g. "pcap v1.2.3: capture --app web"
	Application string // shb_userappl; "pcap-api" when empty
	// Names map the sources' addresses to their names ("10.0.0.5" →
	// "web/0"), written as one Name Resolution Block.
	Names []AddressName
}

// AddressName is one record of the Name Resolution Block.
type AddressName struct {
	Addr netip.Addr
	Name string
}

// NewOutput writes the file header and declares ifaces.
func NewOutput(w io.Writer, format string, ifaces []OutputInterface) (*Output, error) {
	return NewOutputHeader(w, format, ifaces, OutputHeader{})
}

// NewOutputHeader is NewOutput with a section comment, application and
// address names (pcapng only).
func NewOutputHeader(w io.Writer, format string, ifaces []OutputInterface, hdr OutputHeader) (*Output, error) {
	if len(ifaces) == 0 {
		return nil, fmt.Errorf("api: output with no interfaces")
	}
	o := &Output{format: format, bw: tunnel.NewPacker(w), ifaces: ifaces}
	switch format {
	case capturecmd.FormatPcap:
		snap := uint32(0)
		for _, i := range ifaces {
			if i.LinkType != ifaces[0].LinkType {
				return nil, &ErrMixedLinkTypes{Interfaces: ifaces}
			}
			snap = max(snap, i.Snaplen)
		}
		o.pc = pcapgo.NewWriterNanos(o.bw)
		if err := o.pc.WriteFileHeader(snap, ifaces[0].LinkType); err != nil {
			return nil, fmt.Errorf("api: write pcap header: %w", err)
		}
	default:
		if hdr.Application == "" {
			hdr.Application = "pcap-api"
		}
		opts := pcapgo.NgWriterOptions{SectionInfo: pcapgo.NgSectionInfo{
			Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: hdr.Application, Comment: hdr.Comment,
		}}
		ng, err := pcapgo.NewNgWriterInterface(o.bw, ngInterface(ifaces[0]), opts)
		if err != nil {
			return nil, fmt.Errorf("api: write pcapng header: %w", err)
		}
		for _, i := range ifaces[1:] {
			if _, err := ng.AddInterface(ngInterface(i)); err != nil {
				return nil, fmt.Errorf("api: write pcapng interface: %w", err)
			}
		}
		o.ng = ng
		if err := o.WriteNames(hdr.Names); err != nil {
			return nil, err
		}
	}
	return o, o.Flush()
}

func ngInterface(i OutputInterface) pcapgo.NgInterface {
	return pcapgo.NgInterface{
		Name:                i.Name,
		Description:         i.Description,
		Filter:              i.Filter,
		LinkType:            i.LinkType,
		SnapLength:          i.Snaplen,
		TimestampResolution: 9,
	}
}

// AddInterface declares one more interface after packets were written
// (pcapng allows an Interface Description Block anywhere in its section)
// and returns its id. Classic pcap has one link type for the whole file:
// an interface of another link type is refused with *ErrMixedLinkTypes.
func (o *Output) AddInterface(i OutputInterface) (int, error) {
	id := len(o.ifaces)
	if o.ng == nil {
		if i.LinkType != o.ifaces[0].LinkType {
			return 0, &ErrMixedLinkTypes{Interfaces: append(slices.Clone(o.ifaces), i)}
		}
		o.ifaces = append(o.ifaces, i)
		return id, nil
	}
	// Packets are written around pcapgo's buffer: empty it first, so the
	// IDB comes after them, and push the IDB out before the next packet.
	if err := o.ng.Flush(); err != nil {
		return 0, fmt.Errorf("api: flush: %w", err)
	}
	got, err := o.ng.AddInterface(ngInterface(i))
	if err == nil {
		err = o.ng.Flush()
	}
	if err != nil {
		return 0, fmt.Errorf("api: write pcapng interface: %w", err)
	}
	if got != id {
		return 0, fmt.Errorf("api: pcapng interface %d declared as %d", id, got)
	}
	o.ifaces = append(o.ifaces, i)
	return id, nil
}

// WriteNames writes a Name Resolution Block mapping addresses to names
// (pcapng only; nothing when no name can be written). A section may hold
// several: a source that joins later adds its own.
func (o *Output) WriteNames(names []AddressName) error {
	nrb := encodeNRB(names)
	if o.ng == nil || nrb == nil {
		return nil
	}
	if err := o.ng.Flush(); err != nil {
		return fmt.Errorf("api: flush: %w", err)
	}
	if _, err := o.bw.Write(nrb); err != nil {
		return fmt.Errorf("api: write name resolution: %w", err)
	}
	return nil
}

// WritePacket encodes and writes one packet of output interface
// ci.InterfaceIndex. The capture path uses WriteBlock.
func (o *Output) WritePacket(ci gopacket.CaptureInfo, data []byte) error {
	var err error
	if o.ng != nil {
		if err = o.ng.WritePacket(ci, data); err == nil {
			err = o.ng.Flush() // WriteBlock writes around pcapgo's buffer
		}
	} else {
		err = o.pc.WritePacket(ci, data)
	}
	if err != nil {
		return fmt.Errorf("api: write packet: %w", err)
	}
	return nil
}

// WriteBlock writes one Enhanced Packet Block as the agent sent it,
// checked and made ready by the source's parser: little endian, interface
// id rewritten to the output's, nanosecond timestamp. pcapng output takes
// it as it is; classic pcap output takes its packet and timestamp.
func (o *Output) WriteBlock(epb []byte) error {
	var err error
	if o.ng != nil {
		_, err = o.bw.Write(epb)
	} else {
		le := binary.LittleEndian
		ts := int64(uint64(le.Uint32(epb[12:]))<<32 | uint64(le.Uint32(epb[16:])))
		caplen := int(le.Uint32(epb[20:]))
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, ts), CaptureLength: caplen,
			Length: int(le.Uint32(epb[24:])), InterfaceIndex: int(le.Uint32(epb[8:]))}
		err = o.pc.WritePacket(ci, epb[ngEPBHeaderLen:ngEPBHeaderLen+caplen])
	}
	if err != nil {
		return fmt.Errorf("api: write packet: %w", err)
	}
	return nil
}

// Buffered returns how many bytes wait for Flush.
func (o *Output) Buffered() int { return o.bw.Buffered() }

// Flush pushes everything buffered to the writer.
func (o *Output) Flush() error {
	if o.ng != nil {
		if err := o.ng.Flush(); err != nil {
			return fmt.Errorf("api: flush: %w", err)
		}
	}
	if err := o.bw.Flush(); err != nil {
		return fmt.Errorf("api: flush: %w", err)
	}
	return nil
}

// pcapng option codes of the Interface Statistics Block.
const (
	optComment        = 1
	optISBStartTime   = 2
	optISBEndTime     = 3
	optISBIfRecv      = 4
	optISBIfDrop      = 5
	optISBFilterAccpt = 6
	optISBOSDrop      = 7
	optISBUsrDeliv    = 8
	blockTypeISB      = 0x00000005
)

// WriteStats writes an Interface Statistics Block for interface id (pcapng
// only; classic pcap has no place for statistics and ignores the call).
// pcapgo's writer omits the osdrop, usrdeliv and comment options, so the
// block is encoded here, after flushing pcapgo's buffer.
func (o *Output) WriteStats(id int, c InterfaceCounts) error {
	if o.ng == nil {
		return nil
	}
	if err := o.ng.Flush(); err != nil {
		return fmt.Errorf("api: flush: %w", err)
	}
	if _, err := o.bw.Write(encodeISB(uint32(id), c)); err != nil {
		return fmt.Errorf("api: write statistics: %w", err)
	}
	return nil
}

// encodeISB encodes an Interface Statistics Block, little endian, with
// nanosecond timestamps (the interfaces declare if_tsresol 9).
func encodeISB(id uint32, c InterfaceCounts) []byte {
	le := binary.LittleEndian
	var opts []byte
	u64 := func(code uint16, v uint64) {
		opts = le.AppendUint16(opts, code)
		opts = le.AppendUint16(opts, 8)
		opts = le.AppendUint64(opts, v)
	}
	ts := func(code uint16, t time.Time) {
		n := uint64(t.UnixNano())
		opts = le.AppendUint16(opts, code)
		opts = le.AppendUint16(opts, 8)
		opts = le.AppendUint32(opts, uint32(n>>32))
		opts = le.AppendUint32(opts, uint32(n))
	}
	comment := fmt.Sprintf("pcap drops: kernel=%d interface=%d agent=%d api=%d; delivered=%d; unaccounted=%d; out_of_order=%d",
		c.KernelDropped, c.IfDropped, c.AgentDropped, c.APIDropped, c.Delivered, c.Unaccounted, c.OutOfOrder)
	opts = le.AppendUint16(opts, optComment)
	opts = le.AppendUint16(opts, uint16(len(comment)))
	opts = append(opts, comment...)
	for len(opts)%4 != 0 {
		opts = append(opts, 0)
	}
	if !c.Start.IsZero() {
		ts(optISBStartTime, c.Start)
	}
	if !c.End.IsZero() {
		ts(optISBEndTime, c.End)
	}
	u64(optISBIfRecv, c.Received)
	u64(optISBIfDrop, c.IfDropped+c.KernelDropped+c.AgentDropped+c.APIDropped)
	u64(optISBFilterAccpt, c.Received)
	u64(optISBOSDrop, c.KernelDropped)
	u64(optISBUsrDeliv, c.Delivered)
	opts = le.AppendUint32(opts, 0) // opt_endofopt

	length := uint32(12 + 8 + len(opts) + 4)
	now := c.End
	if now.IsZero() {
		now = time.Now()
	}
	n := uint64(now.UnixNano())
	b := make([]byte, 0, length)
	b = le.AppendUint32(b, blockTypeISB)
	b = le.AppendUint32(b, length)
	b = le.AppendUint32(b, id)
	b = le.AppendUint32(b, uint32(n>>32))
	b = le.AppendUint32(b, uint32(n))
	b = append(b, opts...)
	b = le.AppendUint32(b, length)
	return b
}

// pcapng Name Resolution Block: block and record types.
const (
	blockTypeNRB  = 0x00000004
	nrbRecordEnd  = 0
	nrbRecordIPv4 = 1
	nrbRecordIPv6 = 2
)

// encodeNRB encodes a Name Resolution Block (little endian, no options)
// mapping each address to its name; nil when there is none. pcapgo writes
// no NRB. Invalid addresses, names that cannot fit a record and addresses
// given two different names (which would mislabel one source) are left
// out.
func encodeNRB(names []AddressName) []byte {
	le := binary.LittleEndian
	named := map[netip.Addr]string{} // "" when ambiguous
	for _, n := range names {
		a := n.Addr.Unmap()
		if prev, ok := named[a]; !ok {
			named[a] = n.Name
		} else if prev != n.Name {
			named[a] = ""
		}
	}
	written := map[netip.Addr]bool{}
	var recs []byte
	for _, n := range names {
		addr := n.Addr.Unmap()
		if !addr.IsValid() || named[addr] == "" || written[addr] || strings.ContainsRune(n.Name, 0) {
			continue
		}
		written[addr] = true
		typ := uint16(nrbRecordIPv4)
		if addr.Is6() {
			typ = nrbRecordIPv6
		}
		raw := addr.AsSlice()
		val := len(raw) + len(n.Name) + 1 // address, then the name NUL-terminated
		if val > 0xffff {
			continue
		}
		recs = le.AppendUint16(recs, typ)
		recs = le.AppendUint16(recs, uint16(val))
		recs = append(recs, raw...)
		recs = append(recs, n.Name...)
		recs = append(recs, 0)
		for len(recs)%4 != 0 {
			recs = append(recs, 0)
		}
	}
	if recs == nil {
		return nil
	}
	recs = le.AppendUint32(recs, nrbRecordEnd) // nrb_record_end, length 0
	length := uint32(8 + len(recs) + 4)
	b := make([]byte, 0, length)
	b = le.AppendUint32(b, blockTypeNRB)
	b = le.AppendUint32(b, length)
	b = append(b, recs...)
	b = le.AppendUint32(b, length)
	return b
}
