package bench

import (
	"fmt"
	"net"
	"runtime"
	"time"

	"github.com/vishvananda/netns"

	"code.cloudfoundry.org/pcap/integration/netlab"
)

// dialIn opens a TCP connection from inside ns: the socket is made on an
// OS thread that has entered the namespace, and belongs to it for its
// life, while this process stays in its own namespace.
func dialIn(ns *netlab.Netns, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("bench: current namespace: %w", err)}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromPath(ns.Path())
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("bench: open %s: %w", ns.Path(), err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("bench: enter %s: %w", ns.Name, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if err := netns.Set(orig); err != nil {
			// The thread stays locked and ends with this goroutine, so no
			// other goroutine ever runs in the wrong namespace.
			if c != nil {
				c.Close()
			}
			res <- result{err: fmt.Errorf("bench: leave %s: %w", ns.Name, err)}
			return
		}
		runtime.UnlockOSThread()
		res <- result{c, err}
	}()
	r := <-res
	return r.c, r.err
}
