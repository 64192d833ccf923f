package tunnel

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestKeyFilesAndKeySet(t *testing.T) {
	dir := t.TempDir()
	s, pemBytes, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	other := newKey(t)
	keyFile := filepath.Join(dir, "key")
	if err := os.WriteFile(keyFile, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	loaded, err := LoadSigner(keyFile)
	if err != nil {
		t.Fatalf("LoadSigner() = %v", err)
	}
	if string(loaded.PublicKey().Marshal()) != string(s.PublicKey().Marshal()) {
		t.Error("LoadSigner loaded a different key")
	}

	auth := "# the API\n\n" + string(ssh.MarshalAuthorizedKey(s.PublicKey())) +
		"  \n" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(other.PublicKey()))) + " second@api\n"
	authFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authFile, []byte(auth), 0o644); err != nil {
		t.Fatal(err)
	}
	keys, err := LoadAuthorizedKeys(authFile)
	if err != nil || len(keys) != 2 {
		t.Fatalf("LoadAuthorizedKeys() = %d keys, %v; want 2", len(keys), err)
	}
	set := NewKeySet(keys...)
	for _, k := range []ssh.PublicKey{s.PublicKey(), other.PublicKey()} {
		if err := set.Check(k); err != nil {
			t.Errorf("Check(listed key) = %v", err)
		}
	}
	stranger := newKey(t).PublicKey()
	err = set.Check(stranger)
	if !errors.Is(err, ErrUnauthorizedKey) || !strings.Contains(err.Error(), Fingerprint(stranger)) {
		t.Errorf("Check(stranger) = %v, want ErrUnauthorizedKey naming %s", err, Fingerprint(stranger))
	}
	if !strings.HasPrefix(Fingerprint(stranger), "SHA256:") {
		t.Errorf("Fingerprint() = %q, want the OpenSSH SHA256 form", Fingerprint(stranger))
	}

	for name, bad := range map[string]string{
		"garbage line":  string(ssh.MarshalAuthorizedKey(s.PublicKey())) + "ssh-ed25519 not-base64!\n",
		"only garbage":  "hello\n",
		"truncated key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5\n",
	} {
		if keys, err := ParseAuthorizedKeys([]byte(bad)); err == nil {
			t.Errorf("ParseAuthorizedKeys(%s) = %d keys, want an error", name, len(keys))
		}
	}
	if keys, err := ParseAuthorizedKeys([]byte("# nothing\n\n")); err != nil || len(keys) != 0 {
		t.Errorf("ParseAuthorizedKeys(comments only) = %d keys, %v; want none, nil", len(keys), err)
	}
	trailing := string(ssh.MarshalAuthorizedKey(s.PublicKey())) + "# retired: the old API key\n\n"
	if keys, err := ParseAuthorizedKeys([]byte(trailing)); err != nil || len(keys) != 1 {
		t.Errorf("ParseAuthorizedKeys(key, then a comment) = %d keys, %v; want 1, nil", len(keys), err)
	}
	if _, err := LoadSigner(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("LoadSigner(missing) = %v, want ErrNotExist", err)
	}
	if _, err := LoadSigner(authFile); err == nil {
		t.Error("LoadSigner(a public key file) succeeded")
	}
}

func TestPinnedHostKeyCallback(t *testing.T) {
	pinned, byPrint, stranger := newKey(t).PublicKey(), newKey(t).PublicKey(), newKey(t).PublicKey()
	cb := PinnedHostKey([]ssh.PublicKey{pinned}, Fingerprint(byPrint))
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9494}
	if err := cb("agent:9494", addr, pinned); err != nil {
		t.Errorf("pinned key refused: %v", err)
	}
	if err := cb("agent:9494", addr, byPrint); err != nil {
		t.Errorf("key pinned by fingerprint refused: %v", err)
	}
	err := cb("agent:9494", addr, stranger)
	if !errors.Is(err, ErrHostKeyMismatch) {
		t.Fatalf("stranger's key: %v, want ErrHostKeyMismatch", err)
	}
	want := "tunnel: host agent:9494 offered " + Fingerprint(stranger) + ": host key does not match the pinned key"
	if err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if err := PinnedHostKey(nil)("agent:9494", addr, pinned); !errors.Is(err, ErrHostKeyMismatch) {
		t.Errorf("empty pin set accepted a key: %v", err)
	}
}
