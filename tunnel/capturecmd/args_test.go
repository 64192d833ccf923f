package capturecmd

import (
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// parseArgs parses what a CLI sends for r, as pcap-api does.
func parseArgs(t *testing.T, r Request) Request {
	t.Helper()
	got, err := ParseCommand(r.Line(), io.Discard)
	if err != nil {
		t.Fatalf("ParseCommand(%q): %v", r.Line(), err)
	}
	return got
}

func TestArgsRoundTrip(t *testing.T) {
	with := func(f func(*Request)) Request { r := defaults(); f(&r); return r }
	cases := []struct {
		name string
		r    Request
		line string
	}{
		{"defaults", defaults(), "capture"},
		{"bosh", with(func(r *Request) { r.Deployment = "cf"; r.Targets = []string{"router", "diego-cell/3f2a"} }),
			"capture --deployment cf -- router diego-cell/3f2a"},
		{"bosh, whole deployment", with(func(r *Request) { r.Deployment = "cf" }), "capture --deployment cf"},
		{"cf", with(func(r *Request) { r.App = "g-1"; r.Process = "worker"; r.Instances = []int{0, 2} }),
			"capture --app g-1 --type worker --instance 0,2"},
		{"bosh groups and a cf app", with(func(r *Request) {
			r.Deployment = "cf"
			r.Targets = []string{"router"}
			r.App = "aa000000-0000-4000-8000-0000000000f1"
			r.Instances = []int{1}
		}), "capture --deployment cf --app aa000000-0000-4000-8000-0000000000f1 --instance 1 -- router"},
		{"empty process", with(func(r *Request) { r.App = "g"; r.Process = "" }), "capture --app g --type ''"},
		{"every flag", with(func(r *Request) {
			r.Interfaces = []string{"eth1", "any"}
			r.Filter = `tcp port 8080 and host 10.0.0.1 or ether[0] = 'x'`
			r.Snaplen = 96
			r.Limits = agentproto.Limits{Duration: 90 * time.Second, Packets: 10, Bytes: 1 << 20}
			r.Format = FormatPcap
			r.Progress = true
			r.NoFollow = true
		}), `capture --interface eth1 --interface any --filter 'tcp port 8080 and host 10.0.0.1 or ether[0] = '\''x'\''' --snaplen 96 --duration 1m30s --count 10 --max-bytes 1048576 --format pcap --progress --no-follow`},
		{"target like a flag", with(func(r *Request) { r.Targets = []string{"-x", "--help"} }), "capture -- -x --help"},
		{"filter like a flag", with(func(r *Request) { r.Filter = "-h" }), "capture --filter -h"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := c.r.Line(); got != c.line {
				t.Errorf("Line() = %q, want %q", got, c.line)
			}
			if got := parseArgs(t, c.r); !reflect.DeepEqual(got, c.r) {
				t.Errorf("round trip:\n got %+v\nwant %+v", got, c.r)
			}
		})
	}
}

// FuzzArgsRoundTrip checks Parse(Quote(r.Args())) == r for every request
// that validates: the CLIs' command lines mean exactly what they say.
func FuzzArgsRoundTrip(f *testing.F) {
	f.Add("cf", "", "web", "0,2", "eth0", "tcp port 80", 65535, int64(0), uint64(0), uint64(0), true, false, false, "router diego-cell/1")
	f.Add("cf", "aa000000-0000-4000-8000-0000000000f1", "web", "1", "eth0", "", 65535, int64(0), uint64(0), uint64(0), false, false, false, "router")
	f.Add("", "g", "w'x", "", "eth0 any", `a "b" \c $(id)`, 1, int64(time.Second), uint64(5), uint64(9), false, true, true, "-x")
	f.Fuzz(func(t *testing.T, dep, app, process, instances, ifaces, filter string, snaplen int, dur int64, pkts, bytes uint64, pcap, progress, noFollow bool, targets string) {
		r := Request{
			Deployment: dep, App: app, Process: process,
			Interfaces: strings.Fields(ifaces), Filter: filter, Snaplen: snaplen,
			Limits: agentproto.Limits{Duration: time.Duration(dur), Packets: pkts, Bytes: bytes},
			Format: FormatPcapng, Progress: progress, NoFollow: noFollow, Targets: strings.Fields(targets),
		}
		if len(r.Targets) == 0 {
			r.Targets = nil
		}
		if pcap {
			r.Format = FormatPcap
		}
		if instances != "" {
			idx, err := ParseIndexes(instances)
			if err != nil {
				return
			}
			r.Instances = idx
		}
		if len(r.Interfaces) == 0 {
			r.Interfaces = []string{agentproto.DefaultInterface}
		}
		if r.Validate() != nil || len(r.Line()) > MaxCommandLen {
			return
		}
		got, err := ParseCommand(r.Line(), io.Discard)
		if err != nil {
			t.Fatalf("ParseCommand(%q) refused a valid request: %v", r.Line(), err)
		}
		if !reflect.DeepEqual(got, r) {
			t.Fatalf("round trip of %q:\n got %+v\nwant %+v", r.Line(), got, r)
		}
	})
}

func TestInterspersedTrailingValueFlag(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"router", "-f"}, []string{"-f"}},
		{[]string{"-d", "cf", "router", "-i"}, []string{"-d", "cf", "-i"}},
		{[]string{"router", "-f", "udp"}, []string{"-f", "udp", "--", "router"}},
		{[]string{"router", "--progress"}, []string{"--progress", "--", "router"}},
	}
	for _, c := range cases {
		if got := Interspersed(CaptureFlags(), c.args); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Interspersed(%q) = %q, want %q", c.args, got, c.want)
		}
	}
	_, err := ParseCommand("capture -d cf router -f", io.Discard)
	if err == nil || err.Error() != "flag needs an argument: -f" {
		t.Errorf("trailing -f: %v, want flag needs an argument: -f", err)
	}
}
