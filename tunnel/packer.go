package tunnel

import "io"

// MaxPayload is the most channel data one SSH packet carries on pcap's
// hops: x/crypto/ssh opens channels with a 32 KiB maximum packet, and
// OpenSSH's client (and libssh's, under sshdump) open sessions with the
// same.
const MaxPayload = 32 << 10

// Packer buffers what is written to an SSH channel and passes it on in
// writes of whole multiples of MaxPayload bytes, each chunk one full SSH
// packet: one
// encryption, one padding and one system call per 32 KiB on both ends.
// (A buffered writer flushed after each batch wrote a full packet and a
// short one for the rest, doubling the packets of a busy stream.) Flush
// passes on what is left. Not safe for concurrent use.
type Packer struct {
	w   io.Writer
	buf []byte
	err error
}

// NewPacker returns a Packer writing to w, usually an ssh.Channel.
func NewPacker(w io.Writer) *Packer {
	return &Packer{w: w, buf: make([]byte, 0, MaxPayload)}
}

// Write buffers b, passing on every full MaxPayload bytes: whole chunks
// of a large b go on in one write without a copy (a multiple of
// MaxPayload, which the channel sends as full packets). After a failed
// write it returns that error and buffers nothing more.
func (p *Packer) Write(b []byte) (int, error) {
	n := 0
	for len(b) > 0 && p.err == nil {
		if len(p.buf) == 0 && len(b) >= MaxPayload {
			whole := len(b) - len(b)%MaxPayload
			var k int
			k, p.err = p.w.Write(b[:whole])
			if p.err == nil && k < whole {
				p.err = io.ErrShortWrite
			}
			b, n = b[whole:], n+k
			continue
		}
		k := copy(p.buf[len(p.buf):cap(p.buf)], b)
		p.buf = p.buf[:len(p.buf)+k]
		b, n = b[k:], n+k
		if len(p.buf) == cap(p.buf) {
			p.pass()
		}
	}
	return n, p.err
}

// Flush passes on what is buffered.
func (p *Packer) Flush() error {
	if p.err == nil && len(p.buf) > 0 {
		p.pass()
	}
	return p.err
}

// Buffered returns how many bytes wait for Flush (less than MaxPayload).
func (p *Packer) Buffered() int { return len(p.buf) }

func (p *Packer) pass() {
	var n int
	n, p.err = p.w.Write(p.buf)
	if p.err == nil && n < len(p.buf) {
		p.err = io.ErrShortWrite
	}
	p.buf = p.buf[:0]
}
