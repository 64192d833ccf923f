// Package uaa is a protocol-faithful fake of Cloud Foundry's UAA for
// integration tests and the demo: real RS256-signed JWTs with UAA's claims,
// the JWKS at /token_keys, the /login and /info documents that the cf and
// bosh CLIs read, /oauth/token with the password, refresh_token,
// client_credentials and authorization_code grants, and /oauth/authorize
// minting the one-time codes that `cf ssh-code` prints.
//
// A Server is an http.Handler. Start serves it on a TCP address; a bare
// handler needs Options.URL so that it knows its issuer.
package uaa

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/fakeid"
	"code.cloudfoundry.org/pcap/integration/fakes/internal/listen"
)

// User is a UAA user.
type User struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// ID is the user GUID (sub and user_id claims); derived from Username
	// when empty.
	ID string `json:"id,omitempty"`
	// Scopes are the user's group memberships, e.g. "openid",
	// "cloud_controller.read", "bosh.admin".
	Scopes []string `json:"scopes"`
	// Origin is the identity zone origin; "uaa" when empty.
	Origin string `json:"origin,omitempty"`
	// Email defaults to Username.
	Email string `json:"email,omitempty"`
}

// Client is an OAuth client registered with UAA.
type Client struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
	// Scopes limit what user tokens issued through this client carry (the
	// intersection with the user's scopes); empty means no limit.
	Scopes []string `json:"scopes,omitempty"`
	// Authorities are the scopes of this client's own client_credentials
	// tokens.
	Authorities []string `json:"authorities,omitempty"`
	// AuthorizedGrantTypes lists "password", "refresh_token",
	// "client_credentials", "authorization_code".
	AuthorizedGrantTypes []string `json:"authorized_grant_types"`
	// RedirectURI is where /oauth/authorize sends the code; relative URIs
	// are resolved against the UAA URL. "/login" when empty.
	RedirectURI string `json:"redirect_uri,omitempty"`
}

// DefaultClients are the clients a Server has when Options.Clients is nil:
// "cf" and "bosh_cli" (public, password and refresh_token grants, as the
// CLIs use them) and "ssh-proxy" (secret "ssh-proxy-secret",
// authorization_code grant, redirect /login, scopes openid and
// cloud_controller.read, .write and .admin, so that its tokens lack
// admin_read_only and global_auditor), as in a cf-deployment.
func DefaultClients() []Client {
	return []Client{
		{ID: "cf", AuthorizedGrantTypes: []string{"password", "refresh_token"}},
		{ID: "bosh_cli", AuthorizedGrantTypes: []string{"password", "refresh_token"}},
		{ID: "ssh-proxy", Secret: "ssh-proxy-secret", AuthorizedGrantTypes: []string{"authorization_code"}, RedirectURI: "/login",
			Scopes: []string{"openid", "cloud_controller.read", "cloud_controller.write", "cloud_controller.admin"}},
	}
}

// Options configure a Server. The zero value of each field has a sensible
// default.
type Options struct {
	// URL is the base URL the server is reached at (issuer is
	// URL+"/oauth/token"). Start sets it from the listener.
	URL string
	// Users and Clients are the accounts. Clients nil means
	// DefaultClients().
	Users   []User
	Clients []Client
	// TLS, when set, makes Start serve HTTPS (the bosh CLI only talks to
	// UAA over HTTPS).
	TLS *tls.Config
	// Now is the clock for iat/exp and code expiry; time.Now when nil.
	Now func() time.Time
	// AccessTokenLifetime defaults to 12h, RefreshTokenLifetime to 30 days,
	// CodeLifetime to 5 minutes (UAA's defaults).
	AccessTokenLifetime  time.Duration
	RefreshTokenLifetime time.Duration
	CodeLifetime         time.Duration
	// Key signs tokens; a 2048-bit key is generated when nil. KeyID
	// defaults to "key-1".
	Key   *rsa.PrivateKey
	KeyID string
	// ZoneID defaults to "uaa".
	ZoneID string
	// Prompts is the "prompts" object of /login; username and password
	// when nil. (The bosh CLI asks every prompt on log-in, in order of type
	// "text" then "password".)
	Prompts map[string][]string
	// Version is app.version in /login; "78.0.0" when empty.
	Version string
}

// Server is a fake UAA. It is safe for concurrent use.
type Server struct {
	opts      Options
	key       *rsa.PrivateKey
	forgeOnce sync.Once
	forgeKey  *rsa.PrivateKey
	forgeErr  error
	mux       *http.ServeMux

	mu            sync.Mutex
	codes         map[string]code
	grants        map[string]int // tokens issued, by grant type
	listen.Served                // ServeHTTP, Requests, Start, StartOn, Close, URL
}

