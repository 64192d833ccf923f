// Package releasetest tests the BOSH release in bosh/release and the
// manifests in manifests/: job templates rendered like the director renders
// them (testdata/render.rb) and checked by the real binaries'
// --check-config, manifests and ops files interpolated by the real bosh CLI,
// and the release built by `bosh create-release` and its packaging scripts.
package releasetest

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/integration/testreq"
)

// binDir holds pcap-agent and pcap-api, built once by TestMain.
var binDir string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "pcap-releasetest-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", dir+"/", "./agent/cmd/pcap-agent", "./api/cmd/pcap-api")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "go build pcap-agent pcap-api: %v\n%s", err, out)
		return 1
	}
	binDir = dir
	return m.Run()
}

// repoRoot is the directory holding go.mod, found from this source file.
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

func releaseDir() string { return filepath.Join(repoRoot(), "bosh", "release") }

// requireTool returns the path of an external tool (a file path, or a
// name looked up in PATH), skipping the test when it is missing unless
// PCAP_REQUIRE_TOOLS is set, which makes it a failure.
func requireTool(t *testing.T, nameOrPath, hint string) string {
	t.Helper()
	return testreq.Tool(t, nameOrPath, hint)
}

// notInstalled skips the test because what it needs is missing, or fails
// it when PCAP_REQUIRE_TOOLS is set (make test sets it).
func notInstalled(t *testing.T, what, hint string) {
	t.Helper()
	testreq.Missing(t, what, hint)
}

// boshCLI is the real bosh CLI built by integration/tools/tools.mk.
func boshCLI(t *testing.T) string {
	t.Helper()
	return requireTool(t, filepath.Join(repoRoot(), "build", "bin", "bosh"),
		"run `make -f integration/tools/tools.mk build/bin/bosh`")
}

// result is a finished command.
type result struct {
	stdout, stderr string
	err            error
}

func (r result) String() string {
	return fmt.Sprintf("error: %v\nstdout:\n%s\nstderr:\n%s", r.err, r.stdout, r.stderr)
}

// run runs a command in dir with extra environment, bounded in time.
func run(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	return result{stdout: out.String(), stderr: errOut.String(), err: err}
}

// must runs a command and fails the test when it fails.
func must(t *testing.T, timeout time.Duration, dir string, env []string, name string, args ...string) string {
	t.Helper()
	r := run(t, timeout, dir, env, name, args...)
	if r.err != nil {
		t.Fatalf("%s %s:\n%s", filepath.Base(name), strings.Join(args, " "), r)
	}
	return r.stdout
}

// keyPair is an SSH key pair shaped like a BOSH `type: ssh` variable: an
// RSA private key in PEM and an authorized_keys line, both ending in a
// newline.
type keyPair struct {
	PrivateKey string `json:"private_key" yaml:"private_key"`
	PublicKey  string `json:"public_key" yaml:"public_key"`
}

func (k keyPair) prop() map[string]any {
	return map[string]any{"private_key": k.PrivateKey, "public_key": k.PublicKey}
}

var keys struct {
	once sync.Once
	kp   []keyPair
	err  error
}

// testKeys returns n distinct key pairs, generated once per test process.
func testKeys(t *testing.T, n int) []keyPair {
	t.Helper()
	keys.once.Do(func() {
		for range 4 {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				keys.err = err
				return
			}
			pub, err := ssh.NewPublicKey(&k.PublicKey)
			if err != nil {
				keys.err = err
				return
			}
			keys.kp = append(keys.kp, keyPair{
				PrivateKey: string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(k)})),
				PublicKey:  string(ssh.MarshalAuthorizedKey(pub)),
			})
		}
	})
	if keys.err != nil {
		t.Fatal(keys.err)
	}
	if n > len(keys.kp) {
		t.Fatalf("testKeys: at most %d keys", len(keys.kp))
	}
	return keys.kp[:n]
}

// testCA returns a self-signed CA certificate in PEM.
func testCA(t *testing.T, name string) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// instanceSpec is what a template sees as `spec`.
type instanceSpec struct {
	Name       string `json:"name"`
	Index      int    `json:"index"`
	ID         string `json:"id"`
	Address    string `json:"address"`
	IP         string `json:"ip"`
	Deployment string `json:"deployment"`
	AZ         string `json:"az"`
	Bootstrap  bool   `json:"bootstrap"`
}

var cellSpec = instanceSpec{
	Name: "diego-cell", Index: 1, ID: "3f2a6c1e-0b7d-4d55-9a0e-2c1f8e9d7b10",
	Address: "3f2a6c1e-0b7d-4d55-9a0e-2c1f8e9d7b10.diego-cell.default.cf.bosh",
	IP:      "10.0.1.12", Deployment: "cf", AZ: "z1",
}

