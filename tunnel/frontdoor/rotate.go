package frontdoor

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// Rotation splits the capture into a sequence of files, each a complete
// pcapng file, as tcpdump -C/-G/-W and dumpcap -b do. The zero value
// writes one file.
type Rotation struct {
	// Size starts a new file before a packet that would be written to a
	// file already this many bytes long (0: no size limit).
	Size int64
	// Every starts a new file before the first packet this long after the
	// current file was opened (0: no time limit).
	Every time.Duration
	// Files keeps only the newest Files files of this capture, removing
	// the oldest (0: keep all).
	Files int
}

// Enabled reports whether r asks for more than one file.
func (r Rotation) Enabled() bool { return r.Size > 0 || r.Every > 0 }

// ErrRotation is returned for rotation flags that cannot be honoured.
var ErrRotation = errors.New("rotation")

// CheckOutput checks, before any network call, that output and format
// suit r, and without rotation that output can be written as
// [CheckOutput] says.
func (r Rotation) CheckOutput(output, format string, force bool) error {
	if r.Size < 0 || r.Every < 0 || r.Files < 0 {
		return fmt.Errorf("%w: --rotate-size, --rotate-every and --rotate-files cannot be negative", ErrRotation)
	}
	if !r.Enabled() {
		if r.Files > 0 {
			return fmt.Errorf("%w: --rotate-files needs --rotate-size or --rotate-every", ErrRotation)
		}
		return CheckOutput(output, force)
	}
	if output == "" || output == "-" {
		return fmt.Errorf("%w: rotating needs -o FILE (the files are named FILE_00001_TIMESTAMP.pcapng, …)", ErrRotation)
	}
	if format != capturecmd.FormatPcapng {
		return fmt.Errorf("%w: rotating writes pcapng files only, not --format %s", ErrRotation, format)
	}
	return nil
}

