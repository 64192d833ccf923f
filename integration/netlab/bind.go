package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// BindNetns publishes the namespace file src as dir/name the way
// cf-networking's garden-external-networker does on a Diego cell for a
// container (name = the container handle, the instance GUID): it creates
// an empty file there and bind-mounts src onto it. unbind unmounts it
// (MNT_DETACH) and removes the file; call it before the namespace is
// deleted. On error nothing is left behind.
//
// A src under /proc/thread-self names the calling thread's namespace,
// which is the test process's own: the goroutine is locked to its thread
// for the mount, and only threads locked elsewhere ever leave it.
// (/proc/self names the main thread's, which a goroutine of a parallel
// test may just have moved into a lab namespace.)
func BindNetns(src, dir, name string) (unbind func() error, err error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	dst := filepath.Join(dir, name)
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return nil, fmt.Errorf("netlab: bind %s: %w", src, err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "none", unix.MS_BIND, ""); err != nil {
		os.Remove(dst)
		return nil, fmt.Errorf("netlab: bind-mount %s on %s: %w", src, dst, err)
	}
	return func() error {
		err := unix.Unmount(dst, unix.MNT_DETACH)
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			err = nil // not mounted (any more)
		}
		if rerr := os.Remove(dst); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
			err = rerr
		}
		if err != nil {
			return fmt.Errorf("netlab: unbind %s: %w", dst, err)
		}
		return nil
	}, nil
}

// BindNetns publishes ns as dir/name (see the function BindNetns); the
// bind mount is removed at Close, before the namespace is.
func (l *Lab) BindNetns(ns *Netns, dir, name string) error {
	unbind, err := BindNetns(ns.Path(), dir, name)
	if err != nil {
		return err
	}
	l.OnClose(func() { unbind() })
	return nil
}
