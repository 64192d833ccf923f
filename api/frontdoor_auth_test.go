package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/tunneltest"
)

// countingResolver is a static resolver that counts what would be network
// work: AuthKey and Resolve.
type countingResolver struct {
	StaticResolver
	authKeys, resolves atomic.Int32
}

func (c *countingResolver) AuthKey(ctx context.Context, key ssh.PublicKey) (*Identity, error) {
	c.authKeys.Add(1)
	return c.StaticResolver.AuthKey(ctx, key)
}

func (c *countingResolver) Resolve(ctx context.Context, id *Identity, req capturecmd.Request) ([]Target, []Skipped, error) {
	c.resolves.Add(1)
	return c.StaticResolver.Resolve(ctx, id, req)
}

// noSign offers a key it cannot sign with: the client only queries it.
type noSign struct{ pub ssh.PublicKey }

func (s noSign) PublicKey() ssh.PublicKey { return s.pub }
func (s noSign) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	return nil, errors.New("no private key")
}

func newKey(t *testing.T) ssh.Signer { return tunneltest.Key(t) }

// startFrontDoor serves a on 127.0.0.1:0 and returns its address.
func startFrontDoor(t *testing.T, a *API, hostKey ssh.Signer) string {
	t.Helper()
	return tunneltest.Start(t, &tunnel.Server{Config: a.ServerConfig(hostKey), Handlers: map[string]tunnel.ChannelHandler{"session": a}})
}

func TestFrontDoorNoWorkBeforeProof(t *testing.T) {
	op, host := newKey(t), newKey(t)
	r := &countingResolver{StaticResolver: StaticResolver{Operators: tunnel.NewKeySet(op.PublicKey()), Groups: map[string][]string{"lab": {"127.0.0.1:1"}}}}
	a := &API{Logger: slog.New(slog.DiscardHandler), Resolvers: map[string]Resolver{"static": r},
		Limits: LimitsConfig{MaxCaptures: 2, MaxCapturesPerUser: 1, MaxTargets: 1, MaxDuration: time.Minute, MaxSessionsPerConnection: 2}}
	addr := startFrontDoor(t, a, host)
	dial := func(s ssh.Signer) (*ssh.Client, error) {
		return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "static", Auth: []ssh.AuthMethod{ssh.PublicKeys(s)},
			HostKeyCallback: ssh.FixedHostKey(host.PublicKey()), Timeout: 10 * time.Second})
	}
	for range 20 {
		if _, err := dial(noSign{op.PublicKey()}); err == nil {
			t.Fatal("a key query logged in")
		}
	}
	if _, err := dial(newKey(t)); err == nil {
		t.Fatal("a stranger's key logged in")
	}
	if n := r.authKeys.Load(); n != 0 {
		t.Fatalf("AuthKey called %d times for queries and a refused key, want 0", n)
	}
	cl, err := dial(op)
	if err != nil {
		t.Fatalf("operator: %v", err)
	}
	defer cl.Close()
	if n := r.authKeys.Load(); n != 1 {
		t.Errorf("AuthKey called %d times for one proven key, want 1", n)
	}

	t.Run("sessions per connection", func(t *testing.T) {
		var open []ssh.Channel
		for range 2 {
			ch, reqs, err := cl.OpenChannel("session", nil)
			if err != nil {
				t.Fatal(err)
			}
			go ssh.DiscardRequests(reqs)
			open = append(open, ch)
		}
		_, _, err := cl.OpenChannel("session", nil)
		var oce *ssh.OpenChannelError
		if !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage {
			t.Fatalf("third session: %v, want resource-shortage", err)
		}
		for _, ch := range open {
			ch.Close()
		}
	})

	t.Run("a user at the limit makes no lookup", func(t *testing.T) {
		release, err := a.acquire(&Identity{Name: "other-name", Resolver: "static", Subject: "key:" + tunnel.Fingerprint(op.PublicKey())})
		if err != nil {
			t.Fatal(err)
		}
		defer release()
		var s *ssh.Session
		waitUntilOK(t, func() error { s, err = cl.NewSession(); return err })
		defer s.Close()
		out, _ := s.CombinedOutput("capture lab")
		if want := "pcap: error: limit-reached reason=\"you are running your maximum of 1 captures\"\n"; string(out) != want {
			t.Errorf("output %q, want %q", out, want)
		}
		if n := r.resolves.Load(); n != 0 {
			t.Errorf("%d lookups for a user at the limit, want 0", n)
		}
	})
}

// waitUntilOK retries f (bounded) while the server frees a slot the test
// just closed.
func waitUntilOK(t *testing.T, f func() error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRefusalReasons(t *testing.T) {
	cases := []struct {
		err            error
		reason, banner string
	}{
		{fmt.Errorf("%w: [code]", uaa.ErrBadCode), "bad-code", "the one-time code is unknown, used or expired; get a new one (cf ssh-code)"},
		{uaa.ErrExpired, "expired-token", "the token has expired; log in again"},
		{fmt.Errorf("%w: signature does not verify", uaa.ErrInvalidToken), "invalid-token", "token is not valid: signature does not verify"},
		{fmt.Errorf("%w: it is not for the Cloud Controller (audience x)", uaa.ErrRefused), "token-refused", "token refused: it is not for the Cloud Controller (audience x)"},
		{fmt.Errorf("%w: dial tcp: refused", uaa.ErrUnavailable), "uaa-unavailable", "the token cannot be checked now (UAA's keys are unavailable); try again later"},
		{ErrNoAuth, "method-not-offered", ""},
		{errors.New("cfresolver: find UAA from the Cloud Controller: 10.0.0.9 unreachable"), "failed", "cannot log in now; try again later"},
	}
	for _, c := range cases {
		reason, msg := refusal(c.err)
		if reason != c.reason || msg != c.banner {
			t.Errorf("refusal(%v) = %q, %q; want %q, %q", c.err, reason, msg, c.reason, c.banner)
		}
	}
}
