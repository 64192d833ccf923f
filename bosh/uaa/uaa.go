// Package uaa checks UAA access tokens the way a resource server does
// (RS256 signature against UAA's /token_keys, expiry, issuer) and
// exchanges one-time authorization codes for tokens. It never logs, and
// its errors never contain a token. Clients use it to ask for one-time
// codes on a user's behalf (AuthorizationCode).
package uaa

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// Errors callers branch on.
var (
	ErrInvalidToken = errors.New("uaa: token is not valid")
	ErrExpired      = errors.New("uaa: token has expired")
	ErrBadCode      = errors.New("uaa: one-time code was refused")
	// ErrNoCode means UAA handed out no one-time code (AuthorizationCode).
	ErrNoCode = errors.New("uaa: no one-time code")
	// ErrUnavailable means the token could not be checked because UAA's
	// token keys could not be fetched; it says nothing about the token.
	ErrUnavailable = errors.New("uaa: cannot check the token")
)

// maxBody bounds what is read from UAA.
const maxBody = 1 << 20

// Claims are the claims of a UAA access token pcap uses.
type Claims struct {
	jwt.RegisteredClaims
	UserName  string   `json:"user_name"`
	UserID    string   `json:"user_id"`
	ClientID  string   `json:"client_id"`
	Scope     []string `json:"scope"`
	GrantType string   `json:"grant_type"`
	Origin    string   `json:"origin"`
}

// Who is the user name, or "client:<id>" for a client token.
func (c *Claims) Who() string {
	if c.UserName != "" {
		return c.UserName
	}
	return "client:" + c.ClientID
}

// StableID names the token's subject stably across logins and name
// changes: "user:<user_id>" (UAA's user GUID, also in sub), or
// "client:<client_id>" for a client's own token.
func (c *Claims) StableID() string {
	switch {
	case c.UserID != "":
		return "user:" + c.UserID
	case c.UserName != "" && c.Subject != "":
		return "user:" + c.Subject
	case c.UserName != "":
		return "user-name:" + c.UserName
	}
	return "client:" + c.ClientID
}

// HasScope reports whether the token carries scope.
func (c *Claims) HasScope(scope string) bool {
	for _, s := range c.Scope {
		if s == scope {
			return true
		}
	}
	return false
}

// Client talks to one UAA.
type Client struct {
	// URL is UAA's base URL; the expected issuer is URL + "/oauth/token".
	URL  string
	HTTP *http.Client
	// Now is the clock (default time.Now).
	Now func() time.Time

	// mu guards the state below; it is never held across a request.
	mu       sync.Mutex
	keys     map[string]*rsa.PublicKey
	unusable map[string]string // kid → why /token_keys' key is not used
	fetched  time.Time         // last successful /token_keys fetch
	fetchErr error             // last failed fetch, returned until retryAfter
	failed   time.Time         // when it failed
	fetching chan struct{}     // closed when the fetch in flight ends

	client clientToken // the client_credentials token (ClientToken)
}

// Fetch pacing: a known key set is refetched (for an unknown kid) at most
// every keyRefetch; after a failure, callers get that failure for
// retryAfter instead of making UAA (or the API) wait for another.
const (
	keyRefetch = 10 * time.Second
	retryAfter = 2 * time.Second
)

// MaxKeyBits bounds the RSA keys taken from /token_keys. The work of
// checking a signature grows with the square of the modulus, and is done
// for every token: with a modulus of a million bits, one check took 4 s of
// CPU. UAA's keys have 2048 or 4096 bits; 16384 is also OpenSSH's bound
// for RSA keys. A larger key is left out, and a token signed with it is
// refused, saying why.
const MaxKeyBits = 16384

func (c *Client) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Client) issuer() string { return strings.TrimRight(c.URL, "/") + "/oauth/token" }

// LooksLikeToken reports whether s has the shape of a JWT (three
// base64url parts), to tell tokens from one-time codes.
func LooksLikeToken(s string) bool {
	s = strings.TrimPrefix(strings.TrimPrefix(s, "bearer "), "Bearer ")
	parts := strings.Split(s, ".")
	return len(parts) == 3 && len(parts[0]) > 10 && len(parts[1]) > 10
}

