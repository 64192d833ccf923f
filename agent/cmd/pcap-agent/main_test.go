package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"
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
