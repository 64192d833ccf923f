package releasetest

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// interpolate runs `bosh interpolate` in the repository root and parses
// its output.
func interpolate(t *testing.T, args ...string) map[string]any {
	t.Helper()
	bosh := boshCLI(t)
	out := must(t, time.Minute, repoRoot(), []string{"HOME=" + t.TempDir()}, bosh, append([]string{"interpolate"}, args...)...)
	return yamlMap(t, out)
}

// overrides writes a vars file that replaces vars-template.yml's
// placeholders (CA certificates, operator keys) with real ones, so the
// interpolated properties pass the binary's config check.
func overrides(t *testing.T) string {
	t.Helper()
	op := testKeys(t, 4)[3]
	vars := map[string]any{
		"cf_ca_cert":            testCA(t, "router CA"),
		"bosh_director_ca_cert": testCA(t, "director CA"),
		"bosh_operator_keys":    []string{op.PublicKey},
		"static_operator_keys":  []string{op.PublicKey},
	}
	b, err := yaml.Marshal(vars)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "overrides.yml")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// apiManifest interpolates manifests/pcap-api.yml with vars-template.yml,
// the overrides and the given ops files, keeping generated variables in
// varsStore.
func apiManifest(t *testing.T, varsStore string, opsFiles ...string) map[string]any {
	t.Helper()
	args := []string{"manifests/pcap-api.yml", "-l", "manifests/vars-template.yml", "-l", overrides(t),
		"--vars-store", varsStore, "--var-errs"}
	for _, o := range opsFiles {
		args = append(args, "-o", "manifests/ops-files/"+o)
	}
	return interpolate(t, args...)
}

// cfManifest interpolates the cf-deployment-shaped testdata manifest with
// ops files and extra arguments.
func cfManifest(t *testing.T, varsStore string, args ...string) map[string]any {
	t.Helper()
	all := []string{"bosh/release/releasetest/testdata/cf-deployment.yml", "--vars-store", varsStore, "--var-errs"}
	return interpolate(t, append(all, args...)...)
}

// props converts a parsed job's properties for the renderer.
func props(t *testing.T, job any) map[string]any {
	t.Helper()
	p, _ := dig(t, job, "properties").(map[string]any)
	return p
}

// renderAndCheck renders a job with manifest properties and runs the
// binary's config check on it.
func renderAndCheck(t *testing.T, job string, properties map[string]any, spec instanceSpec) rendered {
	t.Helper()
	r := mustRender(t, job, properties, spec, nil, "")
	config := map[string]string{"pcap-agent": "config/agent.yml", "pcap-api": "config/api.yml"}[job]
	res := checkConfig(t, r, config, job)
	if res.err != nil {
		t.Fatalf("%s --check-config on the manifest's properties: %s\n%s:\n%s", job, res, config, r.file(t, config))
	}
	return r
}

func jobNames(t *testing.T, ig any) []string {
	t.Helper()
	var names []string
	for _, j := range dig(t, ig, "jobs").([]any) {
		names = append(names, j.(map[string]any)["name"].(string))
	}
	return names
}

