package frontdoor

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

// StopSignals end a capture like Ctrl-C does: the capture is stopped and
// the file finished. SIGHUP is the terminal closing; SIGTERM is what a CI
// job's timeout and service managers send.
var StopSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// ParentWatch configures watching the process's parent in [StopContext].
type ParentWatch struct {
	// Parent is the parent's name for the message ("the cf CLI").
	Parent string
	// Interval is how often the parent PID is checked (default 500 ms).
	Interval time.Duration
	// Getppid defaults to os.Getppid.
	Getppid func() int
}

// StopContext returns a context that ends at the first of [StopSignals],
// or, with watch set, when the process's parent goes away (its parent PID
// changes: a cf CLI killed by SIGTERM leaves its plugin running, and no
// signal reaches it). It says why on stderr, as a status line
// ("pcap: client: stopping reason=…"). After the first signal,
// a second one has its default effect (a second Ctrl-C ends the process
// at once). Call release when done: it stops the watching goroutine and
// waits for it.
func StopContext(parent context.Context, stderr io.Writer, watch *ParentWatch) (context.Context, func()) {
	ctx, cancel := context.WithCancel(parent)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, StopSignals...)
	var tick <-chan time.Time
	stopTick := func() {}
	getppid, ppid := os.Getppid, 0
	if watch != nil {
		if watch.Getppid != nil {
			getppid = watch.Getppid
		}
		iv := watch.Interval
		if iv <= 0 {
			iv = 500 * time.Millisecond
		}
		if ppid = getppid(); ppid > 1 { // 1: orphaned already, nothing to watch
			t := time.NewTicker(iv)
			tick, stopTick = t.C, t.Stop
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case s := <-sigs:
				signal.Stop(sigs) // a second signal acts at once
				fmt.Fprintf(stderr, "pcap: client: stopping reason=%s\n", strconv.Quote(s.String()))
				cancel()
				return
			case <-tick:
				if getppid() != ppid {
					reason, signalled := parentGoneReason(fmt.Sprintf("%s (pid %d) has gone away", watch.Parent, ppid), sigs)
					if signalled {
						signal.Stop(sigs) // a second signal acts at once
					}
					fmt.Fprintf(stderr, "pcap: client: stopping reason=%s\n", strconv.Quote(reason))
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return ctx, func() {
		cancel()
		<-done
		stopTick()
		signal.Stop(sigs)
	}
}

// parentGoneReason is why a capture whose parent went away stops: a
// signal to the whole process group (Ctrl-C, a closed terminal) also
// ends the parent, and when it is already in, it is the better reason
// (signalled says so).
func parentGoneReason(gone string, sigs <-chan os.Signal) (reason string, signalled bool) {
	select {
	case s := <-sigs:
		return s.String(), true
	default:
		return gone, false
	}
}
