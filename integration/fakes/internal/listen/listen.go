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

	"code.cloudfoundry.org/pcap/integration/fakes/reqlog"
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

// StartForTest makes a fake with newFake(opts), starts it on 127.0.0.1:0
// and closes it when the test ends; any error fails the test.
func StartForTest[O any, F Fake](t testing.TB, newFake func(O) (F, error), opts O) F {
	t.Helper()
	f, err := newFake(opts)
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

// Served gives a fake serving one handler its ServeHTTP, Requests, Start,
// StartOn, Close and URL: embed it, and call Init (or InitTLS) from the
// fake's New.
type Served struct {
	live   Holder
	name   string
	log    reqlog.Log
	h      http.Handler
	tlsFor func(hosts ...string) (*tls.Config, error)
}

// Init sets the fake's routes (served behind its request log), the name
// errors begin with, the TLS configuration (HTTPS when non-nil) and the base
// URL of a fake served by someone else ("" when the fake serves itself).
func (s *Served) Init(name string, routes http.Handler, tlsConf *tls.Config, url string) {
	s.InitTLS(name, routes, func(...string) (*tls.Config, error) { return tlsConf, nil }, url)
}

// InitTLS is Init for a fake that makes its TLS configuration when it
// starts: tlsFor gets no hosts from Start and the listener's host from
// StartOn; its errors are returned as they are.
func (s *Served) InitTLS(name string, routes http.Handler, tlsFor func(hosts ...string) (*tls.Config, error), url string) {
	s.name, s.tlsFor = name, tlsFor
	s.h = s.log.Wrap(routes)
	s.live.SetURL(url)
}

// ServeHTTP implements http.Handler: the routes, recorded in Requests.
func (s *Served) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.h.ServeHTTP(w, r)
}

// Requests is the log of handled requests.
func (s *Served) Requests() *reqlog.Log { return &s.log }

// Start serves on addr (e.g. "127.0.0.1:0") and sets URL.
func (s *Served) Start(addr string) error {
	conf, err := s.tlsFor()
	if err != nil {
		return err
	}
	if err := s.live.Start(addr, s.h, conf); err != nil {
		return fmt.Errorf("%s: %w", s.name, err)
	}
	return nil
}

// StartOn serves on ln (e.g. a listener inside a test's network
// namespace) and sets URL.
func (s *Served) StartOn(ln net.Listener) error {
	host, _, _ := net.SplitHostPort(ln.Addr().String())
	conf, err := s.tlsFor(host)
	if err != nil {
		return err
	}
	s.live.Serve(ln, s.h, conf)
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
