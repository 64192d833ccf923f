package tunnel

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"testing"
)

// recorder keeps every write it is given.
type recorder struct {
	writes [][]byte
	fail   error // returned from the write numbered failAt on
	failAt int
	short  bool // accept one byte less than given
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.fail != nil && len(r.writes) >= r.failAt {
		return 0, r.fail
	}
	r.writes = append(r.writes, bytes.Clone(p))
	if r.short {
		return len(p) - 1, nil
	}
	return len(p), nil
}

func TestPackerPassesOnFullPackets(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 50 {
		var in bytes.Buffer
		rec := &recorder{}
		p := NewPacker(rec)
		total := rng.IntN(5 * MaxPayload)
		for in.Len() < total {
			// Packets and batches of every size, also larger than a chunk.
			b := make([]byte, 1+rng.IntN(3*MaxPayload/2))
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			n, err := p.Write(b)
			if err != nil || n != len(b) {
				t.Fatalf("round %d: Write = %d, %v; want %d, nil", round, n, err, len(b))
			}
			in.Write(b)
			if p.Buffered() >= MaxPayload {
				t.Fatalf("round %d: %d bytes buffered, want less than %d", round, p.Buffered(), MaxPayload)
			}
		}
		before := len(rec.writes)
		for i, w := range rec.writes {
			if len(w) == 0 || len(w)%MaxPayload != 0 {
				t.Fatalf("round %d: write %d of %d bytes before Flush, want whole %d byte chunks", round, i, len(w), MaxPayload)
			}
		}
		rest := p.Buffered()
		if err := p.Flush(); err != nil {
			t.Fatal(err)
		}
		if rest > 0 && (len(rec.writes) != before+1 || len(rec.writes[before]) != rest) {
			t.Fatalf("round %d: Flush wrote %d writes, want one of %d bytes", round, len(rec.writes)-before, rest)
		}
		if err := p.Flush(); err != nil || len(rec.writes) != before+min(rest, 1) {
			t.Fatalf("round %d: a second Flush wrote again (%v)", round, err)
		}
		if got := bytes.Join(rec.writes, nil); !bytes.Equal(got, in.Bytes()) {
			t.Fatalf("round %d: %d bytes came out of %d written, or in another order", round, len(got), in.Len())
		}
	}
}

// A large write with nothing buffered goes on without a copy: the
// writer sees the caller's own bytes.
func TestPackerPassesLargeWritesWithoutACopy(t *testing.T) {
	var got []byte
	p := NewPacker(writerFunc(func(b []byte) (int, error) {
		if got == nil {
			got = b
		}
		return len(b), nil
	}))
	b := make([]byte, 2*MaxPayload+100)
	if _, err := p.Write(b); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2*MaxPayload || &got[0] != &b[0] {
		t.Fatalf("first write: %d bytes, copied: %v; want the caller's first %d bytes", len(got), len(got) > 0 && &got[0] != &b[0], 2*MaxPayload)
	}
	if p.Buffered() != 100 {
		t.Fatalf("%d bytes buffered, want 100", p.Buffered())
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestPackerKeepsTheFirstError(t *testing.T) {
	boom := errors.New("boom")
	rec := &recorder{fail: boom, failAt: 1}
	p := NewPacker(rec)
	if _, err := p.Write(make([]byte, MaxPayload)); err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	if n, err := p.Write(make([]byte, 2*MaxPayload)); n != 0 || !errors.Is(err, boom) {
		t.Fatalf("second chunk: %d, %v; want 0 written, %v", n, err, boom)
	}
	if _, err := p.Write([]byte("more")); !errors.Is(err, boom) {
		t.Fatalf("after the failure: %v, want %v", err, boom)
	}
	if err := p.Flush(); !errors.Is(err, boom) {
		t.Fatalf("Flush after the failure: %v, want %v", err, boom)
	}
	if len(rec.writes) != 1 {
		t.Fatalf("%d writes reached the writer, want 1", len(rec.writes))
	}

	short := NewPacker(&recorder{short: true})
	short.Write([]byte("abc"))
	if err := short.Flush(); !errors.Is(err, io.ErrShortWrite) {
		t.Fatalf("short write: %v, want io.ErrShortWrite", err)
	}
}
