package uaa_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/fakeclock"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

var users = []uaa.User{
	{Username: "alice", Password: "alice-pw", ID: "11111111-1111-4111-8111-111111111111",
		Scopes: []string{"openid", "cloud_controller.read", "bosh.admin"}},
	{Username: "bob", Password: "bob-pw", Scopes: []string{"openid"}},
}

func start(t *testing.T, opts uaa.Options) *uaa.Server {
	t.Helper()
	if opts.Users == nil {
		opts.Users = users
	}
	s := uaa.StartForTest(t, opts)
	return s
}

type tokenResp struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	JTI          string `json:"jti"`
	Error        string `json:"error"`
	Description  string `json:"error_description"`
}

// postToken posts a token request with basic client auth (skipped when
// clientID is empty) and returns the status and decoded body.
func postToken(t *testing.T, client *http.Client, base, clientID, secret string, form url.Values) (int, tokenResp) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/oauth/token", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if clientID != "" {
		req.SetBasicAuth(clientID, secret)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var tr tokenResp
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		t.Fatalf("decode token response: %v", err)
	}
	return resp.StatusCode, tr
}

func verify(t *testing.T, s *uaa.Server, token string) *uaa.Claims {
	t.Helper()
	c, err := s.Verifier(nil).Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	return c
}

func TestPasswordGrantIssuesVerifiableUAAToken(t *testing.T) {
	s := start(t, uaa.Options{})
	status, tr := postToken(t, http.DefaultClient, s.URL(), "cf", "", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"},
	})
	if status != http.StatusOK {
		t.Fatalf("status %d: %+v", status, tr)
	}
	if tr.TokenType != "bearer" || tr.RefreshToken == "" || tr.ExpiresIn != 12*3600 {
		t.Errorf("response = %+v", tr)
	}
	if tr.Scope != "openid cloud_controller.read bosh.admin" {
		t.Errorf("scope = %q", tr.Scope)
	}
	c := verify(t, s, tr.AccessToken)
	want := map[string]string{
		"sub": users[0].ID, "user_id": users[0].ID, "user_name": "alice", "client_id": "cf", "cid": "cf",
		"grant_type": "password", "origin": "uaa", "zid": "uaa", "iss": s.URL() + "/oauth/token", "jti": tr.JTI,
	}
	got := map[string]string{
		"sub": c.Subject, "user_id": c.UserID, "user_name": c.UserName, "client_id": c.ClientID, "cid": c.CID,
		"grant_type": c.GrantType, "origin": c.Origin, "zid": c.ZoneID, "iss": c.Issuer, "jti": c.JTI,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("claim %s = %q, want %q", k, got[k], v)
		}
	}
	if strings.Join(c.Audience, ",") != "openid,cloud_controller,bosh,cf" {
		t.Errorf("aud = %v", c.Audience)
	}
	if c.ExpiresAt-c.IssuedAt != 12*3600 {
		t.Errorf("exp-iat = %d", c.ExpiresAt-c.IssuedAt)
	}
	// The header names the key and where to find it, as UAA's do.
	tok, _, err := jwt.NewParser().ParseUnverified(tr.AccessToken, jwt.MapClaims{})
	if err != nil {
		t.Fatal(err)
	}
	if tok.Header["alg"] != "RS256" || tok.Header["kid"] != "key-1" || tok.Header["jku"] != s.URL()+"/token_keys" {
		t.Errorf("header = %v", tok.Header)
	}
}

