package uaa

import (
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Mint describes a token for Server.Mint.
type Mint struct {
	// Username makes a user token for that configured user. When empty,
	// the token is a client_credentials token of ClientID.
	Username string
	// ClientID is the client the token is issued to; "cf" for user tokens
	// when empty.
	ClientID string
	// Lifetime is the time to expiry; zero means the server's
	// AccessTokenLifetime and a negative value gives an already expired
	// token.
	Lifetime time.Duration
	// Scopes replace the scopes the grant would give, when non-nil.
	Scopes []string
	// Issuer replaces the server's issuer, when non-empty.
	Issuer string
	// Forged signs with a key that is not published at /token_keys (the
	// header still names the real key id), so verification must fail.
	Forged bool
	// GrantType is the grant_type claim; "password" for user tokens and
	// "client_credentials" otherwise when empty.
	GrantType string
}

// MintToken mints an access token for the configured user, as the password
// grant through client "cf" would. A negative lifetime gives an expired
// token; zero means the default lifetime.
func (s *Server) MintToken(username string, lifetime time.Duration) (string, error) {
	return s.Mint(Mint{Username: username, Lifetime: lifetime})
}

// MintForgedToken mints a token like MintToken but signed by a different
// key.
func (s *Server) MintForgedToken(username string, lifetime time.Duration) (string, error) {
	return s.Mint(Mint{Username: username, Lifetime: lifetime, Forged: true})
}

// MintTokenWithIssuer mints a token like MintToken but with another iss
// claim.
func (s *Server) MintTokenWithIssuer(username string, lifetime time.Duration, issuer string) (string, error) {
	return s.Mint(Mint{Username: username, Lifetime: lifetime, Issuer: issuer})
}

// RejectedTokens mints, by name, tokens for username that a resource
// server must refuse though each is well formed: "expired" (a minute past
// exp), "forged" (signed by another key) and "other issuer" (iss of
// another UAA).
func (s *Server) RejectedTokens(username string) (map[string]string, error) {
	out := map[string]string{}
	for name, m := range map[string]Mint{
		"expired":      {Username: username, Lifetime: -time.Minute},
		"forged":       {Username: username, Lifetime: time.Hour, Forged: true},
		"other issuer": {Username: username, Lifetime: time.Hour, Issuer: "https://uaa.elsewhere.example.com/oauth/token"},
	} {
		tok, err := s.Mint(m)
		if err != nil {
			return nil, err
		}
		out[name] = tok
	}
	return out, nil
}

// MintClientToken mints a client_credentials token for the configured
// client.
func (s *Server) MintClientToken(clientID string, lifetime time.Duration) (string, error) {
	return s.Mint(Mint{ClientID: clientID, Lifetime: lifetime})
}

// Mint mints an access token as described by m.
func (s *Server) Mint(m Mint) (string, error) {
	var (
		claims *Claims
		err    error
	)
	if m.Username != "" {
		u, ok := s.User(m.Username)
		if !ok {
			return "", fmt.Errorf("uaa: mint: no user %q", m.Username)
		}
		clientID := m.ClientID
		if clientID == "" {
			clientID = "cf"
		}
		c, ok := s.client(clientID)
		if !ok {
			c = Client{ID: clientID}
		}
		grant := m.GrantType
		if grant == "" {
			grant = "password"
		}
		scopes := m.Scopes
		if scopes == nil {
			scopes = userScopes(u, c)
		}
		claims = s.userClaims(u, c, scopes, grant)
	} else {
		c, ok := s.client(m.ClientID)
		if !ok {
			return "", fmt.Errorf("uaa: mint: no client %q", m.ClientID)
		}
		scopes := m.Scopes
		if scopes == nil {
			scopes = c.Authorities
		}
		claims = s.clientClaims(c, scopes)
		if m.GrantType != "" {
			claims.GrantType = m.GrantType
		}
	}
	lifetime := m.Lifetime
	if lifetime == 0 {
		lifetime = s.opts.AccessTokenLifetime
	}
	s.stamp(claims, lifetime)
	if m.Issuer != "" {
		claims.Issuer = m.Issuer
	}
	key := s.key
	if m.Forged {
		key, err = s.forgedKey()
		if err != nil {
			return "", err
		}
	}
	return s.sign(claims, key)
}

func (s *Server) forgedKey() (*rsa.PrivateKey, error) {
	s.forgeOnce.Do(func() {
		s.forgeKey, s.forgeErr = rsa.GenerateKey(rand.Reader, 2048)
	})
	if s.forgeErr != nil {
		return nil, fmt.Errorf("uaa: generate forging key: %w", s.forgeErr)
	}
	return s.forgeKey, nil
}

// userScopes are the user's scopes limited to the client's, if it has any.
func userScopes(u User, c Client) []string {
	if len(c.Scopes) == 0 {
		return append([]string(nil), u.Scopes...)
	}
	return intersect(u.Scopes, c.Scopes)
}

func intersect(a, b []string) []string {
	out := []string{}
	for _, x := range a {
		for _, y := range b {
			if x == y {
				out = append(out, x)
				break
			}
		}
	}
	return out
}

func (s *Server) userClaims(u User, c Client, scopes []string, grant string) *Claims {
	return &Claims{
		Subject:   u.ID,
		UserID:    u.ID,
		UserName:  u.Username,
		Email:     u.Email,
		Origin:    u.Origin,
		ClientID:  c.ID,
		CID:       c.ID,
		AZP:       c.ID,
		Scope:     scopes,
		GrantType: grant,
		RevSig:    randomHex(4),
		Audience:  audience(c.ID, scopes),
		ZoneID:    s.opts.ZoneID,
	}
}

func (s *Server) clientClaims(c Client, scopes []string) *Claims {
	return &Claims{
		Subject:     c.ID,
		ClientID:    c.ID,
		CID:         c.ID,
		AZP:         c.ID,
		Scope:       scopes,
		Authorities: scopes,
		GrantType:   "client_credentials",
		RevSig:      randomHex(4),
		Audience:    audience(c.ID, scopes),
		ZoneID:      s.opts.ZoneID,
	}
}

// stamp sets jti, iat, auth_time, exp and iss.
func (s *Server) stamp(c *Claims, lifetime time.Duration) {
	now := s.opts.Now()
	c.JTI = randomHex(16)
	c.IssuedAt = now.Unix()
	if c.UserID != "" {
		c.AuthTime = now.Unix()
	}
	c.ExpiresAt = now.Add(lifetime).Unix()
	c.Issuer = s.Issuer()
}

// refreshClaims turns access token claims into those of its refresh token.
func (s *Server) refreshClaims(access *Claims) *Claims {
	r := *access
	r.GrantedScopes = access.Scope
	r.Scope = nil
	r.Authorities = nil
	r.Email = ""
	s.stamp(&r, s.opts.RefreshTokenLifetime)
	r.JTI += "-r"
	return &r
}

// audience is UAA's aud: the client id and the resource ids (the part
// before the last dot) of the scopes.
func audience(clientID string, scopes []string) []string {
	aud := []string{}
	add := func(a string) {
		for _, x := range aud {
			if x == a {
				return
			}
		}
		aud = append(aud, a)
	}
	for _, sc := range scopes {
		if i := strings.LastIndex(sc, "."); i > 0 {
			add(sc[:i])
		} else {
			add(sc)
		}
	}
	add(clientID)
	return aud
}

func (s *Server) sign(c *Claims, key *rsa.PrivateKey) (string, error) {
	t := jwt.NewWithClaims(jwt.SigningMethodRS256, c)
	t.Header["kid"] = s.opts.KeyID
	t.Header["jku"] = s.URL() + "/token_keys"
	signed, err := t.SignedString(key)
	if err != nil {
		return "", fmt.Errorf("uaa: sign token: %w", err)
	}
	return signed, nil
}

// parseOwn verifies a token this server signed (signature, expiry, issuer).
func (s *Server) parseOwn(token string) (*Claims, error) {
	claims := &Claims{}
	_, err := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(s.Issuer()),
		jwt.WithTimeFunc(s.opts.Now),
	).ParseWithClaims(token, claims, func(*jwt.Token) (any, error) {
		return &s.key.PublicKey, nil
	})
	if err != nil {
		return nil, fmt.Errorf("uaa: %w: %w", ErrInvalidToken, err)
	}
	return claims, nil
}

