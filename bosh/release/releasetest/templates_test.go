package releasetest

import (
	"context"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/api"
)

// effective parses the effective config `--check-config` printed.
func effective[T any](t *testing.T, out string) T {
	t.Helper()
	var c T
	if err := yaml.Unmarshal([]byte(out), &c); err != nil {
		t.Fatalf("parse effective config as %T: %v\n%s", c, err, out)
	}
	return c
}

// wantRenderError renders job and wants the render to fail with an error
// containing every string of want.
func wantRenderError(t *testing.T, job string, props map[string]any, spec instanceSpec, links map[string]linkData, want []string) {
	t.Helper()
	_, errText := renderJob(t, job, props, spec, links, "")
	if errText == "" {
		t.Fatal("rendered without error")
	}
	for _, w := range want {
		if !strings.Contains(errText, w) {
			t.Errorf("render error %q does not contain %q", errText, w)
		}
	}
}

// wantCheckError renders job, which must work, and wants its binary's
// --check-config to refuse the rendered config with an error containing
// want.
func wantCheckError(t *testing.T, job string, props map[string]any, spec instanceSpec, config, want string) {
	t.Helper()
	r := mustRender(t, job, props, spec, nil, "")
	res := checkConfig(t, r, config, job)
	if res.err == nil {
		t.Fatalf("check-config accepted it:\n%s", res.stdout)
	}
	if !strings.Contains(res.stderr, want) {
		t.Errorf("check-config error %q does not contain %q", res.stderr, want)
	}
}

// bpmProcess returns the only process of a rendered bpm.yml.
func bpmProcess(t *testing.T, r rendered) map[string]any {
	t.Helper()
	doc := yamlMap(t, r.file(t, "config/bpm.yml"))
	procs, _ := doc["processes"].([]any)
	if len(procs) != 1 {
		t.Fatalf("bpm.yml: want one process, got %v", doc)
	}
	p := procs[0].(map[string]any)
	if p["name"] != r.job {
		t.Errorf("bpm.yml: process name %v, want %s (the monit pidfile names it)", p["name"], r.job)
	}
	if p["executable"] != "/var/vcap/packages/pcap/bin/"+r.job {
		t.Errorf("bpm.yml: executable %v", p["executable"])
	}
	return p
}

