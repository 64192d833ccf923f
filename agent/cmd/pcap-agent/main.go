// Command pcap-agent captures packets in containers and on the host for
// pcap-api. See package agent.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/agent"
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
// once, not followed by the package's own "agent: " prefix.
func errorLine(err error) string {
	return "pcap-agent: " + strings.TrimPrefix(err.Error(), "agent: ")
}

func app() *cli.App {
	return &cli.App{
		Name:            "pcap-agent",
		Version:         version,
		HideHelpCommand: true,
		Usage:           "capture packets in containers and on this host for pcap-api",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "config", Aliases: []string{"c"}, Usage: "YAML config `FILE`", Required: true, EnvVars: []string{"PCAP_AGENT_CONFIG"}},
			&cli.StringFlag{Name: "listen", Usage: "override the config's listen `ADDRESS`"},
			&cli.BoolFlag{Name: "check-config", Usage: "validate the config, print the effective config and exit"},
		},
		Action: run,
	}
}

func run(c *cli.Context) error {
	cfg, err := agent.LoadConfig(c.String("config"))
	if err != nil {
		return err
	}
	if l := c.String("listen"); l != "" {
		cfg.Listen = l
		if err := cfg.Validate(); err != nil {
			return err
		}
	}
	if c.Bool("check-config") {
		if _, _, err := agent.NewServer(cfg, slog.New(slog.DiscardHandler)); err != nil {
			return err
		}
		return yaml.NewEncoder(os.Stdout).Encode(cfg)
	}

	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	log := slog.New(slog.NewJSONHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	srv, _, err := agent.NewServer(cfg, log)
	if err != nil {
		return err
	}
	// Signals are caught before the port opens: a SIGTERM right after
	// "agent-listening" must stop gracefully, not kill the agent unlogged.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	l, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	log.Info("agent-listening", "address", l.Addr().String())

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(l) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("agent-stopping")
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, tunnel.ErrServerClosed) {
		return serr
	}
	log.Info("agent-stopped")
	return err
}