// MintCode mints a one-time authorization code for the user and client, as
// GET /oauth/authorize does.
func (s *Server) MintCode(username, clientID string) (string, error) {
	u, ok := s.User(username)
	if !ok {
		return "", fmt.Errorf("uaa: mint code: no user %q", username)
	}
	c, ok := s.client(clientID)
	if !ok {
		return "", fmt.Errorf("uaa: mint code: no client %q", clientID)
	}
	return s.newCode(u, c, userScopes(u, c)), nil
}

func (s *Server) newCode(u User, c Client, scopes []string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	for k, v := range s.codes {
		if now.After(v.expires) {
			delete(s.codes, k)
		}
	}
	value := randomString(10)
	s.codes[value] = code{userID: u.ID, clientID: c.ID, scopes: scopes, expires: now.Add(s.opts.CodeLifetime)}
	return value
}

// takeCode removes and returns a code; ok is false when it is unknown or
// expired. A code is consumed by its first use, successful or not.
func (s *Server) takeCode(value string) (code, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.codes[value]
	if !ok {
		return code{}, false
	}
	delete(s.codes, value)
	if s.opts.Now().After(c.expires) {
		return code{}, false
	}
	return c, true
}

// PendingCodes is the number of issued, unused, unexpired codes.
func (s *Server) PendingCodes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	now := s.opts.Now()
	for _, c := range s.codes {
		if !now.After(c.expires) {
			n++
		}
	}
	return n
}
