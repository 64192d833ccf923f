package httpjson

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestGetDecodesAndSendsToken(t *testing.T) {
	var gotAuth, gotAccept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAccept = r.Header.Get("Authorization"), r.Header.Get("Accept")
		w.Write([]byte(`{"name":"cc"}`))
	}))
	defer srv.Close()
	var out struct{ Name string }
	if err := (Client{Name: "CC"}).Get(context.Background(), srv.URL+"/v3/info", "tok", &out); err != nil {
		t.Fatal(err)
	}
	if out.Name != "cc" || gotAuth != "bearer tok" || gotAccept != "application/json" {
		t.Fatalf("out %+v, Authorization %q, Accept %q", out, gotAuth, gotAccept)
	}
	if err := (Client{}).Get(context.Background(), srv.URL, "", nil); err != nil || gotAuth != "" {
		t.Fatalf("no token: err %v, Authorization %q", err, gotAuth)
	}
}

func TestStatusErrorIsTypedAndRedacted(t *testing.T) {
	body := `{"errors":[{"title":"CF-ResourceNotFound"}]}` + strings.Repeat(" ", 2*MaxExcerpt)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		w.Write([]byte(body))
	}))
	defer srv.Close()
	u, _ := url.Parse(srv.URL + "/v3/apps?names=secret-code#frag")
	u.User = url.UserPassword("u", "pw")
	err := (Client{Name: "Cloud Controller"}).Get(context.Background(), u.String(), "tok", new(any))
	var se *StatusError
	if !errors.As(err, &se) {
		t.Fatalf("err %v (%T) is no *StatusError", err, err)
	}
	if se.Status != http.StatusNotFound || se.Method != http.MethodGet || se.URL != srv.URL+"/v3/apps" {
		t.Fatalf("StatusError %+v", se)
	}
	if len(se.Body) != MaxExcerpt || !strings.HasPrefix(string(se.Body), `{"errors"`) {
		t.Fatalf("excerpt is %d bytes: %.60q", len(se.Body), se.Body)
	}
	want := "Cloud Controller: GET " + srv.URL + "/v3/apps: 404 Not Found"
	if err.Error() != want {
		t.Fatalf("error %q, want %q", err, want)
	}
	for _, secret := range []string{"secret-code", "pw", "tok", "frag"} {
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error %q shows %q", err, secret)
		}
	}
}

func TestBodyOverTheBoundIsAnError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"name":"` + strings.Repeat("x", 100) + `"}`))
	}))
	defer srv.Close()
	var out struct{ Name string }
	err := (Client{Name: "UAA", MaxBody: 50}).Get(context.Background(), srv.URL, "", &out)
	if !errors.Is(err, ErrTooLarge) || out.Name != "" {
		t.Fatalf("err %v, out %+v; want ErrTooLarge and nothing decoded", err, out)
	}
	if err := (Client{MaxBody: 200}).Get(context.Background(), srv.URL, "", &out); err != nil || len(out.Name) != 100 {
		t.Fatalf("under the bound: err %v, name %d bytes", err, len(out.Name))
	}
}

func TestUnreachableKeepsCauseNotQuery(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now: connection refused
	err = (Client{Name: "director"}).Get(context.Background(), "http://"+addr+"/info?code=s3cret", "", nil)
	if err == nil || !strings.HasPrefix(err.Error(), "director unreachable: ") || strings.Contains(err.Error(), "s3cret") {
		t.Fatalf("err %v", err)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		t.Fatalf("err %v still wraps url.Error (with the full URL)", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel()
	<-ctx.Done()
	err = (Client{}).Get(ctx, "http://"+addr+"/", "", nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("expired context: err %v does not wrap context.DeadlineExceeded", err)
	}
}

func TestDecodeErrorNamesRequest(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html>`))
	}))
	defer srv.Close()
	err := (Client{Name: "director"}).Get(context.Background(), srv.URL+"/deployments?x=1", "", new([]string))
	want := "director: decode response to GET " + srv.URL + "/deployments: "
	if err == nil || !strings.HasPrefix(err.Error(), want) {
		t.Fatalf("err %v, want prefix %q", err, want)
	}
}

func TestDoKeepsCallersAccept(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Accept")
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, nil)
	req.Header.Set("Accept", "text/plain")
	if err := (Client{}).Do(req, nil); err != nil || got != "text/plain" {
		t.Fatalf("err %v, Accept %q", err, got)
	}
}
