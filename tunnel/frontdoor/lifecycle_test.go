//go:build !windows

package frontdoor

import (
	"context"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

func TestStopContextOnSignals(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			var stderr syncBuffer
			ctx, release := StopContext(context.Background(), &stderr, nil)
			defer release()
			if err := syscall.Kill(syscall.Getpid(), sig); err != nil {
				t.Fatal(err)
			}
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("%v did not end the context", sig)
			}
			if want := "pcap: client: stopping reason=\"" + sig.String() + "\"\n"; stderr.String() != want {
				t.Errorf("stderr %q, want %q", stderr.String(), want)
			}
		})
	}
}

func TestStopContextOnParentGone(t *testing.T) {
	var ppid atomic.Int64
	ppid.Store(4242)
	var stderr syncBuffer
	ctx, release := StopContext(context.Background(), &stderr, &ParentWatch{
		Parent: "the cf CLI", Interval: time.Millisecond, Getppid: func() int { return int(ppid.Load()) },
	})
	defer release()
	select {
	case <-ctx.Done():
		t.Fatal("ended while the parent is there")
	case <-time.After(50 * time.Millisecond): // many polls, all seeing the parent
	}
	ppid.Store(1) // reparented to init: the cf CLI is gone
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the parent's end did not end the context")
	}
	if want := "pcap: client: stopping reason=\"the cf CLI (pid 4242) has gone away\"\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

// TestParentGoneReasonPrefersASignal: a signal to the group ends the
// parent too; seen together, the signal is the reason given (a make
// test series once saw "has gone away" after Ctrl-C to the group).
func TestParentGoneReasonPrefersASignal(t *testing.T) {
	sigs := make(chan os.Signal, 1)
	if got, sig := parentGoneReason("the cf CLI (pid 7) has gone away", sigs); got != "the cf CLI (pid 7) has gone away" || sig {
		t.Errorf("no signal: %q, %v", got, sig)
	}
	sigs <- syscall.SIGINT
	if got, sig := parentGoneReason("the cf CLI (pid 7) has gone away", sigs); got != "interrupt" || !sig {
		t.Errorf("with SIGINT in: %q, %v; want interrupt, true", got, sig)
	}
}

// TestStopContextReleases: release ends the watcher without a message.
func TestStopContextReleases(t *testing.T) {
	var stderr syncBuffer
	_, release := StopContext(context.Background(), &stderr, &ParentWatch{Parent: "x", Interval: time.Millisecond})
	release()
	if stderr.String() != "" {
		t.Errorf("stderr %q", stderr.String())
	}
}