func TestAgentTemplates(t *testing.T) {
	kp := testKeys(t, 3)
	hostKey, apiKey, apiKey2 := kp[0], kp[1], kp[2]
	base := func() map[string]any {
		return map[string]any{
			"host_key":        hostKey.prop(),
			"authorized_keys": []any{apiKey.PublicKey},
		}
	}

	t.Run("defaults", func(t *testing.T) {
		r := mustRender(t, "pcap-agent", base(), cellSpec, nil, "pcap-agent")

		p := bpmProcess(t, r)
		if !reflect.DeepEqual(p["args"], []any{"--config", "/var/vcap/jobs/pcap-agent/config/agent.yml"}) {
			t.Errorf("bpm.yml args %v", p["args"])
		}
		want := map[string]any{"privileged": true, "host_pid_namespace": true}
		if !reflect.DeepEqual(p["unsafe"], want) {
			t.Errorf("bpm.yml unsafe = %v, want %v (container captures need setns and the host's PIDs)", p["unsafe"], want)
		}
		wantVols := []any{map[string]any{"path": "/var/vcap/data/garden-cni/container-netns"}}
		if !reflect.DeepEqual(p["additional_volumes"], wantVols) {
			t.Errorf("bpm.yml additional_volumes = %v, want %v (where garden-cni publishes containers)", p["additional_volumes"], wantVols)
		}
		if _, ok := p["capabilities"]; ok {
			t.Errorf("bpm.yml: privileged process lists capabilities %v", p["capabilities"])
		}

		if got := r.file(t, "config/keys/host_key"); got != hostKey.PrivateKey {
			t.Errorf("host_key file:\n%q\nwant\n%q", got, hostKey.PrivateKey)
		}
		if got := r.file(t, "config/keys/authorized_keys"); got != apiKey.PublicKey {
			t.Errorf("authorized_keys file:\n%q\nwant\n%q", got, apiKey.PublicKey)
		}
		wantLink := map[string]any{"port": float64(9494), "host_key": map[string]any{"public_key": hostKey.PublicKey}}
		if !reflect.DeepEqual(r.provides, wantLink) {
			t.Errorf("pcap-agent link = %v, want %v", r.provides, wantLink)
		}

		res := checkConfig(t, r, "config/agent.yml", "pcap-agent")
		if res.err != nil {
			t.Fatalf("check-config: %s", res)
		}
		got := effective[agent.Config](t, res.stdout)
		// The spec's defaults are the binary's defaults; only the listen
		// address (this instance's IP) and the key files are the job's own.
		wantCfg := agent.DefaultConfig()
		wantCfg.Listen = cellSpec.IP + ":9494"
		wantCfg.HostKeyFile = filepath.Join(r.dir, "config/keys/host_key")
		wantCfg.AuthorizedKeysFile = filepath.Join(r.dir, "config/keys/authorized_keys")
		if got != wantCfg {
			t.Errorf("effective config\n%+v\nwant\n%+v", got, wantCfg)
		}
	})

	t.Run("every property", func(t *testing.T) {
		props := base()
		props["listen_address"] = "0.0.0.0"
		props["port"] = 9595
		props["authorized_keys"] = []any{apiKey.PublicKey, apiKey2.PublicKey}
		props["max_captures"] = 8
		props["buffer_size"] = 16 << 20
		props["queue_bytes"] = 8 << 20
		props["log_level"] = "debug"
		props["debug_listen"] = "127.0.0.1:17494"
		props["container_captures"] = false
		props["containers"] = map[string]any{"netns_dir": "/var/vcap/data/cells/netns"}
		r := mustRender(t, "pcap-agent", props, cellSpec, nil, "pcap-agent")

		p := bpmProcess(t, r)
		if _, ok := p["unsafe"]; ok {
			t.Errorf("bpm.yml: host-only agent is unsafe: %v", p["unsafe"])
		}
		if !reflect.DeepEqual(p["capabilities"], []any{"NET_RAW"}) {
			t.Errorf("bpm.yml capabilities = %v, want [NET_RAW]", p["capabilities"])
		}
		if got, want := r.file(t, "config/keys/authorized_keys"), apiKey.PublicKey+apiKey2.PublicKey; got != want {
			t.Errorf("authorized_keys file:\n%q\nwant\n%q", got, want)
		}
		if got := r.provides["port"]; got != float64(9595) {
			t.Errorf("link port %v, want 9595", got)
		}
		res := checkConfig(t, r, "config/agent.yml", "pcap-agent")
		if res.err != nil {
			t.Fatalf("check-config: %s", res)
		}
		got := effective[agent.Config](t, res.stdout)
		if got.Listen != "0.0.0.0:9595" || got.MaxCaptures != 8 || got.BufferSize != 16<<20 ||
			got.QueueBytes != 8<<20 || got.LogLevel != "debug" || got.DebugListen != "127.0.0.1:17494" ||
			got.Containers.NetnsDir != "/var/vcap/data/cells/netns" {
			t.Errorf("effective config %+v", got)
		}
	})

	t.Run("IPv6 listen address", func(t *testing.T) {
		props := base()
		props["listen_address"] = "::"
		r := mustRender(t, "pcap-agent", props, cellSpec, nil, "")
		res := checkConfig(t, r, "config/agent.yml", "pcap-agent")
		if res.err != nil {
			t.Fatalf("check-config: %s", res)
		}
		if got := effective[agent.Config](t, res.stdout).Listen; got != "[::]:9494" {
			t.Errorf("listen %q", got)
		}
	})

	renderErrors := []struct {
		name  string
		props func() map[string]any
		want  []string
	}{
		{"no host key", func() map[string]any { p := base(); delete(p, "host_key"); return p },
			[]string{"host_key.erb", `Can't find property '["host_key.private_key"]'`}},
		{"no authorized keys", func() map[string]any { p := base(); delete(p, "authorized_keys"); return p },
			[]string{`Can't find property '["authorized_keys"]'`}},
		{"empty authorized keys", func() map[string]any { p := base(); p["authorized_keys"] = []any{" "}; return p },
			[]string{"agent.yml.erb", "authorized_keys is empty"}},
	}
	for _, tc := range renderErrors {
		t.Run("render error/"+tc.name, func(t *testing.T) {
			wantRenderError(t, "pcap-agent", tc.props(), cellSpec, nil, tc.want)
		})
	}

	checkErrors := []struct {
		name string
		set  map[string]any
		want string
	}{
		{"max_captures 0", map[string]any{"max_captures": 0}, "max_captures 0 is out of range 1..1000"},
		{"tiny buffer", map[string]any{"buffer_size": 1024}, "buffer_size 1024 is out of range"},
		{"bad log level", map[string]any{"log_level": "loud"}, `log_level "loud" is not one of debug, info, warn, error`},
		{"debug server off loopback", map[string]any{"debug_listen": "0.0.0.0:17494"}, `debug_listen "0.0.0.0:17494": "0.0.0.0": not a loopback address`},
		{"bad host key", map[string]any{"host_key": map[string]any{"private_key": "not a key", "public_key": "x"}}, "host key"},
	}
	for _, tc := range checkErrors {
		t.Run("check error/"+tc.name, func(t *testing.T) {
			props := base()
			for k, v := range tc.set {
				props[k] = v
			}
			wantCheckError(t, "pcap-agent", props, cellSpec, "config/agent.yml", tc.want)
		})
	}
}

