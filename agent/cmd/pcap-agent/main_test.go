package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-agent", "--version"}); err != nil {
		t.Fatalf("--version: %v", err)
	}
	if got, want := out.String(), "pcap-agent version dev\n"; got != want {
		t.Errorf("--version printed %q, want %q", got, want)
	}
}

func TestHelpShowsNoHelpCommand(t *testing.T) {
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-agent", "--help"}); err != nil {
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
	got := errorLine(errors.New("agent: read config: open /x: no such file or directory"))
	if want := "pcap-agent: read config: open /x: no such file or directory"; got != want {
		t.Errorf("errorLine = %q, want %q", got, want)
	}
}

// TestExampleConfig checks examples/pcap-agent.yml with --check-config, in a
// directory holding the key files it names.
func TestExampleConfig(t *testing.T) {
	example, err := filepath.Abs("../../../examples/pcap-agent.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	t.Chdir(dir)
	if err := os.Mkdir("keys", 0o700); err != nil {
		t.Fatal(err)
	}
	for _, name := range strings.Fields("agent_host_key") {
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
	if err := os.WriteFile(filepath.Join("keys", "api_client_keys"), ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o600); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	a := app()
	a.Writer, a.ErrWriter = &out, &out
	if err := a.Run([]string{"pcap-agent", "--config", example, "--check-config"}); err != nil {
		t.Fatalf("pcap-agent --check-config %s: %v\n%s", example, err, out.String())
	}
}
