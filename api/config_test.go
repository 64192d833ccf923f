package api

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const minimalConfig = `
host_key_file: /k/host
agents:
  client_key_file: /k/client
  host_keys_file: /k/agents
`

func TestParseConfigDefaults(t *testing.T) {
	c, err := ParseConfig([]byte(minimalConfig))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	want := DefaultConfig()
	want.HostKeyFile = "/k/host"
	want.Agents.ClientKeyFile = "/k/client"
	want.Agents.HostKeysFile = "/k/agents"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("config\n got  %+v\n want %+v", c, want)
	}
	if c.Listen != "0.0.0.0:2222" || c.HTTPListen != "0.0.0.0:8080" || c.Agents.Port != 9494 ||
		c.Limits != (LimitsConfig{MaxCaptures: 20, MaxCapturesPerUser: 3, MaxTargets: 100, MaxDuration: time.Hour,
			MaxSessionsPerConnection: 4, ExecTimeout: 10 * time.Second}) ||
		c.ReorderWindow != 100*time.Millisecond || c.StopTimeout != 2*time.Second || c.DrainDelay != 0 ||
		c.FollowInterval != 3*time.Second {
		t.Errorf("defaults changed: %+v", c)
	}
}

func TestParseConfigFull(t *testing.T) {
	c, err := ParseConfig([]byte(`
listen: 127.0.0.1:2200
http_listen: ""
host_key_file: /k/host
reorder_window: 0s
stop_timeout: 5s
drain_delay: 4s
log_level: debug
debug_listen: "[::1]:17222"
memory_limit: 100000000
agents:
  client_key_file: /k/client
  host_key_fingerprints: ["SHA256:abc"]
  port: 9595
  dial_timeout: 3s
  idle_timeout: 90s
limits:
  max_captures: 2
  max_captures_per_user: 1
  max_targets: 7
  max_duration: 10m
  max_sessions_per_connection: 2
  exec_timeout: 3s
static:
  operator_keys_file: /k/ops
  groups:
    lb: ["10.0.0.5:9494", "[fd00::1]:9494"]
`))
	if err != nil {
		t.Fatalf("ParseConfig: %v", err)
	}
	if c.Listen != "127.0.0.1:2200" || c.HTTPListen != "" || c.DebugListen != "[::1]:17222" || c.MemoryLimit != 100000000 || c.ReorderWindow != 0 || c.StopTimeout != 5*time.Second || c.DrainDelay != 4*time.Second ||
		c.Agents.Port != 9595 || c.Agents.DialTimeout != 3*time.Second || c.Agents.IdleTimeout != 90*time.Second || c.Agents.HostKeyFingerprints[0] != "SHA256:abc" ||
		c.Limits != (LimitsConfig{MaxCaptures: 2, MaxCapturesPerUser: 1, MaxTargets: 7, MaxDuration: 10 * time.Minute,
			MaxSessionsPerConnection: 2, ExecTimeout: 3 * time.Second}) ||
		c.Static == nil || c.Static.OperatorKeysFile != "/k/ops" ||
		!reflect.DeepEqual(c.Static.Groups["lb"], []string{"10.0.0.5:9494", "[fd00::1]:9494"}) {
		t.Errorf("config not as written: %+v (static %+v)", c, c.Static)
	}
}

func TestParseConfigEveryErrorAtOnce(t *testing.T) {
	_, err := ParseConfig([]byte(`
listen: nowhere
http_listen: also-nowhere
debug_listen: "10.0.0.5:17222"
memory_limit: 1000
agents:
  port: 0
  dial_timeout: -1s
  idle_timeout: -1s
limits:
  max_captures: 0
  max_targets: 1001
  max_duration: 0s
reorder_window: 11s
follow_interval: 100ms
stop_timeout: 0s
drain_delay: -1s
log_level: loud
static:
  groups:
    empty: []
    bad: ["10.0.0.1"]
`))
	if err == nil {
		t.Fatal("ParseConfig accepted a config full of errors")
	}
	want := []string{
		`api: invalid config: listen "nowhere": address nowhere: missing port in address`,
		`http_listen "also-nowhere": address also-nowhere: missing port in address`,
		`debug_listen "10.0.0.5:17222": "10.0.0.5": not a loopback address (127.0.0.1, ::1 or localhost)`,
		"memory_limit 1000: want 0 (none) or at least 33554432 bytes",
		"host_key_file is required",
		"agents.client_key_file is required",
		"agents.host_keys_file or agents.host_key_fingerprints is required (agents are pinned)",
		"agents.port 0 is out of range",
		"agents.dial_timeout must be positive",
		"agents.idle_timeout must not be negative",
		"limits.max_captures, max_captures_per_user and max_targets must be at least 1",
		"limits.max_targets is at most 1000",
		"limits.max_duration must be positive",
		"reorder_window must be within 0..10s",
		"follow_interval must be within 500ms..1m",
		"stop_timeout must be within 0..1m",
		"drain_delay must be within 0..1m",
		"static.operator_keys_file is required",
		`static.groups.bad "10.0.0.1": address 10.0.0.1: missing port in address`,
		"static.groups.empty is empty",
		`log_level "loud" is not one of debug, info, warn, error`,
	}
	got := strings.Split(err.Error(), "\n")
	// Group errors come in map order; compare them as a set.
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), err)
	}
	seen := map[string]bool{}
	for _, g := range got {
		seen[g] = true
	}
	for _, w := range want {
		if !seen[w] {
			t.Errorf("missing problem %q in:\n%s", w, err)
		}
	}
}

