package uaa

import (
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"time"
)

func (s *Server) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /token_keys", s.handleTokenKeys)
	m.HandleFunc("GET /token_key", s.handleTokenKey)
	m.HandleFunc("GET /login", s.handleLogin)
	m.HandleFunc("GET /info", s.handleLogin)
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	})
	m.HandleFunc("POST /oauth/token", s.handleToken)
	m.HandleFunc("GET /oauth/authorize", s.handleAuthorize)
	m.HandleFunc("DELETE /oauth/token/revoke/{jti}", s.handleRevoke)
	m.HandleFunc("GET /userinfo", s.handleUserInfo)
	m.HandleFunc("POST /check_token", s.handleCheckToken)
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, "not_found", "Not Found")
	})
	s.mux = m
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeError writes UAA's OAuth error body.
func writeError(w http.ResponseWriter, status int, code, description string) {
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="UAA/oauth", error="`+code+`", error_description="`+description+`"`)
	}
	writeJSON(w, status, map[string]string{"error": code, "error_description": description})
}

func (s *Server) jwk() JWK {
	pub := &s.key.PublicKey
	der, _ := x509.MarshalPKIXPublicKey(pub) // cannot fail for an RSA key
	return JWK{
		KeyType:   "RSA",
		Algorithm: "RS256",
		Use:       "sig",
		KeyID:     s.opts.KeyID,
		Value:     string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})),
		N:         base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		E:         base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
	}
}

func (s *Server) handleTokenKeys(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string][]JWK{"keys": {s.jwk()}})
}

func (s *Server) handleTokenKey(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.jwk())
}

func (s *Server) handleLogin(w http.ResponseWriter, _ *http.Request) {
	base := s.URL()
	writeJSON(w, http.StatusOK, map[string]any{
		"app": map[string]string{"version": s.opts.Version},
		"links": map[string]string{
			"uaa":      base,
			"login":    base,
			"passwd":   "/forgot_password",
			"register": "/create_account",
		},
		"zone_name":      s.opts.ZoneID,
		"entityID":       "cloudfoundry-saml-login",
		"commit_id":      "fake",
		"idpDefinitions": map[string]string{},
		"prompts":        s.opts.Prompts,
		"timestamp":      s.opts.Now().UTC().Format("2006-01-02T15:04:05-0700"),
	})
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token,omitempty"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope"`
	JTI          string `json:"jti"`
}

// authenticateClient checks HTTP basic auth, or client_id/client_secret
// form parameters.
func (s *Server) authenticateClient(r *http.Request) (Client, bool) {
	id, secret, ok := r.BasicAuth()
	if ok {
		// RFC 6749 2.3.1: the credentials are form-url-encoded first.
		if v, err := url.QueryUnescape(id); err == nil {
			id = v
		}
		if v, err := url.QueryUnescape(secret); err == nil {
			secret = v
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
		if id == "" {
			return Client{}, false
		}
	}
	c, found := s.client(id)
	if !found {
		return Client{}, false
	}
	if subtle.ConstantTimeCompare([]byte(c.Secret), []byte(secret)) != 1 {
		return Client{}, false
	}
	return c, true
}

func (s *Server) handleToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	c, ok := s.authenticateClient(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
		return
	}
	grant := r.PostForm.Get("grant_type")
	switch grant {
	case "password", "refresh_token", "client_credentials", "authorization_code":
	case "":
		writeError(w, http.StatusBadRequest, "invalid_request", "Missing grant type")
		return
	default:
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", "Unsupported grant type: "+grant)
		return
	}
	if !c.allows(grant) {
		writeError(w, http.StatusUnauthorized, "invalid_client", "Unauthorized grant type: "+grant)
		return
	}
	switch grant {
	case "password":
		s.passwordGrant(w, r, c)
	case "refresh_token":
		s.refreshGrant(w, r, c)
	case "client_credentials":
		s.clientCredentialsGrant(w, r, c)
	case "authorization_code":
		s.authorizationCodeGrant(w, r, c)
	}
}

// narrow applies the optional "scope" request parameter.
func narrow(allowed []string, requested string) ([]string, bool) {
	if strings.TrimSpace(requested) == "" {
		return allowed, true
	}
	want := strings.Fields(requested)
	got := intersect(want, allowed)
	return got, len(got) == len(want)
}

