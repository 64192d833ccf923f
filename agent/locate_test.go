package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

func TestValidateInstanceGUID(t *testing.T) {
	for _, g := range []string{
		"6f1c2a3e-0000-4a5b-8c9d-0000",         // Diego's rep: a UUID cut to 28 characters
		"6f1c2a3e-0000-4a5b-8c9d-00000000dead", // a whole UUID
	} {
		if err := ValidateInstanceGUID(g); err != nil {
			t.Errorf("ValidateInstanceGUID(%q) = %v, want nil", g, err)
		}
	}
	bad := map[string]string{
		"empty":           "",
		"dot dot":         "..",
		"parent":          "../6f1c2a3e-0000-4a5b-8c9d-0000",
		"parent inside":   "6f1c2a3e-0000-4a5b-8c9d-0000/../../1",
		"slash":           "a/b",
		"absolute":        "/proc/1/ns/net",
		"upper case":      "6F1C2A3E-0000-4A5B-8C9D-0000",
		"too long":        "6f1c2a3e-0000-4a5b-8c9d-00000000deadbeef",
		"way too long":    strings.Repeat("a", 300),
		"between lengths": "6f1c2a3e-0000-4a5b-8c9d-00000000",
		"too short":       "6f1c2a3e-0000-4a5b-8c9d-000",
		"no dashes":       "6f1c2a3e00004a5b8c9d00000000dead",
		"moved dash":      "6f1c2a3-e0000-4a5b-8c9d-0000",
		"not hex":         "6f1c2a3e-0000-4a5b-8c9d-00zz",
		"newline":         "6f1c2a3e-0000-4a5b-8c9d-0000\n",
		"nul":             "6f1c2a3e-0000-4a5b-8c9d-0000\x00",
		"space":           " 6f1c2a3e-0000-4a5b-8c9d-0000",
		"name":            "my-app",
	}
	for name, g := range bad {
		t.Run(name, func(t *testing.T) {
			var re *tunnel.RejectError
			if err := ValidateInstanceGUID(g); !errors.As(err, &re) || re.Code != tunnel.CodeBadRequest {
				t.Errorf("ValidateInstanceGUID(%q) = %v, want %s", g, err, tunnel.CodeBadRequest)
			}
		})
	}
}

const testGUID = "6f1c2a3e-0000-4a5b-8c9d-0000"

func wantReject(t *testing.T, err error, code, msg string) {
	t.Helper()
	var re *tunnel.RejectError
	if !errors.As(err, &re) || re.Code != code || re.Message != msg {
		t.Errorf("got %v\nwant %s: %q", err, code, msg)
	}
}

