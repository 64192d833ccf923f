package api

import (
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Service is a configured pcap-api: the SSH front door, the agent pool and
// the HTTP handler for /health and /metrics.
//
// GET /health is the load balancer's check: 200 "ok" while the SSH
// listener takes new connections; 503 "starting" before, and 503
// "draining" from Drain on (SIGTERM), while the process still serves the
// connections it has (and, for drain_delay, new ones) so that the load
// balancer stops sending connections before the listener closes. It does
// not turn 503 when the API is at its capture limit: the user gets a
// clear limit-reached refusal instead of a load balancer with no server.
type Service struct {
	API      *API
	SSH      *tunnel.Server
	HTTP     http.Handler
	listen   atomic.Bool
	draining atomic.Bool
}

// SetReady marks the SSH listener up (or down) for /health.
func (s *Service) SetReady(up bool) { s.listen.Store(up) }

// Drain makes /health answer 503 "draining" from now on.
func (s *Service) Drain() {
	s.draining.Store(true)
	s.listen.Store(false)
}

// NewService builds the service from a validated config. Extra resolvers
// (cf, bosh) are added by the caller into API.Resolvers.
func NewService(cfg Config, log *slog.Logger, reg *prometheus.Registry) (*Service, error) {
	hostKey, err := tunnel.LoadSigner(cfg.HostKeyFile)
	if err != nil {
		return nil, fmt.Errorf("api: host key: %w", err)
	}
	clientKey, err := tunnel.LoadSigner(cfg.Agents.ClientKeyFile)
	if err != nil {
		return nil, fmt.Errorf("api: agent client key: %w", err)
	}
	var agentKeys []ssh.PublicKey
	if cfg.Agents.HostKeysFile != "" {
		if agentKeys, err = tunnel.LoadAuthorizedKeys(cfg.Agents.HostKeysFile); err != nil {
			return nil, fmt.Errorf("api: agent host keys: %w", err)
		}
	}
	metrics := NewMetrics(reg)
	a := &API{
		Resolvers: map[string]Resolver{},
		Pool: &Pool{Config: tunnel.ClientConfig{
			User:              "pcap-api",
			Auth:              []ssh.AuthMethod{ssh.PublicKeys(clientKey)},
			HostKeyCallback:   tunnel.PinnedHostKey(agentKeys, cfg.Agents.HostKeyFingerprints...),
			DialTimeout:       cfg.Agents.DialTimeout,
			KeepaliveInterval: cfg.Agents.KeepaliveInterval,
		}, IdleTimeout: cfg.Agents.IdleTimeout},
		Logger:        log,
		Metrics:       metrics,
		Limits:        cfg.Limits,
		ReorderWindow: cfg.ReorderWindow,
		OpenTimeout:   cfg.Agents.DialTimeout,
		StopTimeout:   cfg.StopTimeout,

		FollowInterval: cfg.FollowInterval,
	}
	if st := cfg.Static; st != nil {
		keys, err := tunnel.LoadAuthorizedKeys(st.OperatorKeysFile)
		if err != nil {
			return nil, fmt.Errorf("api: static operator keys: %w", err)
		}
		a.Resolvers["static"] = &StaticResolver{Groups: st.Groups, Operators: tunnel.NewKeySet(keys...)}
	}
	s := &Service{API: a}
	s.SSH = &tunnel.Server{
		Config:   a.ServerConfig(hostKey),
		Handlers: map[string]tunnel.ChannelHandler{"session": a},

		KeepaliveInterval: cfg.KeepaliveInterval,
		// At a shutdown, ssh clients hang up themselves once they read
		// their session's end; closing first makes OpenSSH exit 255.
		CloseGrace: time.Second,
		OnConnError: func(remote net.Addr, err error) {
			log.Info("connection-refused", "remote", remote.String(), "error", err.Error())
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		switch {
		case s.draining.Load():
			http.Error(w, "draining", http.StatusServiceUnavailable)
			return
		case !s.listen.Load():
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	s.HTTP = mux
	return s, nil
}
