package capturecmd

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestStatusLine(t *testing.T) {
	cases := []struct {
		name string
		kv   []any
		want string
	}{
		{"no values", nil, "pcap: lb/0: started\n"},
		{"plain values", []any{"interfaces", "eth0,lo", "agent", "10.0.0.5:9494"},
			"pcap: lb/0: started interfaces=eth0,lo agent=10.0.0.5:9494\n"},
		{"numbers and durations", []any{"packets", uint64(12), "dropped", 0, "after", 1500 * time.Millisecond},
			"pcap: lb/0: started packets=12 dropped=0 after=1.5s\n"},
		{"empty value", []any{"reason", ""}, "pcap: lb/0: started reason=\"\"\n"},
		{"spaces", []any{"reason", "no interface \"eth9\" here"},
			`pcap: lb/0: started reason="no interface \"eth9\" here"` + "\n"},
		{"equals sign", []any{"reason", "a=b"}, `pcap: lb/0: started reason="a=b"` + "\n"},
		{"backslash", []any{"path", `C:\x`}, `pcap: lb/0: started path="C:\\x"` + "\n"},
		{"newline stays on one line", []any{"reason", "line1\nline2"}, `pcap: lb/0: started reason="line1\nline2"` + "\n"},
		{"carriage return", []any{"reason", "ok\rFAKE"}, `pcap: lb/0: started reason="ok\rFAKE"` + "\n"},
		{"terminal escape", []any{"reason", "\x1b[31mred"}, `pcap: lb/0: started reason="\x1b[31mred"` + "\n"},
		{"tab", []any{"reason", "a\tb"}, `pcap: lb/0: started reason="a\tb"` + "\n"},
		{"invalid UTF-8", []any{"reason", "a\xffb"}, `pcap: lb/0: started reason="a\xffb"` + "\n"},
		{"non-breaking space", []any{"reason", "a\u00a0b"}, `pcap: lb/0: started reason="a\u00a0b"` + "\n"},
		{"printable unicode stays as is", []any{"name", "café/2"}, "pcap: lb/0: started name=café/2\n"},
		{"odd key without value is dropped", []any{"a", 1, "b"}, "pcap: lb/0: started a=1\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var b bytes.Buffer
			NewStatus(&b).Line("lb/0", "started", c.kv...)
			if b.String() != c.want {
				t.Errorf("line\n got  %q\n want %q", b.String(), c.want)
			}
			if strings.Count(b.String(), "\n") != 1 {
				t.Errorf("not exactly one line: %q", b.String())
			}
		})
	}
}

// parseStatus splits a status line back into its fields, as a script would.
func parseStatus(t *testing.T, line string) (source, event string, kv map[string]string) {
	t.Helper()
	rest, ok := strings.CutPrefix(strings.TrimSuffix(line, "\n"), "pcap: ")
	if !ok {
		t.Fatalf("no prefix: %q", line)
	}
	source, rest, _ = strings.Cut(rest, ": ")
	event, rest, _ = strings.Cut(rest, " ")
	kv = map[string]string{}
	for rest != "" {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			t.Fatalf("field without = in %q", line)
		}
		if strings.HasPrefix(v, `"`) {
			q, err := strconv.QuotedPrefix(v)
			if err != nil {
				t.Fatalf("bad quoting in %q: %v", line, err)
			}
			uq, _ := strconv.Unquote(q)
			kv[k], rest = uq, strings.TrimPrefix(v[len(q):], " ")
			continue
		}
		val, r, _ := strings.Cut(v, " ")
		kv[k], rest = val, r
	}
	return source, event, kv
}

func TestStatusLineRoundTrips(t *testing.T) {
	values := []string{"", "plain", "two words", `q"uote`, "a=b=c", `back\slash`, "nl\nx", "\x00\x1b\x7f", "\xff\xfe", "ünï cödé", " lead", "trail "}
	for _, v := range values {
		var b bytes.Buffer
		NewStatus(&b).Line("web/2", "failed", "code", "bad-filter", "reason", v, "n", 3)
		src, ev, kv := parseStatus(t, b.String())
		if src != "web/2" || ev != "failed" || kv["code"] != "bad-filter" || kv["reason"] != v || kv["n"] != "3" || len(kv) != 3 {
			t.Errorf("value %q: parsed back as %q %q %q", v, src, ev, kv)
		}
	}
}

type failingWriter struct {
	mu    sync.Mutex
	calls int
}

func (w *failingWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls++
	return 0, errors.New("stderr closed")
}

func TestStatusRemembersWriteError(t *testing.T) {
	w := &failingWriter{}
	s := NewStatus(w)
	s.Line("a", "started")
	s.Line("a", "ended")
	if w.calls != 1 {
		t.Errorf("writer called %d times after failing, want 1", w.calls)
	}
}

func TestStatusConcurrentLinesDoNotInterleave(t *testing.T) {
	var b bytes.Buffer
	s := NewStatus(&b)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 100 {
				s.Line("src/"+strconv.Itoa(g), "progress", "packets", i, "reason", "some words here")
			}
		}()
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	if len(lines) != 800 {
		t.Fatalf("%d lines, want 800", len(lines))
	}
	for _, l := range lines {
		if _, ev, kv := parseStatus(t, l); ev != "progress" || kv["reason"] != "some words here" {
			t.Errorf("mangled line %q", l)
		}
	}
}
