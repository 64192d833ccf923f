package tunnel

import (
	"net"
	"sync"
)

// readAheadBytes is how much a busy client connection reads from the
// network at once.
const readAheadBytes = 64 << 10

// readAheadPool holds the buffers of connections that are not busy.
var readAheadPool = sync.Pool{New: func() any { b := make([]byte, readAheadBytes); return &b }}

// readAheadConn reads a busy connection from the network in chunks of up
// to readAheadBytes. x/crypto/ssh reads through a 4 KiB bufio.Reader, so
// each SSH packet of a busy channel (32 KiB) took two or three read system
// calls, the first 4 KiB and then the rest; here most of them are copies
// out of one read. A connection is busy while its reads find more waiting
// than was asked for; a quiet one reads straight into the caller's buffer
// and holds no buffer of its own, so idle pooled connections cost nothing.
// Writes, deadlines and the rest go to the Conn. Read is not safe for
// concurrent use (the SSH transport has one reader).
type readAheadConn struct {
	net.Conn
	buf  *[]byte // while busy, from readAheadPool
	r, w int     // unread bytes are (*buf)[r:w]
	busy bool    // the last read from the network had more than was asked
}

func newReadAheadConn(c net.Conn) *readAheadConn { return &readAheadConn{Conn: c} }

// Read returns buffered bytes if there are any. Otherwise it reads once
// from the network: into its own buffer while busy, straight into p when
// quiet or when p is at least as large. An error that comes with data is
// returned by the next read, which meets it again.
func (c *readAheadConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.r == c.w {
		if !c.busy || len(p) >= readAheadBytes {
			n, err := c.Conn.Read(p)
			c.busy = n == len(p)
			return n, err
		}
		if c.buf == nil {
			c.buf = readAheadPool.Get().(*[]byte)
		}
		n, err := c.Conn.Read(*c.buf)
		c.busy = n > len(p)
		c.r, c.w = 0, n
		if n == 0 {
			c.release()
			return 0, err
		}
	}
	n := copy(p, (*c.buf)[c.r:c.w])
	c.r += n
	if c.r == c.w && !c.busy {
		c.release()
	}
	return n, nil
}

// release gives the buffer back once it is empty.
func (c *readAheadConn) release() {
	if c.buf != nil {
		readAheadPool.Put(c.buf)
		c.buf, c.r, c.w = nil, 0, 0
	}
}