func TestAPITemplates(t *testing.T) {
	kp := testKeys(t, 4)
	agentHostKey, clientKey, apiHostKey, operatorKey := kp[0], kp[1], kp[2], kp[3]
	cfCA, boshCA := testCA(t, "cf CA"), testCA(t, "director CA")

	base := func() map[string]any {
		return map[string]any{
			"host_key": apiHostKey.prop(),
			"agents": map[string]any{
				"client_key": clientKey.prop(),
				"host_keys":  []any{agentHostKey.PublicKey},
			},
		}
	}
	cfOn := map[string]any{"enabled": true, "api_url": "https://api.sys.example.com", "uaa_client_secret": "ssh-proxy-secret"}
	boshOn := map[string]any{"enabled": true, "director_url": "https://10.0.0.6:25555"}
	with := func(m map[string]any, kv ...any) map[string]any {
		out := map[string]any{}
		for k, v := range m {
			out[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			out[kv[i].(string)] = kv[i+1]
		}
		return out
	}

	// The agents' link as the real pcap-agent job provides it, from
	// two diego cells and a router.
	agentRender := mustRender(t, "pcap-agent", map[string]any{
		"host_key": agentHostKey.prop(), "authorized_keys": []any{clientKey.PublicKey}, "port": 9595,
	}, cellSpec, nil, "pcap-agent")
	agentLink := map[string]linkData{"pcap-agent": {
		Properties: agentRender.provides,
		Instances: []linkInstance{
			{Name: "diego-cell", ID: "c0", Index: 0, AZ: "z1", Address: "10.0.1.11", Bootstrap: true},
			{Name: "diego-cell", ID: "c1", Index: 1, AZ: "z2", Address: "10.0.1.12"},
			{Name: "router", ID: "r0", Index: 0, AZ: "z1", Address: "10.0.1.20", Bootstrap: true},
		},
	}}

	check := func(t *testing.T, r rendered) api.Config {
		t.Helper()
		res := checkConfig(t, r, "config/api.yml", "pcap-api")
		if res.err != nil {
			t.Fatalf("check-config: %s\napi.yml:\n%s", res, r.file(t, "config/api.yml"))
		}
		return effective[api.Config](t, res.stdout)
	}

	t.Run("cf resolver with defaults", func(t *testing.T) {
		props := base()
		props["cf"] = cfOn
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")

		p := bpmProcess(t, r)
		if _, ok := p["capabilities"]; ok {
			t.Errorf("bpm.yml: api has capabilities %v", p["capabilities"])
		}
		if _, ok := p["unsafe"]; ok {
			t.Errorf("bpm.yml: api is unsafe %v", p["unsafe"])
		}
		if got := r.file(t, "config/keys/agent_host_keys"); got != agentHostKey.PublicKey {
			t.Errorf("agent_host_keys %q", got)
		}
		for _, f := range []string{"config/keys/static_operator_keys", "config/keys/bosh_operator_keys", "config/certs/cf_ca.crt", "config/certs/bosh_ca.crt"} {
			if got := r.file(t, f); got != "" {
				t.Errorf("%s of a disabled block is not empty: %q", f, got)
			}
		}

		got := check(t, r)
		def := api.DefaultConfig()
		if got.Listen != def.Listen || got.HTTPListen != def.HTTPListen || got.Limits != def.Limits ||
			got.ReorderWindow != def.ReorderWindow || got.StopTimeout != def.StopTimeout || got.LogLevel != def.LogLevel ||
			got.Agents.Port != def.Agents.Port || got.Agents.DialTimeout != def.Agents.DialTimeout {
			t.Errorf("spec defaults differ from the binary's:\n%+v\nwant\n%+v", got, def)
		}
		if got.Static != nil || got.BOSH != nil {
			t.Errorf("disabled resolvers configured: static %+v bosh %+v", got.Static, got.BOSH)
		}
		if got.DrainDelay != 5*time.Second {
			t.Errorf("drain_delay %v, want the job's 5s (behind a load balancer)", got.DrainDelay)
		}
		if hc := r.file(t, "bin/health_check"); !strings.Contains(hc, `"http://127.0.0.1:8080/health"`) {
			t.Errorf("bin/health_check does not check 127.0.0.1:8080:\n%s", hc)
		}
		want := api.CFConfig{APIURL: "https://api.sys.example.com", UAAClientID: "ssh-proxy", UAAClientSecret: "(redacted)", Timeout: 10 * time.Second,
			Policy: api.CFPolicySSH}
		if got.CF == nil || !sameCF(*got.CF, want) {
			t.Errorf("cf = %+v, want %+v", got.CF, want)
		}
	})

	// route_registrar runs bin/health_check: exit 0 only while /health
	// answers 200.
	t.Run("health check script", func(t *testing.T) {
		var code atomic.Int32
		code.Store(http.StatusOK)
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/health" {
				http.NotFound(w, r)
				return
			}
			w.WriteHeader(int(code.Load()))
		}))
		defer srv.Close()
		port := srv.Listener.Addr().(*net.TCPAddr).Port
		run := func(r rendered) error {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			return exec.CommandContext(ctx, "bash", filepath.Join(r.dir, "bin/health_check")).Run()
		}
		props := base()
		props["cf"] = cfOn
		props["listen_address"] = "127.0.0.1"
		props["http_port"] = port
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")
		if err := run(r); err != nil {
			t.Errorf("/health 200: health_check failed: %v", err)
		}
		code.Store(http.StatusServiceUnavailable)
		if err := run(r); err == nil {
			t.Error("/health 503 (draining): health_check passed")
		}
		props["http_port"] = 0
		if err := run(mustRender(t, "pcap-api", props, apiSpec, nil, "")); err == nil {
			t.Error("no http_port: health_check passed")
		}
	})

	t.Run("cf resolver with CA and every property", func(t *testing.T) {
		props := base()
		props["cf"] = with(cfOn, "ca_cert", cfCA, "uaa_url", "https://uaa.sys.example.com", "uaa_client_id", "pcap", "timeout", "30s",
			"policy", "read_sensitive_data", "admins_only", true, "allowed_clients", []any{"monitor"})
		props["port"] = 2022
		props["http_port"] = 9090
		props["listen_address"] = "10.0.2.5"
		props["log_level"] = "warn"
		props["debug_listen"] = "[::1]:17222"
		props["memory_limit"] = 256 << 20
		props["reorder_window"] = "0s"
		props["stop_timeout"] = "14500ms"
		props["drain_delay"] = "500ms"
		props["limits"] = map[string]any{"max_captures": 5, "max_captures_per_user": 2, "max_targets": 10, "max_duration": "10m"}
		props["agents"].(map[string]any)["host_key_fingerprints"] = []any{"SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}
		props["agents"].(map[string]any)["port"] = 9696
		props["agents"].(map[string]any)["dial_timeout"] = "3s"
		props["agents"].(map[string]any)["idle_timeout"] = "90s"
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")
		if got := r.file(t, "config/certs/cf_ca.crt"); got != cfCA {
			t.Errorf("cf_ca.crt %q", got)
		}
		got := check(t, r)
		if got.Listen != "10.0.2.5:2022" || got.HTTPListen != "10.0.2.5:9090" || got.LogLevel != "warn" || got.DebugListen != "[::1]:17222" || got.MemoryLimit != 256<<20 ||
			got.ReorderWindow != 0 || got.StopTimeout != 14500*time.Millisecond || got.DrainDelay != 500*time.Millisecond ||
			got.Limits != (api.LimitsConfig{MaxCaptures: 5, MaxCapturesPerUser: 2, MaxTargets: 10, MaxDuration: 10 * time.Minute,
				MaxSessionsPerConnection: api.DefaultMaxSessions, ExecTimeout: api.DefaultExecTimeout}) ||
			got.Agents.Port != 9696 || got.Agents.DialTimeout != 3*time.Second || got.Agents.IdleTimeout != 90*time.Second || len(got.Agents.HostKeyFingerprints) != 1 {
			t.Errorf("effective config %+v", got)
		}
		want := api.CFConfig{APIURL: "https://api.sys.example.com", UAAURL: "https://uaa.sys.example.com", UAAClientID: "pcap",
			UAAClientSecret: "(redacted)", CACertFile: filepath.Join(r.dir, "config/certs/cf_ca.crt"), Timeout: 30 * time.Second,
			Policy: api.CFPolicyReadSensitiveData, AdminsOnly: true, AllowedClients: []string{"monitor"}}
		if got.CF == nil || !sameCF(*got.CF, want) {
			t.Errorf("cf = %+v, want %+v", got.CF, want)
		}
	})

	t.Run("bosh resolver without operator keys", func(t *testing.T) {
		props := base()
		props["bosh"] = boshOn
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")
		got := check(t, r)
		want := api.BOSHConfig{DirectorURL: "https://10.0.0.6:25555", CodeClientID: "pcap_ssh", Timeout: 10 * time.Second, TokenAudiences: []string{"bosh_cli", "bosh"}}
		if got.BOSH == nil || !reflect.DeepEqual(*got.BOSH, want) || got.CF != nil || got.Static != nil {
			t.Errorf("bosh = %+v (cf %+v, static %+v), want %+v", got.BOSH, got.CF, got.Static, want)
		}
	})

	t.Run("bosh resolver with CA and operator keys", func(t *testing.T) {
		props := base()
		props["bosh"] = with(boshOn, "ca_cert", boshCA, "operator_keys", []any{operatorKey.PublicKey},
			"uaa_client_id", "pcap-api", "uaa_client_secret", "client-secret", "uaa_url", "https://10.0.0.6:8443",
			"code_client_id", "pcap_codes", "code_client_secret", "code-secret", "timeout", "20s", "token_audiences", []any{"bosh_cli", "ci"})
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")
		if got := r.file(t, "config/certs/bosh_ca.crt"); got != boshCA {
			t.Errorf("bosh_ca.crt %q", got)
		}
		if got := r.file(t, "config/keys/bosh_operator_keys"); got != operatorKey.PublicKey {
			t.Errorf("bosh_operator_keys %q", got)
		}
		got := check(t, r)
		want := api.BOSHConfig{DirectorURL: "https://10.0.0.6:25555", CACertFile: filepath.Join(r.dir, "config/certs/bosh_ca.crt"),
			UAAURL: "https://10.0.0.6:8443", OperatorKeysFile: filepath.Join(r.dir, "config/keys/bosh_operator_keys"),
			UAAClientID: "pcap-api", UAAClientSecret: "(redacted)", CodeClientID: "pcap_codes", CodeClientSecret: "(redacted)", Timeout: 20 * time.Second,
			TokenAudiences: []string{"bosh_cli", "ci"}}
		if got.BOSH == nil || !reflect.DeepEqual(*got.BOSH, want) {
			t.Errorf("bosh = %+v, want %+v", got.BOSH, want)
		}
	})

	t.Run("bosh resolver with a Cloud Controller client", func(t *testing.T) {
		props := base()
		props["cf"] = with(cfOn, "ca_cert", cfCA)
		props["bosh"] = with(boshOn, "cf_client", map[string]any{"client_id": "pcap-api-cc", "client_secret": "cc-secret"})
		r := mustRender(t, "pcap-api", props, apiSpec, nil, "")
		got := check(t, r)
		want := &api.CFClientConfig{APIURL: "https://api.sys.example.com", ClientID: "pcap-api-cc", ClientSecret: "(redacted)",
			CACertFile: filepath.Join(r.dir, "config/certs/cf_ca.crt"), Timeout: 10 * time.Second}
		if got.BOSH == nil || !reflect.DeepEqual(got.BOSH.CFClient, want) {
			t.Errorf("bosh.cf_client = %+v, want %+v", got.BOSH, want)
		}
		if f := r.file(t, "config/certs/cf_client_ca.crt"); f != "" {
			t.Errorf("cf_client_ca.crt without bosh.cf_client.ca_cert: %q", f)
		}

		// Without cf: its own URL and CA.
		props = base()
		props["bosh"] = with(boshOn, "cf_client", map[string]any{"client_id": "pcap-api-cc", "client_secret": "cc-secret",
			"api_url": "https://api.other.example.com", "uaa_url": "https://uaa.other.example.com", "ca_cert": cfCA})
		r = mustRender(t, "pcap-api", props, apiSpec, nil, "")
		if f := r.file(t, "config/certs/cf_client_ca.crt"); f != cfCA {
			t.Errorf("cf_client_ca.crt %q", f)
		}
		got = check(t, r)
		want = &api.CFClientConfig{APIURL: "https://api.other.example.com", UAAURL: "https://uaa.other.example.com", ClientID: "pcap-api-cc",
			ClientSecret: "(redacted)", CACertFile: filepath.Join(r.dir, "config/certs/cf_client_ca.crt"), Timeout: 10 * time.Second}
		if got.CF != nil || got.BOSH == nil || !reflect.DeepEqual(got.BOSH.CFClient, want) {
			t.Errorf("bosh.cf_client = %+v, want %+v", got.BOSH, want)
		}
	})

	t.Run("static resolver with groups from the agent link", func(t *testing.T) {
		props := base()
		props["agents"] = map[string]any{"client_key": clientKey.prop()} // pinned through the link only
		props["static"] = map[string]any{
			"enabled":       true,
			"operator_keys": []any{operatorKey.PublicKey},
			"groups":        map[string]any{"lb": []any{"10.0.0.5:9494"}, "router": []any{"10.0.9.9:9494"}},
		}
		r := mustRender(t, "pcap-api", props, apiSpec, agentLink, "")
		if got := r.file(t, "config/keys/agent_host_keys"); got != agentHostKey.PublicKey {
			t.Errorf("agent_host_keys from the link: %q", got)
		}
		if got := r.file(t, "config/keys/static_operator_keys"); got != operatorKey.PublicKey {
			t.Errorf("static_operator_keys %q", got)
		}
		got := check(t, r)
		if got.Agents.Port != 9595 {
			t.Errorf("agents.port %d, want the link's 9595", got.Agents.Port)
		}
		want := map[string][]string{
			"lb":         {"10.0.0.5:9494"},
			"router":     {"10.0.9.9:9494"}, // static.groups wins over the link
			"diego-cell": {"10.0.1.11:9595", "10.0.1.12:9595"},
		}
		if got.Static == nil || !reflect.DeepEqual(got.Static.Groups, want) {
			t.Errorf("static = %+v, want groups %v", got.Static, want)
		}
	})

	// Behind a load balancer every instance must be the same front door:
	// the second instance of the group (another index, address, AZ)
	// renders byte for byte what the first does, the link included.
	t.Run("every instance renders the same config", func(t *testing.T) {
		props := base()
		props["cf"] = cfOn
		props["static"] = map[string]any{"enabled": true, "operator_keys": []any{operatorKey.PublicKey}}
		second := apiSpec
		second.Index, second.ID, second.IP, second.AZ, second.Bootstrap = 1, "0b8e4f7a-2c3d-4e5f-8a9b-1c2d3e4f5a6b", "10.0.3.5", "z2", false
		second.Address = second.ID + ".pcap-api.default.pcap.bosh"
		a := mustRender(t, "pcap-api", props, apiSpec, agentLink, "")
		b := mustRender(t, "pcap-api", props, second, agentLink, "")
		for _, f := range []string{"config/api.yml", "config/bpm.yml", "config/keys/host_key", "config/keys/agent_client_key",
			"config/keys/agent_host_keys", "config/keys/static_operator_keys", "bin/health_check"} {
			if a.file(t, f) != b.file(t, f) {
				t.Errorf("%s differs between instances 0 and 1:\n%s\n---\n%s", f, a.file(t, f), b.file(t, f))
			}
		}
		if got := check(t, b); got.Static == nil || len(got.Static.Groups["diego-cell"]) != 2 {
			t.Errorf("instance 1 does not see the agents' link: %+v", got.Static)
		}
	})

	t.Run("static resolver without link groups", func(t *testing.T) {
		props := base()
		props["static"] = map[string]any{"enabled": true, "operator_keys": []any{operatorKey.PublicKey}, "groups_from_link": false}
		r := mustRender(t, "pcap-api", props, apiSpec, agentLink, "")
		got := check(t, r)
		if got.Static == nil || len(got.Static.Groups) != 0 {
			t.Errorf("static = %+v, want no groups", got.Static)
		}
		keys := strings.Split(strings.TrimSpace(r.file(t, "config/keys/agent_host_keys")), "\n")
		if len(keys) != 1 || keys[0]+"\n" != agentHostKey.PublicKey {
			t.Errorf("agent_host_keys: the property's key and the link's (the same) once: %q", keys)
		}
	})

	t.Run("every resolver, privileged port, no http", func(t *testing.T) {
		props := base()
		props["port"] = 22
		props["http_port"] = 0
		props["cf"] = with(cfOn, "ca_cert", cfCA)
		props["bosh"] = with(boshOn, "ca_cert", boshCA)
		props["static"] = map[string]any{"enabled": true, "operator_keys": []any{operatorKey.PublicKey}}
		r := mustRender(t, "pcap-api", props, apiSpec, agentLink, "")
		if p := bpmProcess(t, r); !reflect.DeepEqual(p["capabilities"], []any{"NET_BIND_SERVICE"}) {
			t.Errorf("bpm.yml capabilities %v, want [NET_BIND_SERVICE] for port 22", p["capabilities"])
		}
		got := check(t, r)
		if got.CF == nil || got.BOSH == nil || got.Static == nil || got.HTTPListen != "" || got.Listen != "0.0.0.0:22" {
			t.Errorf("effective config %+v", got)
		}
	})

	renderErrors := []struct {
		name  string
		props func() map[string]any
		links map[string]linkData
		want  []string
	}{
		{"no resolver", base, nil, []string{"api.yml.erb", "no resolver enabled"}},
		{"cf without api_url", func() map[string]any {
			p := base()
			p["cf"] = map[string]any{"enabled": true, "uaa_client_secret": "s"}
			return p
		}, nil, []string{`Can't find property '["cf.api_url"]'`}},
		{"cf without client secret", func() map[string]any {
			p := base()
			p["cf"] = map[string]any{"enabled": true, "api_url": "https://api.sys.example.com"}
			return p
		}, nil, []string{`Can't find property '["cf.uaa_client_secret"]'`}},
		{"bosh without director", func() map[string]any {
			p := base()
			p["bosh"] = map[string]any{"enabled": true}
			return p
		}, nil, []string{`Can't find property '["bosh.director_url"]'`}},
		{"bosh operator keys without UAA client", func() map[string]any {
			p := base()
			p["bosh"] = with(boshOn, "operator_keys", []any{operatorKey.PublicKey})
			return p
		}, nil, []string{`Can't find property '["bosh.uaa_client_id"]'`}},
		{"bosh cf_client without a Cloud Controller", func() map[string]any {
			p := base()
			p["bosh"] = with(boshOn, "cf_client", map[string]any{"client_id": "pcap-api-cc", "client_secret": "s"})
			return p
		}, nil, []string{"bosh.cf_client.client_id needs bosh.cf_client.api_url (or cf.api_url)"}},
		{"bosh cf_client without a secret", func() map[string]any {
			p := base()
			p["bosh"] = with(boshOn, "cf_client", map[string]any{"client_id": "pcap-api-cc", "api_url": "https://api.sys.example.com"})
			return p
		}, nil, []string{`Can't find property '["bosh.cf_client.client_secret"]'`}},
		{"static without operator keys", func() map[string]any {
			p := base()
			p["static"] = map[string]any{"enabled": true}
			return p
		}, nil, []string{"static.enabled needs at least one key"}},
		{"agents not pinned", func() map[string]any {
			p := base()
			p["cf"] = cfOn
			p["agents"] = map[string]any{"client_key": clientKey.prop()}
			return p
		}, nil, []string{"no agent host key to pin"}},
		{"no client key", func() map[string]any {
			p := base()
			p["cf"] = cfOn
			delete(p["agents"].(map[string]any), "client_key")
			return p
		}, nil, []string{`Can't find property '["agents.client_key.private_key"]'`}},
		{"no host key", func() map[string]any {
			p := base()
			p["cf"] = cfOn
			delete(p, "host_key")
			return p
		}, nil, []string{`Can't find property '["host_key.private_key"]'`}},
		{"stop_timeout beyond bpm's patience", func() map[string]any {
			p := base()
			p["cf"] = cfOn
			p["stop_timeout"] = "1m"
			return p
		}, nil, []string{"stop_timeout 1m is longer than 15s"}},
		{"drain_delay and stop_timeout beyond bpm's patience", func() map[string]any {
			p := base()
			p["cf"] = cfOn
			p["stop_timeout"] = "10s"
			p["drain_delay"] = "6s"
			return p
		}, nil, []string{"drain_delay 6s plus stop_timeout 10s is longer than 15s"}},
	}
	for _, tc := range renderErrors {
		t.Run("render error/"+tc.name, func(t *testing.T) {
			wantRenderError(t, "pcap-api", tc.props(), apiSpec, tc.links, tc.want)
		})
	}

	checkErrors := []struct {
		name string
		edit func(map[string]any)
		want string
	}{
		{"max_targets 0", func(p map[string]any) { p["limits"] = map[string]any{"max_targets": 0} },
			"limits.max_captures, max_captures_per_user and max_targets must be at least 1"},
		{"reorder_window 11s", func(p map[string]any) { p["reorder_window"] = "11s" }, "reorder_window must be within 0..10s"},
		{"follow_interval 100ms", func(p map[string]any) { p["follow_interval"] = "100ms" }, "follow_interval must be within 500ms..1m"},
		{"bad log level", func(p map[string]any) { p["log_level"] = "loud" }, `log_level "loud" is not one of`},
		{"debug server off loopback", func(p map[string]any) { p["debug_listen"] = "10.0.2.5:17222" }, `debug_listen "10.0.2.5:17222": "10.0.2.5": not a loopback address`},
		{"memory limit too small", func(p map[string]any) { p["memory_limit"] = 1 << 20 }, "memory_limit 1048576: want 0 (none) or at least 33554432 bytes"},
		{"bad client key", func(p map[string]any) {
			p["agents"].(map[string]any)["client_key"] = map[string]any{"private_key": "not a key"}
		}, "agent client key"},
	}
	for _, tc := range checkErrors {
		t.Run("check error/"+tc.name, func(t *testing.T) {
			props := base()
			props["cf"] = cfOn
			tc.edit(props)
			wantCheckError(t, "pcap-api", props, apiSpec, "config/api.yml", tc.want)
		})
	}
}