var apiSpec = instanceSpec{
	Name: "pcap-api", Index: 0, ID: "9c1d1a52-5f0e-4b3c-8a61-0d6f4c2e7a33",
	Address: "9c1d1a52-5f0e-4b3c-8a61-0d6f4c2e7a33.pcap-api.default.pcap.bosh",
	IP:      "10.0.2.5", Deployment: "pcap", AZ: "z1", Bootstrap: true,
}

// linkData is a consumed link: the provider's link properties and its
// instances.
type linkData struct {
	Properties map[string]any `json:"properties"`
	Address    string         `json:"address,omitempty"`
	Instances  []linkInstance `json:"instances"`
}

type linkInstance struct {
	Name      string `json:"name"`
	ID        string `json:"id"`
	Index     int    `json:"index"`
	AZ        string `json:"az"`
	Address   string `json:"address"`
	Bootstrap bool   `json:"bootstrap"`
}

// rendered is a job rendered into dir.
type rendered struct {
	job      string
	dir      string
	provides map[string]any // the provided link's properties, when asked
}

// file returns a rendered file by its destination path.
func (r rendered) file(t *testing.T, dest string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(r.dir, dest))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// renderJob renders every template of job with the manifest properties
// props, like the director would; it returns the template error text, if
// any, instead of failing.
func renderJob(t *testing.T, job string, props map[string]any, spec instanceSpec, links map[string]linkData, provides string) (rendered, string) {
	t.Helper()
	ruby := requireTool(t, "ruby", "`make deps` installs Debian's ruby")
	out := t.TempDir()
	if props == nil {
		props = map[string]any{}
	}
	req := map[string]any{
		"job_dir":    filepath.Join(releaseDir(), "jobs", job),
		"out_dir":    out,
		"properties": props,
		"spec":       spec,
		"links":      links,
	}
	if provides != "" {
		req["provides"] = provides
	}
	b, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	reqFile := filepath.Join(t.TempDir(), "request.json")
	if err := os.WriteFile(reqFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	r := run(t, 30*time.Second, "", nil, ruby, filepath.Join(repoRoot(), "bosh", "release", "releasetest", "testdata", "render.rb"), reqFile)
	if r.err != nil {
		if r.stderr == "" {
			t.Fatalf("render %s: %s", job, r)
		}
		return rendered{}, strings.TrimSpace(r.stderr)
	}
	res := rendered{job: job, dir: out}
	if provides != "" {
		var p struct {
			Provides map[string]any `json:"provides"`
		}
		if err := json.Unmarshal([]byte(r.stdout), &p); err != nil {
			t.Fatalf("render %s: link output %q: %v", job, r.stdout, err)
		}
		res.provides = p.Provides
	}
	return res, ""
}

// mustRender renders a job and fails the test on a template error.
func mustRender(t *testing.T, job string, props map[string]any, spec instanceSpec, links map[string]linkData, provides string) rendered {
	t.Helper()
	r, errText := renderJob(t, job, props, spec, links, provides)
	if errText != "" {
		t.Fatalf("render %s: %s", job, errText)
	}
	return r
}

// checkConfig runs the job's binary with --check-config on the rendered
// config. Paths under /var/vcap/jobs/<job>/ are rewritten to the render
// directory, where the rendered key files are.
func checkConfig(t *testing.T, r rendered, configDest, binary string) result {
	t.Helper()
	cfg := r.file(t, configDest)
	cfg = strings.ReplaceAll(cfg, "/var/vcap/jobs/"+r.job+"/", r.dir+"/")
	path := filepath.Join(r.dir, "check-"+filepath.Base(configDest))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return run(t, 30*time.Second, "", nil, filepath.Join(binDir, binary), "--config", path, "--check-config")
}

// yamlMap parses YAML into a generic map, failing the test on error.
func yamlMap(t *testing.T, s string) map[string]any {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("parse YAML: %v\n%s", err, s)
	}
	return m
}

// dig follows keys (strings for maps, ints for lists) through a parsed
// YAML document; for a list of maps, a string "name=X" picks the element
// whose name is X.
func dig(t *testing.T, v any, path ...any) any {
	t.Helper()
	cur := v
	for i, p := range path {
		switch k := p.(type) {
		case string:
			if name, ok := strings.CutPrefix(k, "name="); ok {
				list, isList := cur.([]any)
				if !isList {
					t.Fatalf("dig %v: element %d is not a list", path, i)
				}
				var found any
				for _, e := range list {
					if m, ok := e.(map[string]any); ok && m["name"] == name {
						found = m
						break
					}
				}
				if found == nil {
					t.Fatalf("dig %v: no element named %q", path, name)
				}
				cur = found
				continue
			}
			m, ok := cur.(map[string]any)
			if !ok {
				t.Fatalf("dig %v: element %d is not a map", path, i)
			}
			next, ok := m[k]
			if !ok {
				t.Fatalf("dig %v: no key %q", path, k)
			}
			cur = next
		case int:
			list, ok := cur.([]any)
			if !ok || k >= len(list) {
				t.Fatalf("dig %v: element %d is not a list with index %d", path, i, k)
			}
			cur = list[k]
		}
	}
	return cur
}
