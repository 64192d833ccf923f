package main

import (
	"testing"

	"code.cloudfoundry.org/pcap/integration/maintest"
)

func TestVersionAndHelp(t *testing.T) { maintest.CheckVersionAndHelp(t, app, "pcap-agent") }

// TestExampleConfig checks examples/pcap-agent.yml with --check-config.
func TestExampleConfig(t *testing.T) {
	maintest.CheckExampleConfig(t, app, "pcap-agent", maintest.Files{
		PrivateKeys: []string{"agent_host_key"},
		PublicKeys:  []string{"api_client_keys"},
	})
}