func TestTokenErrors(t *testing.T) {
	s := start(t, uaa.Options{Clients: append(uaa.DefaultClients(),
		uaa.Client{ID: "machine", Secret: "s3cret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin"}})})
	tests := []struct {
		name           string
		client, secret string
		form           url.Values
		status         int
		errCode        string
	}{
		{"wrong password", "cf", "", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"nope"}}, 401, "unauthorized"},
		{"unknown user", "cf", "", url.Values{"grant_type": {"password"}, "username": {"mallory"}, "password": {"x"}}, 401, "unauthorized"},
		{"unknown client", "nope", "", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, 401, "unauthorized"},
		{"wrong client secret", "ssh-proxy", "wrong", url.Values{"grant_type": {"authorization_code"}, "code": {"x"}}, 401, "unauthorized"},
		{"no client auth", "", "", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, 401, "unauthorized"},
		{"grant not allowed for client", "machine", "s3cret", url.Values{"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"}}, 401, "invalid_client"},
		{"unsupported grant", "cf", "", url.Values{"grant_type": {"implicit"}}, 400, "unsupported_grant_type"},
		{"scope not held", "cf", "", url.Values{"grant_type": {"password"}, "username": {"bob"}, "password": {"bob-pw"}, "scope": {"bosh.admin"}}, 400, "invalid_scope"},
		{"garbage refresh token", "cf", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"garbage"}}, 401, "invalid_token"},
		{"unknown code", "ssh-proxy", "ssh-proxy-secret", url.Values{"grant_type": {"authorization_code"}, "code": {"nope"}}, 400, "invalid_grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			status, tr := postToken(t, http.DefaultClient, s.URL(), tc.client, tc.secret, tc.form)
			if status != tc.status || tr.Error != tc.errCode || tr.AccessToken != "" {
				t.Errorf("got %d %q (%s), want %d %q", status, tr.Error, tr.Description, tc.status, tc.errCode)
			}
		})
	}
}

func TestClientCredentialsGrant(t *testing.T) {
	s := start(t, uaa.Options{Clients: []uaa.Client{
		{ID: "machine", Secret: "s3cret", AuthorizedGrantTypes: []string{"client_credentials"}, Authorities: []string{"bosh.admin", "bosh.read"}},
	}})
	for _, how := range []string{"basic", "form"} {
		t.Run(how, func(t *testing.T) {
			form := url.Values{"grant_type": {"client_credentials"}}
			id, secret := "machine", "s3cret"
			if how == "form" {
				form.Set("client_id", id)
				form.Set("client_secret", secret)
				id, secret = "", ""
			}
			status, tr := postToken(t, http.DefaultClient, s.URL(), id, secret, form)
			if status != http.StatusOK || tr.RefreshToken != "" {
				t.Fatalf("status %d: %+v", status, tr)
			}
			c := verify(t, s, tr.AccessToken)
			if c.IsUser() || c.Subject != "machine" || c.GrantType != "client_credentials" ||
				strings.Join(c.Scope, " ") != "bosh.admin bosh.read" || strings.Join(c.Authorities, " ") != "bosh.admin bosh.read" {
				t.Errorf("claims = %+v", c)
			}
		})
	}
	// Both grants are counted; a refused request is not.
	postToken(t, http.DefaultClient, s.URL(), "machine", "wrong", url.Values{"grant_type": {"client_credentials"}})
	if n, p := s.Grants("client_credentials"), s.Grants("password"); n != 2 || p != 0 {
		t.Errorf("grants: client_credentials %d, password %d; want 2, 0", n, p)
	}
}

func TestRefreshTokenGrant(t *testing.T) {
	clk := fakeclock.New(time.Now())
	s := start(t, uaa.Options{Now: clk.Now})
	_, first := postToken(t, http.DefaultClient, s.URL(), "bosh_cli", "", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"},
	})
	clk.Advance(13 * time.Hour) // the access token is now expired
	if _, err := s.Verifier(nil).Verify(context.Background(), first.AccessToken); !errors.Is(err, jwt.ErrTokenExpired) {
		t.Fatalf("old token: err = %v, want expired", err)
	}
	// A refresh token is not an access token.
	if _, err := s.Verifier(nil).Verify(context.Background(), first.RefreshToken); !errors.Is(err, uaa.ErrInvalidToken) {
		t.Errorf("refresh token accepted as access token: %v", err)
	}
	status, tr := postToken(t, http.DefaultClient, s.URL(), "bosh_cli", "", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken},
	})
	if status != http.StatusOK {
		t.Fatalf("refresh: %d %+v", status, tr)
	}
	if tr.RefreshToken != first.RefreshToken {
		t.Error("refresh token rotated; UAA's default is non-rotating")
	}
	c := verify(t, s, tr.AccessToken)
	if c.UserName != "alice" || c.ClientID != "bosh_cli" || c.IssuedAt != clk.Now().Unix() {
		t.Errorf("claims = %+v", c)
	}
	// Another client may not use it, and an access token is no refresh token.
	if status, tr := postToken(t, http.DefaultClient, s.URL(), "cf", "", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {first.RefreshToken},
	}); status != http.StatusUnauthorized {
		t.Errorf("refresh by another client: %d %+v", status, tr)
	}
	if status, _ := postToken(t, http.DefaultClient, s.URL(), "bosh_cli", "", url.Values{
		"grant_type": {"refresh_token"}, "refresh_token": {tr.AccessToken},
	}); status != http.StatusUnauthorized {
		t.Errorf("access token used as refresh token: %d", status)
	}
}