// TestCellLocatorRefuses needs no privilege: it publishes the test's own
// namespace files (symlinks stand in for bind mounts, which need root).
func TestCellLocatorRefuses(t *testing.T) {
	dir := t.TempDir()
	l := CellLocator{NetnsDir: dir}
	put := func(name string, make func(p string) error) {
		t.Helper()
		if err := make(filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	// The real file for the "../" attempt: one directory up, under a
	// name that is itself a valid GUID.
	parent := filepath.Dir(dir)
	if err := os.Symlink("/proc/thread-self/ns/net", filepath.Join(parent, "6f1c2a3e-0000-4a5b-8c9d-00000000beef")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(filepath.Join(parent, "6f1c2a3e-0000-4a5b-8c9d-00000000beef")) })

	put("6f1c2a3e-0000-4a5b-8c9d-0001", func(p string) error { return os.WriteFile(p, nil, 0o444) })
	put("6f1c2a3e-0000-4a5b-8c9d-0002", func(p string) error { return os.Symlink("/proc/thread-self/ns/uts", p) })
	put("6f1c2a3e-0000-4a5b-8c9d-0003", func(p string) error { return os.Symlink("/proc/thread-self/ns/net", p) })
	put("6f1c2a3e-0000-4a5b-8c9d-0004", func(p string) error { return os.Mkdir(p, 0o755) })
	put("6f1c2a3e-0000-4a5b-8c9d-0005", func(p string) error { return unix.Mkfifo(p, 0o600) })
	put("6f1c2a3e-0000-4a5b-8c9d-0006", func(p string) error { return os.Symlink("/dev/null", p) })

	cf := func(guid string) agentproto.Target {
		return agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: guid}
	}
	tests := []struct {
		name      string
		t         agentproto.Target
		code, msg string
	}{
		{"dot dot", cf("../6f1c2a3e-0000-4a5b-8c9d-00000000beef"), tunnel.CodeBadRequest,
			`instance guid "../6f1c2a3e-0000-4a5b-8c9d-00000000beef" is not an instance guid (lowercase hex, 8-4-4-4-4 or 8-4-4-4-12)`},
		{"slash", cf("a/b"), tunnel.CodeBadRequest, `instance guid "a/b" is not an instance guid (lowercase hex, 8-4-4-4-4 or 8-4-4-4-12)`},
		{"empty", cf(""), tunnel.CodeBadRequest, `instance guid "" is not an instance guid (lowercase hex, 8-4-4-4-4 or 8-4-4-4-12)`},
		{"unknown", cf(testGUID), tunnel.CodeTargetNotFound, "no container with instance guid " + testGUID + " on this host"},
		{"empty file", cf("6f1c2a3e-0000-4a5b-8c9d-0001"), tunnel.CodeTargetNotFound,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0001 has no network namespace on this host (what is published for it is not one)"},
		{"uts namespace", cf("6f1c2a3e-0000-4a5b-8c9d-0002"), tunnel.CodeTargetNotFound,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0002 has no network namespace on this host (what is published for it is not one)"},
		{"own namespace", cf("6f1c2a3e-0000-4a5b-8c9d-0003"), tunnel.CodeNotAllowed,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0003 is in the agent's own network namespace: refused (capture the host instead)"},
		{"directory", cf("6f1c2a3e-0000-4a5b-8c9d-0004"), tunnel.CodeTargetNotFound,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0004 has no network namespace on this host (what is published for it is not one)"},
		{"fifo (never opened, so never blocks)", cf("6f1c2a3e-0000-4a5b-8c9d-0005"), tunnel.CodeTargetNotFound,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0005 has no network namespace on this host (what is published for it is not one)"},
		{"device", cf("6f1c2a3e-0000-4a5b-8c9d-0006"), tunnel.CodeTargetNotFound,
			"instance 6f1c2a3e-0000-4a5b-8c9d-0006 has no network namespace on this host (what is published for it is not one)"},
		{"own pid", agentproto.Target{Kind: agentproto.TargetPID, PID: os.Getpid()}, tunnel.CodeNotAllowed,
			fmt.Sprintf("pid %d is in the agent's own network namespace: refused (capture the host instead)", os.Getpid())},
		{"no such pid", agentproto.Target{Kind: agentproto.TargetPID, PID: 4194305}, tunnel.CodeTargetNotFound, "no process with pid 4194305 on this host"},
		{"pid 0", agentproto.Target{Kind: agentproto.TargetPID}, tunnel.CodeBadRequest, "pid target needs a positive pid, got 0"},
		{"unknown kind", agentproto.Target{Kind: "vm"}, tunnel.CodeBadRequest, `unknown target kind "vm"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Locate(context.Background(), tt.t)
			if got != "" {
				t.Errorf("Locate(%v) = %q, want no path", tt.t, got)
			}
			wantReject(t, err, tt.code, tt.msg)
		})
	}

	t.Run("host", func(t *testing.T) {
		if got, err := l.Locate(context.Background(), agentproto.Target{Kind: agentproto.TargetHost}); got != "" || err != nil {
			t.Errorf("Locate(host) = %q, %v", got, err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := l.Locate(ctx, cf(testGUID)); !errors.Is(err, context.Canceled) {
			t.Errorf("Locate(cancelled) = %v, want context.Canceled", err)
		}
	})
	t.Run("default dir", func(t *testing.T) {
		if got := (CellLocator{}).netnsDir(); got != DefaultNetnsDir {
			t.Errorf("netnsDir() = %q, want %q", got, DefaultNetnsDir)
		}
		// Off a cell the directory does not exist: every GUID is unknown.
		if _, err := os.Stat(DefaultNetnsDir); err != nil {
			_, err := CellLocator{}.Locate(context.Background(), cf(testGUID))
			wantReject(t, err, tunnel.CodeTargetNotFound, "no container with instance guid "+testGUID+" on this host")
		}
	})
}

// TestCellLocatorFindsAndEntersContainer publishes a real namespace with
// a bind mount, as the cell does, and enters it; then swaps the bind mount
// for the host's namespace between Locate and the capture, which the
// capture refuses on the file it opens.
func TestCellLocatorFindsAndEntersContainer(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	dir := t.TempDir()
	testenv.BindNetns(t, ns.Path(), dir, testGUID)
	l := CellLocator{NetnsDir: dir}
	target := agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: testGUID}

	path, err := l.Locate(context.Background(), target)
	if want := filepath.Join(dir, testGUID); err != nil || path != want {
		t.Fatalf("Locate() = %q, %v; want %q", path, err, want)
	}
	if sameNamespace(path) {
		t.Errorf("sameNamespace(%q) = true", path)
	}
	var want, inside unix.Stat_t
	if err := unix.Stat(ns.Path(), &want); err != nil {
		t.Fatal(err)
	}
	var ifaces []net.Interface
	err = inNamespace(path, func() error {
		ifaces, err = net.Interfaces()
		if err != nil {
			return err
		}
		return unix.Stat("/proc/thread-self/ns/net", &inside)
	})
	if err != nil || inside.Ino != want.Ino || inside.Dev != want.Dev {
		t.Fatalf("inNamespace ran in %d:%d, %v; want %d:%d", inside.Dev, inside.Ino, err, want.Dev, want.Ino)
	}
	if len(ifaces) != 1 || ifaces[0].Name != "lo" {
		t.Errorf("interfaces inside = %v, want only lo", ifaces)
	}

	// Swap what the path names for the agent's own namespace, then for
	// the host's (another namespace standing in for PID 1's, which this
	// test cannot move into).
	host := testenv.NewNetns(t)
	defer func(p string) { hostNetnsPath = p }(hostNetnsPath)
	hostNetnsPath = host.Path()
	for _, swap := range []struct{ src, what string }{
		{"/proc/thread-self/ns/net", "the agent's own"},
		{host.Path(), "the host's"},
	} {
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
		if err := unix.Mount(swap.src, path, "none", unix.MS_BIND, ""); err != nil {
			t.Fatal(err)
		}
		ran := false
		err = inNamespace(path, func() error { ran = true; return nil })
		if ran {
			t.Errorf("inNamespace ran fn in %s namespace", swap.what)
		}
		wantReject(t, err, tunnel.CodeNotAllowed, "the target is in "+swap.what+" network namespace: refused (capture the host instead)")
		_, err = l.Locate(context.Background(), target)
		wantReject(t, err, tunnel.CodeNotAllowed, "instance "+testGUID+" is in "+swap.what+" network namespace: refused (capture the host instead)")
	}

	// And gone: the container was deleted.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	err = inNamespace(path, func() error { return errors.New("ran") })
	wantReject(t, err, tunnel.CodeTargetNotFound, "the target's network namespace is gone")
}
