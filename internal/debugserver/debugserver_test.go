package debugserver

import (
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
)

func TestCheckAddr(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:6060", "127.1.2.3:0", "[::1]:6060", "localhost:6060"} {
		if err := CheckAddr(ok); err != nil {
			t.Errorf("CheckAddr(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"0.0.0.0:6060", ":6060", "[::]:6060", "10.0.0.5:6060", "example.com:6060"} {
		if err := CheckAddr(bad); !errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckAddr(%q) = %v, want ErrNotLoopback", bad, err)
		}
	}
	for _, bad := range []string{"127.0.0.1", "127.0.0.1:http-nonsense", "127.0.0.1:70000"} {
		if err := CheckAddr(bad); err == nil || errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckAddr(%q) = %v, want a malformed-address error", bad, err)
		}
	}
	if _, err := Start("0.0.0.0:0"); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Start on 0.0.0.0: %v, want ErrNotLoopback", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func TestServesProfilesUntilClosed(t *testing.T) {
	s, err := Start("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + s.Addr().String()
	if code, body := get(t, base+"/debug/pprof/heap?debug=1"); code != http.StatusOK || !strings.Contains(body, "heap profile:") {
		t.Errorf("heap profile: %d\n%.200s", code, body)
	}
	if code, body := get(t, base+"/debug/pprof/goroutine?debug=1"); code != http.StatusOK || !strings.Contains(body, "TestServesProfilesUntilClosed") {
		t.Errorf("goroutine profile: %d, no test goroutine in\n%.500s", code, body)
	}
	// A CPU profile longer than the bound is refused before it starts.
	if code, _ := get(t, base+"/debug/pprof/profile?seconds=3600"); code != http.StatusBadRequest {
		t.Errorf("an hour's CPU profile: status %d, want 400", code)
	}
	if code, _ := get(t, base+"/"); code != http.StatusNotFound {
		t.Errorf("/: status %d, want 404 (only /debug/pprof/ is served)", code)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get(base + "/debug/pprof/"); err == nil {
		t.Error("still served after Close")
	}
}
