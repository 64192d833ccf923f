package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is pcap-api's YAML configuration file.
type Config struct {
	// Listen is the SSH front door (default 0.0.0.0:2222).
	Listen string `yaml:"listen"`
	// HTTPListen serves /health and /metrics (default 0.0.0.0:8080; ""
	// disables).
	HTTPListen string `yaml:"http_listen"`
	// HostKeyFile is the front door's SSH host private key (required).
	HostKeyFile string `yaml:"host_key_file"`

	Agents AgentsConfig `yaml:"agents"`
	Limits LimitsConfig `yaml:"limits"`

	// ReorderWindow is how long packets wait to be merged by timestamp
	// across sources (default 100ms; 0 keeps arrival order).
	ReorderWindow time.Duration `yaml:"reorder_window"`
	// StopTimeout bounds a capture's stop (default 2s).
	StopTimeout time.Duration `yaml:"stop_timeout"`

	// Static enables the "static" resolver (user name "static").
	Static *StaticConfig `yaml:"static"`

	LogLevel string `yaml:"log_level"`
}

// AgentsConfig says how the API reaches agents.
type AgentsConfig struct {
	// ClientKeyFile is the private key the API authenticates with
	// (required).
	ClientKeyFile string `yaml:"client_key_file"`
	// HostKeysFile lists the agents' accepted host public keys, in
	// authorized_keys format; HostKeyFingerprints lists SHA256
	// fingerprints. At least one of them is required: agents are pinned.
	HostKeysFile        string   `yaml:"host_keys_file"`
	HostKeyFingerprints []string `yaml:"host_key_fingerprints"`
	// Port is the agents' port, for resolvers that learn only addresses
	// (default 9494).
	Port int `yaml:"port"`
	// DialTimeout bounds connecting to one agent (default 10s).
	DialTimeout time.Duration `yaml:"dial_timeout"`
}

// LimitsConfig bounds what users may ask.
type LimitsConfig struct {
	MaxCaptures        int           `yaml:"max_captures"`          // per API (default 20)
	MaxCapturesPerUser int           `yaml:"max_captures_per_user"` // default 3
	MaxTargets         int           `yaml:"max_targets"`           // per capture (default 100)
	MaxDuration        time.Duration `yaml:"max_duration"`          // default 1h; applied when none is asked
}

// StaticConfig configures the static resolver.
type StaticConfig struct {
	// OperatorKeysFile lists the operators' public keys (required).
	OperatorKeysFile string `yaml:"operator_keys_file"`
	// Groups maps group names to agent addresses (host:port).
	Groups map[string][]string `yaml:"groups"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:        "0.0.0.0:2222",
		HTTPListen:    "0.0.0.0:8080",
		Agents:        AgentsConfig{Port: 9494, DialTimeout: 10 * time.Second},
		Limits:        LimitsConfig{MaxCaptures: 20, MaxCapturesPerUser: 3, MaxTargets: 100, MaxDuration: time.Hour},
		ReorderWindow: 100 * time.Millisecond,
		StopTimeout:   2 * time.Second,
		LogLevel:      "info",
	}
}

// LoadConfig reads a YAML file over the defaults and validates it.
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("api: read config: %w", err)
	}
	return ParseConfig(b)
}

// ParseConfig parses YAML over the defaults (unknown keys are errors) and
// validates.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("api: parse config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate returns every problem at once.
func (c Config) Validate() error {
	var errs []error
	addr := func(name, v string, optional bool) {
		if v == "" && optional {
			return
		}
		if _, _, err := net.SplitHostPort(v); err != nil {
			errs = append(errs, fmt.Errorf("%s %q: %w", name, v, err))
		}
	}
	addr("listen", c.Listen, false)
	addr("http_listen", c.HTTPListen, true)
	if c.HostKeyFile == "" {
		errs = append(errs, errors.New("host_key_file is required"))
	}
	if c.Agents.ClientKeyFile == "" {
		errs = append(errs, errors.New("agents.client_key_file is required"))
	}
	if c.Agents.HostKeysFile == "" && len(c.Agents.HostKeyFingerprints) == 0 {
		errs = append(errs, errors.New("agents.host_keys_file or agents.host_key_fingerprints is required (agents are pinned)"))
	}
	if c.Agents.Port < 1 || c.Agents.Port > 65535 {
		errs = append(errs, fmt.Errorf("agents.port %d is out of range", c.Agents.Port))
	}
	if c.Agents.DialTimeout <= 0 {
		errs = append(errs, errors.New("agents.dial_timeout must be positive"))
	}
	l := c.Limits
	if l.MaxCaptures < 1 || l.MaxCapturesPerUser < 1 || l.MaxTargets < 1 {
		errs = append(errs, errors.New("limits.max_captures, max_captures_per_user and max_targets must be at least 1"))
	}
	if l.MaxTargets > MaxTargets {
		errs = append(errs, fmt.Errorf("limits.max_targets is at most %d", MaxTargets))
	}
	if l.MaxDuration <= 0 {
		errs = append(errs, errors.New("limits.max_duration must be positive"))
	}
	if c.ReorderWindow < 0 || c.ReorderWindow > 10*time.Second {
		errs = append(errs, errors.New("reorder_window must be within 0..10s"))
	}
	if c.StopTimeout <= 0 || c.StopTimeout > time.Minute {
		errs = append(errs, errors.New("stop_timeout must be within 0..1m"))
	}
	if s := c.Static; s != nil {
		if s.OperatorKeysFile == "" {
			errs = append(errs, errors.New("static.operator_keys_file is required"))
		}
		for g, agents := range s.Groups {
			if len(agents) == 0 {
				errs = append(errs, fmt.Errorf("static.groups.%s is empty", g))
			}
			for _, a := range agents {
				addr("static.groups."+g, a, false)
			}
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if len(errs) > 0 {
		return fmt.Errorf("api: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
