package uaa_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/fakes/fakeclock"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// testUAA is a fake UAA behind a front server whose signing key can be
// rotated: every generation is a fake UAA with the same URL (so the same
// issuer) and a key of its own. The front counts /token_keys fetches.
type testUAA struct {
	URL       string
	clock     *fakeclock.Clock
	cur       atomic.Pointer[fakeuaa.Server]
	keyGets   atomic.Int32
	keyHolder sync.Mutex
	keys      map[string]*rsa.PrivateKey
}

var users = []fakeuaa.User{
	{Username: "developer", Password: "developer-pw", Scopes: []string{"openid", "cloud_controller.read"}},
	{Username: "admin", Password: "admin-pw", Scopes: []string{"openid", "cloud_controller.admin"}},
}

func startUAA(t *testing.T) *testUAA {
	t.Helper()
	u := &testUAA{clock: fakeclock.New(time.Now()), keys: map[string]*rsa.PrivateKey{}}
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token_keys" {
			u.keyGets.Add(1)
		}
		u.cur.Load().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	u.URL = front.URL
	u.cur.Store(u.generation(t, "key-1"))
	return u
}

// generation makes a fake UAA at u.URL signing with the key kid (made once
// per kid).
func (u *testUAA) generation(t *testing.T, kid string) *fakeuaa.Server {
	t.Helper()
	u.keyHolder.Lock()
	key, ok := u.keys[kid]
	if !ok {
		var err error
		if key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
			t.Fatal(err)
		}
		u.keys[kid] = key
	}
	u.keyHolder.Unlock()
	s, err := fakeuaa.New(fakeuaa.Options{URL: u.URL, Users: users, Now: u.clock.Now, Key: key, KeyID: kid})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rotate makes UAA sign with (and publish only) the key kid from now on.
func (u *testUAA) rotate(t *testing.T, kid string) { u.cur.Store(u.generation(t, kid)) }

func (u *testUAA) client() *uaa.Client {
	return &uaa.Client{URL: u.URL, HTTP: &http.Client{Timeout: 5 * time.Second}, Now: u.clock.Now}
}

