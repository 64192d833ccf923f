package integration

import (
	"bytes"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestCFPluginStdoutIntoTshark: `cf pcap myapp -o - | tshark -r -`, with
// cf's stdout feeding tshark's stdin through a pipe: tshark reads the live
// stream and counts each instance's packets.
func TestCFPluginStdoutIntoTshark(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)

	var fields bytes.Buffer // read only after tshark has exited
	ts, pw := tsharkPipe(t, &fields, "-r", "-", "-T", "fields", "-e", "frame.interface_name", "-e", "udp.dstport")
	p := cf.start(t, e, pw, "myapp", "-i", "0,2", "-f", "udp dst port 9000", "-c", "7", "-o", "-")
	pw.Close() // cf and its plugin hold the write end now
	for _, i := range []string{"0", "2"} {
		p.WaitLine(t, regexp.MustCompile(`^pcap: web/`+i+`: started`), 30*time.Second)
	}
	for _, c := range e.Containers {
		sendUDP(t, c.NS, "198.18.0.1:9000", 7) // instance 1's are not asked for
	}
	if code := cfExit(t, p, 30*time.Second); code != 0 {
		t.Fatalf("cf pcap exited %d, want 0\n%s", code, p.Output())
	}
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: limit-reached sources=2 packets=14 `), time.Second)
	if err, ok := ts.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("tshark -r - did not finish cleanly (exited %v): %v\n%s", ok, err, ts.Output())
	}
	per := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(fields.String()), "\n") {
		name, port, _ := strings.Cut(line, "\t")
		if port != "9000" {
			t.Errorf("tshark read a packet to port %q: %q", port, line)
		}
		per[name]++
	}
	if per["web/0:eth0"] != 7 || per["web/2:eth0"] != 7 || len(per) != 2 {
		t.Errorf("tshark read %v from the pipe, want web/0:eth0=7 web/2:eth0=7", per)
	}
	// Status lines stay on stderr: nothing but the capture went down the pipe
	// (tshark would have refused it), and cf said nothing on stdout.
	if strings.Contains(fields.String(), "pcap:") {
		t.Errorf("status lines reached stdout:\n%s", fields.String())
	}
}
