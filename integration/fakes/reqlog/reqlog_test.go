package reqlog_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"code.cloudfoundry.org/pcap/integration/fakes/reqlog"
)

func TestLogRecordsPathsAndStatuses(t *testing.T) {
	var log reqlog.Log
	h := log.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/missing":
			w.WriteHeader(http.StatusNotFound)
		case "/written":
			_, _ = w.Write([]byte("ok"))
		}
	}))
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	for _, p := range []string{"/v3/apps?names=a", "/v3/apps/x", "/missing", "/written", "/empty"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL+p, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "bearer secret")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	if n := log.Count("/v3/apps"); n != 1 {
		t.Errorf("Count(/v3/apps) = %d", n)
	}
	if n := log.CountPrefix("/v3/apps"); n != 2 {
		t.Errorf("CountPrefix(/v3/apps) = %d", n)
	}
	e := log.Entries()
	if len(e) != 5 || e[0].RawQuery != "names=a" || e[2].Status != 404 || e[3].Status != 200 || e[4].Status != 200 || e[0].Method != "GET" {
		t.Errorf("entries = %+v", e)
	}
	log.Reset()
	if log.Len() != 0 {
		t.Errorf("Len after Reset = %d", log.Len())
	}
}

func TestLogMaxInFlight(t *testing.T) {
	var l reqlog.Log
	entered, release := make(chan struct{}), make(chan struct{})
	h := l.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			entered <- struct{}{}
			<-release
		}
	}))
	done := make(chan struct{})
	for range 3 {
		go func() {
			h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/slow", nil))
			done <- struct{}{}
		}()
	}
	for range 3 {
		<-entered
	}
	if n := l.MaxInFlight(); n != 3 {
		t.Errorf("MaxInFlight with 3 held = %d, want 3", n)
	}
	close(release)
	for range 3 {
		<-done
	}
	l.Reset()
	h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/fast", nil))
	if n := l.MaxInFlight(); n != 1 {
		t.Errorf("MaxInFlight after Reset and one request = %d, want 1", n)
	}
}
