package main

import (
	"errors"
	"testing"

	"code.cloudfoundry.org/pcap/integration/maintest"
)

func TestVersionAndHelp(t *testing.T) { maintest.CheckVersionAndHelp(t, app, "pcap-agent") }

func TestErrorLineNamesTheProgramOnce(t *testing.T) {
	got := errorLine(errors.New("agent: read config: open /x: no such file or directory"))
	if want := "pcap-agent: read config: open /x: no such file or directory"; got != want {
		t.Errorf("errorLine = %q, want %q", got, want)
	}
}

// TestExampleConfig checks examples/pcap-agent.yml with --check-config.
func TestExampleConfig(t *testing.T) {
	maintest.CheckExampleConfig(t, app, "pcap-agent", maintest.Files{
		PrivateKeys: []string{"agent_host_key"},
		PublicKeys:  []string{"api_client_keys"},
	})
}
