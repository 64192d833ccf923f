package netlab

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a started process whose output is collected line by line. It is
// stopped by PID, never by name.
type Proc struct {
	Cmd *exec.Cmd

	mu    sync.Mutex
	lines []string
	grew  chan struct{} // closed and replaced when lines grows or output ends
	ended bool
	done  chan struct{}
	err   error
}

// StartOptions are optional settings of [StartProc].
type StartOptions struct {
	Netns  *Netns    // run inside this namespace (via ip netns exec)
	Env    []string  // added to the environment
	Stdin  io.Reader // default: none
	Stdout io.Writer // default: collected as lines with stderr
	// Group starts the process in a process group of its own, so
	// SignalGroup reaches its children too (like Ctrl-C in a terminal).
	Group bool
}

// StartProc starts a process. Its stderr (and stdout, unless Stdout is
// set) is collected for WaitLine and Output. It is killed if this process
// dies first.
func StartProc(o StartOptions, name string, args ...string) (*Proc, error) {
	if o.Netns != nil {
		args = append([]string{"netns", "exec", o.Netns.Name, name}, args...)
		name = "ip"
	}
	p := &Proc{Cmd: exec.Command(name, args...), grew: make(chan struct{}), done: make(chan struct{})}
	p.Cmd.Env = append(os.Environ(), o.Env...)
	p.Cmd.Stdin = o.Stdin
	p.Cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: o.Group}
	pr, pw := io.Pipe()
	p.Cmd.Stderr = pw
	if o.Stdout != nil {
		p.Cmd.Stdout = o.Stdout
	} else {
		p.Cmd.Stdout = pw
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		p.collect(pr)
	}()
	go func() {
		p.err = p.Cmd.Wait()
		pw.Close()
		// Done only once every line the process wrote is collected:
		// Output after Wait must hold its last lines.
		<-collected
		close(p.done)
	}()
	return p, nil
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

// WaitLine waits until a line matches re and returns its submatches; it
// fails when timeout passes or the output ends first.
func (p *Proc) WaitLine(re *regexp.Regexp, timeout time.Duration) ([]string, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen := 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if m := re.FindStringSubmatch(p.lines[seen]); m != nil {
				p.mu.Unlock()
				return m, nil
			}
		}
		grew, ended := p.grew, p.ended
		p.mu.Unlock()
		if ended {
			return nil, fmt.Errorf("output ended before a line matched %q:\n%s", re, p.Output())
		}
		select {
		case <-grew:
		case <-deadline.C:
			return nil, fmt.Errorf("no line matched %q within %v:\n%s", re, timeout, p.Output())
		}
	}
}

// WaitCount waits until at least n collected lines match re (output is
// collected asynchronously: a line the process wrote may not be here yet).
func (p *Proc) WaitCount(re *regexp.Regexp, n int, timeout time.Duration) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	seen, count := 0, 0
	for {
		p.mu.Lock()
		for ; seen < len(p.lines); seen++ {
			if re.MatchString(p.lines[seen]) {
				count++
			}
		}
		grew, ended := p.grew, p.ended
		p.mu.Unlock()
		if count >= n {
			return nil
		}
		if ended {
			return fmt.Errorf("output ended with %d lines matching %q, want %d", count, re, n)
		}
		select {
		case <-grew:
		case <-deadline.C:
			return fmt.Errorf("%d lines matched %q within %v, want %d", count, re, timeout, n)
		}
	}
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for exit up to timeout; it returns the exit error and whether
// the process exited.
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

// SignalGroup sends sig to the process group of a process started with
// Group set.
func (p *Proc) SignalGroup(sig syscall.Signal) error {
	return syscall.Kill(-p.Cmd.Process.Pid, sig)
}

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