func TestPcapAPIManifest(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vars-store.yml")
	m := apiManifest(t, store)

	if m["name"] != "pcap" {
		t.Errorf("deployment name %v", m["name"])
	}
	for _, r := range []string{"pcap", "bpm"} {
		if v := dig(t, m, "releases", "name="+r, "version"); v != "latest" {
			t.Errorf("release %s version %v", r, v)
		}
	}
	ig := dig(t, m, "instance_groups", "name=pcap-api")
	if got := jobNames(t, ig); !slices.Equal(got, []string{"bpm", "pcap-api"}) {
		t.Errorf("pcap-api jobs %v", got)
	}
	// Two instances, updated one at a time (each drains first).
	if got := dig(t, ig, "instances"); got != 2 {
		t.Errorf("pcap-api instances %v, want 2", got)
	}
	if got := dig(t, m, "update", "max_in_flight"); got != 1 {
		t.Errorf("update max_in_flight %v, want 1", got)
	}
	if r := dig(t, ig, "jobs", "name=pcap-api", "release"); r != "pcap" {
		t.Errorf("pcap-api release %v", r)
	}
	p := props(t, dig(t, ig, "jobs", "name=pcap-api"))
	if got := dig(t, p, "cf", "api_url"); got != "https://api.sys.example.com" {
		t.Errorf("cf.api_url %v", got)
	}
	// Left for the director to read from CredHub.
	if got := dig(t, p, "cf", "uaa_client_secret"); got != "((/DIRECTOR/cf/uaa_clients_ssh-proxy_secret))" {
		t.Errorf("cf.uaa_client_secret %v", got)
	}

	// The variables BOSH generates, before interpolation.
	want := []any{
		map[string]any{"name": "pcap_api_host_key", "type": "ssh"},
		map[string]any{"name": "/pcap_agent_host_key", "type": "ssh"},
		map[string]any{"name": "/pcap_api_agent_client_key", "type": "ssh"},
	}
	raw := must(t, time.Minute, repoRoot(), []string{"HOME=" + t.TempDir()}, boshCLI(t), "interpolate", "manifests/pcap-api.yml", "--path", "/variables")
	var gotVars []any
	if err := yaml.Unmarshal([]byte(raw), &gotVars); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotVars, want) {
		t.Errorf("variables %v, want %v", gotVars, want)
	}

	renderAndCheck(t, "pcap-api", p, apiSpec)
}

// The agents added to cf-deployment and pcap-api share their keys
// through absolute variable names: interpolated with one vars store (as
// CredHub holds one value per name), the API pins exactly the agents'
// host key and the agents trust exactly the API's client key.
func TestAddPcapAgentSharesKeysWithAPI(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vars-store.yml")
	apiProps := props(t, dig(t, apiManifest(t, store), "instance_groups", "name=pcap-api", "jobs", "name=pcap-api"))
	cf := cfManifest(t, store, "-o", "manifests/ops-files/add-pcap-agent.yml")

	addon := dig(t, cf, "addons", "name=pcap-agent")
	if got := dig(t, addon, "include"); !reflect.DeepEqual(got, map[string]any{"instance_groups": []any{"diego-cell"}}) {
		t.Errorf("addon include %v, want diego cells", got)
	}
	if got := dig(t, addon, "jobs", "name=pcap-agent", "release"); got != "pcap" {
		t.Errorf("addon job release %v", got)
	}
	if got := dig(t, cf, "releases", "name=pcap", "version"); got != "latest" {
		t.Errorf("release pcap version %v", got)
	}
	dig(t, cf, "addons", "name=bosh-dns-aliases") // cf-deployment's own addon stays
	if got := jobNames(t, dig(t, cf, "instance_groups", "name=diego-cell")); !slices.Contains(got, "bpm") {
		t.Errorf("diego-cell jobs %v lack bpm, which pcap-agent runs under", got)
	}

	agentProps := props(t, dig(t, addon, "jobs", "name=pcap-agent"))
	hostPub := dig(t, agentProps, "host_key", "public_key").(string)
	pinned := dig(t, apiProps, "agents", "host_keys").([]any)
	if len(pinned) != 1 || pinned[0] != hostPub {
		t.Errorf("pcap-api pins %v, agents present %q", pinned, hostPub)
	}
	signer, err := ssh.ParsePrivateKey([]byte(dig(t, apiProps, "agents", "client_key", "private_key").(string)))
	if err != nil {
		t.Fatal(err)
	}
	authorized := dig(t, agentProps, "authorized_keys").([]any)
	if len(authorized) != 1 {
		t.Fatalf("authorized_keys %v", authorized)
	}
	trusted, _, _, _, err := ssh.ParseAuthorizedKey([]byte(authorized[0].(string)))
	if err != nil {
		t.Fatal(err)
	}
	if ssh.FingerprintSHA256(trusted) != ssh.FingerprintSHA256(signer.PublicKey()) {
		t.Errorf("agents trust %s, pcap-api authenticates with %s", ssh.FingerprintSHA256(trusted), ssh.FingerprintSHA256(signer.PublicKey()))
	}

	agent := renderAndCheck(t, "pcap-agent", agentProps, cellSpec)
	if got := agent.file(t, "config/keys/authorized_keys"); strings.TrimSpace(got) != strings.TrimSpace(authorized[0].(string)) {
		t.Errorf("rendered authorized_keys %q", got)
	}
	renderAndCheck(t, "pcap-api", apiProps, apiSpec)
}

