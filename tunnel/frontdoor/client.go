// Package frontdoor runs a capture through pcap-api's front door for the
// CLIs (cf pcap, pcap-bosh): it sends the capture command, writes the
// capture to a file or stdout, shows status and progress on stderr, and
// stops cleanly when its context ends (Ctrl-C).
package frontdoor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"

	"golang.org/x/term"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// ErrExists is returned when the output file exists and Force is unset.
var ErrExists = errors.New("output file exists (use --force to overwrite)")

// CheckOutput checks, before any network call, that output names where a
// capture can go: a file that does not exist yet (or force), or "-".
func CheckOutput(output string, force bool) error {
	if output == "" {
		return errors.New("no output given: -o FILE, or -o - to write the capture to stdout")
	}
	if output == "-" || force {
		return nil
	}
	if _, err := os.Lstat(output); err == nil {
		return fmt.Errorf("%s: %w", output, ErrExists)
	}
	return nil
}

// Options configure Run.
type Options struct {
	Addr   string
	Config tunnel.ClientConfig
	// Request is the capture to ask for; Run sends it as
	// [capturecmd.Request.Line], with progress when Terminal is set.
	Request capturecmd.Request
	// Output is a file path, or "-" for Stdout.
	Output string
	// Force replaces an existing regular file, once the capture started.
	Force bool
	// Rotate, when enabled, writes the capture into a sequence of pcapng
	// files named after Output (which must then be a file).
	Rotate Rotation
	// HostKeys, when set, records a host key trusted on first use once
	// pcap-api has accepted the login.
	HostKeys *HostKeys
	Stdout   io.Writer
	// Stderr receives status lines; with Terminal set, progress lines are
	// folded into one line redrawn in place.
	Stderr   io.Writer
	Terminal bool
}

// Run runs the capture. It returns the remote exit status (0 stopped or
// limit reached, 3 partial, 1 failed); err is set when the capture could
// not be run or its output not be written.
func Run(ctx context.Context, o Options) (int, error) {
	if o.Output == "" {
		return -1, errors.New("no output given: -o FILE, or -o - for stdout")
	}
	var out io.Writer = o.Stdout
	var file *outFile
	var rot *rotator
	switch {
	case o.Rotate.Enabled():
		if err := o.Rotate.CheckOutput(o.Output, o.Request.Format, o.Force); err != nil {
			return -1, err
		}
		r, err := newRotator(o.Output, o.Rotate, o.Force, nil)
		if err != nil {
			return -1, err
		}
		rot, out = r, r
	case o.Output != "-":
		f, err := openOutput(o.Output, o.Force)
		if err != nil {
			return -1, err
		}
		file, out = f, f
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// The first byte from pcap-api means it accepted the login: a host key
	// trusted on first use is recorded then, not before.
	var commitErr error
	var once sync.Once
	accepted := func() {
		once.Do(func() {
			if o.HostKeys != nil {
				commitErr = o.HostKeys.Commit()
			}
		})
	}
	sw := &stopOnError{w: out, stop: cancel, first: accepted}
	st := &statusWriter{w: o.Stderr, terminal: o.Terminal, first: accepted}
	req := o.Request
	req.Progress = req.Progress || o.Terminal
	status, err := Exec(ctx, ExecOptions{
		Addr: o.Addr, Config: o.Config,
		Command: req.Line(),
		Stdout:  sw, Stderr: st,
	})
	st.finish()
	if err == nil {
		accepted()
	}
	if commitErr != nil && o.Stderr != nil {
		fmt.Fprintf(o.Stderr, "pcap: warning: %v\n", commitErr)
	}
	if file != nil {
		if cerr := file.f.Close(); cerr != nil && sw.err == nil {
			sw.err = cerr
		}
		if file.created && sw.n == 0 {
			// Refused, or never connected: leave no empty file behind to
			// be refused as existing on the next try.
			os.Remove(o.Output)
		}
	}
	if rot != nil {
		if cerr := rot.Close(); cerr != nil && sw.err == nil {
			sw.err = cerr
		}
	}
	if sw.err != nil {
		var pe *os.PathError
		if errors.As(sw.err, &pe) {
			sw.err = pe.Err // the path is named below
		}
		if rot != nil {
			return -1, fmt.Errorf("write %s: %w (the files hold what was written before)", strings.Join(rot.Files(), ", "), sw.err)
		}
		if file == nil {
			return -1, fmt.Errorf("write stdout: %w", sw.err)
		}
		return -1, fmt.Errorf("write %s: %w (the file holds what was written before)", o.Output, sw.err)
	}
	return status, err
}

// stopOnError writes to w until a write fails; then it stops the capture
// and discards the rest, so the server can still finish and the session
// end.
type stopOnError struct {
	w     io.Writer
	stop  func()
	n     int64 // bytes written
	err   error
	first func() // called before the first write
}

func (s *stopOnError) Write(p []byte) (int, error) {
	if s.first != nil {
		s.first()
	}
	if s.err != nil {
		return len(p), nil
	}
	n, err := s.w.Write(p)
	s.n += int64(n)
	if err != nil {
		s.err = err
		s.stop()
	}
	return len(p), nil
}

// statusWriter passes status lines through; on a terminal it folds
// "progress" lines into one line redrawn in place.
type statusWriter struct {
	w        io.Writer
	terminal bool
	first    func() // called before the first write

	mu       sync.Mutex
	partial  []byte
	progress map[string]capturecmd.StatusLine
	drawn    bool
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.first != nil {
		s.first()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			break
		}
		s.line(string(s.partial[:i]))
		s.partial = s.partial[i+1:]
	}
	if len(s.partial) > 64<<10 {
		s.line(string(s.partial))
		s.partial = s.partial[:0]
	}
	return len(p), nil
}

