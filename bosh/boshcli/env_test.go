package boshcli

import (
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TestExpiresSoon: pcap-bosh reads its own token's expiry without
// verifying it (any signature, any key) and refreshes a token that ends
// within a minute, has no expiry, or is no JWT at all.
func TestExpiresSoon(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	sign := func(claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte("a key pcap-bosh never sees"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		token string
		soon  bool
	}{
		{"an hour left", sign(jwt.MapClaims{"exp": now.Add(time.Hour).Unix(), "user_name": "admin"}), false},
		{"61 seconds left", sign(jwt.MapClaims{"exp": now.Add(61 * time.Second).Unix()}), false},
		{"30 seconds left", sign(jwt.MapClaims{"exp": now.Add(30 * time.Second).Unix()}), true},
		{"expired", sign(jwt.MapClaims{"exp": now.Add(-time.Hour).Unix()}), true},
		{"no expiry", sign(jwt.MapClaims{"user_name": "admin"}), true},
		{"not a JWT", "abc.def", true},
		{"claims not JSON", "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := expiresSoon(tc.token, now); got != tc.soon {
				t.Errorf("expiresSoon = %v, want %v", got, tc.soon)
			}
		})
	}
	c, ok := readClaims(sign(jwt.MapClaims{"user_name": "admin", "iss": "https://uaa/oauth/token", "scope": []string{"bosh.admin"}}))
	if !ok || c.UserName != "admin" || c.Issuer != "https://uaa/oauth/token" || !c.HasScope("bosh.admin") {
		t.Errorf("readClaims = %+v, %v", c, ok)
	}
}
