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
	"runtime/debug"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/internal/svcmain"
	"code.cloudfoundry.org/pcap/tunnel"
)

// version is what --version prints; the Makefile sets it to git describe.
var version = "dev"

func main() { svcmain.Main(app(), "api: ") }

func app() *cli.App {
	return svcmain.Command{
		Name:             "pcap-api",
		Usage:            "capture on many pcap-agents at once and merge their streams for ssh clients",
		Version:          version,
		ConfigEnv:        "PCAP_API_CONFIG",
		CheckConfigUsage: "validate the config, print the effective config (secrets redacted) and exit",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "probe", Usage: "with --check-config: also contact the Cloud Controller, UAA and director the config names (TLS, discovery) and report what a login would fail on"},
		},
		Action: run,
	}.App()
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
	log := svcmain.Logger(os.Stderr, cfg.LogLevel)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	svc, err := newService(cfg, log, reg)
	if err != nil {
		return err
	}
	svc.API.Version = version
	if cfg.MemoryLimit > 0 {
		debug.SetMemoryLimit(cfg.MemoryLimit)
	}
	defer svc.API.Pool.Close()

	// Signals are caught before anything is served: a SIGTERM right after
	// /health first said ok must drain, not kill the process unlogged.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	stopDebug, err := svcmain.StartDebug(cfg.DebugListen, log)
	if err != nil {
		return err
	}
	defer stopDebug()
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

	// At a signal: tell the load balancer first (/health 503) and keep
	// serving for drain_delay, then stop accepting, let running captures
	// stop with their statistics, and cut off whatever is left.
	shutdownErr, err := svcmain.Serve(ctx, svc.SSH, l, svcmain.Stop{
		Drain:      svc.Drain,
		DrainDelay: cfg.DrainDelay,
		Timeout:    cfg.StopTimeout + 3*time.Second,
		Closed:     tunnel.ErrServerClosed,
	}, log, "api")
	if err != nil {
		return err
	}
	if hsrv != nil {
		hctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		hsrv.Shutdown(hctx)
	}
	log.Info("api-stopped", "clean", shutdownErr == nil)
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
