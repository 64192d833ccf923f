package integration

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestReliabilityPlainSSHEmptyStdin: plain OpenSSH from a script gets the
// capture it asked for. An empty stdin (ssh -n, < /dev/null, a job a
// script runs in the background) is not a stop: the capture runs to its
// --duration or --count, holds the packets sent meanwhile and exits 0. A
// capture that delivered nothing says so in a warning line.
func TestReliabilityPlainSSHEmptyStdin(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 1})
	ssh := func(t *testing.T, stdin *os.File, sshFlags []string, args ...string) (*testenv.Proc, string) {
		t.Helper()
		file := filepath.Join(t.TempDir(), "capture.pcapng")
		f, err := os.Create(file)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		argv := append(append(sshFlags, opensshArgs(t, c.API, "static", c.Operators[0])...), append([]string{"capture"}, args...)...)
		// Stdin nil: /dev/null.
		p := testenv.Start(t, testenv.StartOptions{Netns: c.API.Netns, Stdout: f, Stdin: stdin}, "ssh", argv...)
		return p, file
	}
	wait := func(t *testing.T, p *testenv.Proc, timeout time.Duration) {
		t.Helper()
		err, ok := p.Wait(timeout)
		if !ok || err != nil {
			t.Fatalf("did not exit 0 within %v: %v\n%s", timeout, err, p.Output())
		}
	}

	// holdsSent sends n datagrams once p's capture started, waits for p to
	// exit 0 and wants exactly those n in file and in the summary.
	holdsSent := func(t *testing.T, p *testenv.Proc, file string, n int) {
		t.Helper()
		p.WaitLine(t, regexp.MustCompile(`^pcap: lab/0: started `), 30*time.Second)
		relSendUDP(t, c.VMs[0], "198.18.0.1:7000", n, 100)
		wait(t, p, 30*time.Second)
		p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: summary: limit-reached sources=1 packets=%d `, n)), time.Second)
		wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": n})
	}

	for _, tt := range []struct {
		name     string
		sshFlags []string
		args     []string
		sent     int
	}{
		{"ssh -n with --duration", []string{"-n"}, []string{"--duration", "4s"}, 5},
		{"< /dev/null with --count", nil, []string{"-c", "4"}, 4},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p, file := ssh(t, nil, tt.sshFlags, append(tt.args, "-f", "'udp dst port 7000'", "lab/0")...)
			holdsSent(t, p, file, tt.sent)
		})
	}

	t.Run("a script's background job", func(t *testing.T) {
		// sh gives an asynchronous list /dev/null for stdin (POSIX, no job
		// control): `ssh … capture … > f &` as a script writes it.
		file := filepath.Join(t.TempDir(), "capture.pcapng")
		argv := append(opensshArgs(t, c.API, "static", c.Operators[0]), "capture", "--duration", "4s", "-f", "'udp dst port 7000'", "lab/0")
		quoted := make([]string, len(argv))
		for i, a := range argv {
			quoted[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		script := "ssh " + strings.Join(quoted, " ") + " > '" + file + "' &\nwait $!\n"
		stdin, w, err := os.Pipe() // the script's own stdin stays open
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { w.Close() })
		p := testenv.Start(t, testenv.StartOptions{Netns: c.API.Netns, Stdin: stdin}, "sh", "-c", script)
		stdin.Close()
		holdsSent(t, p, file, 6)
	})

	t.Run("no packets: a warning", func(t *testing.T) {
		p, file := ssh(t, nil, []string{"-n"}, "--duration", "2s", "-f", "'udp dst port 7999'", "lab/0")
		wait(t, p, 30*time.Second)
		p.WaitLine(t, regexp.MustCompile(`^pcap: warning: no-packets reason="no packets captured: check that traffic passed interface eth0 and matched filter \\"udp dst port 7999\\""$`), time.Second)
		p.WaitLine(t, regexp.MustCompile(`^pcap: summary: limit-reached sources=1 packets=0 `), time.Second)
		capinfos(t, file) // still a valid, finished file
		if n := countISBs(t, file); n != 1 {
			t.Errorf("%d interface statistics blocks, want 1", n)
		}
	})
}

// TestReliabilityAgentStoppedGracefully: an agent shut down (SIGTERM)
// mid-capture sends its final statistics with end=agent-stopped; the API
// reports the source as agent-stopped, the other source keeps capturing,
// and the outcome is partial: exit 3, as for an agent that was killed.
func TestReliabilityAgentStoppedGracefully(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 2})
	cl, file := c.captureLab(t)
	relSendUDP(t, c.VMs[0], "198.18.0.1:7000", 3, 100)
	relSendUDP(t, c.VMs[1], "198.18.0.1:7000", 4, 100)
	if err := c.Agents[0].Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	cl.WaitLine(t, regexp.MustCompile(`^pcap: lab/0: agent-stopped reason="agent 198\.18\.0\.10:9494 was shut down during the capture"`), 30*time.Second)
	relSendUDP(t, c.VMs[1], "198.18.0.1:7000", 5, 100) // the other goes on
	cl.Stdin.Close()
	wantPartial(t, cl, 30*time.Second)
	cl.WaitLine(t, regexp.MustCompile(`^pcap: lab/0: agent-stopped reason=.* end=agent-stopped packets=3 `), time.Second)
	cl.WaitLine(t, regexp.MustCompile(`^pcap: summary: partial sources=2 packets=12 `), time.Second)
	wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 3, "lab/1:eth0": 9})
	c.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-source-agent-stopped".*"source":"lab/0"`), 5*time.Second)
}

