package frontdoor

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testreq"
	"code.cloudfoundry.org/pcap/internal/syncbuf"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor/frontdoortest"
)

// frontDoor is the fake front door the clients' tests share.
type frontDoor = frontdoortest.Server

// startFrontDoor starts fd for user "cf" with password "token", the login
// options gives.
func startFrontDoor(t *testing.T, fd *frontDoor) *frontDoor {
	t.Helper()
	fd.User, fd.Accept = "cf", func(pw string) bool { return pw == "token" }
	return frontdoortest.Start(t, fd)
}

func options(fd *frontDoor, output string, stdout, stderr io.Writer) Options {
	return Options{
		Addr: fd.Addr,
		Config: tunnel.ClientConfig{
			User: "cf", Auth: []ssh.AuthMethod{ssh.Password("token")},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{fd.HostKey}),
		},
		Request: capturecmd.Request{App: "a-guid", Process: "web", Interfaces: []string{"eth0"},
			Filter: "tcp port 8080", Snaplen: agentproto.DefaultSnaplen, Format: capturecmd.FormatPcapng},
		Output: output,
		Stdout: stdout,
		Stderr: stderr,
	}
}

// run runs Run bounded by 20 s.
func run(t *testing.T, o Options) (int, error) {
	t.Helper()
	type result struct {
		status int
		err    error
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		s, err := Run(ctx, o)
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.status, r.err
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("Run did not return within 20s")
		return 0, nil
	}
}

func TestRunWritesFile(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: []byte("0123456789"), Limit: 1000, Stderr: "pcap: summary: limit-reached sources=1\n"})
	out := filepath.Join(t.TempDir(), "out.pcapng")
	var stdout, stderr bytes.Buffer
	status, err := run(t, options(fd, out, &stdout, &stderr))
	if status != 0 || err != nil {
		t.Fatalf("Run = %d, %v", status, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 1000 || !bytes.HasPrefix(b, []byte("0123456789")) {
		t.Errorf("file has %d bytes, want 1000", len(b))
	}
	if stdout.Len() != 0 {
		t.Errorf("%d bytes went to stdout, want none", stdout.Len())
	}
	if stderr.String() != "pcap: summary: limit-reached sources=1\n" {
		t.Errorf("stderr = %q", stderr.String())
	}
	want := []string{"capture --app a-guid --filter 'tcp port 8080'"}
	if got := fd.Commands(); len(got) != 1 || got[0] != want[0] {
		t.Errorf("commands = %q, want %q", got, want)
	}
}

func TestRunRefusesExistingOutput(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: []byte("new"), Limit: 30})
	out := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(out, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := run(t, options(fd, out, io.Discard, io.Discard))
	if !errors.Is(err, ErrExists) {
		t.Fatalf("Run = %v, want ErrExists", err)
	}
	if want := out + ": output file exists (use --force to overwrite)"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Errorf("file now holds %q", b)
	}
	if n := len(fd.Commands()); n != 0 {
		t.Errorf("the API was asked %d times, want never", n)
	}

	// --force overwrites it.
	o := options(fd, out, io.Discard, io.Discard)
	o.Force = true
	if status, err := run(t, o); status != 0 || err != nil {
		t.Fatalf("Run with Force = %d, %v", status, err)
	}
	if b, _ := os.ReadFile(out); string(b) != strings.Repeat("new", 10) {
		t.Errorf("file now holds %q, want the capture", b)
	}
}

func TestRunToStdout(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: []byte("pcapng"), Limit: 600})
	dir := t.TempDir()
	t.Chdir(dir)
	var stdout bytes.Buffer
	o := options(fd, "-", &stdout, io.Discard)
	o.Terminal = true
	status, err := run(t, o)
	if status != 0 || err != nil {
		t.Fatalf("Run = %d, %v", status, err)
	}
	if stdout.String() != strings.Repeat("pcapng", 100) {
		t.Errorf("stdout has %d bytes, want 600", stdout.Len())
	}
	if _, err := os.Stat(filepath.Join(dir, "-")); err == nil {
		t.Error(`a file named "-" was created`)
	}
	// On a terminal, the API is asked for progress lines.
	if got := fd.Commands(); len(got) != 1 || got[0] != "capture --app a-guid --filter 'tcp port 8080' --progress" {
		t.Errorf("commands = %q", got)
	}
}