// jobSpec is the part of a job spec the lint test reads.
type jobSpec struct {
	Name       string                    `yaml:"name"`
	Templates  map[string]string         `yaml:"templates"`
	Packages   []string                  `yaml:"packages"`
	Properties map[string]map[string]any `yaml:"properties"`
	Provides   []struct {
		Name       string   `yaml:"name"`
		Properties []string `yaml:"properties"`
	} `yaml:"provides"`
}

// Every job documents every property, lists exactly its template files,
// reads only properties it declares, runs under bpm, and uses packages
// the release has.
func TestJobSpecs(t *testing.T) {
	propRef := regexp.MustCompile(`(?:^|[^.\w])(?:p|if_p)\(\s*"([^"]+)"`)
	for _, job := range []string{"pcap-agent", "pcap-api"} {
		t.Run(job, func(t *testing.T) {
			dir := filepath.Join(releaseDir(), "jobs", job)
			b, err := os.ReadFile(filepath.Join(dir, "spec"))
			if err != nil {
				t.Fatal(err)
			}
			var spec jobSpec
			if err := yaml.Unmarshal(b, &spec); err != nil {
				t.Fatalf("spec: %v", err)
			}
			if spec.Name != job {
				t.Errorf("spec name %q", spec.Name)
			}
			for name, def := range spec.Properties {
				if d, _ := def["description"].(string); strings.TrimSpace(d) == "" {
					t.Errorf("property %s has no description", name)
				}
			}
			for _, l := range spec.Provides {
				for _, p := range l.Properties {
					if _, ok := spec.Properties[p]; !ok {
						t.Errorf("link %s offers undeclared property %s", l.Name, p)
					}
				}
			}
			entries, err := os.ReadDir(filepath.Join(dir, "templates"))
			if err != nil {
				t.Fatal(err)
			}
			var files, listed []string
			for _, e := range entries {
				files = append(files, e.Name())
			}
			for src := range spec.Templates {
				listed = append(listed, src)
			}
			sort.Strings(files)
			sort.Strings(listed)
			if !slices.Equal(files, listed) {
				t.Errorf("templates/ has %v, spec lists %v", files, listed)
			}
			if !slices.Contains(slices.Collect(maps.Values(spec.Templates)), "config/bpm.yml") {
				t.Error("no template renders config/bpm.yml")
			}
			for _, src := range files {
				text, err := os.ReadFile(filepath.Join(dir, "templates", src))
				if err != nil {
					t.Fatal(err)
				}
				for _, m := range propRef.FindAllStringSubmatch(string(text), -1) {
					if _, ok := spec.Properties[m[1]]; !ok {
						t.Errorf("%s reads undeclared property %s", src, m[1])
					}
				}
			}
			monit, err := os.ReadFile(filepath.Join(dir, "monit"))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range []string{
				"check process " + job + "\n",
				"with pidfile /var/vcap/sys/run/bpm/" + job + "/" + job + ".pid",
				`start program "/var/vcap/jobs/bpm/bin/bpm start ` + job + `"`,
				`stop program "/var/vcap/jobs/bpm/bin/bpm stop ` + job + `"`,
			} {
				if !strings.Contains(string(monit), want) {
					t.Errorf("monit lacks %q", want)
				}
			}
			for _, p := range spec.Packages {
				if _, err := os.Stat(filepath.Join(releaseDir(), "packages", p, "spec")); err != nil {
					t.Errorf("package %s: %v", p, err)
				}
			}
		})
	}
}

// sameCF compares cf configs; an empty list of allowed clients equals none.
func sameCF(a, b api.CFConfig) bool {
	if !slices.Equal(a.AllowedClients, b.AllowedClients) {
		return false
	}
	a.AllowedClients, b.AllowedClients = nil, nil
	return reflect.DeepEqual(a, b)
}