// Verify checks a token's signature, expiry and issuer and returns its
// claims. A "bearer " prefix is accepted.
func (c *Client) Verify(ctx context.Context, token string) (*Claims, error) {
	token = strings.TrimPrefix(strings.TrimPrefix(token, "bearer "), "Bearer ")
	var claims Claims
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithIssuer(c.issuer()),
		jwt.WithExpirationRequired(),
		jwt.WithTimeFunc(c.now),
		jwt.WithLeeway(30*time.Second),
	)
	var fetchErr error
	_, err := parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		k, err := c.key(ctx, kid)
		var fe *fetchError
		if errors.As(err, &fe) {
			fetchErr = fe.err
		}
		return k, err
	})
	switch {
	case fetchErr != nil:
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, fetchErr)
	case errors.Is(err, jwt.ErrTokenExpired):
		return nil, ErrExpired
	case err != nil:
		return nil, fmt.Errorf("%w: %s", ErrInvalidToken, safeReason(err))
	}
	return &claims, nil
}

// safeReason describes a jwt error without echoing the token.
func safeReason(err error) string {
	var ue *unusableKeyError
	switch {
	case errors.As(err, &ue):
		return fmt.Sprintf("signing key %q is not used: %s", ue.kid, ue.why)
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "signature does not verify"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "issued by another UAA"
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		return "signing key unknown"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not valid yet"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "has no expiry time"
	default:
		return "rejected"
	}
}

// key returns the verification key with id kid, fetching /token_keys
// when it is unknown (at most every keyRefetch; after a failure, at most
// every retryAfter). One fetch runs at a time, without the lock: callers
// that need it wait for it, or for their ctx.
func (c *Client) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	for fetched := false; ; fetched = true {
		c.mu.Lock()
		if k := c.pick(kid); k != nil {
			c.mu.Unlock()
			return k, nil
		}
		now := c.now()
		switch {
		case c.fetchErr != nil && (fetched || now.Sub(c.failed) < retryAfter):
			err := c.fetchErr
			c.mu.Unlock()
			return nil, &fetchError{err}
		case fetched || (!c.fetched.IsZero() && now.Sub(c.fetched) < keyRefetch):
			why := c.unusable[kid]
			c.mu.Unlock()
			if why != "" {
				return nil, &unusableKeyError{kid: kid, why: why}
			}
			return nil, fmt.Errorf("uaa: no token key %q", kid)
		case c.fetching != nil:
			wait := c.fetching
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, &fetchError{ctx.Err()}
			}
		}
		done := make(chan struct{})
		c.fetching = done
		c.mu.Unlock()

		keys, unusable, err := c.fetchKeys(ctx)

		c.mu.Lock()
		if err != nil {
			c.fetchErr, c.failed = err, c.now()
		} else {
			c.keys, c.unusable, c.fetched, c.fetchErr = keys, unusable, c.now(), nil
		}
		c.fetching = nil
		close(done)
		c.mu.Unlock()
	}
}

func (c *Client) pick(kid string) *rsa.PublicKey {
	if kid == "" && len(c.keys) == 1 {
		for _, k := range c.keys {
			return k
		}
	}
	return c.keys[kid]
}

// fetchError is a failure to fetch the token keys.
type fetchError struct{ err error }

func (e *fetchError) Error() string { return "uaa: " + e.err.Error() }
func (e *fetchError) Unwrap() error { return e.err }

type jwks struct {
	Keys []struct {
		Kid string `json:"kid"`
		Kty string `json:"kty"`
		N   string `json:"n"`
		E   string `json:"e"`
	} `json:"keys"`
}

// TokenKeys fetches /token_keys and returns the ids of the keys Verify
// would use, sorted, and why each RSA key it would not use is left out.
// It fails when no key is usable. For checks of a configuration; Verify
// fetches and keeps the keys by itself.
func (c *Client) TokenKeys(ctx context.Context) ([]string, map[string]string, error) {
	keys, unusable, err := c.fetchKeys(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("uaa: %w", err)
	}
	return slices.Sorted(maps.Keys(keys)), unusable, nil
}