func (s *statusWriter) line(l string) {
	src, event, rest := parseStatus(l)
	if event == "progress" {
		if !s.terminal {
			return
		}
		if s.progress == nil {
			s.progress = map[string]capturecmd.StatusLine{}
		}
		s.progress[src] = rest
		s.redraw()
		return
	}
	s.clear()
	fmt.Fprintln(s.w, l)
	if s.terminal && len(s.progress) > 0 && event != "summary" {
		s.redraw()
	}
}

func (s *statusWriter) redraw() {
	names := make([]string, 0, len(s.progress))
	for n := range s.progress {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	for i, n := range names {
		if i > 0 {
			b.WriteString(" | ")
		}
		fmt.Fprintf(&b, "%s %s", n, compact(s.progress[n]))
	}
	line := b.String()
	if len(line) > 200 {
		line = line[:197] + "..."
	}
	fmt.Fprintf(s.w, "\r\x1b[K%s", line)
	s.drawn = true
}

func (s *statusWriter) clear() {
	if s.drawn {
		fmt.Fprint(s.w, "\r\x1b[K")
		s.drawn = false
	}
}

func (s *statusWriter) finish() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.partial) > 0 {
		s.line(string(s.partial))
		s.partial = nil
	}
	s.clear()
}

// compact turns "packets=1 bytes=2 dropped=0" into "1 pkts 2 B 0 dropped".
func compact(l capturecmd.StatusLine) string {
	return fmt.Sprintf("%s pkts %s B %s dropped", l.Get("packets"), l.Get("bytes"), l.Get("dropped"))
}

// parseStatus reads a status line as [capturecmd.FormatLine] writes it;
// the summary line's event is "summary". Anything else has no event.
func parseStatus(l string) (src, event string, sl capturecmd.StatusLine) {
	sl, err := capturecmd.ParseLine(l)
	if err != nil {
		return "", "", sl
	}
	if sl.Source == "summary" {
		return sl.Source, "summary", sl
	}
	return sl.Source, sl.Event, sl
}

// IsTerminal reports whether w is a terminal (not merely a character
// device such as /dev/null), on every platform the CLIs ship for.
func IsTerminal(w any) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
