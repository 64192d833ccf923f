package netlab_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// helperEnv makes this test binary a helper run instead of the tests: it
// makes a lab with two namespaces (with "orphan", also a process inside
// the first that is not its child's child in any way that dies with it),
// prints them, and waits to be killed.
const helperEnv = "NETLAB_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode, ok := os.LookupEnv(helperEnv); ok {
		os.Exit(helper(mode))
	}
	os.Exit(m.Run())
}

func helper(mode string) int {
	netlab.CloseOnSignal()
	l := netlab.New("pt")
	a, err := l.Netns()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	b, err := l.Netns()
	if err != nil {
		fmt.Println(err)
		return 1
	}
	pid := 0
	if mode == "orphan" {
		// Its own session, no parent-death signal: it outlives this run.
		cmd := exec.Command("ip", "netns", "exec", a.Name, "sleep", "600")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			fmt.Println(err)
			return 1
		}
		pid = cmd.Process.Pid
	}
	fmt.Printf("ready %s %s %d\n", a.Name, b.Name, pid)
	select {}
}

var readyLine = regexp.MustCompile(`^ready (\S+) (\S+) (\d+)$`)

func startHelper(t *testing.T, mode string) (p *netlab.Proc, names []string, pid int) {
	t.Helper()
	p, err := netlab.StartProc(netlab.StartOptions{Env: []string{helperEnv + "=" + mode}}, os.Args[0], "-test.run=^$")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(5 * time.Second) })
	m, err := p.WaitLine(readyLine, 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ = strconv.Atoi(m[3])
	names = m[1:3]
	t.Cleanup(func() {
		for _, n := range names { // only if the test failed half-way
			if exists(n) {
				exec.Command("ip", "netns", "del", n).Run()
			}
		}
	})
	return p, names, pid
}

func exists(netns string) bool {
	_, err := os.Stat(filepath.Join("/var/run/netns", netns))
	return err == nil
}

// running reports whether pid runs (a zombie waiting for its new parent
// does not).
func running(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func prefixOf(netns string) string { return netns[:strings.LastIndexByte(netns, 'n')] }

// TestKilledRunIsReaped: a run killed with SIGKILL leaves its namespaces
// and a process inside them; the next run's first namespace removes both.
// That run, stopped with SIGTERM, removes its own namespaces before it
// exits.
func TestKilledRunIsReaped(t *testing.T) {
	testenv.RequireRoot(t)
	killed, names, orphan := startHelper(t, "orphan")
	t.Cleanup(func() {
		if running(orphan) {
			syscall.Kill(orphan, syscall.SIGKILL)
		}
	})
	if err := killed.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, ok := killed.Wait(30 * time.Second); !ok {
		t.Fatal("the helper did not die of SIGKILL")
	}
	for _, n := range names {
		if !exists(n) {
			t.Fatalf("namespace %s is gone already: nothing left for the next run to remove", n)
		}
	}
	if !running(orphan) {
		t.Fatalf("process %d inside %s died with the run", orphan, names[0])
	}

	next, own, _ := startHelper(t, "")
	for _, n := range names {
		if exists(n) {
			t.Errorf("namespace %s of the killed run is still there", n)
		}
	}
	if running(orphan) {
		t.Errorf("process %d inside the killed run's namespace still runs", orphan)
	}
	if _, err := os.Stat(filepath.Join(netlab.RecordDir, prefixOf(names[0]))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed run's owner record is still there: %v", err)
	}

	if err := next.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err, ok := next.Wait(30 * time.Second)
	if !ok {
		t.Fatal("the helper did not exit on SIGTERM")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 128+int(syscall.SIGTERM) {
		t.Errorf("helper ended with %v, want exit status %d", err, 128+int(syscall.SIGTERM))
	}
	for _, n := range own {
		if exists(n) {
			t.Errorf("namespace %s is still there after SIGTERM", n)
		}
	}
	if _, err := os.Stat(filepath.Join(netlab.RecordDir, prefixOf(own[0]))); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the owner record is still there after SIGTERM: %v", err)
	}
}

// TestLiveRunIsNotReaped: Reap leaves the namespaces of a run that still
// runs.
func TestLiveRunIsNotReaped(t *testing.T) {
	testenv.RequireRoot(t)
	_, names, _ := startHelper(t, "")
	if err := netlab.Reap(); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if !exists(n) {
			t.Errorf("namespace %s of a live run was removed", n)
		}
	}
}
