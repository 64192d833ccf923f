// Package svcmain holds what the mains of the two services, pcap-agent and
// pcap-api, share: their command line (a config file, --check-config,
// --version, no help command), the one-line error report, the JSON logger,
// and the loop that serves until a signal and then stops within bounds.
// The mains keep only what is theirs.
package svcmain

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"code.cloudfoundry.org/pcap/internal/debugserver"
)

// Command is a service's command line.
type Command struct {
	Name    string // the program: "pcap-agent"
	Usage   string
	Version string // what --version prints
	// ConfigEnv is the environment variable that may name the config file
	// instead of --config.
	ConfigEnv string
	// CheckConfigUsage is the help of --check-config.
	CheckConfigUsage string
	// Flags are the service's own, after --config and --check-config.
	Flags  []cli.Flag
	Action cli.ActionFunc
}

// App is c's urfave/cli app.
func (c Command) App() *cli.App {
	flags := []cli.Flag{
		&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config `FILE`", Required: true, EnvVars: []string{c.ConfigEnv}},
		&cli.BoolFlag{Name: "check-config", Usage: c.CheckConfigUsage},
	}
	return &cli.App{
		Name:            c.Name,
		Version:         c.Version,
		HideHelpCommand: true,
		Usage:           c.Usage,
		Flags:           append(flags, c.Flags...),
		Action:          c.Action,
	}
}

// Main runs app with the process's arguments; when it fails, Main prints
// [ErrorLine] on stderr and exits 1.
func Main(app *cli.App, pkgPrefix string) {
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, ErrorLine(app.Name, pkgPrefix, err))
		os.Exit(1)
	}
}

// ErrorLine is the one line an error is reported as: the program's name
// once, not followed by its package's own prefix ("agent: ").
func ErrorLine(name, pkgPrefix string, err error) string {
	return name + ": " + strings.TrimPrefix(err.Error(), pkgPrefix)
}

// Logger is the services' logger: JSON lines on w at level ("debug",
// "info", "warn" or "error"; the configs validate it, anything else is
// info).
func Logger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}

// Server is what [Serve] runs (tunnel.Server is one).
type Server interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

// Stop says how [Serve] stops a server once its context has ended.
type Stop struct {
	// Drain, if set, runs first, while the server still serves (pcap-api
	// turns /health to 503 there); the server then keeps serving for
	// DrainDelay, so a load balancer stops sending connections before the
	// listener closes.
	Drain      func()
	DrainDelay time.Duration
	// Timeout bounds Shutdown: running sessions get this long to end.
	Timeout time.Duration
	// Closed is the error Serve returns after a shutdown
	// (tunnel.ErrServerClosed); any other is a failure.
	Closed error
}

// Serve serves srv on l until srv fails or ctx ends (a signal, say). Then
// it stops srv as st says, logging "<event>-draining" and
// "<event>-stopping" on log. err is srv's failure; shutdownErr is what
// Shutdown returned (not nil when it had to cut sessions off at
// st.Timeout).
func Serve(ctx context.Context, srv Server, l net.Listener, st Stop, log *slog.Logger, event string) (shutdownErr, err error) {
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return nil, err
	case <-ctx.Done():
	}
	if st.Drain != nil {
		st.Drain()
	}
	if st.DrainDelay > 0 {
		log.Info(event+"-draining", "drain_delay", st.DrainDelay.String())
		select {
		case err := <-errc:
			return nil, err
		case <-time.After(st.DrainDelay):
		}
	}
	log.Info(event + "-stopping")
	sctx, cancel := context.WithTimeout(context.Background(), st.Timeout)
	defer cancel()
	shutdownErr = srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, st.Closed) {
		return shutdownErr, err
	}
	return shutdownErr, nil
}

// StartDebug starts the debug server (package debugserver) on addr, if
// addr is not empty, and logs "debug-listening". The caller must call
// stop when it exits.
func StartDebug(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ds, err := debugserver.Start(addr)
	if err != nil {
		return nil, err
	}
	log.Info("debug-listening", "address", ds.Addr().String())
	return func() { ds.Close() }, nil
}
