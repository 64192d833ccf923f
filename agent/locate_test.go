package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"code.cloudfoundry.org/pcap/tunnel"
)

// fakeProc builds a proc tree: pid (or other name) → environ contents. Every
// entry also gets an ns/net file.
func fakeProc(t *testing.T, procs map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for name, environ := range procs {
		dir := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Join(dir, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "ns", "net"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "environ"), []byte(environ), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func env(vars ...string) string { return strings.Join(vars, "\x00") + "\x00" }

func TestProcLocator(t *testing.T) {
	root := fakeProc(t, map[string]string{
		"1":    env("PATH=/bin", "HOME=/"),
		"self": env("CF_INSTANCE_GUID=self-guid"),
		"120":  env("A=1", "CF_INSTANCE_GUID=abcdef-1", "B=2"),
		"130":  env("CF_INSTANCE_GUID=target", "B=2"),
		"131":  env("CF_INSTANCE_GUID=target-2"),
		"140":  env("FOO=CF_INSTANCE_GUID=hidden"),
		"150":  env("XCF_INSTANCE_GUID=x2"),
		"160":  env("cf_instance_guid=lower"),
		"1000": env("X=1", "CF_INSTANCE_GUID=dup"),
		"999":  env("CF_INSTANCE_GUID=dup"),
		"2000": env("CF_INSTANCE_GUID=dup"),
		"170":  env("CF_INSTANCE_GUID=last"),
	})
	// A process whose environ cannot be read is skipped.
	if err := os.MkdirAll(filepath.Join(root, "180", "environ"), 0o755); err != nil {
		t.Fatal(err)
	}
	l := ProcLocator{Root: root}
	ns := func(pid string) string { return filepath.Join(root, pid, "ns", "net") }

	found := []struct {
		name string
		t    tunnel.Target
		want string
	}{
		{"host", tunnel.Target{Kind: tunnel.TargetHost}, ""},
		{"pid", tunnel.Target{Kind: tunnel.TargetPID, PID: 1}, ns("1")},
		{"guid first variable", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "target"}, ns("130")},
		{"guid longer than another", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "target-2"}, ns("131")},
		{"guid middle variable", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "abcdef-1"}, ns("120")},
		{"guid last variable", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "last"}, ns("170")},
		{"lowest pid wins", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "dup"}, ns("999")},
	}
	for _, tt := range found {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Locate(context.Background(), tt.t)
			if err != nil || got != tt.want {
				t.Errorf("Locate(%v) = %q, %v; want %q", tt.t, got, err, tt.want)
			}
		})
	}

	notFound := []struct {
		name string
		t    tunnel.Target
		msg  string
	}{
		{"no such pid", tunnel.Target{Kind: tunnel.TargetPID, PID: 4242}, "no process with pid 4242 on this host"},
		{"pid without ns", tunnel.Target{Kind: tunnel.TargetPID, PID: 180}, "no process with pid 180 on this host"},
		{"guid prefix of another", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "abcdef"}, "no container with instance guid abcdef on this host"},
		{"guid prefix of the target", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "targ"}, "no container with instance guid targ on this host"},
		{"guid inside a value", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "hidden"}, "no container with instance guid hidden on this host"},
		{"guid of a longer name", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "x2"}, "no container with instance guid x2 on this host"},
		{"name case matters", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "lower"}, "no container with instance guid lower on this host"},
		{"non-numeric entries skipped", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "self-guid"}, "no container with instance guid self-guid on this host"},
		{"absent", tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "6f1c2a3e-0000-4a5b-8c9d-00000000dead"}, "no container with instance guid 6f1c2a3e-0000-4a5b-8c9d-00000000dead on this host"},
	}
	for _, tt := range notFound {
		t.Run(tt.name, func(t *testing.T) {
			got, err := l.Locate(context.Background(), tt.t)
			var re *tunnel.RejectError
			if !errors.As(err, &re) || re.Code != tunnel.CodeTargetNotFound || re.Message != tt.msg {
				t.Errorf("Locate(%v) = %q, %v; want %s: %q", tt.t, got, err, tunnel.CodeTargetNotFound, tt.msg)
			}
		})
	}

	t.Run("unknown kind", func(t *testing.T) {
		_, err := l.Locate(context.Background(), tunnel.Target{Kind: "vm"})
		var re *tunnel.RejectError
		if !errors.As(err, &re) || re.Code != tunnel.CodeBadRequest || re.Message != `unknown target kind "vm"` {
			t.Errorf("Locate(vm) = %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := l.Locate(ctx, tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "target"})
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Locate(cancelled) = %v, want context.Canceled", err)
		}
	})
	t.Run("missing root", func(t *testing.T) {
		_, err := ProcLocator{Root: filepath.Join(root, "nope")}.Locate(context.Background(), tunnel.Target{Kind: tunnel.TargetCFInstance, InstanceGUID: "target"})
		if !errors.Is(err, os.ErrNotExist) || !strings.HasPrefix(err.Error(), "agent: list processes: ") {
			t.Errorf("Locate(missing root) = %v", err)
		}
	})
}

func TestProcLocatorDefaultRoot(t *testing.T) {
	got, err := ProcLocator{}.Locate(context.Background(), tunnel.Target{Kind: tunnel.TargetPID, PID: os.Getpid()})
	if want := fmt.Sprintf("/proc/%d/ns/net", os.Getpid()); err != nil || got != want {
		t.Errorf("Locate(own pid) = %q, %v; want %q", got, err, want)
	}
}
