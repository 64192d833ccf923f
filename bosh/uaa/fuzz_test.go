package uaa_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"code.cloudfoundry.org/pcap/bosh/uaa"
)

// fzUAA is a minimal UAA for the fuzz targets: /token_keys serves keys
// (the real one by default), and tokens are signed here.
type fzUAA struct {
	srv    *httptest.Server
	key    *rsa.PrivateKey
	other  *rsa.PrivateKey // not published: forgeries
	now    time.Time
	issuer string

	mu   sync.Mutex
	jwks []byte // what /token_keys answers
}

func fzNewUAA(f *testing.F) *fzUAA {
	f.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		f.Fatal(err)
	}
	u := &fzUAA{key: key, other: other, now: time.Unix(1_800_000_000, 0)}
	u.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/token_keys" {
			http.NotFound(w, r)
			return
		}
		u.mu.Lock()
		b := u.jwks
		u.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.Write(b)
	}))
	f.Cleanup(u.srv.Close)
	u.issuer = u.srv.URL + "/oauth/token"
	u.jwks = fzJWKS("key-1", &key.PublicKey)
	return u
}

func fzB64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// fzJWKS is a /token_keys document with one RSA key.
func fzJWKS(kid string, pub *rsa.PublicKey) []byte {
	b, _ := json.Marshal(map[string]any{"keys": []map[string]string{{
		"kid": kid, "kty": "RSA", "alg": "RS256", "use": "sig",
		"n": fzB64(pub.N.Bytes()), "e": fzB64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
	return b
}

func (u *fzUAA) client() *uaa.Client {
	return &uaa.Client{URL: u.srv.URL, HTTP: u.srv.Client(), Now: func() time.Time { return u.now }}
}

func (u *fzUAA) claims(extra jwt.MapClaims) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": u.issuer, "exp": u.now.Add(time.Hour).Unix(), "iat": u.now.Unix(),
		"user_name": "developer", "user_id": "d0000000-0000-4000-8000-000000000001", "client_id": "cf",
		"scope": []string{"openid", "cloud_controller.read"}, "grant_type": "password",
	}
	for k, v := range extra {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func (u *fzUAA) sign(f *testing.F, m jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	f.Helper()
	tok := jwt.NewWithClaims(m, claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		f.Fatal(err)
	}
	return s
}

// fzSignedByKey reports whether token (a "bearer " prefix allowed) is
// RS256-signed by key: what an accepted token must be.
func fzSignedByKey(token string, key *rsa.PublicKey) bool {
	token = strings.TrimPrefix(strings.TrimPrefix(token, "bearer "), "Bearer ")
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return false
	}
	hb, err := base64.RawURLEncoding.DecodeString(parts[0])
	if err != nil {
		return false
	}
	var h struct {
		Alg string `json:"alg"`
	}
	if json.Unmarshal(hb, &h) != nil || h.Alg != "RS256" {
		return false
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil {
		return false
	}
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	return rsa.VerifyPKCS1v15(key, crypto.SHA256, sum[:], sig) == nil
}

// fzSeeds are tokens of every kind the verifier must tell apart.
func fzSeeds(f *testing.F, u *fzUAA) []string {
	valid := u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(nil))
	parts := strings.Split(valid, ".")
	admin := strings.Split(u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"user_name": "admin", "scope": []string{"cloud_controller.admin"}})), ".")
	pubDER, err := x509.MarshalPKIXPublicKey(&u.key.PublicKey)
	if err != nil {
		f.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	header := func(v any) string { b, _ := json.Marshal(v); return fzB64(b) }
	return []string{
		valid,
		"bearer " + valid,
		"Bearer " + valid,
		u.sign(f, jwt.SigningMethodRS256, u.key, "", u.claims(nil)),                                                   // no kid: the only key
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-2", u.claims(nil)),                                              // unknown kid
		u.sign(f, jwt.SigningMethodRS256, u.other, "key-1", u.claims(nil)),                                            // forged
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"exp": u.now.Unix() - 3600})),        // expired
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"exp": nil})),                        // no expiry
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"exp": "tomorrow"})),                 // exp of the wrong type
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"nbf": u.now.Unix() + 3600})),        // not yet valid
		u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(jwt.MapClaims{"iss": "https://evil/oauth/token"})), // another UAA
		u.sign(f, jwt.SigningMethodRS512, u.key, "key-1", u.claims(nil)),                                              // another algorithm, same key
		u.sign(f, jwt.SigningMethodPS256, u.key, "key-1", u.claims(nil)),
		u.sign(f, jwt.SigningMethodHS256, pubPEM, "key-1", u.claims(nil)), // HS256 keyed with the public key
		header(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + ".",
		header(map[string]string{"alg": "RS256", "kid": "../../etc/passwd"}) + "." + parts[1] + "." + parts[2],
		parts[0] + "." + admin[1] + "." + parts[2], // another payload, this signature
		parts[0] + "." + parts[1] + "." + parts[2] + "=",
		parts[0] + "." + parts[1] + "." + parts[2] + ".x",
		parts[0] + "." + parts[1],
		"", ".", "..", "a.b.c", "eyJ", "eyJhbGciOiJSUzI1NiJ9.e30.", strings.Repeat("A", 4096),
		"eyJhbGciOiJSUzI1NiJ9." + fzB64([]byte(`{"exp":1e400}`)) + ".AA",
		"eyJhbGciOiJSUzI1NiJ9." + fzB64([]byte(`{"exp":-1,"iss":[]}`)) + ".AA",
	}
}

