package main

import (
	"errors"
	"testing"

	"code.cloudfoundry.org/pcap/integration/maintest"
)

func TestVersionAndHelp(t *testing.T) { maintest.CheckVersionAndHelp(t, app, "pcap-api") }

func TestErrorLineNamesTheProgramOnce(t *testing.T) {
	got := errorLine(errors.New("api: read config: open /x: no such file or directory"))
	if want := "pcap-api: read config: open /x: no such file or directory"; got != want {
		t.Errorf("errorLine = %q, want %q", got, want)
	}
}

// TestExampleConfig checks examples/pcap-api.yml with --check-config.
func TestExampleConfig(t *testing.T) {
	maintest.CheckExampleConfig(t, app, "pcap-api", maintest.Files{
		PrivateKeys: []string{"api_host_key", "agent_client_key"},
		PublicKeys:  []string{"agent_host_keys"},
		CACerts:     []string{"director_ca.pem"},
	})
}
