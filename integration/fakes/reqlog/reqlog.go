// Package reqlog records the requests a fake server handled, so tests can
// assert which endpoints were (or were not) contacted. Authorization headers
// and bodies are never recorded.
package reqlog

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// Entry is one handled request.
type Entry struct {
	Time     time.Time `json:"time"`
	Method   string    `json:"method"`
	Path     string    `json:"path"`
	RawQuery string    `json:"raw_query,omitempty"`
	Status   int       `json:"status"`
}

// Log is a concurrency-safe, append-only request log. The zero value is ready
// to use.
type Log struct {
	mu       sync.Mutex
	entries  []Entry
	inFlight int // requests being handled
	maxIn    int // the most handled at once
}

// MaxInFlight returns the most requests that were being handled at once
// (since the last Reset).
func (l *Log) MaxInFlight() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.maxIn
}

// Wrap returns a handler that records every request to l before passing it
// to h.
func (l *Log) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		l.mu.Lock()
		l.inFlight++
		l.maxIn = max(l.maxIn, l.inFlight)
		l.mu.Unlock()
		h.ServeHTTP(sw, r)
		l.mu.Lock()
		l.inFlight--
		l.mu.Unlock()
		l.add(Entry{
			Time:     time.Now(),
			Method:   r.Method,
			Path:     r.URL.Path,
			RawQuery: r.URL.RawQuery,
			Status:   sw.status,
		})
	})
}

func (l *Log) add(e Entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, e)
}

// Entries returns a copy of the log, oldest first.
func (l *Log) Entries() []Entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]Entry(nil), l.entries...)
}

// Count returns how many requests had exactly this URL path.
func (l *Log) Count(path string) int {
	return l.count(func(e Entry) bool { return e.Path == path })
}

// CountPrefix returns how many requests had a URL path starting with prefix.
func (l *Log) CountPrefix(prefix string) int {
	return l.count(func(e Entry) bool { return strings.HasPrefix(e.Path, prefix) })
}

// Len returns the number of recorded requests.
func (l *Log) Len() int {
	return l.count(func(Entry) bool { return true })
}

// Reset forgets every recorded request.
func (l *Log) Reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = nil
	l.maxIn = l.inFlight
}

func (l *Log) count(match func(Entry) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, e := range l.entries {
		if match(e) {
			n++
		}
	}
	return n
}

type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wroteHeader {
		w.status = code
		w.wroteHeader = true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wroteHeader = true
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
