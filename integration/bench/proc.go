package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// cpuTime is a process's user plus system CPU time so far, from
// /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	st, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return st.cpu, nil
}

// cpuPrecise is the time a process's living threads have spent on a CPU
// so far, in nanoseconds, from /proc/<pid>/task/*/schedstat: for short
// windows, where /proc/<pid>/stat's 10 ms ticks are too coarse. A thread
// that ends takes its time with it: compare readings only across a window
// in which the process keeps its threads (a running capture does).
func cpuPrecise(pid int) (time.Duration, error) {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0, err
	}
	var total time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue // ended meanwhile
		}
		f := strings.Fields(string(b))
		if len(f) == 0 {
			continue
		}
		ns, _ := strconv.ParseInt(f[0], 10, 64)
		total += time.Duration(ns)
	}
	return total, nil
}

type stat struct {
	ppid int
	cpu  time.Duration // utime + stime
	// waited is the CPU time of children that have ended and been
	// waited for (cutime + cstime).
	waited time.Duration
}

func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	// The command name is in parentheses and may hold spaces: fields
	// start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return stat{}, fmt.Errorf("bench: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); ppid is field 4, utime 14, stime 15,
	// cutime 16, cstime 17.
	if len(f) < 15 {
		return stat{}, fmt.Errorf("bench: short /proc/%d/stat", pid)
	}
	ppid, _ := strconv.Atoi(f[1])
	n := func(i int) time.Duration {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		return time.Duration(v) * clockTick
	}
	return stat{ppid: ppid, cpu: n(11) + n(12), waited: n(13) + n(14)}, nil
}

// descendants returns the PIDs of every living descendant of pid.
func descendants(pid int) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	children := map[int][]int{}
	for _, e := range ents {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := procStat(p)
		if err != nil {
			continue
		}
		children[st.ppid] = append(children[st.ppid], p)
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			out = append(out, c)
			queue = append(queue, c)
		}
	}
	return out
}

// procName is the command name of pid.
func procName(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// resetPeakRSS resets VmHWM of pid to its current RSS (Linux ≥ 4.0).
func resetPeakRSS(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakRSS is VmHWM of pid in bytes.
func peakRSS(pid int) (uint64, error) { return statusField(pid, "VmHWM:") }

// rss is VmRSS of pid in bytes.
func rss(pid int) (uint64, error) { return statusField(pid, "VmRSS:") }

func statusField(pid int, name string) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, name); ok {
			f := strings.Fields(rest)
			if len(f) == 0 {
				break
			}
			kb, err := strconv.ParseUint(f[0], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("bench: no %s in /proc/%d/status", name, pid)
}

// treeCPU follows the CPU time of a process tree whose members come and
// go (sshd's per-connection processes and the tcpdump they run): sample
// it often; Total sums the last value seen of every member, minus what
// they had used at the first sample.
type treeCPU struct {
	root  int
	base  map[int]time.Duration
	last  map[int]time.Duration
	names map[int]string
}

func newTreeCPU(root int) *treeCPU {
	t := &treeCPU{root: root, base: map[int]time.Duration{}, last: map[int]time.Duration{}, names: map[int]string{}}
	for _, p := range append([]int{root}, descendants(root)...) {
		if c, err := cpuTime(p); err == nil {
			t.base[p] = c
			t.last[p] = c
		}
	}
	return t
}

func (t *treeCPU) sample() {
	for _, p := range append([]int{t.root}, descendants(t.root)...) {
		if c, err := cpuTime(p); err == nil && c >= t.last[p] {
			t.last[p] = c
			if _, ok := t.names[p]; !ok {
				t.names[p] = procName(p)
			}
		}
	}
}

// byName sums CPU used since the first sample per command name.
func (t *treeCPU) byName() map[string]time.Duration {
	out := map[string]time.Duration{}
	for p, c := range t.last {
		if d := c - t.base[p]; d > 0 {
			out[t.names[p]] += d
		}
	}
	return out
}

// processBusy is the CPU time all CPUs spent running processes (user,
// nice and system time from /proc/stat; not idle, interrupts or steal).
func processBusy() time.Duration {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 4 || f[0] != "cpu" {
		return 0
	}
	var busy int64
	for _, v := range f[1:4] {
		n, _ := strconv.ParseInt(v, 10, 64)
		busy += n
	}
	return time.Duration(busy) * clockTick
}

// ownCPU is the CPU time used so far by this process and everything it
// started: itself, the children it waited for, and every living
// descendant with the children they waited for.
func ownCPU() time.Duration {
	self := os.Getpid()
	st, err := procStat(self)
	if err != nil {
		return 0
	}
	total := st.cpu + st.waited
	for _, p := range descendants(self) {
		if d, err := procStat(p); err == nil {
			total += d.cpu + d.waited
		}
	}
	return total
}