// FuzzVerifyToken feeds arbitrary strings, as a user's password would,
// to Verify against a fixed key served by a test UAA. It must never
// panic, never accept a token not RS256-signed by that key, never accept
// an expired one, never name the token in its error, and refuse only
// with ErrInvalidToken or ErrExpired (the UAA is up).
func FuzzVerifyToken(f *testing.F) {
	u := fzNewUAA(f)
	for _, s := range fzSeeds(f, u) {
		f.Add(s)
	}
	c := u.client()
	f.Fuzz(func(t *testing.T, token string) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		claims, err := c.Verify(ctx, token)
		if err == nil {
			if !fzSignedByKey(token, &u.key.PublicKey) {
				t.Fatalf("accepted a token not signed by the UAA's key: %q", token)
			}
			if claims == nil || claims.ExpiresAt == nil || claims.ExpiresAt.Time.Before(u.now.Add(-30*time.Second)) || claims.Issuer != u.issuer {
				t.Fatalf("accepted claims %+v", claims)
			}
			return
		}
		if !errors.Is(err, uaa.ErrInvalidToken) && !errors.Is(err, uaa.ErrExpired) {
			t.Fatalf("refused with %v, want ErrInvalidToken or ErrExpired", err)
		}
		for _, p := range strings.Split(token, ".") {
			if len(p) >= 12 && strings.Contains(err.Error(), p) {
				t.Fatalf("the error %q holds a part of the token", err)
			}
		}
	})
}

// FuzzVerifyTokenKeys serves arbitrary /token_keys documents (UAA's
// answer is input too) and verifies a valid token against each, with a
// fresh client. It must never panic, and accept the token only when the
// document publishes the signing key's modulus.
func FuzzVerifyTokenKeys(f *testing.F) {
	u := fzNewUAA(f)
	valid := u.sign(f, jwt.SigningMethodRS256, u.key, "key-1", u.claims(nil))
	real := fzJWKS("key-1", &u.key.PublicKey)
	for _, s := range [][]byte{
		real,
		fzJWKS("key-2", &u.key.PublicKey),
		fzJWKS("key-1", &u.other.PublicKey),
		[]byte(`{"keys":[]}`), []byte(`{"keys":null}`), []byte(`{}`), []byte(`[]`), []byte(``), []byte(`null`),
		[]byte(`{"keys":[{"kid":"key-1","kty":"RSA","n":"","e":""}]}`),
		[]byte(`{"keys":[{"kid":"key-1","kty":"RSA","n":"AQAB","e":"AAAAAAAAAAAB"}]}`),
		[]byte(`{"keys":[{"kid":"key-1","kty":"RSA","n":"!!","e":"AQAB"}]}`),
		[]byte(`{"keys":[{"kid":"key-1","kty":"EC","crv":"P-256","x":"AA","y":"AA"}]}`),
		[]byte(`{"keys":[{"kid":"key-1","kty":"RSA","n":` + strings.Repeat(`"A`, 10) + `}]}`),
	} {
		f.Add(s)
	}
	n := fzB64(u.key.N.Bytes())
	f.Fuzz(func(t *testing.T, doc []byte) {
		u.mu.Lock()
		u.jwks = doc
		u.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := u.client().Verify(ctx, valid)
		if err == nil && !strings.Contains(string(doc), strings.TrimRight(n, "=")[:64]) {
			t.Fatalf("accepted a token against keys that do not hold its key: %q", doc)
		}
	})
}