func (u *testUAA) mint(t *testing.T, m fakeuaa.Mint) string {
	t.Helper()
	tok, err := u.cur.Load().Mint(m)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// signWith signs claims with the private key of kid, for tokens the fake
// does not mint (no exp, odd algorithms).
func (u *testUAA) signWith(t *testing.T, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(u.keys[kid])
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestVerifyAcceptsValidToken(t *testing.T) {
	u := startUAA(t)
	c := u.client()
	tok := u.mint(t, fakeuaa.Mint{Username: "developer"})
	for _, pw := range []string{tok, "bearer " + tok, "Bearer " + tok} {
		claims, err := c.Verify(t.Context(), pw)
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if claims.UserName != "developer" || claims.Who() != "developer" || claims.ClientID != "cf" || claims.GrantType != "password" {
			t.Errorf("claims = user %q who %q client %q grant %q", claims.UserName, claims.Who(), claims.ClientID, claims.GrantType)
		}
		if !claims.HasScope("cloud_controller.read") || claims.HasScope("cloud_controller.admin") {
			t.Errorf("scopes = %v", claims.Scope)
		}
	}
	// A client token names the client.
	claims, err := c.Verify(t.Context(), u.mint(t, fakeuaa.Mint{ClientID: "ssh-proxy"}))
	if err != nil {
		t.Fatal(err)
	}
	if claims.Who() != "client:ssh-proxy" {
		t.Errorf("Who() = %q, want client:ssh-proxy", claims.Who())
	}
	// Keys are fetched once and cached.
	if n := u.keyGets.Load(); n != 1 {
		t.Errorf("/token_keys fetched %d times for 4 verifications, want 1", n)
	}
}

func TestVerifyRefuses(t *testing.T) {
	u := startUAA(t)
	valid := u.mint(t, fakeuaa.Mint{Username: "developer"})
	parts := strings.Split(valid, ".")
	// The payload of another user's token, with developer's signature.
	adminParts := strings.Split(u.mint(t, fakeuaa.Mint{Username: "admin"}), ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&u.keys["key-1"].PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hs := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{
		"user_name": "admin", "iss": u.URL + "/oauth/token", "exp": u.clock.Now().Add(time.Hour).Unix(),
	})
	hs.Header["kid"] = "key-1"
	confused, err := hs.SignedString(pubPEM) // RS256/HS256 key confusion
	if err != nil {
		t.Fatal(err)
	}
	now := u.clock.Now()

	cases := []struct {
		name    string
		token   string
		sentry  error
		message string
	}{
		{"expired", u.mint(t, fakeuaa.Mint{Username: "developer", Lifetime: -time.Minute}),
			uaa.ErrExpired, "uaa: token has expired"},
		{"forged signature", u.mint(t, fakeuaa.Mint{Username: "developer", Forged: true}),
			uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"expired and forged", u.mint(t, fakeuaa.Mint{Username: "developer", Lifetime: -time.Hour, Forged: true}),
			uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"wrong issuer", u.mint(t, fakeuaa.Mint{Username: "developer", Issuer: "https://uaa.evil.example.com/oauth/token"}),
			uaa.ErrInvalidToken, "uaa: token is not valid: issued by another UAA"},
		{"payload swapped", parts[0] + "." + adminParts[1] + "." + parts[2],
			uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT", "kid": "key-1"}) + "." + parts[1] + ".",
			uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"HS256 with the public key", confused,
			uaa.ErrInvalidToken, "uaa: token is not valid: signature does not verify"},
		{"no expiry", u.signWith(t, "key-1", jwt.MapClaims{"user_name": "developer", "iss": u.URL + "/oauth/token", "iat": now.Unix()}),
			uaa.ErrInvalidToken, "uaa: token is not valid: has no expiry time"},
		{"not a token", "ABCDEFGHJK", uaa.ErrInvalidToken, "uaa: token is not valid: malformed"},
		{"three dots", "a.b.c", uaa.ErrInvalidToken, "uaa: token is not valid: malformed"},
		{"empty", "", uaa.ErrInvalidToken, "uaa: token is not valid: malformed"},
		{"bad base64", "!!!." + parts[1] + "." + parts[2], uaa.ErrInvalidToken, "uaa: token is not valid: malformed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := u.client().Verify(t.Context(), tc.token)
			if err == nil {
				t.Fatalf("Verify accepted it: %+v", claims)
			}
			if !errors.Is(err, tc.sentry) {
				t.Errorf("error %q is not %q", err, tc.sentry)
			}
			if err.Error() != tc.message {
				t.Errorf("error = %q, want %q", err, tc.message)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Errorf("error contains the token")
			}
		})
	}
}

// TestVerifyLeeway: 30 s of clock skew are forgiven, a minute is not.
func TestVerifyLeeway(t *testing.T) {
	u := startUAA(t)
	c := u.client()
	if _, err := c.Verify(t.Context(), u.mint(t, fakeuaa.Mint{Username: "developer", Lifetime: -10 * time.Second})); err != nil {
		t.Errorf("token expired 10s ago: %v, want accepted (30s leeway)", err)
	}
	if _, err := c.Verify(t.Context(), u.mint(t, fakeuaa.Mint{Username: "developer", Lifetime: -31 * time.Second})); !errors.Is(err, uaa.ErrExpired) {
		t.Errorf("token expired 31s ago: %v, want ErrExpired", err)
	}
}

// TestVerifyKeyRotation: a token signed with a key the client has not seen
// makes it fetch /token_keys again, at most once per 10 seconds however
// many such tokens come.
func TestVerifyKeyRotation(t *testing.T) {
	u := startUAA(t)
	c := u.client()
	old := u.mint(t, fakeuaa.Mint{Username: "developer"})
	if _, err := c.Verify(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	if n := u.keyGets.Load(); n != 1 {
		t.Fatalf("fetches = %d, want 1", n)
	}

	// UAA rotates to key-2. Within 10 s of the last fetch, a new key id is
	// not fetched.
	u.rotate(t, "key-2")
	rotated := u.mint(t, fakeuaa.Mint{Username: "developer"})
	_, err := c.Verify(t.Context(), rotated)
	if err == nil || err.Error() != "uaa: token is not valid: signing key unknown" {
		t.Errorf("new key within 10s of the last fetch: error %v, want signing key unknown", err)
	}
	if n := u.keyGets.Load(); n != 1 {
		t.Errorf("fetches = %d after an unknown key within 10s, want still 1", n)
	}

	// Later, the unknown key id triggers one fetch, and the token verifies.
	u.clock.Advance(11 * time.Second)
	claims, err := c.Verify(t.Context(), rotated)
	if err != nil {
		t.Fatalf("token signed with the rotated key: %v", err)
	}
	if claims.UserName != "developer" {
		t.Errorf("user = %q", claims.UserName)
	}
	if n := u.keyGets.Load(); n != 2 {
		t.Errorf("fetches = %d after rotation, want 2", n)
	}
	// Tokens of the retired key are refused (UAA no longer publishes it).
	if _, err := c.Verify(t.Context(), old); err == nil || err.Error() != "uaa: token is not valid: signing key unknown" {
		t.Errorf("token of the retired key: %v, want signing key unknown", err)
	}

	// A flood of tokens naming an unknown key costs one fetch per 10 s.
	stranger := u.generation(t, "key-3")
	bogus, err := stranger.MintToken("developer", 0)
	if err != nil {
		t.Fatal(err)
	}
	u.clock.Advance(11 * time.Second)
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.Verify(t.Context(), bogus); !errors.Is(err, uaa.ErrInvalidToken) {
				t.Errorf("token of an unpublished key: %v, want ErrInvalidToken", err)
			}
		}()
	}
	wg.Wait()
	if n := u.keyGets.Load(); n != 3 {
		t.Errorf("fetches = %d after 50 tokens of an unknown key, want 3", n)
	}
	// The known key still works without a fetch.
	if _, err := c.Verify(t.Context(), rotated); err != nil {
		t.Error(err)
	}
	if n := u.keyGets.Load(); n != 3 {
		t.Errorf("fetches = %d, want 3", n)
	}
}

