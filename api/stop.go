package api

import (
	"io"
	"sync"
)

// How a capture on the front door is stopped (README "Stopping a
// capture"). Any of these stops it:
//
//   - a "signal" request on the session channel (RFC 4254; the CLIs send
//     INT on Ctrl-C, SIGTERM and SIGHUP);
//   - any byte on stdin (a line typed into an interactive ssh: Enter);
//   - the channel or the connection closing (ssh killed, sshdump ending);
//   - its own limits: --duration, --count, --max-bytes, or the API's
//     maximum duration.
//
// Stdin EOF alone does not stop it: a plain ssh with an empty stdin
// (`ssh -n`, `< /dev/null`, a background job in a script) gets the capture
// it asked for, as `ssh host tcpdump -w -` would.

// stopSignal is closed once by whichever stop comes first.
type stopSignal struct {
	once sync.Once
	c    chan struct{}
}

func newStopSignal() *stopSignal { return &stopSignal{c: make(chan struct{})} }

// Stop closes C; later calls do nothing.
func (s *stopSignal) Stop() { s.once.Do(func() { close(s.c) }) }

// C is closed when the capture should stop.
func (s *stopSignal) C() <-chan struct{} { return s.c }

// watchStdin reads r (a session's stdin) and stops s at the first byte of
// data; EOF is not a stop. It returns at the first byte or when r ends
// (EOF, the channel closing).
func watchStdin(r io.Reader, s *stopSignal) {
	var b [1]byte
	for {
		n, err := r.Read(b[:])
		if n > 0 {
			s.Stop()
			return
		}
		if err != nil {
			return
		}
	}
}
