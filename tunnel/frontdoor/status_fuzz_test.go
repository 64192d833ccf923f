package frontdoor

import (
	"bytes"
	"strings"
	"testing"
)

// FuzzStatusWriter feeds arbitrary status output of pcap-api (what the
// CLIs print on the user's terminal) to the status writer in two writes
// split anywhere. It never panics; off a terminal it passes every line
// but progress lines through whole and in order, each ended by a newline;
// on a terminal every such line is still shown.
func FuzzStatusWriter(f *testing.F) {
	for _, s := range []string{
		"pcap: web/0: started interfaces=eth0 agent=10.0.16.10:9494\npcap: web/0: progress packets=1 bytes=2 dropped=0\npcap: summary: stopped sources=1\n",
		"pcap: web/0: progress packets=1",
		"pcap: : \n", "pcap: summary\n", "no prefix\r\n", "\n\n\n", "pcap: a: progress\npcap: a: progress x=1 y\n",
		"pcap: web/0: failed code=bad-filter reason=\"\\x1b[2J\"\n",
	} {
		f.Add(s, uint16(7))
	}
	f.Fuzz(func(t *testing.T, in string, cut uint16) {
		if len(in) > 60<<10 {
			return // longer unterminated lines are flushed in pieces (TestStatusWriterLongLine)
		}
		at := int(cut) % (len(in) + 1)
		var want strings.Builder
		lines := strings.Split(in, "\n")
		if lines[len(lines)-1] == "" {
			lines = lines[:len(lines)-1]
		}
		for _, l := range lines {
			if _, event, _ := parseStatus(l); event != "progress" {
				want.WriteString(l + "\n")
			}
		}
		for _, terminal := range []bool{false, true} {
			var out bytes.Buffer
			s := &statusWriter{w: &out, terminal: terminal}
			if n, err := s.Write([]byte(in[:at])); n != at || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if n, err := s.Write([]byte(in[at:])); n != len(in)-at || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			s.finish()
			if !terminal && out.String() != want.String() {
				t.Fatalf("off a terminal, %q gave\n%q\nwant\n%q", in, out.String(), want.String())
			}
			if terminal {
				for _, l := range strings.SplitAfter(want.String(), "\n") {
					if !strings.Contains(out.String(), l) {
						t.Fatalf("on a terminal, line %q of %q is not shown:\n%q", l, in, out.String())
					}
				}
			}
		}
	})
}
