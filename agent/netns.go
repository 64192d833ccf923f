package agent

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"code.cloudfoundry.org/pcap/tunnel"
)

// What openNetns refuses; callers turn them into rejections.
var (
	errNetnsMissing = errors.New("no such namespace file")
	errNotNetns     = errors.New("not a network namespace")
	errHostNetns    = errors.New("the host's network namespace")
	errAgentNetns   = errors.New("the agent's own network namespace")
)

// initNetInode is the nsfs inode of the kernel's initial network namespace
// on kernels that give it a fixed one (PROC_NET_INIT_INO; this project's
// test machines' 6.x kernels do). Dynamic namespace inodes start at
// 0xF0000000, so no other namespace can have it.
const initNetInode = 0xEFFFFFF9

// hostNetnsPath is the network namespace of PID 1: the host's (a variable
// for tests).
var hostNetnsPath = "/proc/1/ns/net"

// openNetns opens the namespace file at path and checks the open file: it
// must be a regular file on nsfs whose namespace type is network, and not
// the agent's own network namespace nor the host's. Setns on the returned
// file enters exactly what was checked, whatever happens to path later.
// Refusals wrap errNetnsMissing, errNotNetns, errHostNetns or
// errAgentNetns.
func openNetns(path string) (*os.File, error) {
	// Stat first, so a device or FIFO put at path is never opened.
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
			return nil, fmt.Errorf("agent: %s: %w", path, errNetnsMissing)
		}
		return nil, fmt.Errorf("agent: stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("agent: %s is not a regular file: %w", path, errNotNetns)
	}
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("agent: %s: %w", path, errNetnsMissing)
		}
		return nil, fmt.Errorf("agent: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	if err := checkNetns(fd); err != nil {
		f.Close()
		return nil, fmt.Errorf("agent: %s: %w", path, err)
	}
	return f, nil
}

// checkNetns checks an open namespace file (see openNetns).
func checkNetns(fd int) error {
	var fs unix.Statfs_t
	if err := unix.Fstatfs(fd, &fs); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if fs.Type != unix.NSFS_MAGIC {
		return fmt.Errorf("not on nsfs: %w", errNotNetns)
	}
	typ, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("NS_GET_NSTYPE: %w", err)
	}
	if typ != unix.CLONE_NEWNET {
		return fmt.Errorf("namespace type %#x: %w", typ, errNotNetns)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("fstat: %w", err)
	}
	own, err := ownNetns()
	if err != nil {
		return err
	}
	if st.Dev == own.Dev && st.Ino == own.Ino {
		return errAgentNetns
	}
	// The host's namespace, when it is not the agent's own (an agent in
	// a namespace of its own, as in the tests). Where the kernel denies
	// even root a look at PID 1 (a sandbox whose init holds capabilities
	// the agent lacks), the agent cannot be on a cell's host, where bpm
	// runs it privileged in the host's PID and network namespaces; the
	// check of its own namespace above then stands for the host's. Any
	// other failure refuses.
	if st.Ino == initNetInode {
		return errHostNetns
	}
	var host unix.Stat_t
	switch err := unix.Stat(hostNetnsPath, &host); {
	case errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM):
	case err != nil:
		return fmt.Errorf("find the host's network namespace: %w", err)
	case st.Dev == host.Dev && st.Ino == host.Ino:
		return errHostNetns
	}
	return nil
}

// ownNetns stats the agent's own network namespace: that of the calling
// thread, locked for the call. Only a locked thread ever leaves the
// agent's namespace (inNamespace), and no other goroutine runs on it, so
// the caller, before it enters anything, sees the agent's own.
func ownNetns() (unix.Stat_t, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var st unix.Stat_t
	if err := unix.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return st, fmt.Errorf("stat own network namespace: %w", err)
	}
	return st, nil
}

// netnsReject turns an openNetns error into what the user is told about
// target (like "instance 6f1c…"); notFound is the message for a namespace
// that is not there.
func netnsReject(err error, target, notFound string) error {
	switch {
	case errors.Is(err, errNetnsMissing):
		return tunnel.Reject(tunnel.CodeTargetNotFound, notFound)
	case errors.Is(err, errNotNetns):
		return tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("%s has no network namespace on this host (what is published for it is not one)", target))
	case errors.Is(err, errHostNetns):
		return tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("%s is in the host's network namespace: refused (capture the host instead)", target))
	case errors.Is(err, errAgentNetns):
		return tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("%s is in the agent's own network namespace: refused (capture the host instead)", target))
	}
	return tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("%s: open network namespace: %v", target, err))
}

// inNamespace runs fn on a locked OS thread inside the network namespace at
// nsPath ("" runs fn in the current one). The file is opened, checked
// (openNetns) and entered through the same descriptor. If the thread
// cannot be moved back, it stays locked and dies with its goroutine, so no
// other goroutine ever runs in the wrong namespace.
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
		target, err := openNetns(nsPath)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- netnsReject(err, "the target", "the target's network namespace is gone")
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
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

// sameNamespace reports whether nsPath is the agent's own network
// namespace. Only "" is: inNamespace refuses a path to the agent's own.
func sameNamespace(nsPath string) bool {
	return nsPath == ""
}
