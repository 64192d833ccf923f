// Package listen runs an http.Handler on a TCP listener for the fakes.
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
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

// Holder is what every fake keeps of its running server: the server it
// started, if any, and its base URL. Safe for concurrent use.
type Holder struct {
	mu  sync.Mutex
	srv *Server
	url string
}

// SetURL sets the base URL of a fake served by someone else.
func (h *Holder) SetURL(u string) {
	h.mu.Lock()
	h.url = u
	h.mu.Unlock()
}

// Start listens on addr and serves hd (HTTPS with a non-nil tlsConf).
func (h *Holder) Start(addr string, hd http.Handler, tlsConf *tls.Config) error {
	srv, err := Start(addr, hd, tlsConf)
	if err != nil {
		return err
	}
	h.hold(srv)
	return nil
}

// Serve serves hd on ln.
func (h *Holder) Serve(ln net.Listener, hd http.Handler, tlsConf *tls.Config) {
	h.hold(Serve(ln, hd, tlsConf))
}

func (h *Holder) hold(srv *Server) {
	h.mu.Lock()
	h.srv, h.url = srv, srv.URL()
	h.mu.Unlock()
}

// Close stops the server, if one was started.
func (h *Holder) Close() error {
	h.mu.Lock()
	srv := h.srv
	h.srv = nil
	h.mu.Unlock()
	if srv == nil {
		return nil
	}
	return srv.Close()
}

// URL is the base URL.
func (h *Holder) URL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.url
}

// Fake is what StartForTest needs of a fake: Start on an address, Close.
type Fake interface {
	Start(addr string) error
	Close() error
}

// StartForTest takes a fake and New's error, starts the fake on
// 127.0.0.1:0 and closes it when the test ends; any error fails the test.
func StartForTest[F Fake](t testing.TB, f F, err error) F {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.Close(); err != nil {
			t.Error(err)
		}
	})
	return f
}

// Served gives a fake serving one handler its Start, StartOn, Close and
// URL: embed it, and call Init from the fake's New.
type Served struct {
	live Holder
	name string
	h    http.Handler
	tls  *tls.Config
}

// Init sets the handler (HTTPS with a non-nil tlsConf), the name errors
// begin with, and the base URL of a fake served by someone else ("" when
// the fake serves itself).
func (s *Served) Init(name string, h http.Handler, tlsConf *tls.Config, url string) {
	s.name, s.h, s.tls = name, h, tlsConf
	s.live.SetURL(url)
}

// Start serves on addr (e.g. "127.0.0.1:0") and sets URL.
func (s *Served) Start(addr string) error {
	if err := s.live.Start(addr, s.h, s.tls); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// StartOn serves on ln (e.g. a listener inside a test's network
// namespace) and sets URL.
func (s *Served) StartOn(ln net.Listener) error {
	s.live.Serve(ln, s.h, s.tls)
	return nil
}

// Close stops a started server.
func (s *Served) Close() error {
	if err := s.live.Close(); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// URL is the base URL, e.g. "http://127.0.0.1:41234".
func (s *Served) URL() string { return s.live.URL() }
