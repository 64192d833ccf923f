//go:build !windows

package frontdoor

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// TestOutputFileModes: a new output file is created exclusively with mode
// 0600 whatever the umask allows more of; an existing one needs Force.
func TestOutputFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	out := filepath.Join(t.TempDir(), "new.pcapng")
	f, err := openOutput(out, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	f.f.Close()
	if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("new file: %v, %v; want mode 0600", fi.Mode(), err)
	}
	if _, err := openOutput(out, false); !errors.Is(err, ErrExists) {
		t.Errorf("existing file without Force: %v, want ErrExists", err)
	}
}

// TestForceRefusesSymlinks: --force never writes through a symbolic link,
// dangling or not, nor into a directory; the link's target is untouched.
func TestForceRefusesSymlinks(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "out.pcapng")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pcapng")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path  string
		force bool
		want  error
	}{
		{link, true, ErrNotRegular}, {link, false, ErrExists},
		{dangling, true, ErrNotRegular}, {dangling, false, ErrExists},
		{dir, true, ErrNotRegular},
	} {
		if f, err := openOutput(tc.path, tc.force); !errors.Is(err, tc.want) {
			if f != nil {
				f.f.Close()
			}
			t.Errorf("open %s (force %v) = %v, want %v", tc.path, tc.force, err, tc.want)
		}
	}
	if b, _ := os.ReadFile(target); string(b) != "keep me" {
		t.Errorf("the link's target holds %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dangling link's target was created: %v", err)
	}
}

// TestForceTruncatesOnFirstWrite: an existing file is replaced only when
// the capture writes its first bytes, and then made 0600.
func TestForceTruncatesOnFirstWrite(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(out, []byte("an older, longer capture"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := openOutput(out, true)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(out); string(b) != "an older, longer capture" {
		t.Errorf("opened with Force, the file already holds %q", b)
	}
	for _, s := range []string{"new", "er"} {
		if _, err := f.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	f.f.Close()
	if b, _ := os.ReadFile(out); string(b) != "newer" {
		t.Errorf("file holds %q, want %q", b, "newer")
	}
	if fi, _ := os.Stat(out); fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode())
	}
}

// TestForceKeepsFileWhenCaptureNeverStarts: with --force, a capture that
// never starts (host key refused, or the request refused) leaves the
// existing file as it was.
func TestForceKeepsFileWhenCaptureNeverStarts(t *testing.T) {
	refused := startFrontDoor(t, &frontDoor{Limit: -1, Stderr: "pcap: error: not-allowed reason=\"no\"\n", Exit: 1})
	out := filepath.Join(t.TempDir(), "out.pcapng")
	if err := os.WriteFile(out, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	o := options(refused, out, io.Discard, io.Discard)
	o.Force = true
	if status, err := run(t, o); status != 1 || err != nil {
		t.Errorf("refused request: %d, %v", status, err)
	}
	other, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	o.Config.HostKeyCallback = tunnel.PinnedHostKey([]ssh.PublicKey{other.PublicKey()})
	if _, err := run(t, o); !errors.Is(err, tunnel.ErrHostKeyMismatch) {
		t.Errorf("wrong host key: %v", err)
	}
	if b, _ := os.ReadFile(out); string(b) != "keep me" {
		t.Errorf("file now holds %q", b)
	}
}
