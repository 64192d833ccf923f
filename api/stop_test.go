package api

import (
	"io"
	"strings"
	"testing"
)

func TestWatchStdin(t *testing.T) {
	cases := []struct {
		name  string
		stdin io.Reader
		stop  bool
	}{
		{"EOF at once (ssh -n, < /dev/null)", strings.NewReader(""), false},
		{"a line (Enter)", strings.NewReader("\n"), true},
		{"anything", strings.NewReader("stop\n"), true},
		{"a closed channel", errReader{}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newStopSignal()
			watchStdin(c.stdin, s)
			select {
			case <-s.C():
				if !c.stop {
					t.Error("stopped")
				}
			default:
				if c.stop {
					t.Error("not stopped")
				}
			}
		})
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, io.ErrClosedPipe }
