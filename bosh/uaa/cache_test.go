package uaa

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/fakeclock"
)

func TestClientTokenCachedUntilShortlyBeforeExpiry(t *testing.T) {
	var grants atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := grants.Add(1)
		fmt.Fprintf(w, `{"access_token":"tok-%d","token_type":"bearer","expires_in":600}`, n)
	}))
	defer srv.Close()
	clk := fakeclock.New(time.Unix(1_800_000_000, 0))
	c := &Client{URL: srv.URL, Now: clk.Now}
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tok, err := c.ClientToken(context.Background(), "ops", "s"); err != nil || tok != "tok-1" {
				t.Errorf("token %q, %v; want tok-1", tok, err)
			}
		}()
	}
	wg.Wait()
	if n := grants.Load(); n != 1 {
		t.Fatalf("%d grants for 50 concurrent callers, want 1", n)
	}
	clk.Advance(539 * time.Second) // refreshed a minute before its 600 s are up
	if tok, _ := c.ClientToken(context.Background(), "ops", "s"); tok != "tok-1" || grants.Load() != 1 {
		t.Errorf("at 539s: %q after %d grants, want the cached tok-1", tok, grants.Load())
	}
	clk.Advance(2 * time.Second)
	if tok, _ := c.ClientToken(context.Background(), "ops", "s"); tok != "tok-2" || grants.Load() != 2 {
		t.Errorf("at 541s: %q after %d grants, want a new tok-2", tok, grants.Load())
	}
}

func TestKeyFetchThrottledAfterFailure(t *testing.T) {
	var fetches atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	clk := fakeclock.New(time.Unix(1_800_000_000, 0))
	c := &Client{URL: srv.URL, Now: clk.Now}
	for i := range 20 {
		if _, err := c.key(context.Background(), "k"); err == nil {
			t.Fatalf("call %d: a key from a failing UAA", i)
		} else if fe := (*fetchError)(nil); !errors.As(err, &fe) {
			t.Fatalf("call %d: %v, want the fetch failure", i, err)
		}
	}
	if n := fetches.Load(); n != 1 {
		t.Fatalf("%d fetches for 20 calls within %v of a failure, want 1", n, retryAfter)
	}
	clk.Advance(retryAfter)
	c.key(context.Background(), "k")
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches after %v, want 2", n, retryAfter)
	}
}
