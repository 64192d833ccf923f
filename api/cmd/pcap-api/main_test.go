package main

import (
	"testing"

	"code.cloudfoundry.org/pcap/integration/maintest"
)

func TestVersionAndHelp(t *testing.T) { maintest.CheckVersionAndHelp(t, app, "pcap-api") }

// TestExampleConfig checks examples/pcap-api.yml with --check-config.
func TestExampleConfig(t *testing.T) {
	maintest.CheckExampleConfig(t, app, "pcap-api", maintest.Files{
		PrivateKeys: []string{"api_host_key", "agent_client_key"},
		PublicKeys:  []string{"agent_host_keys"},
		CACerts:     []string{"director_ca.pem"},
	})
}
