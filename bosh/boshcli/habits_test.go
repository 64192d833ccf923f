package boshcli_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestCLIHabits pins the exact words pcap-bosh answers common slips with.
// None of these cases may contact anything: the environment named is a
// closed port, and every answer comes before a dial would.
func TestCLIHabits(t *testing.T) {
	existing := filepath.Join(t.TempDir(), "old.pcapng")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	env := []string{"-e", "https://127.0.0.1:1", "--client", "c", "--client-secret", "s"}
	cases := []struct {
		name       string
		deployment string // BOSH_DEPLOYMENT
		args       []string
		status     int
		stdout     string
		stderr     string
	}{
		{"version", "", []string{"--version"}, 0, "", "pcap-bosh version dev\n"},
		{"unknown flag once", "", []string{"-d", "cf", "router", "--nope"}, 1, "",
			"pcap-bosh: flag provided but not defined: -nope (see pcap-bosh --help)\n"},
		{"tcpdump -w", "", []string{"-d", "cf", "router", "-w", "x.pcap"}, 1, "",
			"pcap-bosh: flag provided but not defined: -w (to write a file, use -o FILE; see pcap-bosh --help)\n"},
		{"trailing -e", "", []string{"-d", "cf", "router", "-o", "x", "-e"}, 1, "",
			"pcap-bosh: flag needs an argument: -e (see pcap-bosh --help)\n"},
		{"no deployment", "", append(env, "router", "-o", "x"), 1, "",
			"pcap-bosh: no deployment given: -d DEPLOYMENT, or set BOSH_DEPLOYMENT\n"},
		{"BOSH_DEPLOYMENT", "cf", append(env, "router"), 1, "",
			"pcap-bosh: no output given: -o FILE, or -o - to write the capture to stdout\n"},
		{"bad snaplen before the network", "", append(env, "-d", "cf", "router", "-s", "0", "-o", "x"), 1, "",
			"pcap-bosh: snaplen 0 is out of range 1..262144\n"},
		{"bad format before the network", "", append(env, "-d", "cf", "router", "--format", "cap", "-o", "x"), 1, "",
			"pcap-bosh: format \"cap\" is not pcapng or pcap\n"},
		{"existing output before the network", "", append(env, "-d", "cf", "router", "-o", existing), 1, "",
			"pcap-bosh: " + existing + ": output file exists (use --force to overwrite)\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("BOSH_DEPLOYMENT", c.deployment)
			t.Setenv("BOSH_ENVIRONMENT", "")
			r := run("", false, c.args...)
			if r.status != c.status || r.stdout != c.stdout || r.stderr != c.stderr {
				t.Errorf("pcap-bosh %s:\n status %d, want %d\n stdout %q, want %q\n stderr %q\n   want %q",
					strings.Join(c.args, " "), r.status, c.status, r.stdout, c.stdout, r.stderr, c.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"help"}, {"--help"}, {"-h"}} {
		r := run("", false, args...)
		if r.status != 0 {
			t.Errorf("pcap-bosh %s: status %d, stderr %q", args[0], r.status, r.stderr)
		}
		for _, want := range []string{
			"\nEXAMPLES:\n   pcap-bosh -e prod -d cf router -o router.pcapng\n",
			"-i is the interface, as in tcpdump (in cf pcap, -i is the instance)",
			"(default: 0: unlimited)",
			"(default: 0s: until stopped, at most the server's maximum)",
			"[$BOSH_DEPLOYMENT]",
		} {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("pcap-bosh %s: help lacks %q:\n%s", args[0], want, r.stderr)
			}
		}
		if strings.Contains(r.stderr, "required") {
			t.Errorf("pcap-bosh %s: help says something is required:\n%s", args[0], r.stderr)
		}
	}
}