// TestVerifyUAAUnreachable: when the keys cannot be fetched the error says
// so, instead of calling a good token invalid.
func TestVerifyUAAUnreachable(t *testing.T) {
	u := startUAA(t)
	tok := u.mint(t, fakeuaa.Mint{Username: "developer"})
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	c := &uaa.Client{URL: dead.URL, HTTP: &http.Client{Timeout: 5 * time.Second}, Now: u.clock.Now}
	_, err := c.Verify(t.Context(), tok)
	if !errors.Is(err, uaa.ErrUnavailable) || errors.Is(err, uaa.ErrInvalidToken) {
		t.Errorf("error = %v, want ErrUnavailable and not ErrInvalidToken", err)
	}
	if err != nil && !strings.HasPrefix(err.Error(), "uaa: cannot check the token: fetch token keys: ") {
		t.Errorf("error = %q", err)
	}
	if err != nil && strings.Contains(err.Error(), tok) {
		t.Error("error contains the token")
	}
}

func TestLooksLikeToken(t *testing.T) {
	u := startUAA(t)
	tok := u.mint(t, fakeuaa.Mint{Username: "developer"})
	code, err := u.cur.Load().MintCode("developer", "ssh-proxy")
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		in   string
		want bool
	}{
		{"token", tok, true},
		{"bearer token", "bearer " + tok, true},
		{"Bearer token", "Bearer " + tok, true},
		{"token cut at 1023 bytes", tok[:1023], strings.Count(tok[:1023], ".") == 2},
		{"one-time code", code, false},
		{"cf ssh-code shape", "a1B2c3D4e5", false},
		{"empty", "", false},
		{"short parts", "a.b.c", false},
		{"four parts", "aaaaaaaaaaaa.bbbbbbbbbbbb.cccc.dddd", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := uaa.LooksLikeToken(tc.in); got != tc.want {
				t.Errorf("LooksLikeToken = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestExchangeCode(t *testing.T) {
	u := startUAA(t)
	c := u.client()
	code, err := u.cur.Load().MintCode("developer", "ssh-proxy")
	if err != nil {
		t.Fatal(err)
	}
	tok, err := c.ExchangeCode(t.Context(), "ssh-proxy", "ssh-proxy-secret", code)
	if err != nil {
		t.Fatalf("ExchangeCode: %v", err)
	}
	claims, err := c.Verify(t.Context(), tok.AccessToken)
	if err != nil {
		t.Fatalf("verify exchanged token: %v", err)
	}
	if claims.UserName != "developer" || claims.GrantType != "authorization_code" || claims.ClientID != "ssh-proxy" {
		t.Errorf("claims = user %q grant %q client %q", claims.UserName, claims.GrantType, claims.ClientID)
	}
	if tok.TokenType != "bearer" || tok.ExpiresIn <= 0 {
		t.Errorf("token type %q expires_in %d", tok.TokenType, tok.ExpiresIn)
	}

	// The second use is refused; UAA's reason is passed on, the code is not.
	_, err = c.ExchangeCode(t.Context(), "ssh-proxy", "ssh-proxy-secret", code)
	if !errors.Is(err, uaa.ErrBadCode) {
		t.Fatalf("second use: %v, want ErrBadCode", err)
	}
	want := "uaa: one-time code was refused: uaa: token request refused (400 Bad Request): invalid_grant Invalid authorization code: [code]"
	if err.Error() != want {
		t.Errorf("second use: error = %q, want %q", err, want)
	}
	if strings.Contains(err.Error(), code) {
		t.Error("error contains the code")
	}

	// A wrong client secret is refused without spending the code.
	code2, err := u.cur.Load().MintCode("developer", "ssh-proxy")
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.ExchangeCode(t.Context(), "ssh-proxy", "wrong", code2)
	want = "uaa: one-time code was refused: uaa: token request refused (401 Unauthorized): unauthorized Bad credentials"
	if !errors.Is(err, uaa.ErrBadCode) || err.Error() != want {
		t.Errorf("wrong secret: error = %v, want %q", err, want)
	}
	if _, err := c.ExchangeCode(t.Context(), "ssh-proxy", "ssh-proxy-secret", code2); err != nil {
		t.Errorf("code after a wrong-secret attempt: %v", err)
	}
	// Codes never issued are refused.
	if _, err := c.ExchangeCode(t.Context(), "ssh-proxy", "ssh-proxy-secret", "NOSUCHCODE"); !errors.Is(err, uaa.ErrBadCode) {
		t.Errorf("unknown code: %v, want ErrBadCode", err)
	}
}

// TestAuthorizationCode: a user's token gets a one-time code for a client
// the way `cf ssh-code` does (the redirect is read, not followed); the
// code is the user's and single use. Refusals say why without the token.
func TestAuthorizationCode(t *testing.T) {
	u := startUAA(t)
	c := u.client()
	tok := u.mint(t, fakeuaa.Mint{Username: "developer"})
	logins := u.cur.Load().Requests().Count("/login")
	code, err := c.AuthorizationCode(t.Context(), "ssh-proxy", "bearer "+tok)
	if err != nil {
		t.Fatal(err)
	}
	if n := u.cur.Load().Requests().Count("/login") - logins; n != 0 {
		t.Errorf("the redirect to /login was followed %d times", n)
	}
	got, err := c.ExchangeCode(t.Context(), "ssh-proxy", "ssh-proxy-secret", code)
	if err != nil {
		t.Fatal(err)
	}
	if claims, err := c.Verify(t.Context(), got.AccessToken); err != nil || claims.UserName != "developer" {
		t.Errorf("the code's token: %+v, %v", claims, err)
	}

	forged := u.mint(t, fakeuaa.Mint{Username: "developer", Forged: true})
	_, err = c.AuthorizationCode(t.Context(), "ssh-proxy", forged)
	if !errors.Is(err, uaa.ErrNoCode) || !errors.Is(err, uaa.ErrInvalidToken) || strings.Contains(err.Error(), forged[len(forged)-16:]) {
		t.Errorf("forged token: %v; want ErrNoCode and ErrInvalidToken, without the token", err)
	}
	_, err = c.AuthorizationCode(t.Context(), "no-such-client", tok)
	if !errors.Is(err, uaa.ErrNoCode) || errors.Is(err, uaa.ErrInvalidToken) || !strings.Contains(err.Error(), "invalid_client") {
		t.Errorf("unknown client: %v", err)
	}

	// A redirect without a code (UAA's login page) is no code.
	login := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/login?error=x", http.StatusFound)
	}))
	defer login.Close()
	if _, err := (&uaa.Client{URL: login.URL}).AuthorizationCode(t.Context(), "ssh-proxy", tok); !errors.Is(err, uaa.ErrNoCode) {
		t.Errorf("redirect without a code: %v, want ErrNoCode", err)
	}
}

