// Package testenv builds the world integration tests and benchmarks run in:
// network namespaces with per-run names, veth links and bridges that exist
// only inside those namespaces, the project's binaries built with -race,
// and processes started, watched and stopped by PID. Everything it makes is
// removed in t.Cleanup, also when the test fails.
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testreq"
)

// RequireRoot skips t unless running as root (namespaces need it), or
// fails it under PCAP_REQUIRE_TOOLS.
func RequireRoot(t testing.TB) {
	t.Helper()
	testreq.Root(t, "network namespaces and libpcap need it")
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
type Netns = netlab.Netns

// NewNetns makes a namespace with its loopback up; it is deleted at cleanup.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	// SIGINT and SIGTERM (Ctrl-C, a CI job's timeout) skip t.Cleanup:
	// remove this run's namespaces then. What a killed run leaves is
	// removed by the next run's first namespace (netlab.Reap).
	netlab.CloseOnSignal()
	l := netlab.New(RunID())
	t.Cleanup(l.Close)
	n, err := l.Netns()
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// Link joins a and b with a veth pair named aIf inside a and bIf inside b,
// addresses given in CIDR form ("" for none). The pair is made inside the
// namespaces; nothing touches the root namespace.
func Link(t testing.TB, a *Netns, aIf, aAddr string, b *Netns, bIf, bAddr string) {
	t.Helper()
	if err := netlab.Link(a, aIf, aAddr, b, bIf, bAddr); err != nil {
		t.Fatal(err)
	}
}

// Bridge makes a bridge named br0 inside ns.
func Bridge(t testing.TB, ns *Netns, addr string) {
	t.Helper()
	if err := netlab.Bridge(ns, addr); err != nil {
		t.Fatal(err)
	}
}

// AttachToBridge links host (interface hostIf, address hostAddr) to the
// bridge br0 in lan, under the port name port.
func AttachToBridge(t testing.TB, lan *Netns, port string, host *Netns, hostIf, hostAddr string) {
	t.Helper()
	if err := netlab.Attach(lan, port, host, hostIf, hostAddr); err != nil {
		t.Fatal(err)
	}
}

// Proc is a process started by the test; it is stopped by PID at cleanup.
type Proc struct {
	*netlab.Proc
}

// StartOptions are optional settings of [Start].
type StartOptions = netlab.StartOptions

// Start starts a process. Its stderr (and stdout, unless Stdout is set) is
// collected line by line for WaitLine and shown in the test log on failure.
func Start(t testing.TB, o StartOptions, name string, args ...string) *Proc {
	t.Helper()
	p, err := netlab.StartProc(o, name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- output of %s (pid %d):\n%s", filepath.Base(name), p.Cmd.Process.Pid, p.Output())
		}
	})
	return &Proc{p}
}

// WaitLine waits until a line matches re and returns its submatches, or
// fails t when timeout passes or the output ends first.
func (p *Proc) WaitLine(t testing.TB, re *regexp.Regexp, timeout time.Duration) []string {
	t.Helper()
	m, err := p.Proc.WaitLine(re, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// WaitCount waits until at least n lines match re, or fails t.
func (p *Proc) WaitCount(t testing.TB, re *regexp.Regexp, n int, timeout time.Duration) {
	t.Helper()
	if err := p.Proc.WaitCount(re, n, timeout); err != nil {
		t.Fatal(err)
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

// Tool returns the path of a tool built by `make tools` into build/bin
// (the real cf and bosh CLIs). When it is missing the test is skipped as
// "not installed", unless PCAP_REQUIRE_TOOLS is set (make test sets it),
// which makes it a failure.
func Tool(t testing.TB, name string) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	return testreq.Tool(t, filepath.Join(root, "build", "bin", name), "run make tools")
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

// ListenIn opens a TCP listener inside ns (see netlab.ListenIn), closed at
// cleanup.
func ListenIn(t testing.TB, ns *Netns, addr string) net.Listener {
	t.Helper()
	l, err := netlab.ListenIn(ns, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// BindNetns publishes the namespace file src as dir/name, as Diego's
// garden-external-networker publishes a container's network namespace
// under its handle. It is unmounted at cleanup, before namespaces made
// earlier are deleted.
func BindNetns(t testing.TB, src, dir, name string) string {
	t.Helper()
	unbind, err := netlab.BindNetns(src, dir, name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unbind(); err != nil {
			t.Error(err)
		}
	})
	return filepath.Join(dir, name)
}