// noRedirect is a client that, like the cf CLI's UAA client, does not
// follow redirects.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

func authorize(t *testing.T, s *uaa.Server, bearer, clientID string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, s.URL()+"/oauth/authorize?response_type=code&client_id="+clientID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "bearer "+bearer)
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestAuthorizeMintsOneTimeCode(t *testing.T) {
	s := start(t, uaa.Options{})
	tok, err := s.MintToken("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	resp := authorize(t, s, tok, "ssh-proxy")
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	loc, err := resp.Location()
	if err != nil {
		t.Fatal(err)
	}
	code := loc.Query().Get("code")
	if loc.Path != "/login" || code == "" || len(code) > 20 {
		t.Fatalf("location = %s", loc)
	}
	if n := s.PendingCodes(); n != 1 {
		t.Errorf("pending codes = %d", n)
	}
	exchange := url.Values{"grant_type": {"authorization_code"}, "code": {code}}
	status, tr := postToken(t, http.DefaultClient, s.URL(), "ssh-proxy", "ssh-proxy-secret", exchange)
	if status != http.StatusOK {
		t.Fatalf("exchange: %d %+v", status, tr)
	}
	if c := verify(t, s, tr.AccessToken); c.UserName != "alice" || c.ClientID != "ssh-proxy" || c.GrantType != "authorization_code" {
		t.Errorf("claims = %+v", c)
	}
	status, tr = postToken(t, http.DefaultClient, s.URL(), "ssh-proxy", "ssh-proxy-secret", exchange)
	if status != http.StatusBadRequest || tr.Error != "invalid_grant" {
		t.Errorf("second use: %d %+v", status, tr)
	}
}

func TestAuthorizeRejects(t *testing.T) {
	clk := fakeclock.New(time.Now())
	s := start(t, uaa.Options{Now: clk.Now})
	good, err := s.MintToken("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	expired, err := s.MintToken("alice", -time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := s.MintForgedToken("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, token, client string
		status              int
	}{
		{"no token", "", "ssh-proxy", 401},
		{"expired token", expired, "ssh-proxy", 401},
		{"forged token", forged, "ssh-proxy", 401},
		{"unknown client", good, "nope", 401},
		{"client without code grant", good, "cf", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := authorize(t, s, tc.token, tc.client); resp.StatusCode != tc.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.status)
			}
		})
	}
	t.Run("expired code", func(t *testing.T) {
		code, err := s.MintCode("alice", "ssh-proxy")
		if err != nil {
			t.Fatal(err)
		}
		clk.Advance(6 * time.Minute)
		status, tr := postToken(t, http.DefaultClient, s.URL(), "ssh-proxy", "ssh-proxy-secret",
			url.Values{"grant_type": {"authorization_code"}, "code": {code}})
		if status != http.StatusBadRequest || tr.Error != "invalid_grant" {
			t.Errorf("got %d %+v", status, tr)
		}
	})
}

