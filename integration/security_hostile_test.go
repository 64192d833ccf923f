package integration

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// relErrLine is the status line of a refused command.
func relErrLine(code, reason string) string {
	return "pcap: error: " + code + " reason=" + strconv.Quote(reason) + "\n"
}

// relAgentsRefuse are the status lines of a command both agents of the
// lab refuse with the same code and reason.
func relAgentsRefuse(code, reason string) string {
	return fmt.Sprintf("pcap: lab/0: failed code=%s reason=%s\npcap: lab/1: failed code=%s reason=%s\n", code, strconv.Quote(reason), code, strconv.Quote(reason)) +
		relErrLine("failed", "no target could be captured: lab/0: "+reason+"; lab/1: "+reason)
}

// TestSecurityHostileCommands sends hostile capture commands through the
// real front door (the Go SSH client, operator key) to a lab of two real
// agents. Each is refused with its exact message on stderr, exit status
// 1, nothing on stdout; nothing is ever run by a shell (the commands that
// would create a file do not); refusals the API can make itself never
// reach an agent. A few go through the real OpenSSH client too.
func TestSecurityHostileCommands(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newRelLab(t, relLabOptions{VMs: 2})
	b := make([]byte, 6)
	rand.Read(b)
	marker := "/tmp/pcap-hostile-" + hex.EncodeToString(b)
	t.Cleanup(func() { os.Remove(marker) })

	long := strings.Repeat("udp or ", 714) + "tcp" // 5001 characters
	unknown := make([]string, 1000)
	for i := range unknown {
		unknown[i] = "g" + strconv.Itoa(i)
	}
	badSyntax := "filter does not compile on eth0: syntax error"
	cases := []relHostile{
		// Filters: passed to libpcap as text, never to a shell.
		{"filter $(…)", "capture -f '$(touch " + marker + ")' lab", relAgentsRefuse("bad-filter", badSyntax), true},
		// Unquoted, $(…) and `…` stay one word each: the splitter
		// expands nothing.
		{"filter $(…) unquoted", "capture -f $(touch " + marker + ") lab", relAgentsRefuse("bad-filter", badSyntax), true},
		{"filter backticks", "capture -f '`touch " + marker + "`' lab", relAgentsRefuse("bad-filter", badSyntax), true},
		{"filter backticks unquoted", "capture -f `touch " + marker + "` lab", relAgentsRefuse("bad-filter", badSyntax), true},
		{"filter with ;", "capture -f 'udp; touch " + marker + "' lab", relAgentsRefuse("bad-filter", badSyntax), true},
		{"filter with NUL", "capture -f 'udp\x00' lab", relErrLine("bad-request", "command line contains a NUL byte"), false},
		{"filter not UTF-8", "capture -f 'udp \xff\xfe' lab", relErrLine("bad-request", "command line is not valid UTF-8"), false},
		{"filter with a terminal escape", "capture -f 'udp \x1b[2J' lab", relErrLine("bad-request", "filter contains a control character or invalid UTF-8"), false},
		{"filter 5001 characters", "capture -f '" + long + "' lab", relErrLine("bad-request", "filter is 5001 characters, at most 5000 are allowed"), false},
		{"filter syntax error", "capture -f 'tcp[' lab", relAgentsRefuse("bad-filter", badSyntax), true},
		{"filter bad port", "capture -f 'udp port 99999' lab", relAgentsRefuse("bad-filter", "filter does not compile on eth0: illegal port number 99999 > 65535"), true},

		// Interfaces.
		{"interface ../x", "capture -i ../x lab", relErrLine("bad-request", `interface name "../x" is not valid (letters, digits and _.:@- only)`), false},
		{"interface 17 characters", "capture -i abcdefghijklmnopq lab", relErrLine("bad-request", `interface name "abcdefghijklmnopq" is longer than 15 characters`), false},
		{"interface with space", "capture -i 'eth 0' lab", relErrLine("bad-request", `interface name "eth 0" is not valid (letters, digits and _.:@- only)`), false},
		{"interface with NUL", "capture -i 'eth0\x00' lab", relErrLine("bad-request", "command line contains a NUL byte"), false},
		{"interface empty", "capture -i '' lab", relErrLine("bad-request", "interface name is empty"), false},
		{"interface $(…)", "capture -i '$(id)' lab", relErrLine("bad-request", `interface name "$(id)" is not valid (letters, digits and _.:@- only)`), false},
		{"interface twice", "capture -i eth0 -i eth0 lab", relErrLine("bad-request", `interface "eth0" is listed twice`), false},
		{"nine interfaces", "capture -i a -i b -i c -i d -i e -i f -i g -i h -i j lab", relErrLine("bad-request", "9 interfaces asked for, at most 8 are allowed"), false},
		{"interface unknown", "capture -i eth7 lab", relAgentsRefuse("unknown-interface", `no interface "eth7" in the target's network namespace`), true},

		// Numbers out of range or not numbers.
		{"snaplen 0", "capture -s 0 lab", relErrLine("bad-request", "snaplen 0 is out of range 1..262144"), false},
		{"snaplen 262145", "capture -s 262145 lab", relErrLine("bad-request", "snaplen 262145 is out of range 1..262144"), false},
		{"snaplen negative", "capture -s -1 lab", relErrLine("bad-request", "snaplen -1 is out of range 1..262144"), false},
		{"snaplen not a number", "capture -s 1e3 lab", relErrLine("bad-request", `invalid value "1e3" for flag -s: parse error`), false},
		{"count negative", "capture -c -1 lab", relErrLine("bad-request", `invalid value "-1" for flag -c: parse error`), false},
		{"count 2^64", "capture -c 18446744073709551616 lab", relErrLine("bad-request", `invalid value "18446744073709551616" for flag -c: value out of range`), false},
		{"max-bytes negative", "capture --max-bytes -5 lab", relErrLine("bad-request", `invalid value "-5" for flag -max-bytes: parse error`), false},
		{"duration negative", "capture --duration -1s lab", relErrLine("bad-request", "duration is negative"), false},
		{"duration over the maximum", "capture --duration 2h lab", relErrLine("limit-reached", "duration 2h0m0s is longer than the allowed 1h0m0s"), false},
		{"duration not a duration", "capture --duration 1fortnight lab", relErrLine("bad-request", `invalid value "1fortnight" for flag -duration: parse error`), false},
		{"format unknown", "capture --format pcapx lab", relErrLine("bad-request", `format "pcapx" is not pcapng or pcap`), false},

		// Flags and commands that do not exist here.
		{"flag --exec", "capture --exec /bin/sh lab", relErrLine("bad-request", "flag provided but not defined: -exec"), false},
		{"tcpdump's -Z", "capture -Z root lab", relErrLine("bad-request", "flag provided but not defined: -Z"), false},
		{"CLI's --output", "capture --output=/etc/passwd lab", relErrLine("bad-request", "flag provided but not defined: -output"), false},
		{"command rm", "rm -rf /", relErrLine("bad-request", `unknown command "rm"; the only command is "capture" (try "capture --help")`), false},
		{"command by path", "/usr/bin/capture lab", relErrLine("bad-request", `unknown command "/usr/bin/capture"; the only command is "capture" (try "capture --help")`), false},
		{"command ; after capture", "capture lab; touch " + marker, relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"), false},
		{"command | sh", "capture lab | sh", relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"), false},
		{"command && sh", "capture lab && sh", relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"), false},
		{"command > file", "capture lab > " + marker, relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"), false},
		{"command in background", "capture lab &", relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"), false},
		{"unbalanced quote", "capture -f 'udp lab", relErrLine("bad-request", "cannot split command line: invalid command line string"), false},
		{"only spaces", "   ", relErrLine("bad-request", `no command given; try "capture --help"`), false},

		// Sizes.
		{"command line over 64 KiB", "capture " + strings.Repeat("lab ", 16500), relErrLine("bad-request", "command line is 66008 bytes, at most 65536 are allowed"), false},
		{"word over 10000 bytes", "capture -f " + strings.Repeat("x", 10001) + " lab", relErrLine("bad-request", "command line has a word longer than 10000 bytes"), false},
		{"1001 targets", "capture" + strings.Repeat(" lab/0", 1001), relErrLine("bad-request", "1001 targets given, at most 1000 are allowed"), false},
		{"1000 unknown targets", "capture " + strings.Join(unknown, " "), relErrLine("target-not-found", "unknown target(s): "+strings.Join(unknown, ", ")+"; groups are: lab"), false},

		// Targets that look like paths, and flags of other resolvers.
		{"target ../../etc/passwd", "capture ../../etc/passwd", relErrLine("target-not-found", "unknown target(s): ../../etc/passwd; groups are: lab"), false},
		{"target lab/../../x", "capture lab/../../x", relErrLine("target-not-found", "unknown target(s): lab/../../x; groups are: lab"), false},
		{"target after --", "capture -- -f x", relErrLine("target-not-found", "unknown target(s): -f, x; groups are: lab"), false},
		{"--app for a static group", "capture --app ../x lab", relErrLine("bad-request", "--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX"), false},
	}
	if len(cases) < 40 {
		t.Fatalf("%d cases, want at least 40", len(cases))
	}
	contacts := func() int {
		n := 0
		for _, a := range c.Agents {
			n += relCount(a, `"msg":"(capture-started|capture-rejected)"`)
		}
		return n
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := contacts()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := relExec(ctx, c.API, "static", relKeyAuth(c.Operators[0]), tc.cmd)
			if r.Err != nil || r.Status != 1 {
				t.Errorf("status %d, err %v; want 1, nil", r.Status, r.Err)
			}
			if r.Stderr != tc.want {
				t.Errorf("stderr:\n%q\nwant:\n%q", r.Stderr, tc.want)
			}
			if len(r.Stdout) != 0 {
				t.Errorf("%d bytes on stdout", len(r.Stdout))
			}
			if tc.agents {
				// Logs come through pipes: wait for the lines.
				waitUntil(t, 5*time.Second, "both agents to log their refusal", func() bool { return contacts() >= before+2 })
			}
			switch after := contacts(); {
			case tc.agents && after != before+2:
				t.Errorf("%d agent refusals logged, want 2", after-before)
			case !tc.agents && after != before:
				t.Errorf("an agent was asked (%d log lines) for a command the API refuses itself", after-before)
			}
		})
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s exists: a hostile command ran", marker)
	}
	// Every refusal is audited; those of the agents end as failed
	// captures.
	want := len(cases) - countAgents(cases)
	relWaitCount(t, c.API, `"msg":"capture-refused"`, want, 5*time.Second)
	if n := relCount(c.API, `"msg":"capture-refused"`); n != want {
		t.Errorf("the API logged %d capture-refused for %d commands it refused itself", n, want)
	}

	// The same through the real OpenSSH client, which joins its
	// arguments with spaces into the exec request.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"capture", "lab;", "touch", marker}, relErrLine("bad-request", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell")},
		{[]string{"capture", "-f", "'$(touch " + marker + ")'", "lab"}, relAgentsRefuse("bad-filter", badSyntax)},
		{[]string{"capture", "-i", "../x", "lab"}, relErrLine("bad-request", `interface name "../x" is not valid (letters, digits and _.:@- only)`)},
		{[]string{"capture", "--exec", "/bin/sh", "lab"}, relErrLine("bad-request", "flag provided but not defined: -exec")},
	} {
		var out bytes.Buffer
		cl := runSSH(t, c.API, "static", c.Operators[0], &out, tc.args...)
		if code := exitCode(t, cl, 30*time.Second); code != 1 {
			t.Errorf("OpenSSH %q: exit status %d, want 1", tc.args, code)
		}
		if got := cl.Output() + "\n"; got != tc.want {
			t.Errorf("OpenSSH %q: stderr\n%q\nwant\n%q", tc.args, got, tc.want)
		}
		if out.Len() != 0 {
			t.Errorf("OpenSSH %q: %d bytes on stdout", tc.args, out.Len())
		}
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s exists: a hostile command ran", marker)
	}
}

// relHostile is a hostile command and the whole stderr it gets.
type relHostile struct {
	name, cmd, want string
	agents          bool // the agents are asked (and refuse)
}

func countAgents(cases []relHostile) int {
	n := 0
	for _, c := range cases {
		if c.agents {
			n++
		}
	}
	return n
}
