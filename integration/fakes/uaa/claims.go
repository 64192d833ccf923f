package uaa

import (
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are the claims of a UAA access (or refresh) token, with UAA's JSON
// names. Refresh tokens carry GrantedScopes instead of Scope and a JTI
// ending in "-r".
type Claims struct {
	JTI           string   `json:"jti"`
	Subject       string   `json:"sub"`
	UserID        string   `json:"user_id,omitempty"`
	UserName      string   `json:"user_name,omitempty"`
	Email         string   `json:"email,omitempty"`
	Origin        string   `json:"origin,omitempty"`
	ClientID      string   `json:"client_id"`
	CID           string   `json:"cid"`
	AZP           string   `json:"azp,omitempty"`
	Scope         []string `json:"scope,omitempty"`
	GrantedScopes []string `json:"granted_scopes,omitempty"`
	Authorities   []string `json:"authorities,omitempty"`
	GrantType     string   `json:"grant_type"`
	AuthTime      int64    `json:"auth_time,omitempty"`
	RevSig        string   `json:"rev_sig,omitempty"`
	Issuer        string   `json:"iss"`
	Audience      []string `json:"aud"`
	IssuedAt      int64    `json:"iat"`
	ExpiresAt     int64    `json:"exp"`
	ZoneID        string   `json:"zid"`
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

// IsUser reports whether the token was issued to a user (rather than to a
// client acting for itself).
func (c *Claims) IsUser() bool { return c.UserID != "" }

// IsRefresh reports whether these are the claims of a refresh token.
func (c *Claims) IsRefresh() bool {
	return len(c.JTI) > 2 && c.JTI[len(c.JTI)-2:] == "-r"
}

// GetExpirationTime implements jwt.Claims.
func (c *Claims) GetExpirationTime() (*jwt.NumericDate, error) {
	if c.ExpiresAt == 0 {
		return nil, nil
	}
	return jwt.NewNumericDate(time.Unix(c.ExpiresAt, 0)), nil
}

// GetIssuedAt implements jwt.Claims.
func (c *Claims) GetIssuedAt() (*jwt.NumericDate, error) {
	if c.IssuedAt == 0 {
		return nil, nil
	}
	return jwt.NewNumericDate(time.Unix(c.IssuedAt, 0)), nil
}

// GetNotBefore implements jwt.Claims; UAA tokens have no nbf.
func (c *Claims) GetNotBefore() (*jwt.NumericDate, error) { return nil, nil }

// GetIssuer implements jwt.Claims.
func (c *Claims) GetIssuer() (string, error) { return c.Issuer, nil }

// GetSubject implements jwt.Claims.
func (c *Claims) GetSubject() (string, error) { return c.Subject, nil }

// GetAudience implements jwt.Claims.
func (c *Claims) GetAudience() (jwt.ClaimStrings, error) { return c.Audience, nil }
