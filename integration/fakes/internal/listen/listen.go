// Package listen runs an http.Handler on a TCP listener for the fakes.
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Server is a running HTTP(S) server.
type Server struct {
	srv  *http.Server
	ln   net.Listener
	url  string
	done chan struct{}
	err  error
}

// Start listens on addr (for example "127.0.0.1:0") and serves h in a
// goroutine until Close. With a non-nil tlsConf it serves HTTPS.
func Start(addr string, h http.Handler, tlsConf *tls.Config) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %s: %w", addr, err)
	}
	return Serve(ln, h, tlsConf), nil
}

// Serve serves h on ln (for example a listener opened inside a test's
// network namespace) in a goroutine until Close.
func Serve(ln net.Listener, h http.Handler, tlsConf *tls.Config) *Server {
	scheme := "http"
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf)
		scheme = "https"
	}
	s := &Server{
		srv:  &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second},
		ln:   ln,
		url:  scheme + "://" + ln.Addr().String(),
		done: make(chan struct{}),
	}
	go func() {
		defer close(s.done)
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.err = err
		}
	}()
	return s
}

// URL is the base URL, e.g. "https://127.0.0.1:41234".
func (s *Server) URL() string { return s.url }

// Addr is the listening address.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Close stops the server, giving in-flight requests up to two seconds, and
// waits for the serving goroutine to end.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if err != nil {
		err = s.srv.Close()
	}
	<-s.done
	if err != nil {
		return fmt.Errorf("listen: close: %w", err)
	}
	if s.err != nil {
		return fmt.Errorf("listen: serve: %w", s.err)
	}
	return nil
}