// TestVerifyTokenKeysRefused: UAA answering /token_keys with an error
// status is ErrUnavailable carrying the helper's typed status error.
func TestVerifyTokenKeysRefused(t *testing.T) {
	u := startUAA(t)
	tok := u.mint(t, fakeuaa.Mint{Username: "developer"})
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	}))
	defer down.Close()
	c := &uaa.Client{URL: down.URL, Now: u.clock.Now}
	_, err := c.Verify(t.Context(), tok)
	var se *httpjson.StatusError
	if !errors.Is(err, uaa.ErrUnavailable) || !errors.As(err, &se) || se.Status != http.StatusServiceUnavailable {
		t.Fatalf("error = %v, want ErrUnavailable with a 503 *httpjson.StatusError", err)
	}
	if want := "uaa: cannot check the token: fetch token keys: UAA: GET " + down.URL + "/token_keys: 503 Service Unavailable"; err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
}

// TestGrantBodyBounded: a token response over the bound is refused, not
// decoded cut short.
func TestGrantBodyBounded(t *testing.T) {
	big := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`{"access_token":"` + strings.Repeat("a", 2<<20) + `"}`))
	}))
	defer big.Close()
	_, err := (&uaa.Client{URL: big.URL}).ClientToken(t.Context(), "c", "s")
	if !errors.Is(err, httpjson.ErrTooLarge) || !strings.HasPrefix(err.Error(), "uaa: token request: UAA: response to POST "+big.URL+"/oauth/token: response too large") {
		t.Fatalf("error = %v, want ErrTooLarge", err)
	}
}