func (s *Server) passwordGrant(w http.ResponseWriter, r *http.Request, c Client) {
	u, ok := s.User(r.PostForm.Get("username"))
	if !ok || subtle.ConstantTimeCompare([]byte(u.Password), []byte(r.PostForm.Get("password"))) != 1 {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
		return
	}
	if hint := r.URL.Query().Get("login_hint"); hint != "" {
		var h struct {
			Origin string `json:"origin"`
		}
		if json.Unmarshal([]byte(hint), &h) == nil && h.Origin != "" && h.Origin != u.Origin {
			writeError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
			return
		}
	}
	scopes, ok := narrow(userScopes(u, c), r.PostForm.Get("scope"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_scope", "Invalid scope: "+r.PostForm.Get("scope"))
		return
	}
	s.issue(w, s.userClaims(u, c, scopes, "password"), c.allows("refresh_token"))
}

func (s *Server) clientCredentialsGrant(w http.ResponseWriter, r *http.Request, c Client) {
	scopes, ok := narrow(c.Authorities, r.PostForm.Get("scope"))
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_scope", "Invalid scope: "+r.PostForm.Get("scope"))
		return
	}
	s.issue(w, s.clientClaims(c, scopes), false)
}

func (s *Server) refreshGrant(w http.ResponseWriter, r *http.Request, c Client) {
	value := r.PostForm.Get("refresh_token")
	rc, err := s.parseOwn(value)
	if err != nil || !rc.IsRefresh() {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Invalid refresh token: "+abbreviate(value))
		return
	}
	if rc.ClientID != c.ID {
		writeError(w, http.StatusUnauthorized, "invalid_grant", "Wrong client for this refresh token: "+c.ID)
		return
	}
	u, ok := s.userByID(rc.UserID)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Invalid refresh token (user no longer exists)")
		return
	}
	// Scopes are re-evaluated against the user's current groups, as UAA
	// does, within what the refresh token was granted.
	scopes := intersect(rc.GrantedScopes, userScopes(u, c))
	if req := r.PostForm.Get("scope"); req != "" {
		var ok bool
		if scopes, ok = narrow(scopes, req); !ok {
			writeError(w, http.StatusBadRequest, "invalid_scope", "Invalid scope: "+req)
			return
		}
	}
	claims := s.userClaims(u, c, scopes, rc.GrantType)
	signed, ok := s.signAccess(w, claims)
	if !ok {
		return
	}
	// UAA's refresh tokens are non-rotating by default: the same one comes
	// back.
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  signed,
		TokenType:    "bearer",
		RefreshToken: value,
		ExpiresIn:    int64(s.opts.AccessTokenLifetime / time.Second),
		Scope:        strings.Join(scopes, " "),
		JTI:          claims.JTI,
	})
}

func (s *Server) authorizationCodeGrant(w http.ResponseWriter, r *http.Request, c Client) {
	value := r.PostForm.Get("code")
	cd, ok := s.takeCode(value)
	if !ok || cd.clientID != c.ID {
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code: "+value)
		return
	}
	u, ok := s.userByID(cd.userID)
	if !ok {
		writeError(w, http.StatusBadRequest, "invalid_grant", "Invalid authorization code: "+value)
		return
	}
	s.issue(w, s.userClaims(u, c, cd.scopes, "authorization_code"), c.allows("refresh_token"))
}

// signAccess stamps claims as an access token (AccessTokenLifetime) and
// signs them; when signing fails it has answered 500.
func (s *Server) signAccess(w http.ResponseWriter, claims *Claims) (string, bool) {
	s.stamp(claims, s.opts.AccessTokenLifetime)
	signed, err := s.sign(claims, s.key)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "Could not sign token")
		return "", false
	}
	return signed, true
}

