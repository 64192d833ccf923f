// Package testenv builds the world integration tests and benchmarks run in:
// network namespaces with per-run names, veth links and bridges that exist
// only inside those namespaces, the project's binaries built with -race,
// and processes started, watched and stopped by PID. Everything it makes is
// removed in t.Cleanup, also when the test fails.
package testenv

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireRoot skips t unless running as root (namespaces need it).
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("requires root: network namespaces and libpcap")
	}
}

var (
	runIDOnce sync.Once
	runID     string
)

// RunID is a short random prefix unique to this test process, so parallel
// runs never share a namespace name.
func RunID() string {
	runIDOnce.Do(func() {
		b := make([]byte, 3)
		rand.Read(b)
		runID = "p" + hex.EncodeToString(b)
	})
	return runID
}

var seq struct {
	sync.Mutex
	n int
}

func nextName(kind string) string {
	seq.Lock()
	defer seq.Unlock()
	seq.n++
	return fmt.Sprintf("%s%s%d", RunID(), kind, seq.n)
}

// Run runs a short command and fails t with its output when it fails.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Netns is a network namespace made by the test.
type Netns struct {
	Name string
}

// Path is the namespace's file, as a Locator or netns.GetFromPath takes it.
func (n *Netns) Path() string { return "/var/run/netns/" + n.Name }

// NewNetns makes a namespace with its loopback up; it is deleted at cleanup.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	n := &Netns{Name: nextName("n")}
	Run(t, "ip", "netns", "add", n.Name)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "del", n.Name).Run()
	})
	Run(t, "ip", "-n", n.Name, "link", "set", "lo", "up")
	return n
}

// Link joins a and b with a veth pair named aIf inside a and bIf inside b,
// addresses given in CIDR form ("" for none). The pair is made inside the
// namespaces; nothing touches the root namespace.
func Link(t testing.TB, a *Netns, aIf, aAddr string, b *Netns, bIf, bAddr string) {
	t.Helper()
	Run(t, "ip", "-n", a.Name, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, e := range []struct {
		ns        *Netns
		ifc, addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr != "" {
			Run(t, "ip", "-n", e.ns.Name, "addr", "add", e.addr, "dev", e.ifc)
		}
		Run(t, "ip", "-n", e.ns.Name, "link", "set", e.ifc, "up")
	}
}

// Bridge makes a bridge named br0 inside ns.
func Bridge(t testing.TB, ns *Netns, addr string) {
	t.Helper()
	Run(t, "ip", "-n", ns.Name, "link", "add", "br0", "type", "bridge")
	if addr != "" {
		Run(t, "ip", "-n", ns.Name, "addr", "add", addr, "dev", "br0")
	}
	Run(t, "ip", "-n", ns.Name, "link", "set", "br0", "up")
}

// AttachToBridge links host (interface hostIf, address hostAddr) to the
// bridge br0 in lan, under the port name port.
func AttachToBridge(t testing.TB, lan *Netns, port string, host *Netns, hostIf, hostAddr string) {
	t.Helper()
	Link(t, lan, port, "", host, hostIf, hostAddr)
	Run(t, "ip", "-n", lan.Name, "link", "set", port, "master", "br0")
}

// Proc is a process started by the test; it is stopped by PID at cleanup.
type Proc struct {
	Cmd *exec.Cmd

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced when lines grows or output ends
	ended bool
	done  chan struct{}
	err   error
	log   bytes.Buffer
}

// StartOptions are optional settings of [Start].
type StartOptions struct {
	Netns  *Netns    // run inside this namespace (via ip netns exec)
	Env    []string  // added to the environment
	Stdin  io.Reader // default: none
	Stdout io.Writer // default: collected as lines with stderr
}

// Start starts a process. Its stderr (and stdout, unless Stdout is set) is
// collected line by line for WaitLine and shown in the test log on failure.
func Start(t testing.TB, o StartOptions, name string, args ...string) *Proc {
	t.Helper()
	if o.Netns != nil {
		args = append([]string{"netns", "exec", o.Netns.Name, name}, args...)
		name = "ip"
	}
	p := &Proc{Cmd: exec.Command(name, args...), grew: make(chan struct{}), done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), o.Env...)
	p.Cmd.Stdin = o.Stdin
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pr, pw := io.Pipe()
	p.Cmd.Stderr = pw
	if o.Stdout != nil {
		p.Cmd.Stdout = o.Stdout
	} else {
		p.Cmd.Stdout = pw
	}
	if err := p.Cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go p.collect(pr)
	go func() {
		p.err = p.Cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- output of %s (pid %d):\n%s", filepath.Base(name), p.Cmd.Process.Pid, p.Output())
		}
	})
	return p
}

func (p *Proc) collect(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.grew)
		p.grew = make(chan struct{})
		p.mu.Unlock()
	}
	io.Copy(io.Discard, r)
	p.mu.Lock()
	p.ended = true
	close(p.grew)
	p.mu.Unlock()
}

// Output is everything collected so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// Lines returns the collected lines matching re.
func (p *Proc) Lines(re *regexp.Regexp) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, l := range p.lines {
		if re.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// WaitLine waits until a line matches re and returns its submatches, or
// fails t when timeout passes or the output ends first.
func (p *Proc) WaitLine(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if m := re.FindStringSubmatch(p.lines[seen]); m != nil {
				p.mu.Unlock()
				return m
			}
		}
		grew, ended := p.grew, p.ended
		p.mu.Unlock()
		if ended {
			t.Fatalf("output ended before a line matched %q:\n%s", re, p.Output())
		}
		select {
		case <-grew:
		case <-deadline.C:
			t.Fatalf("no line matched %q within %v:\n%s", re, timeout, p.Output())
		}
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for exit up to timeout and returns the exit error.
func (p *Proc) Wait(timeout time.Duration) (error, bool) {
	select {
	case <-p.done:
		return p.err, true
	case <-time.After(timeout):
		return nil, false
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.Cmd.Process.Signal(sig) }

// Stop sends SIGTERM, then SIGKILL after grace, and waits for exit.
func (p *Proc) Stop(grace time.Duration) {
	select {
	case <-p.done:
		return
	default:
	}
	p.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Cmd.Process.Kill()
		<-p.done
	}
}

var build struct {
	once sync.Once
	dir  string
	err  error
}

// Binaries builds the project's commands with -race once per test process
// and returns the directory holding them (pcap-agent, pcap-api, pcap-traffic,
// …). The build is removed when the process exits only if PCAP_KEEP_BIN is
// unset; it lives in the system temp dir.
func Binaries(t testing.TB) string {
	t.Helper()
	build.once.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			build.err = err
			return
		}
		build.dir = filepath.Join(root, "build", "test-bin")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-race", "-o", build.dir+"/", "./...")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatalf("build binaries: %v", build.err)
	}
	return build.dir
}

// moduleRoot finds the directory holding go.mod from this source file.
func moduleRoot() (string, error) {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("testenv: no caller information")
	}
	dir := filepath.Dir(file)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("testenv: go.mod not found above %s", file)
		}
		dir = parent
	}
}