// ParseSize reads a size such as 1000000, 100MB or 1GiB: a whole number
// of bytes with an optional unit, kB/MB/GB/TB in powers of 1000 (k, M, G
// and T alone too) and KiB/MiB/GiB/TiB in powers of 1024.
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := strings.IndexFunc(t, func(r rune) bool { return r < '0' || r > '9' })
	if i < 0 {
		i = len(t)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || i == 0 {
		return 0, fmt.Errorf("size %q: not a whole number of bytes with an optional unit (e.g. 100MB, 1GiB)", s)
	}
	units := map[string]int64{
		"": 1, "b": 1,
		"k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
	}
	u, ok := units[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("size %q: unknown unit (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)", s)
	}
	if n > (1<<63-1)/u {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * u, nil
}

// pcapng block types the rotator tells apart.
const (
	blockSHB = 0x0A0D0D0A
	blockIDB = 0x00000001
	blockPB  = 0x00000002 // obsolete packet block
	blockSPB = 0x00000003
	blockEPB = 0x00000006
	blockISB = 0x00000005

	// maxBlock bounds one block held in memory: far above the largest
	// packet block pcap-api writes (snaplen at most 262144).
	maxBlock = 16 << 20
	// maxHeader bounds the section header and interface descriptions
	// kept to start each new file.
	maxHeader = 16 << 20
)

// errNotPcapng is returned when the stream is not pcapng blocks.
var errNotPcapng = errors.New("capture stream is not pcapng")

// rotator writes a pcapng stream into a sequence of files. It cuts the
// stream at block boundaries only; each new file starts with the section
// header and every interface description (and other non-packet block but
// statistics) seen so far in the section, so every file opens on its
// own. Interface statistics, which pcap-api writes at the end, land in
// the last file only.
type rotator struct {
	prefix, ext string // the -o path split around its extension
	rot         Rotation
	force       bool
	now         func() time.Time

	seq     int
	cur     *outFile
	size    int64 // bytes in cur
	packets int   // packet blocks in cur
	opened  time.Time
	names   []string // this capture's files still on disk, oldest first

	order  binary.ByteOrder // of the current section
	header [][]byte         // SHB and the description blocks of the section
	hdrLen int
	pend   []byte // an incomplete block
}

// newRotator opens the first file, named after path.
func newRotator(path string, rot Rotation, force bool, now func() time.Time) (*rotator, error) {
	if now == nil {
		now = time.Now
	}
	ext := filepath.Ext(path)
	r := &rotator{prefix: strings.TrimSuffix(path, ext), ext: ext, rot: rot, force: force, now: now}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

// name is dumpcap's: prefix, five-digit sequence number, UTC time, extension.
func (r *rotator) name(seq int, t time.Time) string {
	return fmt.Sprintf("%s_%05d_%s%s", r.prefix, seq, t.UTC().Format("20060102T150405Z"), r.ext)
}

func (r *rotator) open() error {
	r.seq++
	r.opened = r.now()
	name := r.name(r.seq, r.opened)
	f, err := openOutput(name, r.force)
	if err != nil {
		return err
	}
	r.cur, r.size, r.packets = f, 0, 0
	r.names = append(r.names, name)
	return nil
}

// Files returns the names of this capture's files still on disk, oldest
// first.
func (r *rotator) Files() []string { return append([]string(nil), r.names...) }

// Write takes any part of the stream.
func (r *rotator) Write(p []byte) (int, error) {
	n := len(p)
	r.pend = append(r.pend, p...)
	for {
		l, err := r.blockLen()
		if err != nil {
			return 0, err
		}
		if l == 0 || len(r.pend) < l {
			break
		}
		if err := r.block(r.pend[:l]); err != nil {
			return 0, err
		}
		r.pend = r.pend[l:]
	}
	if len(r.pend) == 0 {
		r.pend = nil // let a large block's buffer go
	}
	return n, nil
}

// blockLen returns the length of the block at the start of pend, or 0
// when not enough of it has arrived to tell.
func (r *rotator) blockLen() (int, error) {
	if len(r.pend) < 8 {
		return 0, nil
	}
	if binary.LittleEndian.Uint32(r.pend) == blockSHB { // a palindrome
		if len(r.pend) < 12 {
			return 0, nil
		}
		switch {
		case binary.LittleEndian.Uint32(r.pend[8:]) == 0x1A2B3C4D:
			r.order = binary.LittleEndian
		case binary.BigEndian.Uint32(r.pend[8:]) == 0x1A2B3C4D:
			r.order = binary.BigEndian
		default:
			return 0, fmt.Errorf("%w: section header without byte-order magic", errNotPcapng)
		}
	} else if r.order == nil {
		return 0, fmt.Errorf("%w: it does not start with a section header", errNotPcapng)
	}
	l := r.order.Uint32(r.pend[4:])
	if l < 12 || l%4 != 0 || l > maxBlock {
		return 0, fmt.Errorf("%w: block length %d", errNotPcapng, l)
	}
	return int(l), nil
}

// block writes one whole block, starting a new file first when one is due.
func (r *rotator) block(b []byte) error {
	switch typ := r.order.Uint32(b); typ {
	case blockEPB, blockSPB, blockPB:
		if r.due() {
			if err := r.rotate(); err != nil {
				return err
			}
		}
		r.packets++
	case blockISB:
	case blockSHB:
		r.header, r.hdrLen = nil, 0 // a new section: new interfaces
		fallthrough
	default:
		// Interface descriptions, name resolution, decryption secrets:
		// later files need them too.
		if r.hdrLen += len(b); r.hdrLen > maxHeader {
			return fmt.Errorf("%w: more than %d bytes of section header and interface descriptions", errNotPcapng, maxHeader)
		}
		r.header = append(r.header, append([]byte(nil), b...))
	}
	return r.write(b)
}

// due reports whether the next packet starts a new file. A file always
// gets at least one packet, so rotation makes progress whatever the size.
func (r *rotator) due() bool {
	if r.packets == 0 {
		return false
	}
	return (r.rot.Size > 0 && r.size >= r.rot.Size) ||
		(r.rot.Every > 0 && r.now().Sub(r.opened) >= r.rot.Every)
}

func (r *rotator) write(b []byte) error {
	n, err := r.cur.Write(b)
	r.size += int64(n)
	return err
}

// rotate closes the current file, opens the next one with the section's
// header blocks, and removes the oldest files beyond Files.
func (r *rotator) rotate() error {
	if err := r.cur.f.Close(); err != nil {
		return err
	}
	if err := r.open(); err != nil {
		return err
	}
	for _, b := range r.header {
		if err := r.write(b); err != nil {
			return err
		}
	}
	for r.rot.Files > 0 && len(r.names) > r.rot.Files {
		if err := os.Remove(r.names[0]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("remove old capture file: %w", err)
		}
		r.names = r.names[1:]
	}
	return nil
}

// Close writes what is left of an incomplete block (a stream cut short:
// nothing received is dropped) and closes the current file, which it
// removes when nothing was ever written.
func (r *rotator) Close() error {
	var err error
	if len(r.pend) > 0 {
		err = r.write(r.pend)
		r.pend = nil
	}
	if cerr := r.cur.f.Close(); err == nil {
		err = cerr
	}
	if r.seq == 1 && r.size == 0 && r.cur.created {
		os.Remove(r.names[0])
		r.names = nil
	}
	return err
}