func TestAddPcapAgentVariants(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vars-store.yml")

	t.Run("one more instance group", func(t *testing.T) {
		cf := cfManifest(t, store, "-o", "manifests/ops-files/add-pcap-agent.yml",
			"-o", "manifests/ops-files/add-pcap-agent-to-instance-group.yml", "-v", "pcap_agent_instance_group=router")
		got := dig(t, cf, "addons", "name=pcap-agent", "include", "instance_groups")
		if !reflect.DeepEqual(got, []any{"diego-cell", "router"}) {
			t.Errorf("include %v", got)
		}
	})

	t.Run("every instance group", func(t *testing.T) {
		cf := cfManifest(t, store, "-o", "manifests/ops-files/add-pcap-agent.yml", "-o", "manifests/ops-files/add-pcap-agent-everywhere.yml")
		if got := dig(t, cf, "addons", "name=pcap-agent", "include"); !reflect.DeepEqual(got, map[string]any{"lifecycle": "service"}) {
			t.Errorf("include %v, want every service instance group", got)
		}
		for _, ig := range dig(t, cf, "instance_groups").([]any) {
			if ig.(map[string]any)["lifecycle"] == "errand" {
				continue
			}
			if !slices.Contains(jobNames(t, ig), "bpm") {
				t.Errorf("instance group %v has no bpm for pcap-agent", dig(t, ig, "name"))
			}
		}
	})
}

