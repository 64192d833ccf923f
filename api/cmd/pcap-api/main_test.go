package main

import (
	"slices"
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

func TestMemoryLimiter(t *testing.T) {
	var got []int64
	set := func(n int64) int64 { got = append(got, n); return 0 }
	check := func(name string, want ...int64) {
		t.Helper()
		if !slices.Equal(got, want) {
			t.Errorf("%s: limits set %v, want %v", name, got, want)
		}
		got = nil
	}

	if f := memoryLimiter(100<<20, false, set); f != nil {
		t.Error("fixed limit: got a function to move it")
	}
	check("fixed", 100<<20)
	if f := memoryLimiter(-1, false, set); f != nil {
		t.Error("no limit: got a function to move it")
	}
	check("none")
	if f := memoryLimiter(0, true, set); f != nil {
		t.Error("GOMEMLIMIT set: got a function to move it")
	}
	check("GOMEMLIMIT")

	f := memoryLimiter(0, false, set)
	if f == nil {
		t.Fatal("automatic limit: no function to move it")
	}
	f(1)
	f(2)
	f(0)
	check("automatic", 16<<20, 48<<20, 80<<20, 16<<20)
}