// TestVerifyOversizedKey: /token_keys publishing an RSA key over
// MaxKeyBits (a million bits here, whose check took 4 s of CPU per token)
// leaves that key out: tokens signed with the other keys verify, a token
// naming it is refused saying why, and a document with no other key is
// a failure to fetch the keys that says why.
func TestVerifyOversizedKey(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	huge := base64.RawURLEncoding.EncodeToString(bytes.Repeat([]byte{0xff}, 1<<17)) // an odd modulus of 2^20 bits
	jwk := func(kid, n string) map[string]string {
		return map[string]string{"kid": kid, "kty": "RSA", "alg": "RS256", "n": n, "e": "AQAB"}
	}
	var keys atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"keys": keys.Load()})
	}))
	defer srv.Close()
	now := time.Now()
	c := func() *uaa.Client {
		return &uaa.Client{URL: srv.URL, HTTP: srv.Client(), Now: func() time.Time { return now }}
	}
	sign := func(kid string) string {
		tok := jwt.NewWithClaims(jwt.SigningMethodRS256, jwt.MapClaims{
			"user_name": "developer", "iss": srv.URL + "/oauth/token", "exp": now.Add(time.Hour).Unix(),
		})
		tok.Header["kid"] = kid
		s, err := tok.SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	keys.Store([]map[string]string{jwk("key-big", huge), jwk("key-1", base64.RawURLEncoding.EncodeToString(key.N.Bytes()))})
	if _, err := c().Verify(t.Context(), sign("key-1")); err != nil {
		t.Fatalf("token of the usable key: %v", err)
	}
	// What pcap-api --probe reports.
	kids, unusable, err := c().TokenKeys(t.Context())
	why := "an RSA key of 1048576 bits, over the 16384 this client verifies with"
	if err != nil || !slices.Equal(kids, []string{"key-1"}) || len(unusable) != 1 || unusable["key-big"] != why {
		t.Errorf("TokenKeys = %q, %q, %v; want [key-1], key-big: %q", kids, unusable, err, why)
	}
	_, err = c().Verify(t.Context(), sign("key-big"))
	want := `uaa: token is not valid: signing key "key-big" is not used: an RSA key of 1048576 bits, over the 16384 this client verifies with`
	if !errors.Is(err, uaa.ErrInvalidToken) || err.Error() != want {
		t.Errorf("token naming the oversized key: %v, want %q", err, want)
	}

	keys.Store([]map[string]string{jwk("key-big", huge)})
	_, err = c().Verify(t.Context(), sign("key-1"))
	want = `uaa: cannot check the token: /token_keys has no usable RSA key ("key-big": an RSA key of 1048576 bits, over the 16384 this client verifies with)`
	if !errors.Is(err, uaa.ErrUnavailable) || err.Error() != want {
		t.Errorf("only an oversized key: %v, want %q", err, want)
	}
}
