package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestCFPluginRefusals: what cannot be captured is refused with the
// reason on stderr, cf exits 1, no output file is left behind (an
// existing one is untouched) and no agent is contacted. Then a capture of
// all instances skips the crashed one and captures the others.
func TestCFPluginRefusals(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.pcapng")
	if err := os.WriteFile(existing, []byte("an earlier capture"), 0o644); err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		args []string
		want string // a whole line of cf's output
	}{
		{"app not found", []string{"nosuchapp"},
			"FAILED: app nosuchapp not found in the targeted space"},
		{"stopped app", []string{"stopped"},
			`pcap: error: target-not-found reason="app stopped has no web instances (is it stopped?)"`},
		{"index out of range", []string{"myapp", "-i", "0,7"},
			`pcap: error: target-not-found reason="app myapp has no web instance 7 (it has 4: 0..3)"`},
		{"no such process type", []string{"myapp", "-t", "worker"},
			`pcap: error: target-not-found reason="app myapp has no process of type \"worker\""`},
		{"bad index", []string{"myapp", "-i", "-1"},
			`FAILED: instance index "-1" is not a number 0..100000`},
		{"existing output", []string{"myapp", "-o", existing},
			"FAILED: " + existing + ": output file exists (use --force to overwrite)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".pcapng")
			args := tc.args
			if !strings.Contains(strings.Join(args, " "), "-o ") {
				args = append(args, "-o", out)
			}
			p := cf.start(t, e, nil, args...)
			if code := cfExit(t, p, 60*time.Second); code != 1 {
				t.Errorf("cf pcap exited %d, want 1", code)
			}
			if len(p.Lines(regexp.MustCompile("^"+regexp.QuoteMeta(tc.want)+"$"))) != 1 {
				t.Errorf("no line %q in:\n%s", tc.want, p.Output())
			}
			assertNoFile(t, out)
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "an earlier capture" {
		t.Errorf("the existing output file now holds %q", b)
	}
	// The API's log is read as it comes: wait for the last refusal.
	e.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-refused".*no process of type`), 5*time.Second)
	if n := len(e.API.Lines(regexp.MustCompile(`"msg":"capture-refused"`))); n != 3 {
		t.Errorf("the API refused %d captures, want 3 (stopped, index, type)", n)
	}
	assertNoAgentContact(t, e)

	// Help in the cf CLI's style, from the plugin's metadata.
	for _, args := range [][]string{{"help", "pcap"}, {"pcap", "--help"}} {
		help := cf.must(t, args...)
		for _, want := range []string{"pcap - Capture the network traffic of all instances of an app",
			"cf pcap APP_NAME [-i INDEXES]", "cf pcap myapp -o - | wireshark -k -i -", "--force", "--pcap-api"} {
			if !strings.Contains(help, want) {
				t.Errorf("cf %s lacks %q:\n%s", strings.Join(args, " "), want, help)
			}
		}
	}

	// All instances: the crashed one (3) is reported and skipped, the
	// running ones are captured. The API calls that partial (exit 3), which
	// the cf CLI turns into 1.
	out := filepath.Join(dir, "all.pcapng")
	p := cf.start(t, e, nil, "myapp", "-f", "udp dst port 9000", "-c", "3", "-o", out)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/3: skipped reason="instance is CRASHED"$`), 30*time.Second)
	for i := range 3 {
		p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: web/%d: started`, i)), 30*time.Second)
	}
	for _, c := range e.Containers {
		sendUDP(t, c.NS, "198.18.0.1:9000", 3)
	}
	if code := cfExit(t, p, 30*time.Second); code != 1 {
		t.Errorf("cf pcap exited %d, want 1 (partial)\n%s", code, p.Output())
	}
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: partial sources=4 packets=9 `), time.Second)
	if per := interfaceCounts(t, out); per["web/0:eth0"] != 3 || per["web/1:eth0"] != 3 || per["web/2:eth0"] != 3 || len(per) != 3 {
		t.Errorf("packets per interface = %v, want web/0..2:eth0=3 each", per)
	}
	if n := countISBs(t, out); n != 3 {
		t.Errorf("%d interface statistics blocks, want 3", n)
	}
}
