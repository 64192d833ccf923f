package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Locator finds the network namespace of a capture target. It returns the
// path of a network namespace file (like /proc/PID/ns/net), or "" for the
// agent's own namespace. A target that does not exist is a
// [*tunnel.RejectError] with code [tunnel.CodeTargetNotFound].
//
// ProcLocator serves hosts where containers are processes visible in /proc
// (Diego cells with garden-runc); another runtime can plug in its own.
type Locator interface {
	Locate(ctx context.Context, t tunnel.Target) (string, error)
}

// ProcLocator locates targets through a proc file system.
type ProcLocator struct {
	// Root is the proc mount (default /proc).
	Root string
}

// maxEnvironRead bounds how much of one process's environment is read.
const maxEnvironRead = 256 << 10

func (l ProcLocator) root() string {
	if l.Root == "" {
		return "/proc"
	}
	return l.Root
}

// Locate implements [Locator].
func (l ProcLocator) Locate(ctx context.Context, t tunnel.Target) (string, error) {
	switch t.Kind {
	case tunnel.TargetHost:
		return "", nil
	case tunnel.TargetPID:
		p := filepath.Join(l.root(), strconv.Itoa(t.PID), "ns", "net")
		if _, err := os.Stat(p); err != nil {
			return "", tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("no process with pid %d on this host", t.PID))
		}
		return p, nil
	case tunnel.TargetCFInstance:
		pid, err := l.findByEnv(ctx, "CF_INSTANCE_GUID="+t.InstanceGUID)
		if err != nil {
			return "", err
		}
		return filepath.Join(l.root(), strconv.Itoa(pid), "ns", "net"), nil
	}
	return "", tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("unknown target kind %q", t.Kind))
}

// findByEnv returns the lowest pid whose environment holds the exact
// variable assignment kv.
func (l ProcLocator) findByEnv(ctx context.Context, kv string) (int, error) {
	entries, err := os.ReadDir(l.root())
	if err != nil {
		return 0, fmt.Errorf("agent: list processes: %w", err)
	}
	want := append([]byte(kv), 0)
	buf := make([]byte, maxEnvironRead)
	best := 0
	for _, e := range entries {
		if ctx.Err() != nil {
			return 0, fmt.Errorf("agent: locate: %w", ctx.Err())
		}
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 || (best != 0 && pid > best) {
			continue
		}
		env, err := readPrefix(filepath.Join(l.root(), e.Name(), "environ"), buf)
		if err != nil {
			continue // the process ended, or is not ours to read
		}
		if bytes.HasPrefix(env, want) || bytes.Contains(env, append([]byte{0}, want...)) {
			best = pid
		}
	}
	if best == 0 {
		return 0, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("no container with instance guid %s on this host", kv[len("CF_INSTANCE_GUID="):]))
	}
	return best, nil
}

func readPrefix(path string, buf []byte) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return nil, err
	}
	return buf[:n], nil
}
