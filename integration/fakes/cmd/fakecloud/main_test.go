package main_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// build compiles fakecloud with the race detector into a temp dir.
func build(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "fakecloud")
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "build", "-race", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func TestFakecloudServesAllThree(t *testing.T) {
	bin := build(t)
	dir := t.TempDir()
	outFile, caFile := filepath.Join(dir, "out.json"), filepath.Join(dir, "ca.pem")
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-out", outFile, "-ca-out", caFile, "-app-ssh-endpoint", "127.0.0.1:2222")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := false
	t.Cleanup(func() {
		if !exited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	// The first line is "ready" (the context kills the process, ending the
	// read, if it never comes).
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("first line %q, err %v; stderr:\n%s", line, err, stderr.String())
	}

	raw, err := os.ReadFile(outFile)
	if err != nil {
		t.Fatal(err)
	}
	// -out is read by its documented key names, not by fakecloud's type.
	var ep map[string]string
	if err := json.Unmarshal(raw, &ep); err != nil {
		t.Fatal(err)
	}
	pemFile, err := os.ReadFile(caFile)
	if err != nil || string(pemFile) != ep["ca_cert"] {
		t.Fatalf("ca file %q differs from out.json: %v", pemFile, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemFile) {
		t.Fatal("bad CA PEM")
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: newTLSConfig(pool)}}
	t.Cleanup(client.CloseIdleConnections)
	if !strings.HasPrefix(ep["uaa_url"], "https://127.0.0.1:") || !strings.HasPrefix(ep["director_url"], "https://127.0.0.1:") ||
		!strings.HasPrefix(ep["cc_url"], "http://127.0.0.1:") || ep["director_uuid"] == "" {
		t.Errorf("endpoints = %v", ep)
	}

	// A user of the built-in world logs in at the UAA, then uses the CC
	// and the director with that token.
	form := url.Values{"grant_type": {"password"}, "username": {"admin"}, "password": {"admin-password"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep["uaa_url"]+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth("cf", "")
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	doJSON(t, client, req, &tok)

	var apps struct {
		Resources []struct{ Name string } `json:"resources"`
	}
	doJSON(t, client, authed(t, ctx, ep["cc_url"]+"/v3/apps", tok.AccessToken), &apps)
	if len(apps.Resources) != 1 || apps.Resources[0].Name != "web-app" {
		t.Errorf("apps = %+v", apps)
	}
	var root struct {
		Links struct {
			AppSSH struct{ Href string } `json:"app_ssh"`
		} `json:"links"`
	}
	doJSON(t, client, authed(t, ctx, ep["cc_url"]+"/", ""), &root)
	if root.Links.AppSSH.Href != "127.0.0.1:2222" {
		t.Errorf("app_ssh = %q", root.Links.AppSSH.Href)
	}
	var insts []struct {
		Job string
		IPs []string
	}
	doJSON(t, client, authed(t, ctx, ep["director_url"]+"/deployments/cf/instances", tok.AccessToken), &insts)
	if len(insts) != 4 {
		t.Errorf("instances = %+v", insts)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	exited = true
	if err != nil {
		t.Errorf("exit after SIGTERM: %v\n%s", err, stderr.String())
	}
}

func TestFakecloudRejectsBadWorld(t *testing.T) {
	bin := build(t)
	world := filepath.Join(t.TempDir(), "world.json")
	if err := os.WriteFile(world, []byte(`{"cc":{"roles":[{"type":"space_developer","user":"ghost","space":"x"}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, "-world", world).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "fakecloud: cc: world: role 0: unknown user") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

func authed(t *testing.T, ctx context.Context, u, token string) *http.Request {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	return req
}

func doJSON(t *testing.T, client *http.Client, req *http.Request, v any) {
	t.Helper()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: %d", req.Method, req.URL, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func newTLSConfig(pool *x509.CertPool) *tls.Config {
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
}