// unusableKeyError is a token signed with a key /token_keys publishes in
// a form this client does not verify with.
type unusableKeyError struct{ kid, why string }

func (e *unusableKeyError) Error() string {
	return fmt.Sprintf("uaa: token key %q is not used: %s", e.kid, e.why)
}

// fetchKeys returns the RSA keys of /token_keys by id, and why each RSA
// key it leaves out is not used. It fails when no key is usable.
func (c *Client) fetchKeys(ctx context.Context) (map[string]*rsa.PublicKey, map[string]string, error) {
	var set jwks
	if err := c.getJSON(ctx, "/token_keys", &set); err != nil {
		return nil, nil, fmt.Errorf("fetch token keys: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey)
	unusable := make(map[string]string)
	for _, k := range set.Keys {
		if k.Kty != "RSA" {
			continue
		}
		n, err1 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.N, "="))
		e, err2 := base64.RawURLEncoding.DecodeString(strings.TrimRight(k.E, "="))
		if err1 != nil || err2 != nil || len(e) > 4 {
			unusable[k.Kid] = "not an RSA public key (n and e in base64url, e of at most 4 bytes)"
			continue
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if bits := key.N.BitLen(); bits > MaxKeyBits {
			unusable[k.Kid] = fmt.Sprintf("an RSA key of %d bits, over the %d this client verifies with", bits, MaxKeyBits)
			continue
		}
		keys[k.Kid] = key
		delete(unusable, k.Kid)
	}
	if len(keys) == 0 {
		if len(unusable) == 0 {
			return nil, nil, errors.New("/token_keys has no RSA key")
		}
		var whys []string
		for _, kid := range slices.Sorted(maps.Keys(unusable)) {
			whys = append(whys, fmt.Sprintf("%q: %s", kid, unusable[kid]))
		}
		return nil, nil, fmt.Errorf("/token_keys has no usable RSA key (%s)", strings.Join(whys, "; "))
	}
	return keys, unusable, nil
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	return c.httpJSON().Get(ctx, strings.TrimRight(c.URL, "/")+path, "", v)
}

// httpJSON is the JSON-over-HTTP client for this UAA.
func (c *Client) httpJSON() httpjson.Client {
	return httpjson.Client{Name: "UAA", HTTP: c.HTTP, MaxBody: maxBody}
}

// oauthError is UAA's (OAuth 2's) error document; reason gives its two
// fields, or "no reason given".
type oauthError struct {
	Error       string `json:"error"`
	Description string `json:"error_description"`
}

func parseOAuthError(body []byte) oauthError {
	var e oauthError
	json.Unmarshal(body, &e)
	return e
}

func (e oauthError) reason() string {
	if r := strings.TrimSpace(e.Error + " " + e.Description); r != "" {
		return r
	}
	return "no reason given"
}

// Token is a token endpoint response.
type Token struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int    `json:"expires_in"`
}

// Grant posts form to /oauth/token with HTTP basic client credentials and
// returns the token. UAA's error text is returned, never the form.
func (c *Client) Grant(ctx context.Context, clientID, clientSecret string, form url.Values) (*Token, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(c.URL, "/")+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(clientSecret))
	var t Token
	err = c.httpJSON().Do(req, &t)
	var se *httpjson.StatusError
	switch {
	case errors.As(err, &se):
		e := parseOAuthError(se.Body)
		return nil, fmt.Errorf("uaa: token request refused (%s): %s %s", se.StatusText, e.Error, e.Description)
	case err != nil:
		return nil, fmt.Errorf("uaa: token request: %w", err)
	case t.AccessToken == "":
		return nil, errors.New("uaa: token response has no access token")
	}
	return &t, nil
}

