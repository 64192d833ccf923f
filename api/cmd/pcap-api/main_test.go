package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/tunnel"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-api", "--version"}); err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got, want := out.String(), "pcap-api version dev\n"; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}

func TestHelpShowsNoHelpCommand(t *testing.T) {
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-api", "--help"}); err != nil {
		t.Fatalf("--help: %v", err)
	}
	if strings.Contains(out.String(), "COMMANDS:") || strings.Contains(out.String(), "help, h") {
		t.Errorf("--help lists a help command that does not exist:\n%s", out.String())
	}
	if !strings.Contains(out.String(), "--check-config") {
		t.Errorf("--help does not show --check-config:\n%s", out.String())
	}
}

func TestErrorLineNamesTheProgramOnce(t *testing.T) {
	got := errorLine(errors.New("api: read config: open /x: no such file or directory"))
	if want := "pcap-api: read config: open /x: no such file or directory"; got != want {
		t.Errorf("errorLine = %q, want %q", got, want)
	}
}

// TestExampleConfig checks examples/pcap-api.yml with --check-config, in a
// directory holding the key files it names.
func TestExampleConfig(t *testing.T) {
	example, err := filepath.Abs("../../../examples/pcap-api.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("keys", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields("api_host_key agent_client_key") {
		_, pemKey, err := tunnel.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join("keys", name), pemKey, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	signer, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("keys", "agent_host_keys"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("keys", "director_ca.pem"), authority.CertPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-api", "--config", example, "--check-config"}); err != nil {
		t.Fatalf("pcap-api --check-config %s: %v\n%s", example, err, out.String())
	}
}
