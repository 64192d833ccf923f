package capturecmd

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestStatusLineRoundTrip(t *testing.T) {
	cases := []struct {
		source, event string
		kv            []any
	}{
		{"lb/0", "started", nil},
		{"web/2", "progress", []any{"packets", uint64(12), "bytes", 3400, "dropped", 0}},
		{"summary", "stopped", []any{"sources", 2, "after", 1500 * time.Millisecond}},
		{"router/3f2a", "failed", []any{"code", "bad-filter", "reason", "no interface \"eth9\" here"}},
		{"a", "x", []any{"empty", "", "eq", "a=b", "nl", "l1\nl2", "esc", "\x1b[2J", "bad", "\xff", "bs", `C:\x`}},
	}
	for _, c := range cases {
		line := FormatLine(c.source, c.event, c.kv...)
		got, err := ParseLine(line)
		if err != nil {
			t.Errorf("ParseLine(%q): %v", line, err)
			continue
		}
		want := StatusLine{Source: c.source, Event: c.event}
		for i := 0; i+1 < len(c.kv); i += 2 {
			want.Fields = append(want.Fields, Field{fmt.Sprint(c.kv[i]), fmt.Sprint(c.kv[i+1])})
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("ParseLine(%q) =\n %+v\nwant\n %+v", line, got, want)
		}
	}
}

func TestParseLineRefuses(t *testing.T) {
	for _, l := range []string{"", "no prefix", "pcap: nosource", "pcap: a: ev key", "pcap: a: ev =v",
		"pcap: a: ev k=\"open", "pcap: a: ev k=v ", "pcap: a: ev k=\"v\"x"} {
		if _, err := ParseLine(l); err != ErrNotStatus {
			t.Errorf("ParseLine(%q) = %v, want ErrNotStatus", l, err)
		}
	}
}

// FuzzStatusLineRoundTrip: what FormatLine writes, ParseLine reads back.
func FuzzStatusLineRoundTrip(f *testing.F) {
	f.Add("web/0", "progress", "packets", "1", "reason", `a "b" c`)
	f.Add("summary", "stopped", "k", "", "x", "\x00\xff")
	f.Fuzz(func(t *testing.T, source, event, k1, v1, k2, v2 string) {
		// Sources, events and keys are pcap's own names (targets are
		// validated, keys are constants): no spaces, no line breaks.
		for _, k := range []string{k1, k2} {
			if k == "" || strings.ContainsAny(k, " =\r\n") {
				return
			}
		}
		if strings.ContainsAny(source+event, "\r\n") {
			return
		}
		if strings.Contains(source, ": ") || strings.Contains(event, " ") || event == "" && (k1 != "") {
			return
		}
		line := FormatLine(source, event, k1, v1, k2, v2)
		if strings.Contains(line, "\n") {
			t.Fatalf("FormatLine wrote a newline: %q", line)
		}
		got, err := ParseLine(line)
		if err != nil {
			t.Fatalf("ParseLine(%q): %v", line, err)
		}
		if got.Source != source || got.Event != event || len(got.Fields) != 2 || got.Fields[0].Key != k1 || got.Fields[1].Key != k2 {
			t.Fatalf("ParseLine(%q) = %+v", line, got)
		}
		for i, v := range []string{v1, v2} {
			if got.Fields[i].Value != v {
				t.Fatalf("ParseLine(%q) value %d = %q, want %q", line, i, got.Fields[i].Value, v)
			}
		}
	})
}
