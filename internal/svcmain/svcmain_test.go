package svcmain

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"code.cloudfoundry.org/pcap/internal/debugserver"
)

func TestErrorLineNamesTheProgramOnce(t *testing.T) {
	got := ErrorLine("pcap-agent", "agent: ", errors.New("agent: read config: open /x: no such file or directory"))
	if want := "pcap-agent: read config: open /x: no such file or directory"; got != want {
		t.Errorf("ErrorLine = %q, want %q", got, want)
	}
	got = ErrorLine("pcap-api", "api: ", errors.New("listen: address in use"))
	if want := "pcap-api: listen: address in use"; got != want {
		t.Errorf("ErrorLine = %q, want %q", got, want)
	}
}

// TestCommandFlags: the config comes from --config or the environment,
// --check-config and the service's own flags are there, and no help
// command is offered.
func TestCommandFlags(t *testing.T) {
	var got struct {
		config string
		check  bool
		listen string
	}
	app := Command{
		Name: "svc", Version: "v1", ConfigEnv: "SVCMAIN_TEST_CONFIG",
		Flags: []cli.Flag{&cli.StringFlag{Name: "listen"}},
		Action: func(c *cli.Context) error {
			got.config, got.check, got.listen = c.String("config"), c.Bool("check-config"), c.String("listen")
			return nil
		},
	}.App()
	if err := app.Run([]string{"svc", "-c", "a.yml", "--check-config", "--listen", ":1"}); err != nil {
		t.Fatal(err)
	}
	if got.config != "a.yml" || !got.check || got.listen != ":1" {
		t.Errorf("parsed %+v", got)
	}
	t.Setenv("SVCMAIN_TEST_CONFIG", "env.yml")
	if err := app.Run([]string{"svc"}); err != nil || got.config != "env.yml" {
		t.Errorf("config from the environment = %q, %v", got.config, err)
	}
	if len(app.Commands) != 0 || !app.HideHelpCommand {
		t.Errorf("the app offers commands: %v", app.Commands)
	}
}

func TestLoggerLevel(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(&buf, "warn")
	log.Info("hidden")
	log.Warn("shown-event", "k", 1)
	if s := buf.String(); strings.Contains(s, "hidden") || !strings.Contains(s, `"msg":"shown-event","k":1`) {
		t.Errorf("log = %q", s)
	}
}

var errClosed = errors.New("closed")

// fakeServer serves l by accepting until it closes; Shutdown closes l and,
// if hang is set, does not return before ctx ends.
type fakeServer struct {
	l        net.Listener
	hang     bool
	mu       sync.Mutex
	drained  bool
	shutdown bool
}

func (s *fakeServer) Serve(l net.Listener) error {
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.shutdown {
				return errClosed
			}
			return err
		}
		c.Close()
	}
}

func (s *fakeServer) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	s.mu.Unlock()
	s.l.Close()
	if s.hang {
		<-ctx.Done()
		return ctx.Err()
	}
	return nil
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestServeStops: a cancelled context drains, waits the drain delay while
// still serving, shuts down and reports whether that was clean.
func TestServeStops(t *testing.T) {
	for _, hang := range []bool{false, true} {
		l := listen(t)
		srv := &fakeServer{l: l, hang: hang}
		ctx, cancel := context.WithCancel(context.Background())
		var logBuf bytes.Buffer
		st := Stop{
			Drain: func() {
				srv.mu.Lock()
				srv.drained = true
				srv.mu.Unlock()
				// Still serving while draining: a client connects.
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					t.Errorf("dial while draining: %v", err)
					return
				}
				c.Close()
			},
			DrainDelay: time.Millisecond,
			Timeout:    50 * time.Millisecond,
			Closed:     errClosed,
		}
		cancel()
		shutdownErr, err := Serve(ctx, srv, l, st, slog.New(slog.NewJSONHandler(&logBuf, nil)), "svc")
		if err != nil {
			t.Fatalf("hang=%v: Serve() = %v", hang, err)
		}
		if hang != (shutdownErr != nil) {
			t.Errorf("hang=%v: shutdownErr = %v", hang, shutdownErr)
		}
		if !srv.drained || !srv.shutdown {
			t.Errorf("hang=%v: drained %v, shut down %v", hang, srv.drained, srv.shutdown)
		}
		for _, ev := range []string{`"msg":"svc-draining","drain_delay":"1ms"`, `"msg":"svc-stopping"`} {
			if !strings.Contains(logBuf.String(), ev) {
				t.Errorf("hang=%v: log lacks %s: %s", hang, ev, logBuf.String())
			}
		}
	}
}

// TestServeFailure: a server that fails ends Serve with its error, and no
// shutdown is attempted.
func TestServeFailure(t *testing.T) {
	l := listen(t)
	srv := &fakeServer{l: l}
	l.Close() // Accept fails at once
	_, err := Serve(context.Background(), srv, l, Stop{Timeout: time.Second, Closed: errClosed}, slog.New(slog.DiscardHandler), "svc")
	if err == nil || errors.Is(err, errClosed) {
		t.Errorf("Serve() = %v, want the accept error", err)
	}
	if srv.shutdown {
		t.Error("a failed server was shut down")
	}
}

func TestStartDebug(t *testing.T) {
	var buf bytes.Buffer
	log := Logger(&buf, "info")
	stop, err := StartDebug("", log)
	if err != nil || buf.Len() != 0 {
		t.Fatalf("StartDebug(\"\") = %v, logged %q; want off and silent", err, buf.String())
	}
	stop()
	if _, err := StartDebug("0.0.0.0:0", log); !errors.Is(err, debugserver.ErrNotLoopback) {
		t.Fatalf("StartDebug(0.0.0.0:0) = %v, want ErrNotLoopback", err)
	}
	stop, err = StartDebug("127.0.0.1:0", log)
	if err != nil {
		t.Fatal(err)
	}
	var line struct{ Msg, Address string }
	if err := json.Unmarshal(buf.Bytes(), &line); err != nil || line.Msg != "debug-listening" {
		t.Fatalf("log %q: %v", buf.String(), err)
	}
	resp, err := http.Get("http://" + line.Address + "/debug/pprof/heap?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("heap profile: status %d", resp.StatusCode)
	}
	stop()
	if _, err := http.Get("http://" + line.Address + "/debug/pprof/"); err == nil {
		t.Error("the debug server still serves after stop")
	}
}