// Every ops file for pcap-api.yml, alone or in the combinations the README
// names: the interpolated manifest has the expected shape and its pcap-api
// properties pass the job templates and `pcap-api --check-config`.
func TestPcapAPIOpsFiles(t *testing.T) {
	cases := []struct {
		name      string
		ops       []string
		renderErr string
		check     func(t *testing.T, m map[string]any, p map[string]any)
	}{
		{"bosh resolver", []string{"enable-bosh-resolver.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if dig(t, p, "bosh", "enabled") != true || dig(t, p, "bosh", "director_url") != "https://10.0.0.6:25555" {
				t.Errorf("bosh %v", p["bosh"])
			}
			if dig(t, p, "cf", "enabled") != true {
				t.Error("cf resolver turned off")
			}
		}},
		{"bosh resolver with operator keys", []string{"enable-bosh-resolver.yml", "add-bosh-operator-keys.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if len(dig(t, p, "bosh", "operator_keys").([]any)) != 1 || dig(t, p, "bosh", "uaa_client_id") != "pcap-api" {
				t.Errorf("bosh %v", p["bosh"])
			}
		}},
		{"bosh resolver with app captures", []string{"enable-bosh-resolver.yml", "enable-bosh-app-captures.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if dig(t, p, "bosh", "cf_client", "client_id") != "pcap_api_cc" || dig(t, p, "bosh", "cf_client", "client_secret") == "" {
				t.Errorf("bosh.cf_client %v", dig(t, p, "bosh", "cf_client"))
			}
		}},
		{"bosh only", []string{"disable-cf-resolver.yml", "enable-bosh-resolver.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if !reflect.DeepEqual(p["cf"], map[string]any{"enabled": false}) {
				t.Errorf("cf %v", p["cf"])
			}
		}},
		{"static resolver", []string{"enable-static-resolver.yml"}, "", func(t *testing.T, m, p map[string]any) {
			want := map[string]any{"routers": []any{"10.0.1.10:9494", "10.0.1.11:9494"}}
			if !reflect.DeepEqual(dig(t, p, "static", "groups"), want) {
				t.Errorf("static %v", p["static"])
			}
		}},
		{"no resolver left", []string{"disable-cf-resolver.yml"}, "no resolver enabled", nil},
		{"cf CA certificate", []string{"add-cf-ca-cert.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if !strings.HasPrefix(dig(t, p, "cf", "ca_cert").(string), "-----BEGIN CERTIFICATE-----") {
				t.Errorf("cf.ca_cert %v", dig(t, p, "cf", "ca_cert"))
			}
		}},
		{"TCP route", []string{"register-tcp-route.yml"}, "", func(t *testing.T, m, p map[string]any) {
			ig := dig(t, m, "instance_groups", "name=pcap-api")
			if got := jobNames(t, ig); !slices.Equal(got, []string{"bpm", "pcap-api", "route_registrar", "bosh-dns-aliases"}) {
				t.Errorf("jobs %v", got)
			}
			route := dig(t, ig, "jobs", "name=route_registrar", "properties", "route_registrar", "routes", 0)
			want := map[string]any{"name": "pcap-api", "type": "tcp", "port": p["port"], "external_port": 1033,
				"router_group": "default-tcp", "registration_interval": "5s",
				"health_check": map[string]any{"name": "pcap-api-health", "script_path": "/var/vcap/jobs/pcap-api/bin/health_check", "timeout": "3s"}}
			if !reflect.DeepEqual(route, want) {
				t.Errorf("route %v, want %v", route, want)
			}
			// The route leaves the router (health check every 5s) before
			// a stopping instance closes its port.
			if got := p["drain_delay"]; got != "10s" {
				t.Errorf("drain_delay %v, want 10s", got)
			}
			alias := dig(t, ig, "jobs", "name=bosh-dns-aliases", "properties", "aliases", 0)
			if dig(t, alias, "domain") != "routing-api.service.cf.internal" || dig(t, alias, "targets", 0, "deployment") != "cf" {
				t.Errorf("alias %v", alias)
			}
			for _, r := range []string{"routing", "bosh-dns-aliases"} {
				dig(t, m, "releases", "name="+r)
			}
		}},
		{"load balancer", []string{"use-vm-extension.yml"}, "", func(t *testing.T, m, p map[string]any) {
			if got := dig(t, m, "instance_groups", "name=pcap-api", "vm_extensions"); !reflect.DeepEqual(got, []any{"pcap-api-lb"}) {
				t.Errorf("vm_extensions %v", got)
			}
		}},
		{"everything", []string{"enable-bosh-resolver.yml", "add-bosh-operator-keys.yml", "enable-static-resolver.yml",
			"add-cf-ca-cert.yml", "register-tcp-route.yml", "use-vm-extension.yml"}, "", nil},
	}

	covered := map[string]bool{}
	for _, tc := range cases {
		for _, o := range tc.ops {
			covered[o] = true
		}
	}
	entries, err := os.ReadDir(filepath.Join(repoRoot(), "manifests", "ops-files"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), "add-pcap-agent") || strings.HasPrefix(e.Name(), "director-") || strings.HasPrefix(e.Name(), "cf-") {
			continue // cf-deployment and director ops files, tested on their own
		}
		if !covered[e.Name()] {
			t.Errorf("ops file %s has no test case", e.Name())
		}
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			store := filepath.Join(t.TempDir(), "vars-store.yml")
			m := apiManifest(t, store, tc.ops...)
			p := props(t, dig(t, m, "instance_groups", "name=pcap-api", "jobs", "name=pcap-api"))
			if tc.check != nil {
				tc.check(t, m, p)
			}
			if tc.renderErr != "" {
				_, errText := renderJob(t, "pcap-api", p, apiSpec, nil, "")
				if !strings.Contains(errText, tc.renderErr) {
					t.Errorf("render error %q, want %q", errText, tc.renderErr)
				}
				return
			}
			renderAndCheck(t, "pcap-api", p, apiSpec)
		})
	}
}

