// Package netlab makes throw-away network topologies out of network
// namespaces: namespaces with per-run names, veth pairs created directly
// inside them, bridges inside a namespace. Nothing is ever added to the
// root namespace, so no packet can leave the machine. Used by tests (via
// testenv), the demo and the benchmark.
package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Lab owns what it made and removes it on Close. Its owner (this process)
// is recorded with its first namespace, so that a later run can remove
// what it left if this process is killed (see Reap).
type Lab struct {
	prefix string

	recordOnce sync.Once
	recordErr  error

	mu       sync.Mutex
	n        int
	cleanups []func()
}

// New returns a lab whose namespace names start with prefix plus a random
// suffix, unique per run.
func New(prefix string) *Lab {
	b := make([]byte, 3)
	rand.Read(b)
	return &Lab{prefix: prefix + hex.EncodeToString(b)}
}

// Close removes everything the lab made, newest first.
func (l *Lab) Close() {
	l.mu.Lock()
	cs := l.cleanups
	l.cleanups = nil
	l.mu.Unlock()
	for i := len(cs) - 1; i >= 0; i-- {
		cs[i]()
	}
}

// OnClose registers f to run at Close (before what was made earlier).
func (l *Lab) OnClose(f func()) {
	l.mu.Lock()
	l.cleanups = append(l.cleanups, f)
	l.mu.Unlock()
}

// Run runs a short command (bounded to 30 s) and returns an error with its
// output when it fails.
func Run(name string, args ...string) error {
	_, err := runOutput(name, args...)
	return err
}

// runOutput runs a short command (bounded to 30 s) and returns its output,
// or an error with it when it fails.
func runOutput(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Netns is a network namespace made by a lab.
type Netns struct{ Name string }

// Path is the namespace's file.
func (n *Netns) Path() string { return "/var/run/netns/" + n.Name }

// Netns makes a namespace with loopback up. The first one a process
// makes removes first what killed runs left (Reap).
func (l *Lab) Netns() (*Netns, error) {
	if err := reapOnceErr(); err != nil {
		return nil, err
	}
	if err := l.record(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.n++
	n := &Netns{Name: fmt.Sprintf("%sn%d", l.prefix, l.n)}
	l.mu.Unlock()
	if err := Run("ip", "netns", "add", n.Name); err != nil {
		return nil, err
	}
	l.OnClose(func() { exec.Command("ip", "netns", "del", n.Name).Run() })
	if err := Run("ip", "-n", n.Name, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	return n, nil
}

// Link joins a and b with a veth pair made inside a (aIf) with its peer
// inside b (bIf), with optional CIDR addresses, both up.
func Link(a *Netns, aIf, aAddr string, b *Netns, bIf, bAddr string) error {
	if err := Run("ip", "-n", a.Name, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name); err != nil {
		return err
	}
	for _, e := range []struct {
		ns        *Netns
		ifc, addr string
	}{{a, aIf, aAddr}, {b, bIf, bAddr}} {
		if e.addr != "" {
			if err := Run("ip", "-n", e.ns.Name, "addr", "add", e.addr, "dev", e.ifc); err != nil {
				return err
			}
		}
		if err := Run("ip", "-n", e.ns.Name, "link", "set", e.ifc, "up"); err != nil {
			return err
		}
	}
	return nil
}

// Bridge makes bridge br0 inside ns, with an optional address.
func Bridge(ns *Netns, addr string) error {
	if err := Run("ip", "-n", ns.Name, "link", "add", "br0", "type", "bridge"); err != nil {
		return err
	}
	if addr != "" {
		if err := Run("ip", "-n", ns.Name, "addr", "add", addr, "dev", "br0"); err != nil {
			return err
		}
	}
	return Run("ip", "-n", ns.Name, "link", "set", "br0", "up")
}

// Attach links host (hostIf, hostAddr) to br0 in lan through port.
func Attach(lan *Netns, port string, host *Netns, hostIf, hostAddr string) error {
	if err := Link(lan, port, "", host, hostIf, hostAddr); err != nil {
		return err
	}
	return Run("ip", "-n", lan.Name, "link", "set", port, "master", "br0")
}