func TestRunNoOutput(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: []byte("x"), Limit: 1})
	_, err := run(t, options(fd, "", io.Discard, io.Discard))
	if err == nil || err.Error() != "no output given: -o FILE, or -o - for stdout" {
		t.Errorf("Run = %v", err)
	}
	if n := len(fd.Commands()); n != 0 {
		t.Errorf("the API was asked %d times, want never", n)
	}
}

// TestRunRefusedLeavesNoFile: a capture the API refuses (exit 1, nothing
// on stdout) or that never connects leaves no empty file behind that the
// next try would have to --force.
func TestRunRefusedLeavesNoFile(t *testing.T) {
	refusal := "pcap: error: not-allowed reason=\"you may not capture app myapp\"\n"
	fd := startFrontDoor(t, &frontDoor{Limit: -1, Stderr: refusal, Exit: 1})
	out := filepath.Join(t.TempDir(), "out.pcapng")
	var stderr bytes.Buffer
	status, err := run(t, options(fd, out, io.Discard, &stderr))
	if status != 1 || err != nil {
		t.Errorf("Run = %d, %v; want 1, nil", status, err)
	}
	if stderr.String() != refusal {
		t.Errorf("stderr = %q, want %q", stderr.String(), refusal)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output file after a refusal: %v, want none", err)
	}

	// Nobody listening.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := options(fd, out, io.Discard, io.Discard)
	o.Addr = l.Addr().String()
	l.Close()
	status, err = run(t, o)
	if status != -1 || err == nil || !strings.HasPrefix(err.Error(), "tunnel: dial "+o.Addr+": ") {
		t.Errorf("Run to a closed port = %d, %v", status, err)
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("output file after a failed connection: %v, want none", err)
	}

	// An existing file overwritten with --force is not removed.
	if err := os.WriteFile(out, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	o = options(fd, out, io.Discard, io.Discard)
	o.Force = true
	if status, err := run(t, o); status != 1 || err != nil {
		t.Errorf("Run = %d, %v", status, err)
	}
	if _, err := os.Stat(out); err != nil {
		t.Errorf("a forced, pre-existing output file was removed: %v", err)
	}
}

// fullWriter accepts limit bytes, then fails like a full disk.
type fullWriter struct {
	mu    sync.Mutex
	limit int
	n     int
	calls int
}

func (w *fullWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	if w.n+len(p) > w.limit {
		k := w.limit - w.n
		w.n = w.limit
		return k, syscall.ENOSPC
	}
	w.n += len(p)
	return len(p), nil
}

// TestRunWriteFailureStopsCapture: when the output cannot be written the
// capture is stopped (the stop reaches the server) and the error says
// what happened.
func TestRunWriteFailureStopsCapture(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: bytes.Repeat([]byte("p"), 512)}) // streams until stopped
	w := &fullWriter{limit: 4000}
	status, err := run(t, options(fd, "-", w, io.Discard))
	if status != -1 || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Run = %d, %v; want -1 and ENOSPC", status, err)
	}
	if err.Error() != "write stdout: no space left on device" {
		t.Errorf("error = %q", err)
	}
	select {
	case <-fd.Stopped():
	default:
		t.Error("the server never got the stop")
	}
	w.mu.Lock()
	if w.n != 4000 || w.calls > 100 {
		t.Errorf("writer got %d bytes in %d calls; want 4000, and nothing written after the failure", w.n, w.calls)
	}
	w.mu.Unlock()
	if fd.Sent() > 64<<20 {
		t.Errorf("server streamed %d bytes before stopping", fd.Sent())
	}

	// The same with a real full device.
	testreq.Tool(t, "/dev/full", "a Linux device that fails every write with ENOSPC")
	fd2 := startFrontDoor(t, &frontDoor{Chunk: bytes.Repeat([]byte("p"), 512)})
	o := options(fd2, "/dev/full", io.Discard, io.Discard)
	o.Force = true
	status, err = run(t, o)
	if status != -1 || !errors.Is(err, syscall.ENOSPC) ||
		err.Error() != "write /dev/full: no space left on device (the file holds what was written before)" {
		t.Errorf("Run to /dev/full = %d, %v", status, err)
	}
	select {
	case <-fd2.Stopped():
	default:
		t.Error("the server never got the stop")
	}
	if _, err := os.Stat("/dev/full"); err != nil {
		t.Fatalf("/dev/full is gone: %v", err)
	}
}

