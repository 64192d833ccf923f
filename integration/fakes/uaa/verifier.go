package uaa

import (
	"context"
	"crypto/rsa"
	"encoding/base64"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// ErrInvalidToken is wrapped by every error Verify returns for a token that
// is malformed, unsigned, signed by an unknown key, expired or from another
// issuer.
var ErrInvalidToken = errors.New("invalid token")

// VerifierOptions configure a Verifier.
type VerifierOptions struct {
	// URL is the UAA base URL: keys come from URL+"/token_keys" and the
	// expected issuer is URL+"/oauth/token".
	URL string
	// Issuer overrides the expected issuer.
	Issuer string
	// HTTPClient fetches the keys; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for expiry checks; nil means time.Now.
	Now func() time.Time
}

// Verifier checks UAA access tokens the way a resource server does: RS256
// signature against the keys UAA publishes at /token_keys (fetched on first
// use and again when a token names an unknown key id), expiry and issuer.
// It is safe for concurrent use.
type Verifier struct {
	opts VerifierOptions

	mu   sync.Mutex
	keys map[string]*rsa.PublicKey
}

// NewVerifier returns a Verifier for the UAA at opts.URL.
func NewVerifier(opts VerifierOptions) *Verifier {
	opts.URL = strings.TrimRight(opts.URL, "/")
	if opts.Issuer == "" {
		opts.Issuer = opts.URL + "/oauth/token"
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Verifier{opts: opts}
}

// Verify parses and checks token (without the "bearer " prefix) and returns
// its claims. Refresh tokens are rejected.
func (v *Verifier) Verify(ctx context.Context, token string) (*Claims, error) {
	claims := &Claims{}
	parser := jwt.NewParser(
		jwt.WithValidMethods([]string{"RS256"}),
		jwt.WithExpirationRequired(),
		jwt.WithIssuer(v.opts.Issuer),
		jwt.WithTimeFunc(v.opts.Now),
	)
	var fetchErr error
	_, err := parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		key, err := v.key(ctx, kid)
		if err != nil {
			fetchErr = err
			return nil, err
		}
		return key, nil
	})
	if fetchErr != nil {
		return nil, fmt.Errorf("uaa: verify token: %w", fetchErr)
	}
	if err != nil {
		return nil, fmt.Errorf("uaa: verify token: %w: %w", ErrInvalidToken, err)
	}
	if claims.IsRefresh() {
		return nil, fmt.Errorf("uaa: verify token: %w: refresh token used as access token", ErrInvalidToken)
	}
	return claims, nil
}

func (v *Verifier) key(ctx context.Context, kid string) (*rsa.PublicKey, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if k, ok := v.keys[kid]; ok {
		return k, nil
	}
	keys, err := v.fetch(ctx)
	if err != nil {
		return nil, err
	}
	v.keys = keys
	if k, ok := keys[kid]; ok {
		return k, nil
	}
	if kid == "" && len(keys) == 1 {
		for _, k := range keys {
			return k, nil
		}
	}
	return nil, fmt.Errorf("%w: unknown key id %q", ErrInvalidToken, kid)
}

func (v *Verifier) fetch(ctx context.Context) (map[string]*rsa.PublicKey, error) {
	var set struct {
		Keys []JWK `json:"keys"`
	}
	hj := httpjson.Client{Name: "UAA", HTTP: v.opts.HTTPClient, MaxBody: 1 << 20}
	if err := hj.Get(ctx, v.opts.URL+"/token_keys", "", &set); err != nil {
		return nil, fmt.Errorf("uaa: fetch token keys: %w", err)
	}
	keys := make(map[string]*rsa.PublicKey, len(set.Keys))
	for _, k := range set.Keys {
		pub, err := k.PublicKey()
		if err != nil {
			return nil, err
		}
		keys[k.KeyID] = pub
	}
	return keys, nil
}

// JWK is one key of UAA's /token_keys answer (and the whole /token_key
// answer).
type JWK struct {
	KeyType   string `json:"kty"`
	Algorithm string `json:"alg"`
	Use       string `json:"use"`
	KeyID     string `json:"kid"`
	Value     string `json:"value"`
	N         string `json:"n"`
	E         string `json:"e"`
}

// PublicKey decodes the RSA public key from N and E.
func (k JWK) PublicKey() (*rsa.PublicKey, error) {
	if k.KeyType != "RSA" {
		return nil, fmt.Errorf("uaa: key %q: unsupported key type %q", k.KeyID, k.KeyType)
	}
	n, err := base64.RawURLEncoding.DecodeString(k.N)
	if err != nil {
		return nil, fmt.Errorf("uaa: key %q: modulus: %w", k.KeyID, err)
	}
	e, err := base64.RawURLEncoding.DecodeString(k.E)
	if err != nil {
		return nil, fmt.Errorf("uaa: key %q: exponent: %w", k.KeyID, err)
	}
	exp := new(big.Int).SetBytes(e)
	if !exp.IsInt64() || exp.Int64() < 3 || exp.Int64() > 1<<31-1 {
		return nil, fmt.Errorf("uaa: key %q: bad exponent", k.KeyID)
	}
	return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(exp.Int64())}, nil
}
