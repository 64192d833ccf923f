package tunnel

import (
	"bufio"
	"bytes"
	"io"
	"math/rand/v2"
	"net"
	"testing"
)

// chunkConn serves data in reads of at most max bytes (0: as much as
// asked), counting them; with eofWithData the last chunk comes with
// io.EOF.
type chunkConn struct {
	net.Conn
	data        []byte
	max         int
	reads       int
	eofWithData bool
}

func (c *chunkConn) Read(p []byte) (int, error) {
	c.reads++
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(c.data))
	if c.max > 0 {
		n = min(n, c.max)
	}
	copy(p, c.data[:n])
	c.data = c.data[n:]
	if len(c.data) == 0 && c.eofWithData {
		return n, io.EOF
	}
	return n, nil
}

// readPackets reads SSH-like packets as x/crypto/ssh's transport does:
// through a 4 KiB bufio.Reader, a 4-byte length, then the body.
func readPackets(t *testing.T, r io.Reader, body, count int) []byte {
	t.Helper()
	br := bufio.NewReader(r)
	var got []byte
	buf := make([]byte, 4+body)
	for i := range count {
		if _, err := io.ReadFull(br, buf[:4]); err != nil {
			t.Fatalf("packet %d: length: %v", i, err)
		}
		if _, err := io.ReadFull(br, buf[4:]); err != nil {
			t.Fatalf("packet %d: body: %v", i, err)
		}
		got = append(got, buf...)
	}
	return got
}

// TestReadAheadKeepsEveryByteInOrder: whatever sizes the network hands
// over and the reader asks for, the bytes come out as they went in.
func TestReadAheadKeepsEveryByteInOrder(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	data := make([]byte, 1<<20)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	for _, max := range []int{0, 1, 1000, 4096, 50000, 100000} {
		c := newReadAheadConn(&chunkConn{data: data, max: max})
		var got []byte
		buf := make([]byte, 200<<10)
		for len(got) < len(data) {
			n, err := c.Read(buf[:1+rng.IntN(len(buf))])
			got = append(got, buf[:n]...)
			if err != nil {
				t.Fatalf("max %d: read after %d bytes: %v", max, len(got), err)
			}
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("max %d: bytes differ", max)
		}
		if n, err := c.Read(buf); n != 0 || err != io.EOF {
			t.Errorf("max %d: read at the end = %d, %v; want 0, EOF", max, n, err)
		}
	}
}

// TestReadAheadTakesFewerReads: 32 KiB SSH packets waiting on the
// connection, read as the transport reads them, take about one read from
// the network per two packets instead of two per packet.
func TestReadAheadTakesFewerReads(t *testing.T) {
	const body, count = 32<<10 + 20, 64
	data := bytes.Repeat([]byte("0123456789abcdef"), (4+body)*count/16)
	plain := &chunkConn{data: data}
	if got := readPackets(t, plain, body, count); !bytes.Equal(got, data) {
		t.Fatal("bytes differ without read-ahead")
	}
	ahead := &chunkConn{data: data}
	if got := readPackets(t, newReadAheadConn(ahead), body, count); !bytes.Equal(got, data) {
		t.Fatal("bytes differ with read-ahead")
	}
	if plain.reads < 2*count || ahead.reads > count {
		t.Errorf("reads from the network: %d with read-ahead, %d without, for %d packets; want at most %d and at least %d",
			ahead.reads, plain.reads, count, count, 2*count)
	}
	t.Logf("%d packets: %d reads without read-ahead, %d with", count, plain.reads, ahead.reads)
}

// TestReadAheadQuietHoldsNoBuffer: a connection whose reads find no more
// than was asked for keeps no buffer, so idle pooled connections cost
// nothing; a busy one gives its buffer back once it is quiet and empty.
func TestReadAheadQuietHoldsNoBuffer(t *testing.T) {
	data := make([]byte, 1<<20)
	src := &chunkConn{data: data, max: 100}
	c := newReadAheadConn(src)
	buf := make([]byte, 4096)
	for range 10 {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
		if c.buf != nil {
			t.Fatal("a quiet connection took a buffer")
		}
	}
	src.max = 0 // a burst: reads fill what is asked, more waits
	c.Read(buf)
	c.Read(buf)
	if c.buf == nil {
		t.Fatal("a busy connection reads without its buffer")
	}
	src.max = 100 // quiet again
	for i := 0; c.buf != nil && i < 100; i++ {
		if _, err := c.Read(buf); err != nil {
			t.Fatal(err)
		}
	}
	if c.buf != nil {
		t.Error("the buffer was kept after the connection went quiet")
	}
}

// TestReadAheadReturnsDataBeforeAnError: data that came with an error is
// delivered first; the error follows.
func TestReadAheadReturnsDataBeforeAnError(t *testing.T) {
	src := &chunkConn{data: []byte("last bytes"), eofWithData: true}
	c := newReadAheadConn(src)
	c.busy = true // read into the buffer
	buf := make([]byte, 4)
	var got []byte
	for {
		n, err := c.Read(buf)
		got = append(got, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(got) != "last bytes" {
		t.Errorf("read %q before EOF, want %q", got, "last bytes")
	}
}
