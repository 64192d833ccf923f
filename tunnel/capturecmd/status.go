package capturecmd

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Status writes status lines for the user: "pcap: <source>: <event>
// key=value …", one per line, human-readable and parseable. Values with
// spaces or quotes are quoted Go-style. Safe for concurrent use; write
// errors are remembered, not returned (the capture goes on without
// status when stderr is gone).
type Status struct {
	mu  sync.Mutex
	w   io.Writer
	err error
}

// NewStatus returns a Status writing to w.
func NewStatus(w io.Writer) *Status { return &Status{w: w} }

// Line writes one line; kv alternates keys and values.
func (s *Status) Line(source, event string, kv ...any) {
	line := FormatLine(source, event, kv...) + "\n"
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		_, s.err = io.WriteString(s.w, line)
	}
}

// quoteValue quotes a value that is empty, would split the line into
// more fields (space, quote, =, backslash) or holds anything not printable
// (control characters, terminal escapes, invalid UTF-8: reasons can come
// from agents).
func quoteValue(v string) string {
	if v == "" || !utf8.ValidString(v) || strings.ContainsFunc(v, func(r rune) bool {
		return r == ' ' || r == '"' || r == '=' || r == '\\' || !unicode.IsPrint(r)
	}) {
		return strconv.Quote(v)
	}
	return v
}

// FormatLine returns one status line, without its newline: "pcap:
// SOURCE: EVENT key=value …"; kv alternates keys and values.
func FormatLine(source, event string, kv ...any) string {
	var b strings.Builder
	b.WriteString("pcap: ")
	b.WriteString(source)
	b.WriteString(": ")
	b.WriteString(event)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%s", kv[i], quoteValue(fmt.Sprint(kv[i+1])))
	}
	return b.String()
}

// Field is one key=value of a status line.
type Field struct{ Key, Value string }

// StatusLine is a parsed status line.
type StatusLine struct {
	Source, Event string
	Fields        []Field
}

// Get returns the value of key, or "".
func (l StatusLine) Get(key string) string {
	for _, f := range l.Fields {
		if f.Key == key {
			return f.Value
		}
	}
	return ""
}

// ErrNotStatus is returned by [ParseLine] for a line that is not a
// status line as [FormatLine] writes it.
var ErrNotStatus = errors.New("not a status line")

// ParseLine parses a line [FormatLine] wrote (without its newline): the
// inverse of FormatLine for a source without ": ", an event and keys
// without spaces or "=".
func ParseLine(l string) (StatusLine, error) {
	rest, ok := strings.CutPrefix(l, "pcap: ")
	if !ok {
		return StatusLine{}, ErrNotStatus
	}
	var sl StatusLine
	sl.Source, rest, ok = strings.Cut(rest, ": ")
	if !ok {
		return StatusLine{}, ErrNotStatus
	}
	sl.Event, rest, _ = strings.Cut(rest, " ")
	for rest != "" {
		key, after, ok := strings.Cut(rest, "=")
		if !ok || key == "" || strings.Contains(key, " ") {
			return StatusLine{}, ErrNotStatus
		}
		var v string
		more := false // a space followed
		if strings.HasPrefix(after, `"`) {
			q, err := strconv.QuotedPrefix(after)
			if err != nil {
				return StatusLine{}, ErrNotStatus
			}
			v, _ = strconv.Unquote(q)
			after = after[len(q):]
			if after != "" {
				if after, more = strings.CutPrefix(after, " "); !more {
					return StatusLine{}, ErrNotStatus
				}
			}
		} else {
			v, after, more = strings.Cut(after, " ")
		}
		if more && after == "" {
			return StatusLine{}, ErrNotStatus // a trailing space
		}
		sl.Fields = append(sl.Fields, Field{key, v})
		rest = after
	}
	return sl, nil
}

// Exit statuses of the capture command, the same through ssh, pcap-bosh
// and cf pcap (where the cf CLI reports any failing plugin as 1).
const (
	ExitOK      = 0 // stopped or limit reached, every target captured
	ExitFailed  = 1 // nothing captured, or the request was refused
	ExitPartial = 3 // captured, but some targets failed or were lost
)
