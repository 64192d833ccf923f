package rundir

import (
	"bytes"
	"os"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestKeyPair(t *testing.T) {
	d := Dir(t.TempDir())
	signer, keyFile, pubFile, err := d.KeyPair("k", "k.pub")
	if err != nil {
		t.Fatal(err)
	}
	if keyFile != d.Path("k") || pubFile != d.Path("k.pub") {
		t.Errorf("paths %q %q", keyFile, pubFile)
	}
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ssh.ParsePrivateKey(pemBytes)
	if err != nil || !bytes.Equal(back.PublicKey().Marshal(), signer.PublicKey().Marshal()) {
		t.Fatalf("private key file does not hold the signer: %v", err)
	}
	line, err := os.ReadFile(pubFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, _, _, rest, err := ssh.ParseAuthorizedKey(line)
	if err != nil || len(rest) != 0 || !bytes.Equal(pub.Marshal(), signer.PublicKey().Marshal()) {
		t.Errorf("public file %q: %v", line, err)
	}
	for _, f := range []string{keyFile, pubFile} {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
}

func TestWriteReportsFailure(t *testing.T) {
	if _, err := Dir(t.TempDir()).Write("no/such/dir", "x"); err == nil {
		t.Error("write into a missing directory: no error")
	}
}
