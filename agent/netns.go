package agent

import (
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// inNamespace runs fn on a locked OS thread inside the network namespace at
// nsPath ("" runs fn in the current one). If the thread cannot be moved
// back, it stays locked and dies with its goroutine, so no other goroutine
// ever runs in the wrong namespace.
func inNamespace(nsPath string, fn func() error) error {
	if nsPath == "" {
		return fn()
	}
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("agent: get own network namespace: %w", err)
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("agent: open network namespace: %w", err)
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("agent: enter network namespace: %w", err)
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: it is discarded when we return.
			errc <- fmt.Errorf("agent: return to own network namespace: %w", err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sameNamespace reports whether nsPath is the agent's own network namespace.
func sameNamespace(nsPath string) bool {
	if nsPath == "" {
		return true
	}
	own, err := netns.Get()
	if err != nil {
		return false
	}
	defer own.Close()
	other, err := netns.GetFromPath(nsPath)
	if err != nil {
		return false
	}
	defer other.Close()
	return own.Equal(other)
}