func (s *Server) issue(w http.ResponseWriter, claims *Claims, withRefresh bool) {
	signed, ok := s.signAccess(w, claims)
	if !ok {
		return
	}
	s.countGrant(claims.GrantType)
	resp := tokenResponse{
		AccessToken: signed,
		TokenType:   "bearer",
		ExpiresIn:   int64(s.opts.AccessTokenLifetime / time.Second),
		Scope:       strings.Join(claims.Scope, " "),
		JTI:         claims.JTI,
	}
	if withRefresh {
		refresh, err := s.sign(s.refreshClaims(claims), s.key)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "server_error", "Could not sign token")
			return
		}
		resp.RefreshToken = refresh
	}
	writeJSON(w, http.StatusOK, resp)
}

func abbreviate(t string) string {
	if len(t) > 12 {
		return t[:6] + "..." + t[len(t)-6:]
	}
	return t
}

// bearer returns the verified claims of the request's bearer token.
func (s *Server) bearer(r *http.Request) (*Claims, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, false
	}
	c, err := s.parseOwn(strings.TrimSpace(token))
	if err != nil || c.IsRefresh() {
		return nil, false
	}
	return c, true
}

// handleAuthorize implements the authorization code flow for a user who
// presents a bearer token, which is what `cf ssh-code` does: the code comes
// back in the Location header of a 302 to the client's redirect URI.
func (s *Server) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	claims, ok := s.bearer(r)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Invalid or missing bearer token")
		return
	}
	if q.Get("response_type") != "code" {
		writeError(w, http.StatusBadRequest, "unsupported_response_type", "Unsupported response types: "+q.Get("response_type"))
		return
	}
	c, ok := s.client(q.Get("client_id"))
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_client", "No client with requested id: "+q.Get("client_id"))
		return
	}
	if !c.allows("authorization_code") {
		writeError(w, http.StatusBadRequest, "invalid_client", "Unauthorized grant type: authorization_code")
		return
	}
	u, ok := s.userByID(claims.UserID)
	if !ok {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Token does not belong to a user")
		return
	}
	redirect := c.RedirectURI
	if redirect == "" {
		redirect = "/login"
	}
	if got := q.Get("redirect_uri"); got != "" && got != redirect && got != s.URL()+redirect {
		writeError(w, http.StatusBadRequest, "invalid_request", "Invalid redirect "+got+" did not match one of the registered values")
		return
	}
	target, err := url.Parse(redirect)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "Bad registered redirect URI")
		return
	}
	if !target.IsAbs() {
		base, err := url.Parse(s.URL())
		if err != nil {
			writeError(w, http.StatusInternalServerError, "server_error", "Bad server URL")
			return
		}
		target = base.ResolveReference(target)
	}
	scopes := userScopes(u, c)
	if req := q.Get("scope"); req != "" {
		if scopes, ok = narrow(scopes, req); !ok {
			writeError(w, http.StatusBadRequest, "invalid_scope", "Invalid scope: "+req)
			return
		}
	}
	values := target.Query()
	values.Set("code", s.newCode(u, c, scopes))
	if st := q.Get("state"); st != "" {
		values.Set("state", st)
	}
	target.RawQuery = values.Encode()
	w.Header().Set("Location", target.String())
	w.WriteHeader(http.StatusFound)
}

func (s *Server) handleRevoke(w http.ResponseWriter, r *http.Request) {
	if _, ok := s.bearer(r); !ok {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Invalid or missing bearer token")
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	claims, ok := s.bearer(r)
	if !ok || !claims.IsUser() {
		writeError(w, http.StatusUnauthorized, "invalid_token", "Invalid or missing bearer token")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"user_id":   claims.UserID,
		"sub":       claims.UserID,
		"user_name": claims.UserName,
		"name":      claims.UserName,
		"email":     claims.Email,
		"origin":    claims.Origin,
		"zid":       claims.ZoneID,
	})
}

// handleCheckToken is UAA's token introspection for resource servers
// (client-authenticated).
func (s *Server) handleCheckToken(w http.ResponseWriter, r *http.Request) {
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "Malformed request body")
		return
	}
	if _, ok := s.authenticateClient(r); !ok {
		writeError(w, http.StatusUnauthorized, "unauthorized", "Bad credentials")
		return
	}
	claims, err := s.parseOwn(r.PostForm.Get("token"))
	if err != nil || claims.IsRefresh() {
		writeError(w, http.StatusBadRequest, "invalid_token", "The token is invalid or expired")
		return
	}
	writeJSON(w, http.StatusOK, claims)
}
