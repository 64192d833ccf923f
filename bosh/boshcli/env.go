package boshcli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/bosh/uaa"
)

// boshConfig is the part of the bosh CLI's ~/.bosh/config pcap-bosh reads.
// It is never written back.
type boshConfig struct {
	Environments []struct {
		URL          string `yaml:"url"`
		Alias        string `yaml:"alias"`
		CACert       string `yaml:"ca_cert"`
		AccessToken  string `yaml:"access_token"`
		RefreshToken string `yaml:"refresh_token"`
	} `yaml:"environments"`
}

// Env is a resolved BOSH environment with a way to get a token.
type Env struct {
	URL      string
	HTTP     *http.Client
	Director *director.Client

	access, refresh      string
	client, clientSecret string
	now                  func() time.Time
}

// EnvOptions say how to find the environment, like the bosh CLI does.
type EnvOptions struct {
	Environment  string // alias or URL (-e, BOSH_ENVIRONMENT)
	ConfigPath   string // --config, BOSH_CONFIG (default ~/.bosh/config)
	CACert       string // path or PEM (--ca-cert, BOSH_CA_CERT)
	Client       string // BOSH_CLIENT
	ClientSecret string // BOSH_CLIENT_SECRET
	Now          func() time.Time
	// DialContext makes the connections to the director and its UAA
	// (BOSH_ALL_PROXY); nil dials directly.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// ResolveEnv finds the environment and its credentials.
func ResolveEnv(o EnvOptions) (*Env, error) {
	if o.Environment == "" {
		return nil, errors.New("no environment: give -e ALIAS|URL or set BOSH_ENVIRONMENT")
	}
	e := &Env{client: o.Client, clientSecret: o.ClientSecret, now: o.Now}
	if e.now == nil {
		e.now = time.Now
	}
	caCert := o.CACert
	path := o.ConfigPath
	if path == "" {
		home, err := os.UserHomeDir()
		if err == nil {
			path = filepath.Join(home, ".bosh", "config")
		}
	}
	var cfg boshConfig
	if b, err := os.ReadFile(path); err == nil {
		if err := yaml.Unmarshal(b, &cfg); err != nil {
			return nil, fmt.Errorf("read bosh config %s: %w", path, err)
		}
	} else if !errors.Is(err, os.ErrNotExist) || o.ConfigPath != "" {
		return nil, fmt.Errorf("read bosh config: %w", err)
	}
	found := false
	for _, env := range cfg.Environments {
		if env.Alias == o.Environment || strings.TrimRight(env.URL, "/") == strings.TrimRight(o.Environment, "/") {
			e.URL, found = env.URL, true
			if caCert == "" {
				caCert = env.CACert
			}
			e.access, e.refresh = env.AccessToken, env.RefreshToken
			break
		}
	}
	if !found {
		if !strings.Contains(o.Environment, "://") {
			return nil, fmt.Errorf("environment %q is not in %s (bosh alias-env, or give its URL)", o.Environment, path)
		}
		e.URL = o.Environment
	}
	if e.client == "" && e.access == "" {
		return nil, fmt.Errorf("not logged in to %s: run bosh log-in, or set BOSH_CLIENT and BOSH_CLIENT_SECRET", e.URL)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if o.DialContext != nil {
		tr.DialContext = o.DialContext
	}
	if caCert != "" {
		pem := []byte(caCert)
		if !strings.Contains(caCert, "-----BEGIN") {
			b, err := os.ReadFile(caCert)
			if err != nil {
				return nil, fmt.Errorf("read CA certificate: %w", err)
			}
			pem = b
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, errors.New("the CA certificate holds no certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	e.HTTP = &http.Client{Transport: tr, Timeout: 30 * time.Second}
	e.Director = &director.Client{URL: e.URL, HTTP: e.HTTP}
	return e, nil
}

// Token returns an access token: by client credentials when a client is
// set, else the config's token, refreshed (in memory only) when it
// expires within a minute.
func (e *Env) Token(ctx context.Context) (string, error) {
	if e.client == "" && e.access != "" && !expiresSoon(e.access, e.now()) {
		return e.access, nil
	}
	info, err := e.Director.Info(ctx)
	if err != nil {
		return "", err
	}
	u := &uaa.Client{URL: info.UserAuthentication.Options.URL, HTTP: e.HTTP}
	if u.URL == "" {
		return "", errors.New("the director names no UAA")
	}
	var t *uaa.Token
	if e.client != "" {
		t, err = u.Grant(ctx, e.client, e.clientSecret, url.Values{"grant_type": {"client_credentials"}})
	} else {
		if e.refresh == "" {
			return "", errors.New("the access token has expired and there is no refresh token: run bosh log-in")
		}
		t, err = u.Grant(ctx, "bosh_cli", "", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {e.refresh}})
	}
	if err != nil {
		return "", err
	}
	e.access = t.AccessToken
	if t.RefreshToken != "" {
		e.refresh = t.RefreshToken
	}
	return e.access, nil
}

// readClaims reads the claims of pcap-bosh's own token WITHOUT verifying
// its signature: pcap-bosh only looks at the token it holds (from the bosh
// CLI's config or UAA's answer) to see when it expires and, after pcap-api
// refused it, to explain why. Nothing is granted on these claims: pcap-api
// verifies every token it is given.
func readClaims(token string) (*uaa.Claims, bool) {
	var c uaa.Claims
	if _, _, err := jwt.NewParser().ParseUnverified(token, &c); err != nil {
		return nil, false
	}
	return &c, true
}

// expiresSoon reads a token's expiry without verifying it (see readClaims)
// and reports whether it ends within a minute, or has no expiry.
func expiresSoon(token string, now time.Time) bool {
	c, ok := readClaims(token)
	if !ok || c.ExpiresAt == nil {
		return true
	}
	return c.ExpiresAt.Before(now.Add(time.Minute))
}

// Diagnose says why pcap-api would refuse token, from its claims and the
// director's /info: expired, issued by another UAA than the director's,
// or without an admin scope. It never includes the token.
func (e *Env) Diagnose(ctx context.Context, token string) string {
	c, ok := readClaims(token)
	if !ok {
		return "the access token is not a UAA token: run bosh log-in"
	}
	who := c.UserName
	if who == "" {
		who = "client " + c.ClientID
	}
	if c.ExpiresAt != nil && c.ExpiresAt.Before(e.now()) {
		return fmt.Sprintf("the token of %s expired at %s: run bosh log-in", who, c.ExpiresAt.UTC().Format(time.RFC3339))
	}
	info, err := e.Director.Info(ctx)
	if err != nil {
		return fmt.Sprintf("the token of %s was refused, and the director cannot be asked why: %v", who, err)
	}
	base := strings.TrimRight(info.UserAuthentication.Options.URL, "/")
	if want := base + "/oauth/token"; c.Issuer != want {
		return fmt.Sprintf("the token of %s was issued by %s, not by the UAA of director %s (%s): log in to this director with bosh log-in", who, c.Issuer, info.Name, want)
	}
	u := &uaa.Client{URL: base, HTTP: e.HTTP, Now: e.now}
	if _, err := u.Verify(ctx, token); errors.Is(err, uaa.ErrExpired) || errors.Is(err, uaa.ErrInvalidToken) {
		return fmt.Sprintf("the token of %s is refused by the UAA of director %s: %s: run bosh log-in", who, info.Name, strings.TrimPrefix(err.Error(), "uaa: "))
	}
	for _, s := range c.Scope {
		if s == "bosh.admin" || s == "bosh."+info.UUID+".admin" || (strings.HasPrefix(s, "bosh.teams.") && strings.HasSuffix(s, ".admin")) {
			return fmt.Sprintf("the token of %s is for this director and has an admin scope; is pcap-api set up for director %s?", who, info.Name)
		}
	}
	return fmt.Sprintf("%s has no bosh admin scope (bosh.admin, bosh.%s.admin or bosh.teams.<team>.admin), only: %s", who, info.UUID, strings.Join(c.Scope, " "))
}
