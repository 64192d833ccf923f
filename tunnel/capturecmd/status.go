package capturecmd

import (
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
	var b strings.Builder
	b.WriteString("pcap: ")
	b.WriteString(source)
	b.WriteString(": ")
	b.WriteString(event)
	for i := 0; i+1 < len(kv); i += 2 {
		fmt.Fprintf(&b, " %v=%s", kv[i], quoteValue(fmt.Sprint(kv[i+1])))
	}
	b.WriteByte('\n')
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		_, s.err = io.WriteString(s.w, b.String())
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
