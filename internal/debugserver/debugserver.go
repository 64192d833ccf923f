// Package debugserver serves the Go runtime's profiles (net/http/pprof)
// of a pcap service on a loopback address, like the debug server of
// Diego's components: for an operator on the VM or cell to see where CPU
// and memory go. It is off unless configured, and only ever on loopback:
// a profile names the program's functions and a CPU profile costs CPU,
// so no other host (and no container on a cell, which has a network
// namespace of its own) may reach it.
package debugserver

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"
)

// ErrNotLoopback is returned (wrapped) by [CheckAddr] for an address
// another host could reach.
var ErrNotLoopback = errors.New("not a loopback address")

// CheckAddr accepts host:port addresses whose host is a loopback IP
// (127.0.0.0/8, ::1) or "localhost"; port 0 picks a free port.
func CheckAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: %w (127.0.0.1, ::1 or localhost)", host, ErrNotLoopback)
	}
	return nil
}

// Handler serves the pprof index and profiles under /debug/pprof/, on a
// mux of its own (nothing registered on http.DefaultServeMux is served).
func Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", bounded(pprof.Profile))
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", bounded(pprof.Trace))
	return mux
}

// maxSeconds bounds how long a CPU profile or an execution trace may run
// (pprof's own default is 30 s; it would run for any length asked).
const maxSeconds = 300

// bounded refuses a profile or trace asked to run longer than maxSeconds.
func bounded(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("seconds"); v != "" {
			if sec, err := strconv.ParseFloat(v, 64); err != nil || sec > maxSeconds {
				http.Error(w, fmt.Sprintf("seconds must be a number up to %d", maxSeconds), http.StatusBadRequest)
				return
			}
		}
		h(w, r)
	}
}

// Server is a running debug server.
type Server struct {
	srv  *http.Server
	addr net.Addr
	done chan struct{}
}

// Start listens on addr, which [CheckAddr] must accept, and serves
// [Handler] until Close.
func Start(addr string) (*Server, error) {
	if err := CheckAddr(addr); err != nil {
		return nil, fmt.Errorf("debug server: %w", err)
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("debug server: %w", err)
	}
	if ip := l.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() {
		l.Close() // "localhost" resolved to something else
		return nil, fmt.Errorf("debug server: %s: %w", ip, ErrNotLoopback)
	}
	s := &Server{
		srv: &http.Server{
			Handler:           Handler(),
			ReadHeaderTimeout: 10 * time.Second,
			MaxHeaderBytes:    16 << 10,
		},
		addr: l.Addr(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		s.srv.Serve(l)
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.addr }

// Close stops the server, cutting off a profile being taken, and returns
// once it no longer serves.
func (s *Server) Close() error {
	err := s.srv.Close()
	<-s.done
	return err
}
