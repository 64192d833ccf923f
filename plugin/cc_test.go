package plugin

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// TestFindApp: the app is looked up by name in the targeted space with the
// user's token; a refusal is the typed status error, named by request.
func TestFindApp(t *testing.T) {
	const guid = "ab000000-0000-4000-8000-000000000001"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Header.Get("Authorization") != "bearer tok":
			http.Error(w, `{"errors":[{"title":"CF-InvalidAuthToken"}]}`, http.StatusUnauthorized)
		case r.URL.Path != "/v3/apps" || r.URL.Query().Get("space_guids") != "space":
			http.NotFound(w, r)
		case r.URL.Query().Get("names") == "myapp":
			w.Write([]byte(`{"resources":[{"guid":"` + guid + `"}]}`))
		default:
			w.Write([]byte(`{"resources":[]}`))
		}
	}))
	defer srv.Close()
	ctx := t.Context()
	if got, err := findApp(ctx, srv.URL+"/", "tok", "space", "myapp", false); err != nil || got != guid {
		t.Fatalf("findApp = %q, %v; want %s", got, err, guid)
	}
	if _, err := findApp(ctx, srv.URL, "tok", "space", "nope", false); err == nil || err.Error() != "app nope not found in the targeted space" {
		t.Errorf("unknown app: %v", err)
	}
	_, err := findApp(ctx, srv.URL, "expired", "space", "myapp", false)
	var se *httpjson.StatusError
	if !errors.As(err, &se) || se.Status != http.StatusUnauthorized {
		t.Fatalf("refused token: err %v, want a 401 *httpjson.StatusError", err)
	}
	if want := "look up app myapp: Cloud Controller: GET " + srv.URL + "/v3/apps: 401 Unauthorized"; err.Error() != want {
		t.Errorf("refused token: %q, want %q", err, want)
	}
	if strings.Contains(err.Error(), "expired") {
		t.Error("the error holds the token")
	}
}

// TestSSHCodeSource reads the UAA and the app SSH client from the Cloud
// Controller's root document, links.login before links.uaa.
func TestSSHCodeSource(t *testing.T) {
	root := `{"links":{"uaa":{"href":"https://uaa"},"login":{"href":"https://login"},"app_ssh":{"href":"ssh:2222","meta":{"oauth_client":"ssh-proxy"}}}}`
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.Error(w, "no", http.StatusBadGateway)
			return
		}
		w.Write([]byte(root))
	}))
	defer srv.Close()
	auth, client, err := sshCodeSource(t.Context(), httpClient(false), srv.URL)
	if err != nil || auth != "https://login" || client != "ssh-proxy" {
		t.Fatalf("sshCodeSource = %q, %q, %v", auth, client, err)
	}
	_, _, err = sshCodeSource(t.Context(), httpClient(false), srv.URL+"/sub")
	if want := "read the Cloud Controller's root: Cloud Controller: GET " + srv.URL + "/sub/: 502 Bad Gateway"; err == nil || err.Error() != want {
		t.Errorf("err = %v, want %q", err, want)
	}
}
