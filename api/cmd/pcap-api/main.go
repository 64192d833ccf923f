// Command pcap-api is the front door of pcap: it authenticates users,
// opens captures on many agents and merges them into one pcapng stream.
// See package api.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/tunnel"
)

// version is what --version prints; the Makefile sets it to git describe.
var version = "dev"

func main() {
	if err := app().Run(os.Args); err != nil {
		fmt.Fprintln(os.Stderr, errorLine(err))
		os.Exit(1)
	}
}

// errorLine is the one line an error is reported as: the program's name
// once, not followed by the package's own "api: " prefix.
func errorLine(err error) string {
	return "pcap-api: " + strings.TrimPrefix(err.Error(), "api: ")
}

func app() *cli.App {
	return &cli.App{
		Name:            "pcap-api",
		Version:         version,
		HideHelpCommand: true,
		Usage:           "capture on many pcap-agents at once and merge their streams for ssh clients",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config `FILE`", Required: true, EnvVars: []string{"PCAP_API_CONFIG"}},
			&cli.BoolFlag{Name: "check-config", Usage: "validate the config, print the effective config (secrets redacted) and exit"},
			&cli.BoolFlag{Name: "probe", Usage: "with --check-config: also contact the Cloud Controller, UAA and director the config names (TLS, discovery) and report what a login would fail on"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	cfg, err := api.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	reg := prometheus.NewRegistry()
	if c.Bool("check-config") {
		if _, err := newService(cfg, slog.New(slog.DiscardHandler), reg); err != nil {
			return err
		}
		if err := yaml.NewEncoder(os.Stdout).Encode(cfg.Redacted()); err != nil {
			return err
		}
		if !c.Bool("probe") {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
		defer cancel()
		return probe(ctx, cfg, os.Stdout)
	}
	if c.Bool("probe") {
		return errors.New("--probe goes with --check-config")
	}
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := newService(cfg, log, reg)
	if err != nil {
		return err
	}
	svc.API.Version = version
	defer svc.API.Pool.Close()

	// Signals are caught before anything is served: a SIGTERM right after
	// /health first said ok must drain, not kill the process unlogged.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	httpAddr := ""
	var hsrv *http.Server
	if cfg.HTTPListen != "" {
		hl, err := net.Listen("tcp", cfg.HTTPListen)
		if err != nil {
			l.Close()
			return fmt.Errorf("listen http: %w", err)
		}
		httpAddr = hl.Addr().String()
		hsrv = &http.Server{Handler: svc.HTTP, ReadHeaderTimeout: 10 * time.Second}
		go hsrv.Serve(hl)
	}
	svc.SetReady(true)
	log.Info("api-listening", "address", l.Addr().String(), "http_address", httpAddr)

	errc := make(chan error, 1)
	go func() { errc <- svc.SSH.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	// Tell the load balancer first (/health 503) and keep serving for
	// drain_delay, so that it stops sending connections before the
	// listener closes; then stop accepting, let running captures stop
	// with their statistics, and cut off whatever is left.
	svc.Drain()
	if cfg.DrainDelay > 0 {
		log.Info("api-draining", "drain_delay", cfg.DrainDelay.String())
		select {
		case err := <-errc:
			return err
		case <-time.After(cfg.DrainDelay):
		}
	}
	log.Info("api-stopping")
	sctx, cancel := context.WithTimeout(context.Background(), cfg.StopTimeout+3*time.Second)
	defer cancel()
	err = svc.SSH.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, tunnel.ErrServerClosed) {
		return serr
	}
	if hsrv != nil {
		hsrv.Shutdown(sctx)
	}
	log.Info("api-stopped", "clean", err == nil)
	return nil
}

// newService builds the service and plugs in the resolvers the config
// enables besides the static one.
func newService(cfg api.Config, log *slog.Logger, reg *prometheus.Registry) (*api.Service, error) {
	svc, err := api.NewService(cfg, log, reg)
	if err != nil {
		return nil, err
	}
	if cfg.CF != nil {
		r, err := cfresolver.New(*cfg.CF, cfg.Agents.Port)
		if err != nil {
			return nil, err
		}
		svc.API.Resolvers[r.Name()] = r
	}
	if cfg.BOSH != nil {
		r, err := boshresolver.New(*cfg.BOSH, cfg.Agents.Port)
		if err != nil {
			return nil, err
		}
		svc.API.Resolvers[r.Name()] = r
	}
	return svc, nil
}
