// Package maintest checks what every service main (pcap-api, pcap-agent)
// must do the same way: --version, --help without a phantom help command,
// and its example configuration under --check-config.
package maintest

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/tunnel"
)

// run runs a fresh app with args and returns what it printed.
func run(newApp func() *cli.App, args ...string) (string, error) {
	var out bytes.Buffer
	a := newApp()
	a.Writer, a.ErrWriter = &out, &out
	err := a.Run(args)
	return out.String(), err
}

// CheckVersionAndHelp checks that name --version prints "NAME version
// dev" (a test build has no -ldflags) and that --help lists no "help"
// command and shows --check-config.
func CheckVersionAndHelp(t *testing.T, newApp func() *cli.App, name string) {
	t.Helper()
	out, err := run(newApp, name, "--version")
	if err != nil || out != name+" version dev\n" {
		t.Errorf("%s --version printed %q, %v; want %q", name, out, err, name+" version dev\n")
	}
	out, err = run(newApp, name, "--help")
	if err != nil {
		t.Errorf("%s --help: %v", name, err)
	}
	if strings.Contains(out, "COMMANDS:") || strings.Contains(out, "help, h") {
		t.Errorf("%s --help lists a help command that does not exist:\n%s", name, out)
	}
	if !strings.Contains(out, "--check-config") {
		t.Errorf("%s --help does not show --check-config:\n%s", name, out)
	}
}

// Files are the files an example configuration names, below keys/.
type Files struct {
	PrivateKeys []string // OpenSSH private keys
	PublicKeys  []string // authorized_keys files
	CACerts     []string // PEM certificates
}

// CheckExampleConfig runs name --config examples/NAME.yml --check-config
// in a fresh directory that holds the files the example names.
func CheckExampleConfig(t *testing.T, newApp func() *cli.App, name string, files Files) {
	t.Helper()
	example, err := filepath.Abs(filepath.Join("..", "..", "..", "examples", name+".yml"))
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	if err := os.Mkdir("keys", 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		if err := os.WriteFile(filepath.Join("keys", name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range files.PrivateKeys {
		_, pemKey, err := tunnel.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		write(f, pemKey)
	}
	for _, f := range files.PublicKeys {
		signer, _, err := tunnel.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		write(f, ssh.MarshalAuthorizedKey(signer.PublicKey()))
	}
	for _, f := range files.CACerts {
		authority, err := ca.New()
		if err != nil {
			t.Fatal(err)
		}
		write(f, authority.CertPEM())
	}
	if out, err := run(newApp, name, "--config", example, "--check-config"); err != nil {
		t.Fatalf("%s --check-config %s: %v\n%s", name, example, err, out)
	}
}
