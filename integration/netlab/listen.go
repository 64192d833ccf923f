package netlab

import (
	"fmt"
	"net"
	"runtime"

	"github.com/vishvananda/netns"
)

// ListenIn opens a TCP listener inside the network namespace ns, so an
// in-process server (a fake) is reachable from processes in that
// namespace. The calling thread is moved there and back on a locked
// thread; a thread that cannot return is discarded.
func ListenIn(ns *Netns, addr string) (net.Listener, error) {
	type result struct {
		l   net.Listener
		err error
	}
	res := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		defer orig.Close()
		target, err := netns.GetFromName(ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			res <- result{err: fmt.Errorf("open namespace %s: %w", ns.Name, err)}
			return
		}
		defer target.Close()
		if err := netns.Set(target); err != nil {
			runtime.UnlockOSThread()
			res <- result{err: err}
			return
		}
		l, lerr := net.Listen("tcp", addr)
		if err := netns.Set(orig); err != nil {
			if l != nil {
				l.Close()
			}
			res <- result{err: fmt.Errorf("return from namespace: %w", err)} // thread stays locked and dies
			return
		}
		runtime.UnlockOSThread()
		res <- result{l: l, err: lerr}
	}()
	r := <-res
	return r.l, r.err
}
