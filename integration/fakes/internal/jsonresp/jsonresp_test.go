package jsonresp

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	Write(rec, http.StatusTeapot, "application/json; charset=utf-8", map[string]string{"href": "https://x/?a=1&b=<2>"})
	if rec.Code != http.StatusTeapot {
		t.Errorf("status = %d", rec.Code)
	}
	if got := rec.Header().Get("Content-Type"); got != "application/json; charset=utf-8" {
		t.Errorf("Content-Type = %q", got)
	}
	if got, want := rec.Body.String(), `{"href":"https://x/?a=1&b=<2>"}`+"\n"; got != want {
		t.Errorf("body = %q, want %q", got, want)
	}
}