// TestRunStopsOnContextEnd: Ctrl-C (the context ending) sends the stop
// and Run returns the server's exit status.
func TestRunStopsOnContextEnd(t *testing.T) {
	fd := startFrontDoor(t, &frontDoor{Chunk: []byte("p"), Stderr: "pcap: web/0: started\n"})
	var out bytes.Buffer
	var stderr syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, options(fd, "-", &out, &stderr))
		done <- err
	}()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(stderr.String(), "started") {
		select {
		case <-deadline:
			t.Fatal("no status line within 10s")
		case <-time.After(10 * time.Millisecond):
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return within 15s of the context ending")
	}
	select {
	case <-fd.Stopped():
	default:
		t.Error("the server never got the stop")
	}
}

type syncBuffer = syncbuf.Buffer

func TestStatusWriter(t *testing.T) {
	const (
		started  = "pcap: web/0: started interfaces=eth0 agent=10.0.16.10:9494\n"
		started1 = "pcap: web/1: started interfaces=eth0 agent=10.0.16.11:9494\n"
		prog0    = "pcap: web/0: progress packets=10 bytes=1500 dropped=0\n"
		prog1    = "pcap: web/1: progress packets=3 bytes=200 dropped=2\n"
		prog0b   = "pcap: web/0: progress packets=12 bytes=1800 dropped=1\n"
		skipped  = "pcap: web/3: skipped reason=\"instance is CRASHED\"\n"
		summary  = "pcap: summary: stopped sources=2 packets=15\n"
		clear    = "\r\x1b[K"
	)
	cases := []struct {
		name     string
		terminal bool
		writes   []string
		want     string
	}{
		{"not a terminal: lines pass, progress is dropped", false,
			[]string{started, prog0, skipped, prog1, summary},
			started + skipped + summary},
		{"lines split across writes", false,
			[]string{"pcap: web/0: sta", "rted interfaces=eth0 agent=10.0.16.10:9494\npcap: web/3: skipped", " reason=\"instance is CRASHED\"\n"},
			started + skipped},
		{"not pcap's", false, []string{"Warning: Permanently added\n"}, "Warning: Permanently added\n"},
		{"last line without newline", false, []string{"pcap: summary: stopped"}, "pcap: summary: stopped\n"},
		{"terminal: progress folded into one redrawn line", true,
			[]string{started, started1, prog0, prog1, prog0b, skipped, summary},
			started + started1 +
				clear + "web/0 10 pkts 1500 B 0 dropped" +
				clear + "web/0 10 pkts 1500 B 0 dropped | web/1 3 pkts 200 B 2 dropped" +
				clear + "web/0 12 pkts 1800 B 1 dropped | web/1 3 pkts 200 B 2 dropped" +
				clear + skipped +
				clear + "web/0 12 pkts 1800 B 1 dropped | web/1 3 pkts 200 B 2 dropped" +
				clear + summary},
		{"terminal: finish clears the progress line", true, []string{prog0},
			clear + "web/0 10 pkts 1500 B 0 dropped" + clear},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			s := &statusWriter{w: &b, terminal: tc.terminal}
			for _, w := range tc.writes {
				if n, err := s.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write = %d, %v", n, err)
				}
			}
			s.finish()
			if b.String() != tc.want {
				t.Errorf("output:\n%q\nwant:\n%q", b.String(), tc.want)
			}
		})
	}
}

func TestStatusWriterLongLine(t *testing.T) {
	var b bytes.Buffer
	s := &statusWriter{w: &b}
	long := strings.Repeat("x", 70<<10) // no newline: passed on once it is too long
	s.Write([]byte(long))
	if b.Len() != len(long)+1 {
		t.Errorf("wrote %d bytes for a %d-byte unterminated line", b.Len(), len(long))
	}
}