func TestParseConfigUnknownKey(t *testing.T) {
	for name, doc := range map[string]string{
		"top level": minimalConfig + "listne: 0.0.0.0:22\n",
		"nested":    minimalConfig + "limits:\n  max_capture: 3\n",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseConfig([]byte(doc))
			if err == nil {
				t.Fatal("unknown key accepted")
			}
			if !strings.HasPrefix(err.Error(), "api: parse config: ") || !strings.Contains(err.Error(), "not found in type") {
				t.Errorf("error = %v, want the unknown key named", err)
			}
		})
	}
}

func TestParseConfigBadYAML(t *testing.T) {
	for _, doc := range []string{"limits: [", "reorder_window: soon\n" + minimalConfig, "- a\n- b\n"} {
		if _, err := ParseConfig([]byte(doc)); err == nil || !strings.HasPrefix(err.Error(), "api: parse config: ") {
			t.Errorf("ParseConfig(%q) error = %v, want a parse error", doc, err)
		}
	}
}

func TestParseConfigEmptyIsInvalidNotAPanic(t *testing.T) {
	_, err := ParseConfig(nil)
	if err == nil || !strings.Contains(err.Error(), "host_key_file is required") {
		t.Errorf("empty config error = %v", err)
	}
}

func TestLoadConfig(t *testing.T) {
	p := filepath.Join(t.TempDir(), "api.yml")
	if err := os.WriteFile(p, []byte(minimalConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err != nil {
		t.Errorf("LoadConfig: %v", err)
	}
	if _, err := LoadConfig(p + ".missing"); err == nil || !strings.HasPrefix(err.Error(), "api: read config: ") {
		t.Errorf("missing file error = %v", err)
	}
}

// TestParseConfigCFPolicyAndAudiences: cf.policy defaults to ssh and takes
// only its two values; bosh.token_audiences defaults to bosh_cli and bosh
// and may not be emptied.
func TestParseConfigCFPolicyAndAudiences(t *testing.T) {
	c, err := ParseConfig([]byte(minimalConfig + "cf:\n  api_url: https://api\n  uaa_client_secret: s\nbosh:\n  director_url: https://d\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.CF.Policy != CFPolicySSH || c.CF.AdminsOnly || c.CF.AllowedClients != nil || !reflect.DeepEqual(c.BOSH.TokenAudiences, []string{"bosh_cli", "bosh"}) {
		t.Errorf("defaults: cf %+v, bosh %+v", c.CF, c.BOSH)
	}
	c, err = ParseConfig([]byte(minimalConfig + "cf:\n  api_url: https://api\n  uaa_client_secret: s\n  policy: read_sensitive_data\n  admins_only: true\n  allowed_clients: [monitor]\nbosh:\n  director_url: https://d\n  token_audiences: [bosh_cli, ci]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.CF.Policy != CFPolicyReadSensitiveData || !c.CF.AdminsOnly || !reflect.DeepEqual(c.CF.AllowedClients, []string{"monitor"}) ||
		!reflect.DeepEqual(c.BOSH.TokenAudiences, []string{"bosh_cli", "ci"}) {
		t.Errorf("set: cf %+v, bosh %+v", c.CF, c.BOSH)
	}
	_, err = ParseConfig([]byte(minimalConfig + "cf:\n  api_url: https://api\n  uaa_client_secret: s\n  policy: anyone\nbosh:\n  director_url: https://d\n  token_audiences: []\n"))
	for _, want := range []string{`cf.policy "anyone" is not ssh or read_sensitive_data`, "bosh.token_audiences is empty"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v lacks %q", err, want)
		}
	}
}

func TestParseConfigURLsMustBeHTTPS(t *testing.T) {
	cases := []struct {
		name    string
		section string
		wantErr []string // "" means valid
	}{
		{"https everywhere", "cf:\n  api_url: https://api.example.com\n  uaa_url: https://uaa.example.com\n  uaa_client_secret: s\n" +
			"bosh:\n  director_url: https://10.0.0.6:25555\n  uaa_url: https://10.0.0.6:8443\n", nil},
		{"plain http is refused, naming each field", "cf:\n  api_url: http://api.example.com\n  uaa_url: http://uaa.example.com\n  uaa_client_secret: s\n" +
			"bosh:\n  director_url: http://10.0.0.6:25555\n  uaa_url: http://10.0.0.6:8443\n", []string{
			`cf.api_url "http://api.example.com" must be https: tokens are sent to it (cf.allow_insecure_http: true only for tests and demos)`,
			`cf.uaa_url "http://uaa.example.com" must be https`,
			`bosh.director_url "http://10.0.0.6:25555" must be https: tokens are sent to it (bosh.allow_insecure_http: true only for tests and demos)`,
			`bosh.uaa_url "http://10.0.0.6:8443" must be https`,
		}},
		{"plain http when allowed", "cf:\n  api_url: http://127.0.0.1:8000\n  uaa_client_secret: s\n  allow_insecure_http: true\n" +
			"bosh:\n  director_url: http://127.0.0.1:25555\n  allow_insecure_http: true\n", nil},
		{"bosh.cf_client: http refused, client required", "bosh:\n  director_url: https://10.0.0.6:25555\n  cf_client:\n    api_url: http://api.example.com\n    client_id: pcap-api\n", []string{
			`bosh.cf_client.api_url "http://api.example.com" must be https`, "bosh.cf_client.client_id and client_secret are required",
		}},
		{"bosh.cf_client: api_url required", "bosh:\n  director_url: https://10.0.0.6:25555\n  cf_client:\n    client_id: pcap-api\n    client_secret: s\n", []string{
			"bosh.cf_client.api_url is required",
		}},
		{"bosh.cf_client valid", "bosh:\n  director_url: https://10.0.0.6:25555\n  cf_client:\n    api_url: https://api.example.com\n    client_id: pcap-api\n    client_secret: s\n", nil},
		{"other schemes and no host", "cf:\n  api_url: ftp://api.example.com\n  uaa_url: https://\n  uaa_client_secret: s\n  allow_insecure_http: true\n", []string{
			`cf.api_url "ftp://api.example.com" must be an https URL`, `cf.uaa_url "https://" has no host`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseConfig([]byte(minimalConfig + c.section))
			if c.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range c.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestConfigRedacted(t *testing.T) {
	c, err := ParseConfig([]byte(minimalConfig + "cf:\n  api_url: https://api.example.com\n  uaa_client_secret: cf-s3cret\n" +
		"bosh:\n  director_url: https://10.0.0.6:25555\n  operator_keys_file: /k/ops\n  uaa_client_id: pcap\n  uaa_client_secret: bosh-s3cret\n  code_client_secret: code-s3cret\n" +
		"  cf_client:\n    api_url: https://api.example.com\n    client_id: pcap-api\n    client_secret: cc-s3cret\n"))
	if err != nil {
		t.Fatal(err)
	}
	r := c.Redacted()
	out, err := yaml.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"cf-s3cret", "bosh-s3cret", "code-s3cret", "cc-s3cret"} {
		if strings.Contains(string(out), secret) {
			t.Errorf("redacted config holds %q:\n%s", secret, out)
		}
	}
	if r.CF.UAAClientSecret != "(redacted)" || r.BOSH.UAAClientSecret != "(redacted)" || r.BOSH.UAAClientID != "pcap" || r.CF.APIURL != c.CF.APIURL {
		t.Errorf("redacted: cf %+v, bosh %+v", r.CF, r.BOSH)
	}
	// The original keeps its secrets: the service still needs them.
	if r.BOSH.CFClient.ClientID != "pcap-api" || r.BOSH.CFClient.Timeout != 10*time.Second {
		t.Errorf("redacted cf_client: %+v", r.BOSH.CFClient)
	}
	if c.CF.UAAClientSecret != "cf-s3cret" || c.BOSH.UAAClientSecret != "bosh-s3cret" || c.BOSH.CodeClientSecret != "code-s3cret" ||
		c.BOSH.CFClient.ClientSecret != "cc-s3cret" {
		t.Error("Redacted changed the config it was called on")
	}
}

// TestConfigMarshalRoundTrip: a Config marshalled as YAML (as the
// integration tests write theirs) parses back to itself, the resolvers'
// defaults included.
func TestConfigMarshalRoundTrip(t *testing.T) {
	c := DefaultConfig()
	c.HostKeyFile, c.Agents.ClientKeyFile, c.Agents.HostKeysFile = "/k/host", "/k/client", "/k/agents"
	c.Static = &StaticConfig{OperatorKeysFile: "/k/ops", Groups: map[string][]string{"lb": {"10.0.0.5:9494"}}}
	c.CF = &CFConfig{APIURL: "https://api.example.com", UAAClientSecret: "s"}
	c.BOSH = &BOSHConfig{DirectorURL: "https://10.0.0.6:25555", CACertFile: "/k/ca"}
	b, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseConfig(b)
	if err != nil {
		t.Fatalf("ParseConfig(Marshal(c)): %v\n%s", err, b)
	}
	if !reflect.DeepEqual(got.BOSH.TokenAudiences, []string{"bosh_cli", "bosh"}) || got.CF.UAAClientID != "ssh-proxy" || got.CF.Timeout != 10*time.Second {
		t.Errorf("resolver defaults lost: bosh %+v, cf %+v", got.BOSH, got.CF)
	}
	got.BOSH.TokenAudiences, got.BOSH.CodeClientID, got.BOSH.Timeout = nil, "", 0
	got.CF.UAAClientID, got.CF.Timeout, got.CF.Policy = "", 0, ""
	again, err := yaml.Marshal(got) // nil and empty lists read alike
	if err != nil || string(again) != string(b) {
		t.Errorf("round trip changed the config:\n%s\nwant\n%s", again, b)
	}
}