func TestVerifierRejectsBadTokens(t *testing.T) {
	s := start(t, uaa.Options{})
	other := start(t, uaa.Options{}) // another UAA with its own key
	mint := func(m uaa.Mint) string {
		t.Helper()
		tok, err := s.Mint(m)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	fromOther, err := other.MintToken("alice", 0)
	if err != nil {
		t.Fatal(err)
	}
	good := mint(uaa.Mint{Username: "alice"})
	parts := strings.Split(good, ".")
	// RejectedTokens (expired, forged, other issuer) is what the CC and
	// director tests present; here each must fail verification.
	tokens, err := s.RejectedTokens("alice")
	if err != nil {
		t.Fatal(err)
	}
	if len(tokens) != 3 {
		t.Fatalf("RejectedTokens = %d tokens, want 3", len(tokens))
	}
	for name, tok := range map[string]string{
		"other UAA":        fromOther,
		"tampered payload": parts[0] + "." + parts[1] + "x." + parts[2],
		"unsigned":         parts[0] + "." + parts[1] + ".",
		"garbage":          "not-a-jwt",
	} {
		tokens[name] = tok
	}
	for name, token := range tokens {
		t.Run(name, func(t *testing.T) {
			_, err := s.Verifier(nil).Verify(context.Background(), token)
			if !errors.Is(err, uaa.ErrInvalidToken) {
				t.Errorf("err = %v, want ErrInvalidToken", err)
			}
		})
	}
	if c := verify(t, s, good); c.UserName != "alice" {
		t.Errorf("good token: %+v", c)
	}
}

func TestTokenKeysPublishTheSigningKey(t *testing.T) {
	s := start(t, uaa.Options{KeyID: "legacy-key"})
	var set struct {
		Keys []uaa.JWK `json:"keys"`
	}
	getJSON(t, s.URL()+"/token_keys", &set)
	if len(set.Keys) != 1 {
		t.Fatalf("keys = %+v", set.Keys)
	}
	k := set.Keys[0]
	if k.KeyType != "RSA" || k.Algorithm != "RS256" || k.Use != "sig" || k.KeyID != "legacy-key" || k.E != "AQAB" {
		t.Errorf("key = %+v", k)
	}
	pub, err := k.PublicKey()
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(s.PublicKey()) || pub.N.BitLen() != 2048 {
		t.Error("n/e do not match the signing key")
	}
	block, _ := pem.Decode([]byte(k.Value))
	if block == nil || block.Type != "PUBLIC KEY" {
		t.Fatalf("value is not a PEM public key: %q", k.Value)
	}
	fromPEM, err := x509.ParsePKIXPublicKey(block.Bytes)
	if err != nil || !s.PublicKey().Equal(fromPEM) {
		t.Errorf("value does not hold the signing key: %v", err)
	}
	var single uaa.JWK
	getJSON(t, s.URL()+"/token_key", &single)
	if single != k {
		t.Errorf("/token_key = %+v, want %+v", single, k)
	}
	// A token minted by the server verifies with the published key alone.
	tok, err := s.MintToken("alice", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return pub, nil }, jwt.WithValidMethods([]string{"RS256"})); err != nil {
		t.Errorf("minted token does not verify with JWKS key: %v", err)
	}
}

func getJSON(t *testing.T, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", u, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestLoginAndInfoDocuments(t *testing.T) {
	s := start(t, uaa.Options{})
	for _, path := range []string{"/login", "/info"} {
		var doc struct {
			App     struct{ Version string }
			Links   map[string]string
			Prompts map[string][]string
		}
		getJSON(t, s.URL()+path, &doc)
		if doc.App.Version == "" || doc.Links["uaa"] != s.URL() || doc.Links["login"] != s.URL() {
			t.Errorf("%s: %+v", path, doc)
		}
		if p := doc.Prompts["username"]; len(p) != 2 || p[0] != "text" {
			t.Errorf("%s: username prompt = %v", path, p)
		}
		if p := doc.Prompts["password"]; len(p) != 2 || p[0] != "password" {
			t.Errorf("%s: password prompt = %v", path, p)
		}
	}
}

func TestServesTLSWithGivenConfig(t *testing.T) {
	authority, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	conf, err := authority.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	s := start(t, uaa.Options{TLS: conf})
	if !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("URL = %s", s.URL())
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}}
	t.Cleanup(client.CloseIdleConnections)
	status, tr := postToken(t, client, s.URL(), "cf", "", url.Values{
		"grant_type": {"password"}, "username": {"alice"}, "password": {"alice-pw"},
	})
	if status != http.StatusOK {
		t.Fatalf("status %d", status)
	}
	if _, err := s.Verifier(client).Verify(context.Background(), tr.AccessToken); err != nil {
		t.Errorf("verify over TLS: %v", err)
	}
	if n := s.Requests().Count("/token_keys"); n != 1 {
		t.Errorf("/token_keys fetched %d times, want 1", n)
	}
}

func TestNewRejectsBadUsers(t *testing.T) {
	for _, us := range [][]uaa.User{
		{{Username: ""}},
		{{Username: "a"}, {Username: "A"}},
	} {
		if _, err := uaa.New(uaa.Options{Users: us}); err == nil || !strings.HasPrefix(err.Error(), "uaa: ") {
			t.Errorf("users %+v: err = %v", us, err)
		}
	}
}