// TestReliabilityCFPluginSignals: the cf CLI's plugin finishes the file
// when the cf CLI alone is killed with SIGTERM (as a CI job's timeout
// does: the plugin is not signalled, it notices its parent is gone), and
// when SIGHUP reaches the whole process group (the terminal closes). In
// both, the API ends the capture and frees its slot.
func TestReliabilityCFPluginSignals(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)

	for i, tc := range []struct {
		name   string
		signal func(p *testenv.Proc) error
		why    string
	}{
		{"SIGTERM to cf only", func(p *testenv.Proc) error { return p.Signal(syscall.SIGTERM) }, `the cf CLI \(pid \d+\) has gone away`},
		// The group's SIGHUP ends the cf CLI too: the plugin names the
		// signal, or, kept from the CPU until its parent check came first,
		// the cf CLI gone; either way it stops and finishes the file
		// (pcap-bosh, with no parent to watch, is checked for "hangup").
		{"SIGHUP to the group", func(p *testenv.Proc) error { return p.SignalGroup(syscall.SIGHUP) }, `(hangup|the cf CLI \(pid \d+\) has gone away)`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "web.pcapng")
			p := cf.start(t, e, nil, "myapp", "-i", "0", "-f", "udp dst port 9000", "-o", out)
			p.WaitLine(t, regexp.MustCompile(`^pcap: web/0: started`), 30*time.Second)
			sendUDP(t, e.Containers[0].NS, "198.18.0.1:9000", 7+i)
			if err := tc.signal(p); err != nil {
				t.Fatal(err)
			}
			p.WaitLine(t, regexp.MustCompile(`^pcap: client: stopping reason="`+tc.why+`"$`), 30*time.Second)
			p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: summary: stopped sources=1 packets=%d `, 7+i)), 30*time.Second)
			// Output ends when every process holding cf's stderr has
			// exited: the plugin too.
			if _, ok := p.Wait(30 * time.Second); !ok {
				t.Fatalf("the plugin did not exit:\n%s", p.Output())
			}
			if per := interfaceCounts(t, out); per["web/0:eth0"] != 7+i || len(per) != 1 {
				t.Errorf("packets per interface = %v, want web/0:eth0=%d", per, 7+i)
			}
			if n := countISBs(t, out); n != 1 {
				t.Errorf("%d interface statistics blocks, want 1", n)
			}
			relWaitCount(t, e.API, `"msg":"capture-ended".*"outcome":"stopped"`, i+1, 10*time.Second)
			waitUntil(t, 10*time.Second, "the API to free the capture slot", func() bool {
				return strings.Contains(httpGetRoot(t, "http://"+e.API.HTTPAddr+"/metrics"), "\npcap_api_captures_active 0\n")
			})
		})
	}
}

// httpGetRoot fetches url from this namespace and returns the body.
func httpGetRoot(t *testing.T, url string) string {
	t.Helper()
	cl := &http.Client{Timeout: 10 * time.Second}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return string(b)
}

// TestReliabilityBOSHClientsLifecycle: one partial capture (a VM next to
// an instance without one) exits 3 through pcap-bosh and through plain
// ssh alike; pcap-bosh finishes the file on SIGHUP to its group (the
// terminal closing) and on SIGTERM, like on Ctrl-C.
func TestReliabilityBOSHClientsLifecycle(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 1)
	pcapBosh := filepath.Join(testenv.Binaries(t), "pcap-bosh")
	env := []string{"HOME=" + home}
	const skippedRe = `^pcap: errand/3f2a0000-0000-4000-8000-0000000000ee: skipped reason="instance has no VM"$`

	t.Run("partial: exit 3 from pcap-bosh and ssh", func(t *testing.T) {
		for i, client := range []string{"pcap-bosh", "ssh"} {
			port := 7100 + i
			filter := fmt.Sprintf("udp dst port %d", port)
			out := filepath.Join(t.TempDir(), "partial.pcapng")
			var p *testenv.Proc
			if client == "pcap-bosh" {
				p = testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: env}, pcapBosh,
					append([]string{"-e", "fake", "-d", "cf", "router/0", "errand", "-f", filter, "-c", "3", "-o", out}, boshAPIFlags(e.API)...)...)
			} else {
				f, err := os.Create(out)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				p = boshSSH{API: e.API, Password: e.sshCode(t, home), Out: f}.start(t,
					"capture", "-d", "cf", "router/0", "errand", "-f", "'"+filter+"'", "-c", "3").Proc
			}
			p.WaitLine(t, regexp.MustCompile(skippedRe), 30*time.Second)
			p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started `), 30*time.Second)
			sendUDP(t, e.Lab.VMs[0], fmt.Sprintf("198.18.0.1:%d", port), 3)
			if c := boshExitCode(t, p, 30*time.Second); c != 3 {
				t.Errorf("%s exited %d, want 3 (partial):\n%s", client, c, p.Output())
			}
			p.WaitLine(t, regexp.MustCompile(`^pcap: summary: partial sources=2 packets=3 `), time.Second)
			if per := interfaceCounts(t, out); per[boshRouterIface(0)] != 3 || len(per) != 1 {
				t.Errorf("%s: packets per interface %v, want %s=3", client, per, boshRouterIface(0))
			}
		}
	})

	for i, sig := range []syscall.Signal{syscall.SIGHUP, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			port := 7110 + i
			out := filepath.Join(t.TempDir(), "edge.pcapng")
			p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: env, Group: true}, pcapBosh,
				append([]string{"-e", "fake", "-d", "cf", "router", "-f", fmt.Sprintf("udp dst port %d", port), "-o", out}, boshAPIFlags(e.API)...)...)
			p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started `), 30*time.Second)
			sendUDP(t, e.Lab.VMs[0], fmt.Sprintf("198.18.0.1:%d", port), 5+i)
			if err := p.SignalGroup(sig); err != nil {
				t.Fatal(err)
			}
			if c := boshExitCode(t, p, 30*time.Second); c != 0 {
				t.Errorf("pcap-bosh exited %d after %v, want 0:\n%s", c, sig, p.Output())
			}
			p.WaitLine(t, regexp.MustCompile(`^pcap: client: stopping reason="`+sig.String()+`"$`), time.Second)
			p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: summary: stopped sources=1 packets=%d `, 5+i)), time.Second)
			if per := interfaceCounts(t, out); per[boshRouterIface(0)] != 5+i || len(per) != 1 {
				t.Errorf("packets per interface %v, want %s=%d", per, boshRouterIface(0), 5+i)
			}
			if n := countISBs(t, out); n != 1 {
				t.Errorf("%d interface statistics blocks, want 1", n)
			}
		})
	}
}
