package api

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// TestHealthStates: /health is 503 "starting" until the listener is up,
// 200 "ok" while it is, and 503 "draining" from Drain on, for good (a
// load balancer must not put a stopping instance back).
func TestHealthStates(t *testing.T) {
	dir := t.TempDir()
	key := func(name string) string {
		s, pemBytes, err := tunnel.GenerateKey()
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pemBytes, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p+".pub", ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := DefaultConfig()
	cfg.HostKeyFile = key("host")
	cfg.Agents.ClientKeyFile = key("client")
	cfg.Agents.HostKeysFile = key("agent") + ".pub"
	svc, err := NewService(cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	get := func() (int, string) {
		rec := httptest.NewRecorder()
		svc.HTTP.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/health", nil))
		return rec.Code, rec.Body.String()
	}
	steps := []struct {
		do   func()
		code int
		body string
	}{
		{func() {}, http.StatusServiceUnavailable, "starting\n"},
		{func() { svc.SetReady(true) }, http.StatusOK, "ok\n"},
		{svc.Drain, http.StatusServiceUnavailable, "draining\n"},
		{func() { svc.SetReady(true) }, http.StatusServiceUnavailable, "draining\n"},
	}
	for i, s := range steps {
		s.do()
		if code, body := get(); code != s.code || body != s.body {
			t.Errorf("step %d: /health = %d %q, want %d %q", i, code, body, s.code, s.body)
		}
	}
}
