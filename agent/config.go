package agent

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"time"

	"code.cloudfoundry.org/pcap/internal/debugserver"
	"code.cloudfoundry.org/pcap/internal/yamlconf"
)

// Config is pcap-agent's YAML configuration file.
type Config struct {
	// Listen is the SSH listen address (default 0.0.0.0:9494).
	Listen string `yaml:"listen"`
	// HostKeyFile is the agent's SSH host private key (required).
	HostKeyFile string `yaml:"host_key_file"`
	// AuthorizedKeysFile lists the public keys of the pcap-api(s) that may
	// connect, in authorized_keys format (required).
	AuthorizedKeysFile string `yaml:"authorized_keys_file"`
	// MaxCaptures bounds concurrent captures (default 4).
	MaxCaptures int `yaml:"max_captures"`
	// BufferSize is libpcap's kernel buffer per interface, bytes (default
	// [DefaultBufferSize]).
	BufferSize int `yaml:"buffer_size"`
	// QueueBytes bounds the packets held per capture between libpcap and
	// the network, as pcapng bytes (default [DefaultQueueBytes]).
	QueueBytes int `yaml:"queue_bytes"`
	// Containers says where app containers are found.
	Containers ContainersConfig `yaml:"containers"`
	// KeepaliveInterval is how often the agent checks that the API is
	// still there; a connection silent for three intervals is closed and
	// its captures end (default 15s, 0 disables).
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
	// LogLevel is debug, info, warn or error (default info).
	LogLevel string `yaml:"log_level"`
	// DebugListen serves Go's runtime profiles (/debug/pprof/) on this
	// loopback address, for an operator on the cell or VM (default "":
	// off). See package debugserver.
	DebugListen string `yaml:"debug_listen"`
}

// ContainersConfig says where app containers are found.
type ContainersConfig struct {
	// NetnsDir holds one bind mount of a network namespace per container,
	// named by its handle, which on Diego is the instance GUID (default
	// [DefaultNetnsDir], where cf-networking puts them).
	NetnsDir string `yaml:"netns_dir"`
}

// Burst defaults. A capture must ride out a burst while the writer waits
// on a slow hop (the API, a client): 32 MiB hold 200 ms of a 1 Gbit/s
// interface at line rate (25 MB, plus the ring's or pcapng's per-packet
// overhead), or 400 ms of 50k pps × 1500 bytes. The kernel buffer is per
// interface; the queue is per capture, filled on demand, and exact: it
// never holds more packet bytes than configured.
const (
	DefaultBufferSize = 32 << 20
	DefaultQueueBytes = 32 << 20
)

// DefaultConfig returns a Config with every default filled in.
func DefaultConfig() Config {
	return Config{
		Listen:      "0.0.0.0:9494",
		MaxCaptures: 4,
		BufferSize:  DefaultBufferSize,
		QueueBytes:  DefaultQueueBytes,
		LogLevel:    "info",
		Containers:  ContainersConfig{NetnsDir: DefaultNetnsDir},

		KeepaliveInterval: 15 * time.Second,
	}
}

// LoadConfig reads a YAML config file over the defaults and validates it.
func LoadConfig(path string) (Config, error) {
	return yamlconf.Load(path, "agent", ParseConfig)
}

// ParseConfig parses YAML over the defaults (unknown keys are an error) and
// validates the result.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	if err := yamlconf.Decode(b, &c); err != nil {
		return Config{}, fmt.Errorf("agent: parse config: %w", err)
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// Validate returns every problem of c at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen %q: %w", c.Listen, err))
	}
	if c.DebugListen != "" {
		if err := debugserver.CheckAddr(c.DebugListen); err != nil {
			errs = append(errs, fmt.Errorf("debug_listen %q: %w", c.DebugListen, err))
		}
	}
	if c.HostKeyFile == "" {
		errs = append(errs, errors.New("host_key_file is required"))
	}
	if c.AuthorizedKeysFile == "" {
		errs = append(errs, errors.New("authorized_keys_file is required"))
	}
	if c.MaxCaptures < 1 || c.MaxCaptures > 1000 {
		errs = append(errs, fmt.Errorf("max_captures %d is out of range 1..1000", c.MaxCaptures))
	}
	if c.BufferSize < 64<<10 || c.BufferSize > 1<<30 {
		errs = append(errs, fmt.Errorf("buffer_size %d is out of range 64 KiB..1 GiB", c.BufferSize))
	}
	if c.QueueBytes < 512<<10 || c.QueueBytes > 1<<30 {
		errs = append(errs, fmt.Errorf("queue_bytes %d is out of range 512 KiB..1 GiB", c.QueueBytes))
	}
	if c.KeepaliveInterval < 0 || c.KeepaliveInterval > 10*time.Minute {
		errs = append(errs, fmt.Errorf("keepalive_interval %v is out of range 0..10m", c.KeepaliveInterval))
	}
	if d := c.Containers.NetnsDir; !filepath.IsAbs(d) || filepath.Clean(d) != d || d == "/" {
		errs = append(errs, fmt.Errorf("containers.netns_dir %q is not a clean absolute path below /", d))
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if len(errs) > 0 {
		return fmt.Errorf("agent: invalid config: %w", errors.Join(errs...))
	}
	return nil
}