// AuthorizationCode asks UAA for a one-time authorization code
// for clientID on behalf of the user whose access token is given, as
// `cf ssh-code` does: GET /oauth/authorize?response_type=code&client_id=…
// with the token as bearer, not following the redirect, and the code from
// the query of its Location. The code is single use and short lived; only
// the holder of clientID's secret (pcap-api) can exchange it for a token.
// Errors never contain the token or the code.
func (c *Client) AuthorizationCode(ctx context.Context, clientID, token string) (string, error) {
	base := strings.TrimRight(c.URL, "/")
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/oauth/authorize?"+q.Encode(), nil)
	if err != nil {
		return "", fmt.Errorf("uaa: one-time code: %w", err)
	}
	token = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(token, "bearer "), "Bearer "))
	req.Header.Set("Authorization", "bearer "+token)
	loc, err := c.httpJSON().Redirect(req)
	var se *httpjson.StatusError
	switch {
	case errors.As(err, &se):
		e := parseOAuthError(se.Body)
		if se.Status == http.StatusUnauthorized && e.Error == "invalid_token" {
			return "", fmt.Errorf("uaa: one-time code for client %s from %s: %s: %s: %w: %w", clientID, base, se.StatusText, e.reason(), ErrNoCode, ErrInvalidToken)
		}
		return "", fmt.Errorf("uaa: one-time code for client %s from %s: %s: %s: %w", clientID, base, se.StatusText, e.reason(), ErrNoCode)
	case err != nil:
		return "", fmt.Errorf("uaa: one-time code for client %s: %w", clientID, err)
	}
	code := loc.Query().Get("code")
	if code == "" {
		// UAA redirects to its login page when the token did not log the
		// user in; the location holds no credential.
		return "", fmt.Errorf("uaa: one-time code for client %s from %s: redirected to %s%s (is the token a user's, and the client set to autoapprove?): %w", clientID, base, loc.Host, loc.Path, ErrNoCode)
	}
	return code, nil
}

// clientToken is a cached client_credentials token.
type clientToken struct {
	id       string // the client it is for
	token    string
	refresh  time.Time // when to get a new one: shortly before it expires
	err      error     // the last failure, returned until retry
	retry    time.Time
	fetching chan struct{}
}

// ClientToken returns an access token of the client_credentials grant for
// clientID, cached until shortly before it expires (a tenth of its
// lifetime, at most a minute): callers share one grant, and at most one
// grant is in flight. After a failure, callers get that failure for
// retryAfter.
func (c *Client) ClientToken(ctx context.Context, clientID, clientSecret string) (string, error) {
	for {
		c.mu.Lock()
		ct := &c.client
		if ct.id != clientID {
			*ct = clientToken{id: clientID}
		}
		now := c.now()
		switch {
		case ct.token != "" && now.Before(ct.refresh):
			tok := ct.token
			c.mu.Unlock()
			return tok, nil
		case ct.err != nil && now.Before(ct.retry):
			err := ct.err
			c.mu.Unlock()
			return "", err
		case ct.fetching != nil:
			wait := ct.fetching
			c.mu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return "", fmt.Errorf("uaa: client token: %w", ctx.Err())
			}
		}
		done := make(chan struct{})
		ct.fetching = done
		c.mu.Unlock()

		t, err := c.Grant(ctx, clientID, clientSecret, url.Values{"grant_type": {"client_credentials"}})

		c.mu.Lock()
		now = c.now()
		if ct.id == clientID {
			ct.fetching = nil
			if err != nil {
				ct.token, ct.err, ct.retry = "", err, now.Add(retryAfter)
			} else {
				life := time.Duration(t.ExpiresIn) * time.Second
				ct.token, ct.err, ct.refresh = t.AccessToken, nil, now.Add(life-min(life/10, time.Minute))
			}
		}
		close(done)
		c.mu.Unlock()
		if err != nil {
			return "", err
		}
		// A token with no lifetime (expires_in 0) is used once, not cached.
		return t.AccessToken, nil
	}
}

// ExchangeCode trades a one-time code (from `cf ssh-code`) for a token,
// with the API's own client, as Diego's ssh-proxy does.
func (c *Client) ExchangeCode(ctx context.Context, clientID, clientSecret, code string) (*Token, error) {
	t, err := c.Grant(ctx, clientID, clientSecret, url.Values{
		"grant_type": {"authorization_code"},
		"code":       {code},
	})
	if err != nil {
		// UAA names a refused code in its error description; a code is a
		// credential, so it is left out.
		msg := err.Error()
		if code != "" {
			msg = strings.ReplaceAll(msg, code, "[code]")
		}
		return nil, fmt.Errorf("%w: %s", ErrBadCode, msg)
	}
	return t, nil
}
