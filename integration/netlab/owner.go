package netlab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Each lab records its owner when it makes its first namespace: a file
// RecordDir/<prefix> holding the owner's PID and start time (the PID
// alone could have been reused). A run that was killed (SIGKILL, a CI
// timeout, a test binary's -timeout panic) cannot clean up; Reap, run by
// the next lab made on the machine, removes what such runs left: the
// processes inside their namespaces, then the namespaces. Namespaces of a
// live run, and namespaces without a record, are never touched.

// RecordDir holds the owner records (a tmpfs: it is empty after a reboot,
// like the namespaces).
var RecordDir = "/run/pcap-netlab"

// netnsDir is where `ip netns` keeps named namespaces.
const netnsDir = "/var/run/netns"

var (
	liveMu sync.Mutex
	live   = map[*Lab]bool{} // labs of this process not closed yet
)

// CloseAll closes every lab of this process not closed yet: a test binary
// that gets SIGINT or SIGTERM calls it before it exits.
func CloseAll() {
	liveMu.Lock()
	labs := make([]*Lab, 0, len(live))
	for l := range live {
		labs = append(labs, l)
	}
	liveMu.Unlock()
	for _, l := range labs {
		l.Close()
	}
}

// record writes the lab's owner record once, before its first namespace.
func (l *Lab) record() error {
	l.recordOnce.Do(func() {
		start, err := startTime(os.Getpid())
		if err == nil {
			err = os.MkdirAll(RecordDir, 0o755)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(RecordDir, l.prefix), fmt.Appendf(nil, "%d %d\n", os.Getpid(), start), 0o644)
		}
		if err != nil {
			l.recordErr = fmt.Errorf("netlab: record the owner of %s: %w", l.prefix, err)
			return
		}
		liveMu.Lock()
		live[l] = true
		liveMu.Unlock()
		l.OnClose(func() {
			// Runs last. A namespace still there (its `ip netns del`
			// killed with the whole process group, say) keeps the record,
			// so that the next run's Reap removes it.
			if !l.leftNamespaces() {
				os.Remove(filepath.Join(RecordDir, l.prefix))
			}
			liveMu.Lock()
			delete(live, l)
			liveMu.Unlock()
		})
	})
	return l.recordErr
}

// startTime is the process's start time in clock ticks after boot
// (field 22 of /proc/PID/stat).
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("netlab: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, fmt.Errorf("netlab: /proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// alive reports whether the process that wrote a record still runs.
func alive(pid int, start uint64) bool {
	st, err := startTime(pid)
	return err == nil && st == start
}

var reapOnce sync.Once

// reapOnceErr runs Reap once per process (a dead run's leftovers do not
// come back).
func reapOnceErr() error {
	var err error
	reapOnce.Do(func() { err = Reap() })
	return err
}

// Reap removes what labs of dead processes left: for each record whose
// owner is gone, it kills the processes running inside the lab's
// namespaces (they belong to the dead run), deletes the namespaces and
// the record. It returns every problem at once.
func Reap() error {
	ents, err := os.ReadDir(RecordDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("netlab: reap: %w", err)
	}
	nsEnts, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("netlab: reap: %w", err)
	}
	var errs []error
	for _, e := range ents {
		prefix := e.Name()
		b, err := os.ReadFile(filepath.Join(RecordDir, prefix))
		if err != nil {
			continue // removed by its owner meanwhile
		}
		var pid int
		var start uint64
		if _, err := fmt.Sscanf(string(b), "%d %d", &pid, &start); err != nil {
			errs = append(errs, fmt.Errorf("netlab: reap: record %s: %q", prefix, b))
			continue
		}
		if alive(pid, start) {
			continue
		}
		ok := true
		for _, ns := range nsEnts {
			if !ownedBy(ns.Name(), prefix) {
				continue
			}
			if err := removeNetns(ns.Name()); err != nil {
				errs = append(errs, err)
				ok = false
			}
		}
		if ok {
			os.Remove(filepath.Join(RecordDir, prefix))
		}
	}
	return errors.Join(errs...)
}

// leftNamespaces reports whether any namespace of the lab is still there
// (or whether that cannot be told).
func (l *Lab) leftNamespaces() bool {
	ents, err := os.ReadDir(netnsDir)
	if errors.Is(err, os.ErrNotExist) {
		return false
	}
	if err != nil {
		return true
	}
	for _, e := range ents {
		if ownedBy(e.Name(), l.prefix) {
			return true
		}
	}
	return false
}

// ownedBy reports whether namespace name was made by the lab with prefix:
// prefix, "n", then only digits (Lab.Netns).
func ownedBy(name, prefix string) bool {
	rest, ok := strings.CutPrefix(name, prefix+"n")
	if !ok || rest == "" {
		return false
	}
	for _, c := range rest {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// removeNetns kills the processes inside namespace name and deletes it.
func removeNetns(name string) error {
	out, err := runOutput("ip", "netns", "pids", name)
	if err != nil {
		return err
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	return Run("ip", "netns", "del", name)
}

var signalOnce sync.Once

// CloseOnSignal makes the first SIGINT or SIGTERM close every lab of this
// process and then exit it with status 128+signal, as a process killed by
// it would: a test binary's t.Cleanup does not run on a signal. Calling it
// again does nothing more.
func CloseOnSignal() {
	signalOnce.Do(func() {
		c := make(chan os.Signal, 1)
		signal.Notify(c, syscall.SIGINT, syscall.SIGTERM)
		go func() { // lives as long as the process
			s := (<-c).(syscall.Signal)
			fmt.Fprintf(os.Stderr, "netlab: %v: removing this run's namespaces\n", s)
			CloseAll()
			os.Exit(128 + int(s))
		}()
	})
}
