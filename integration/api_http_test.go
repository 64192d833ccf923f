package integration

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPIHealthMetricsAndUsage checks the HTTP port (/health, /metrics
// after captures of every kind) and what the capture command says about
// itself over ssh.
func TestAPIHealthMetricsAndUsage(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{
		VMs:     2,
		NoAgent: map[int]bool{1: true},
		Groups:  map[string][]int{"lab": {0}, "dead": {1}},
		// memory_limit reaches Go's runtime (its own metric says so).
		APIConfig: func(c *api.Config) { c.MemoryLimit = 48 << 20 },
	})

	if code, body := c.httpGet(t, "/health"); code != 200 || body != "ok\n" {
		t.Errorf("/health = %d %q, want 200 ok", code, body)
	}

	// capture --help prints the usage on stdout and exits 0.
	var usage bytes.Buffer
	cl := c.capture(t, 0, &usage, "--help")
	if code := exitCode(t, cl, 15*time.Second); code != 0 {
		t.Errorf("capture --help: exit status %d:\n%s", code, cl.Output())
	}
	for _, want := range []string{"capture [flags] TARGET...", "--filter FILTER, -f FILTER", "--count N, -c N", "--format FORMAT"} {
		if !strings.Contains(usage.String(), want) {
			t.Errorf("usage lacks %q:\n%s", want, usage.String())
		}
	}

	// An unknown flag: exit 1, a clear message, nothing on stdout.
	var out bytes.Buffer
	cl = c.capture(t, 0, &out, "--snaplenn", "96", "lab")
	if code := exitCode(t, cl, 15*time.Second); code != 1 {
		t.Errorf("unknown flag: exit status %d, want 1:\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: error: bad-request reason="flag provided but not defined: -snaplenn"$`)
	if out.Len() != 0 {
		t.Errorf("refused command wrote %d bytes to stdout", out.Len())
	}

	// Not a capture command at all.
	cl = runSSH(t, c.API, "static", c.Operators[0], &out, "sh", "-c", "id")
	if code := exitCode(t, cl, 15*time.Second); code != 1 {
		t.Errorf("sh: exit status %d, want 1:\n%s", code, cl.Output())
	}
	wantLine(t, cl, `^pcap: error: bad-request reason="unknown command \\"sh\\"; the only command is \\"capture\\" \(try \\"capture --help\\"\)"$`)

	// One capture that works, one whose only agent is unreachable.
	cl, _ = c.captureFile(t, 0, "-f", "'udp dst port 7000'", "lab")
	waitStarted(t, cl, "lab/0")
	c.send(t, 0, 7000, 4)
	cl.Stdin.Close()
	if code := exitCode(t, cl, 15*time.Second); code != 0 {
		t.Errorf("capture: exit status %d:\n%s", code, cl.Output())
	}
	cl, _ = c.captureFile(t, 0, "dead")
	if code := exitCode(t, cl, 15*time.Second); code != 1 {
		t.Errorf("capture of an unreachable agent: exit status %d:\n%s", code, cl.Output())
	}

	code, metrics := c.httpGet(t, "/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`pcap_api_captures_active 0`,
		`pcap_api_captures_total{outcome="stopped"} 1`,
		`pcap_api_captures_total{outcome="failed"} 1`,
		`pcap_api_captures_refused_total{code="bad-request"} 2`,
		`pcap_api_packets_forwarded_total 4`,
		`pcap_api_agent_connection_errors_total 1`,
		`pcap_api_dropped_packets_total{place="agent"} 0`,
		`go_gc_gomemlimit_bytes 5.0331648e+07`,
	} {
		if !strings.Contains(metrics, "\n"+want+"\n") {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if !regexp.MustCompile(`(?m)^pcap_api_bytes_forwarded_total [1-9]\d*$`).MatchString(metrics) {
		t.Errorf("/metrics: no bytes forwarded")
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", metrics)
	}
}
