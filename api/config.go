package api

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"

	"code.cloudfoundry.org/pcap/internal/debugserver"
	"code.cloudfoundry.org/pcap/internal/yamlconf"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
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
	// FollowInterval is how often a followed capture (a whole app process
	// or instance group) resolves its targets again (default 3s, within
	// 500ms..1m).
	FollowInterval time.Duration `yaml:"follow_interval"`
	// DrainDelay is how long, after SIGTERM, the API keeps serving new
	// connections while /health answers 503, so that a load balancer's
	// health check takes the instance out before its listener closes
	// (default 0: close at once).
	DrainDelay time.Duration `yaml:"drain_delay"`
	// KeepaliveInterval is how often client connections are checked; one
	// silent for three intervals is closed and its capture stopped
	// (default 30s).
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`

	// Static enables the "static" resolver (user name "static").
	Static *StaticConfig `yaml:"static"`
	// CF enables the "cf" resolver (user name "cf").
	CF *CFConfig `yaml:"cf"`
	// BOSH enables the "bosh" resolver (user name "bosh").
	BOSH *BOSHConfig `yaml:"bosh"`

	LogLevel string `yaml:"log_level"`
	// DebugListen serves Go's runtime profiles (/debug/pprof/) on this
	// loopback address, for an operator on the VM (default "": off). See
	// package debugserver.
	DebugListen string `yaml:"debug_listen"`
	// MemoryLimit is a soft limit on pcap-api's Go memory in bytes
	// (runtime/debug.SetMemoryLimit; default 0: none, or GOMEMLIMIT from
	// the environment). Near it the garbage collector runs more often and
	// hands freed memory back: it holds many slow sources in less memory,
	// and costs CPU (and, on a loaded machine, packets) when a capture
	// moves hundreds of MB/s through a heap kept close to its live size.
	// Memory in use is never refused.
	MemoryLimit int64 `yaml:"memory_limit"`
}

// minMemoryLimit is the smallest memory_limit pcap-api takes: below it
// the collector would run all the time.
const minMemoryLimit = 32 << 20

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
	// KeepaliveInterval is how often agent connections are checked; one
	// silent for three intervals is closed and its sources reported lost
	// (default 15s).
	KeepaliveInterval time.Duration `yaml:"keepalive_interval"`
	// IdleTimeout closes an agent connection that has carried no capture
	// for that long (default 5m; 0 keeps connections open).
	IdleTimeout time.Duration `yaml:"idle_timeout"`
}

// LimitsConfig bounds what users may ask.
type LimitsConfig struct {
	MaxCaptures        int           `yaml:"max_captures"`          // per API (default 20)
	MaxCapturesPerUser int           `yaml:"max_captures_per_user"` // default 3
	MaxTargets         int           `yaml:"max_targets"`           // per capture (default 100)
	MaxDuration        time.Duration `yaml:"max_duration"`          // default 1h; applied when none is asked
	// MaxSessionsPerConnection bounds the session channels one client
	// connection has open (default 4); more are refused as a resource
	// shortage. ExecTimeout is how long a session channel may wait for
	// its command (default 10s).
	MaxSessionsPerConnection int           `yaml:"max_sessions_per_connection"`
	ExecTimeout              time.Duration `yaml:"exec_timeout"`
}

// StaticConfig configures the static resolver.
type StaticConfig struct {
	// OperatorKeysFile lists the operators' public keys (required).
	OperatorKeysFile string `yaml:"operator_keys_file"`
	// Groups maps group names to agent addresses (host:port).
	Groups map[string][]string `yaml:"groups"`
}

// CFConfig configures the cf resolver: app developers authenticate with a
// UAA access token or a `cf ssh-code` one-time code, and may capture the
// instances Policy allows.
type CFConfig struct {
	// APIURL is the Cloud Controller (required), e.g. https://api.sys.example.com.
	APIURL string `yaml:"api_url"`
	// UAAURL is UAA; empty means the one the Cloud Controller's root names.
	UAAURL string `yaml:"uaa_url"`
	// UAAClientID and UAAClientSecret are the API's own UAA client, used
	// to exchange one-time codes (authorization_code grant), as Diego's
	// ssh-proxy does (default client "ssh-proxy").
	UAAClientID     string `yaml:"uaa_client_id"`
	UAAClientSecret string `yaml:"uaa_client_secret"`
	// CACertFile verifies the Cloud Controller's and UAA's TLS (default:
	// system roots).
	CACertFile string `yaml:"ca_cert_file"`
	// Timeout bounds each request to the Cloud Controller or UAA (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// Policy decides who may capture an app instance: CFPolicySSH (the
	// default) asks the Cloud Controller's SSH access check for each
	// instance, as Diego's ssh-proxy does (space developer or admin, SSH
	// allowed globally, in the space and for the app; it records
	// audit.app.ssh-authorized or -unauthorized); CFPolicyReadSensitiveData
	// asks only whether the user may read the app's sensitive data (space
	// developer, admin or read-only admin), whatever the SSH switches say.
	Policy string `yaml:"policy"`
	// AdminsOnly limits app captures to tokens with the
	// cloud_controller.admin scope.
	AdminsOnly bool `yaml:"admins_only"`
	// AllowedClients lists UAA clients whose own (client_credentials)
	// tokens are accepted; by default only user tokens are.
	AllowedClients []string `yaml:"allowed_clients"`
	// AllowInsecureHTTP lets api_url and uaa_url be plain http: for tests
	// and demos only, never with real tokens.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
}

// The cf.policy values.
const (
	CFPolicySSH               = "ssh"
	CFPolicyReadSensitiveData = "read_sensitive_data"
)

// BOSHConfig configures the bosh resolver: operators authenticate with a
// UAA access token of the director's UAA (or a one-time code of that UAA,
// which the API exchanges, or a break-glass key) and may capture on VMs
// of deployments they administer.
type BOSHConfig struct {
	// DirectorURL is the BOSH director (required), e.g. https://10.0.0.6:25555.
	DirectorURL string `yaml:"director_url"`
	// CACertFile verifies the director's and its UAA's TLS.
	CACertFile string `yaml:"ca_cert_file"`
	// UAAURL is the director's UAA; empty means the one the director's
	// /info names.
	UAAURL string `yaml:"uaa_url"`
	// OperatorKeysFile lists break-glass operator keys (optional); key
	// users act as bosh.admin through the API's own UAA client below and
	// are audited by fingerprint.
	OperatorKeysFile string `yaml:"operator_keys_file"`
	// UAAClientID and UAAClientSecret are the API's own client (with
	// bosh.admin authority), used only for break-glass key users.
	UAAClientID     string `yaml:"uaa_client_id"`
	UAAClientSecret string `yaml:"uaa_client_secret"`
	// CodeClientID and CodeClientSecret are the client of the director's
	// UAA that one-time codes (`pcap-bosh ssh-code`) are issued for
	// (authorization_code grant, autoapprove;
	// manifests/ops-files/director-uaa-pcap-client.yml); the API exchanges
	// codes with them. Without a secret, only tokens and keys log in.
	CodeClientID     string `yaml:"code_client_id"`
	CodeClientSecret string `yaml:"code_client_secret"`
	// Timeout bounds each request to the director or UAA (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// TokenAudiences are the audiences a token must carry one of (default
	// ["bosh_cli", "bosh"]: tokens UAA issued to the bosh CLI, or for the
	// director's bosh.* scopes, as CI clients' are). ["bosh_cli"] admits
	// only `bosh log-in` tokens; list client ids to admit their tokens.
	// omitempty: a marshalled config (tests write theirs so) leaves the
	// key out when unset, and reads back with the default.
	TokenAudiences []string `yaml:"token_audiences,omitempty"`
	// AllowInsecureHTTP lets director_url and uaa_url be plain http: for
	// tests and demos only, never with real tokens.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
	// CFClient is pcap-api's own Cloud Controller client, with which the
	// apps of `--app GUID` (next to instance groups, for bosh admins) are
	// looked up; without it such captures are refused.
	CFClient *CFClientConfig `yaml:"cf_client"`
}

// CFClientConfig is a Cloud Controller client of pcap-api's own: a UAA
// client of the foundation's UAA whose client_credentials token carries
// cloud_controller.admin_read_only (or cloud_controller.global_auditor),
// enough to read any app's processes and their stats, and nothing more.
type CFClientConfig struct {
	// APIURL is the Cloud Controller (required), e.g. https://api.sys.example.com.
	APIURL string `yaml:"api_url"`
	// UAAURL is the foundation's UAA; empty means the one the Cloud
	// Controller's root names.
	UAAURL string `yaml:"uaa_url"`
	// ClientID and ClientSecret are the UAA client (both required).
	ClientID     string `yaml:"client_id"`
	ClientSecret string `yaml:"client_secret"`
	// CACertFile verifies the Cloud Controller's and UAA's TLS (default:
	// system roots).
	CACertFile string `yaml:"ca_cert_file"`
	// Timeout bounds each request (default 10s).
	Timeout time.Duration `yaml:"timeout"`
	// AllowInsecureHTTP lets api_url and uaa_url be plain http: for tests
	// and demos only.
	AllowInsecureHTTP bool `yaml:"allow_insecure_http"`
}

// DefaultConfig returns the defaults.
func DefaultConfig() Config {
	return Config{
		Listen:     "0.0.0.0:2222",
		HTTPListen: "0.0.0.0:8080",
		Agents:     AgentsConfig{Port: 9494, DialTimeout: 10 * time.Second, KeepaliveInterval: 15 * time.Second, IdleTimeout: 5 * time.Minute},
		Limits: LimitsConfig{MaxCaptures: 20, MaxCapturesPerUser: 3, MaxTargets: 100, MaxDuration: time.Hour,
			MaxSessionsPerConnection: DefaultMaxSessions, ExecTimeout: DefaultExecTimeout},
		ReorderWindow: 100 * time.Millisecond,
		StopTimeout:   2 * time.Second,
		LogLevel:      "info",

		FollowInterval: DefaultFollowInterval,

		KeepaliveInterval: 30 * time.Second,
	}
}

// LoadConfig reads a YAML config file over the defaults and validates it.
func LoadConfig(path string) (Config, error) {
	return yamlconf.Load(path, "api", ParseConfig)
}

// ParseConfig parses YAML over the defaults (unknown keys are errors) and
// validates.
func ParseConfig(b []byte) (Config, error) {
	c := DefaultConfig()
	if err := yamlconf.Decode(b, &c); err != nil {
		return Config{}, fmt.Errorf("api: parse config: %w", err)
	}
	if cf := c.CF; cf != nil {
		if cf.UAAClientID == "" {
			cf.UAAClientID = "ssh-proxy"
		}
		if cf.Timeout == 0 {
			cf.Timeout = 10 * time.Second
		}
		if cf.Policy == "" {
			cf.Policy = CFPolicySSH
		}
	}
	if b := c.BOSH; b != nil {
		if b.CodeClientID == "" {
			b.CodeClientID = "pcap_ssh"
		}
		if b.Timeout == 0 {
			b.Timeout = 10 * time.Second
		}
		if b.TokenAudiences == nil {
			b.TokenAudiences = []string{"bosh_cli", "bosh"}
		}
		if b.CFClient != nil && b.CFClient.Timeout == 0 {
			b.CFClient.Timeout = 10 * time.Second
		}
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
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		errs = append(errs, fmt.Errorf("memory_limit %d: want 0 (none) or at least %d bytes", c.MemoryLimit, minMemoryLimit))
	}
	if c.DebugListen != "" {
		if err := debugserver.CheckAddr(c.DebugListen); err != nil {
			errs = append(errs, fmt.Errorf("debug_listen %q: %w", c.DebugListen, err))
		}
	}
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
	if c.Agents.IdleTimeout < 0 {
		errs = append(errs, errors.New("agents.idle_timeout must not be negative"))
	}
	if c.KeepaliveInterval <= 0 || c.KeepaliveInterval > 10*time.Minute || c.Agents.KeepaliveInterval <= 0 || c.Agents.KeepaliveInterval > 10*time.Minute {
		errs = append(errs, errors.New("keepalive_interval and agents.keepalive_interval must be within 0..10m"))
	}
	l := c.Limits
	if l.MaxCaptures < 1 || l.MaxCapturesPerUser < 1 || l.MaxTargets < 1 {
		errs = append(errs, errors.New("limits.max_captures, max_captures_per_user and max_targets must be at least 1"))
	}
	if l.MaxTargets > capturecmd.MaxTargets {
		errs = append(errs, fmt.Errorf("limits.max_targets is at most %d", capturecmd.MaxTargets))
	}
	if l.MaxSessionsPerConnection < 1 || l.MaxSessionsPerConnection > 64 {
		errs = append(errs, errors.New("limits.max_sessions_per_connection must be within 1..64"))
	}
	if l.ExecTimeout <= 0 || l.ExecTimeout > time.Minute {
		errs = append(errs, errors.New("limits.exec_timeout must be within 0..1m"))
	}
	if l.MaxDuration <= 0 {
		errs = append(errs, errors.New("limits.max_duration must be positive"))
	}
	if c.ReorderWindow < 0 || c.ReorderWindow > 10*time.Second {
		errs = append(errs, errors.New("reorder_window must be within 0..10s"))
	}
	if c.FollowInterval < MinFollowInterval || c.FollowInterval > time.Minute {
		errs = append(errs, fmt.Errorf("follow_interval must be within %v..1m", MinFollowInterval))
	}
	if c.StopTimeout <= 0 || c.StopTimeout > time.Minute {
		errs = append(errs, errors.New("stop_timeout must be within 0..1m"))
	}
	if c.DrainDelay < 0 || c.DrainDelay > time.Minute {
		errs = append(errs, errors.New("drain_delay must be within 0..1m"))
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
	if cf := c.CF; cf != nil {
		if cf.APIURL == "" {
			errs = append(errs, errors.New("cf.api_url is required"))
		}
		errs = append(errs, checkURL("cf.api_url", cf.APIURL, cf.AllowInsecureHTTP, "cf.allow_insecure_http"),
			checkURL("cf.uaa_url", cf.UAAURL, cf.AllowInsecureHTTP, "cf.allow_insecure_http"))
		if cf.UAAClientSecret == "" {
			errs = append(errs, errors.New("cf.uaa_client_secret is required (one-time codes are exchanged with it)"))
		}
		if cf.Timeout < 0 {
			errs = append(errs, errors.New("cf.timeout is negative"))
		}
		if cf.Policy != CFPolicySSH && cf.Policy != CFPolicyReadSensitiveData {
			errs = append(errs, fmt.Errorf("cf.policy %q is not %s or %s", cf.Policy, CFPolicySSH, CFPolicyReadSensitiveData))
		}
	}
	if b := c.BOSH; b != nil {
		if b.DirectorURL == "" {
			errs = append(errs, errors.New("bosh.director_url is required"))
		}
		errs = append(errs, checkURL("bosh.director_url", b.DirectorURL, b.AllowInsecureHTTP, "bosh.allow_insecure_http"),
			checkURL("bosh.uaa_url", b.UAAURL, b.AllowInsecureHTTP, "bosh.allow_insecure_http"))
		if b.OperatorKeysFile != "" && (b.UAAClientID == "" || b.UAAClientSecret == "") {
			errs = append(errs, errors.New("bosh.operator_keys_file needs bosh.uaa_client_id and bosh.uaa_client_secret (key users reach the director through them)"))
		}
		if b.Timeout < 0 {
			errs = append(errs, errors.New("bosh.timeout is negative"))
		}
		if len(b.TokenAudiences) == 0 {
			errs = append(errs, errors.New("bosh.token_audiences is empty: no token would be accepted"))
		}
		if cc := b.CFClient; cc != nil {
			if cc.APIURL == "" {
				errs = append(errs, errors.New("bosh.cf_client.api_url is required"))
			}
			errs = append(errs, checkURL("bosh.cf_client.api_url", cc.APIURL, cc.AllowInsecureHTTP, "bosh.cf_client.allow_insecure_http"),
				checkURL("bosh.cf_client.uaa_url", cc.UAAURL, cc.AllowInsecureHTTP, "bosh.cf_client.allow_insecure_http"))
			if cc.ClientID == "" || cc.ClientSecret == "" {
				errs = append(errs, errors.New("bosh.cf_client.client_id and client_secret are required"))
			}
			if cc.Timeout < 0 {
				errs = append(errs, errors.New("bosh.cf_client.timeout is negative"))
			}
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log_level %q is not one of debug, info, warn, error", c.LogLevel))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("api: invalid config: %w", err)
	}
	return nil
}

// checkURL checks an optional URL of a service that gets tokens: https,
// or http when insecure (the setting named allow) is set.
func checkURL(name, v string, insecure bool, allow string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	switch {
	case err != nil:
		return fmt.Errorf("%s %q: %w", name, v, err)
	case u.Host == "":
		return fmt.Errorf("%s %q has no host", name, v)
	case u.Scheme == "https", u.Scheme == "http" && insecure:
		return nil
	case u.Scheme == "http":
		return fmt.Errorf("%s %q must be https: tokens are sent to it (%s: true only for tests and demos)", name, v, allow)
	}
	return fmt.Errorf("%s %q must be an https URL", name, v)
}

// redacted replaces a secret that is set.
const redacted = "(redacted)"

// Redacted returns a copy of c without its secrets (the UAA client
// secrets, the code client's), for printing. Keys are files and only their paths are held.
func (c Config) Redacted() Config {
	if c.CF != nil {
		cf := *c.CF
		if cf.UAAClientSecret != "" {
			cf.UAAClientSecret = redacted
		}
		c.CF = &cf
	}
	if c.BOSH != nil {
		b := *c.BOSH
		if b.UAAClientSecret != "" {
			b.UAAClientSecret = redacted
		}
		if b.CodeClientSecret != "" {
			b.CodeClientSecret = redacted
		}
		if b.CFClient != nil {
			cc := *b.CFClient
			if cc.ClientSecret != "" {
				cc.ClientSecret = redacted
			}
			b.CFClient = &cc
		}
		c.BOSH = &b
	}
	return c
}