// The director's UAA gets the client that one-time codes for pcap-api are
// issued for, as cf-deployment has ssh-proxy's: authorization_code grant,
// autoapprove (no browser), a redirect URI, bosh_cli's scopes, and a
// generated secret that enable-bosh-resolver.yml's pcap-api exchanges codes
// with (bosh.code_client_id is the same name).
func TestDirectorUAAPcapClient(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vars-store.yml")
	m := interpolate(t, "bosh/release/releasetest/testdata/bosh-director.yml",
		"-o", "manifests/ops-files/director-uaa-pcap-client.yml", "--vars-store", store, "--var-errs")
	clients := dig(t, m, "instance_groups", "name=bosh", "jobs", "name=uaa", "properties", "uaa", "clients").(map[string]any)
	secret := checkUAAClient(t, clients, "bosh_cli", "pcap_ssh", map[string]any{
		"authorized-grant-types": "authorization_code", "autoapprove": true, "redirect-uri": "/login", "override": true,
		"scope": dig(t, clients, "bosh_cli", "scope"),
	})
	stored, err := os.ReadFile(store)
	if err != nil {
		t.Fatal(err)
	}
	vars := yamlMap(t, string(stored))
	if vars["pcap_ssh_client_secret"] != secret {
		t.Errorf("vars store has %v, the client %q", vars["pcap_ssh_client_secret"], secret)
	}

	// pcap-api's side names the same client and takes its secret.
	p := props(t, dig(t, apiManifest(t, filepath.Join(t.TempDir(), "api-store.yml"), "enable-bosh-resolver.yml"), "instance_groups", "name=pcap-api", "jobs", "name=pcap-api"))
	if got := dig(t, p, "bosh", "code_client_id"); got != "pcap_ssh" {
		t.Errorf("pcap-api bosh.code_client_id = %v, want pcap_ssh", got)
	}
	r := renderAndCheck(t, "pcap-api", p, apiSpec)
	b, _ := yamlMap(t, r.file(t, "config/api.yml"))["bosh"].(map[string]any)
	if b["code_client_id"] != "pcap_ssh" || b["code_client_secret"] == "" || b["code_client_secret"] == nil {
		t.Errorf("rendered bosh config %v: want the pcap_ssh client and its secret", b)
	}
}

// cf's UAA gets pcap-api's own client for --app next to instance groups:
// client_credentials, cloud_controller.admin_read_only, a generated secret;
// enable-bosh-app-captures.yml's pcap-api names the same client, and its
// rendered config passes the binary's check.
func TestCFUAAPcapAPIClient(t *testing.T) {
	store := filepath.Join(t.TempDir(), "vars-store.yml")
	m := cfManifest(t, store, "-o", "manifests/ops-files/cf-uaa-pcap-api-client.yml")
	clients := dig(t, m, "instance_groups", "name=uaa", "jobs", "name=uaa", "properties", "uaa", "clients").(map[string]any)
	checkUAAClient(t, clients, "ssh-proxy", "pcap_api_cc", map[string]any{
		"authorized-grant-types": "client_credentials", "authorities": "cloud_controller.admin_read_only", "override": true,
	})

	p := props(t, dig(t, apiManifest(t, filepath.Join(t.TempDir(), "api-store.yml"), "enable-bosh-resolver.yml", "enable-bosh-app-captures.yml"),
		"instance_groups", "name=pcap-api", "jobs", "name=pcap-api"))
	r := renderAndCheck(t, "pcap-api", p, apiSpec)
	b, _ := yamlMap(t, r.file(t, "config/api.yml"))["bosh"].(map[string]any)
	cc, _ := b["cf_client"].(map[string]any)
	if cc["client_id"] != "pcap_api_cc" || cc["api_url"] != dig(t, p, "cf", "api_url") {
		t.Errorf("rendered bosh.cf_client %v: want client pcap_api_cc at cf.api_url", cc)
	}
}

// checkUAAClient checks that clients (a uaa job's uaa.clients) still hold
// kept, and hold name with the fields of want and a generated secret,
// which it returns.
func checkUAAClient(t *testing.T, clients map[string]any, kept, name string, want map[string]any) string {
	t.Helper()
	if _, ok := clients[kept]; !ok {
		t.Errorf("%s client lost: %v", kept, clients)
	}
	c, ok := clients[name].(map[string]any)
	if !ok {
		t.Fatalf("no %s client: %v", name, clients)
	}
	for k, w := range want {
		if c[k] != w {
			t.Errorf("%s %s = %v, want %v", name, k, c[k], w)
		}
	}
	secret, _ := c["secret"].(string)
	if len(secret) < 20 {
		t.Errorf("%s secret %q: want a generated password", name, secret)
	}
	return secret
}
