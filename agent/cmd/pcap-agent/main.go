// Command pcap-agent captures packets in containers and on the host for
// pcap-api. See package agent.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/internal/svcmain"
	"code.cloudfoundry.org/pcap/tunnel"
)

// version is what --version prints; the Makefile sets it to git describe.
var version = "dev"

func main() { svcmain.Main(app(), "agent: ") }

func app() *cli.App {
	return svcmain.Command{
		Name:             "pcap-agent",
		Usage:            "capture packets in containers and on this host for pcap-api",
		Version:          version,
		ConfigEnv:        "PCAP_AGENT_CONFIG",
		CheckConfigUsage: "validate the config, print the effective config and exit",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "listen", Usage: "override the config's listen `ADDRESS`"},
		},
		Action: run,
	}.App()
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

	log := svcmain.Logger(os.Stderr, cfg.LogLevel)
	srv, _, err := agent.NewServer(cfg, log)
	if err != nil {
		return err
	}
	// Signals are caught before the port opens: a SIGTERM right after
	// "agent-listening" must stop gracefully, not kill the agent unlogged.
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
	log.Info("agent-listening", "address", l.Addr().String())
	shutdownErr, err := svcmain.Serve(ctx, srv, l, svcmain.Stop{Timeout: 5 * time.Second, Closed: tunnel.ErrServerClosed}, log, "agent")
	if err != nil {
		return err
	}
	log.Info("agent-stopped")
	return shutdownErr
}