// Grants returns how many tokens /oauth/token has issued with grantType
// ("client_credentials", "authorization_code", …), so that tests can
// assert what a client made UAA do.
func (s *Server) Grants(grantType string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.grants[grantType]
}

func (s *Server) countGrant(grantType string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.grants == nil {
		s.grants = make(map[string]int)
	}
	s.grants[grantType]++
}

type code struct {
	userID   string
	clientID string
	scopes   []string
	expires  time.Time
}

// New returns a fake UAA configured by opts.
func New(opts Options) (*Server, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.AccessTokenLifetime == 0 {
		opts.AccessTokenLifetime = 12 * time.Hour
	}
	if opts.RefreshTokenLifetime == 0 {
		opts.RefreshTokenLifetime = 30 * 24 * time.Hour
	}
	if opts.CodeLifetime == 0 {
		opts.CodeLifetime = 5 * time.Minute
	}
	if opts.KeyID == "" {
		opts.KeyID = "key-1"
	}
	if opts.ZoneID == "" {
		opts.ZoneID = "uaa"
	}
	if opts.Version == "" {
		opts.Version = "78.0.0"
	}
	if opts.Prompts == nil {
		opts.Prompts = map[string][]string{
			"username": {"text", "Email"},
			"password": {"password", "Password"},
		}
	}
	if opts.Clients == nil {
		opts.Clients = DefaultClients()
	}
	users := make([]User, len(opts.Users))
	seen := map[string]bool{}
	for i, u := range opts.Users {
		if u.Username == "" {
			return nil, fmt.Errorf("uaa: user %d: empty username", i)
		}
		if seen[strings.ToLower(u.Username)] {
			return nil, fmt.Errorf("uaa: duplicate user %q", u.Username)
		}
		seen[strings.ToLower(u.Username)] = true
		if u.ID == "" {
			u.ID = fakeid.GUID("user:" + u.Username)
		}
		if u.Origin == "" {
			u.Origin = "uaa"
		}
		if u.Email == "" {
			u.Email = u.Username
		}
		users[i] = u
	}
	opts.Users = users
	key := opts.Key
	if key == nil {
		var err error
		key, err = rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			return nil, fmt.Errorf("uaa: generate signing key: %w", err)
		}
	}
	s := &Server{
		opts: opts,
		key:  key,

		codes: map[string]code{},
	}
	s.routes()
	s.Served.Init("uaa", s.mux, opts.TLS, strings.TrimRight(opts.URL, "/"))
	return s, nil
}

// StartForTest makes a server with opts, serves it on 127.0.0.1:0 and
// closes it when the test ends; an error fails the test.
func StartForTest(t testing.TB, opts Options) *Server {
	t.Helper()
	return listen.StartForTest(t, New, opts)
}

// Issuer is the iss claim of the tokens this server mints.
func (s *Server) Issuer() string { return s.URL() + "/oauth/token" }

// PublicKey is the key that signs tokens (as published at /token_keys).
func (s *Server) PublicKey() *rsa.PublicKey { return &s.key.PublicKey }

// KeyID is the kid of the signing key.
func (s *Server) KeyID() string { return s.opts.KeyID }

// Verifier returns a Verifier for this server that fetches keys over HTTP
// with client (nil: http.DefaultClient) and shares this server's clock.
func (s *Server) Verifier(client *http.Client) *Verifier {
	return NewVerifier(VerifierOptions{URL: s.URL(), HTTPClient: client, Now: s.opts.Now})
}

// User returns the configured user with this username (case-insensitive).
func (s *Server) User(username string) (User, bool) {
	for _, u := range s.opts.Users {
		if strings.EqualFold(u.Username, username) {
			return u, true
		}
	}
	return User{}, false
}

func (s *Server) userByID(id string) (User, bool) {
	for _, u := range s.opts.Users {
		if u.ID == id {
			return u, true
		}
	}
	return User{}, false
}

func (s *Server) client(id string) (Client, bool) {
	for _, c := range s.opts.Clients {
		if c.ID == id {
			return c, true
		}
	}
	return Client{}, false
}

func (c Client) allows(grant string) bool {
	for _, g := range c.AuthorizedGrantTypes {
		if g == grant {
			return true
		}
	}
	return false
}

// randomString returns n (at most 26) random characters from [A-Z2-7].
func randomString(n int) string { return rand.Text()[:n] }

// randomHex returns 2n random hex digits.
func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b) // never returns an error (crypto/rand docs)
	return hex.EncodeToString(b)
}
