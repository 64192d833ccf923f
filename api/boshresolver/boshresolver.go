// Package boshresolver lets BOSH operators capture on the VMs of
// deployments they administer. Users authenticate with an access token of
// the director's UAA (verified: signature, expiry, issuer, and an admin
// scope), with a one-time code the API minted for such a token (OpenSSH
// sends at most 1023 bytes of password, less than most tokens), or with a
// break-glass operator key. The director is asked with the user's own
// token which instances the deployment has.
package boshresolver

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/base32"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// maxCodes bounds the one-time codes held at once.
const maxCodes = 10000

// ErrNotAdmin is returned for a token without an admin scope.
var ErrNotAdmin = errors.New("boshresolver: token has no bosh admin scope (bosh.admin, bosh.<director-uuid>.admin or bosh.teams.<team>.admin)")

// ErrBadCode is returned for an unknown, used or expired one-time code.
var ErrBadCode = errors.New("boshresolver: one-time code is unknown, used or expired")

// ErrTruncatedToken is returned for a password of exactly
// [OpenSSHMaxPassword] bytes that starts like a token: OpenSSH cut it.
var ErrTruncatedToken = errors.New("boshresolver: the password is a UAA token cut at 1023 bytes, as OpenSSH does; use a one-time code (pcap-bosh ssh-code)")

// OpenSSHMaxPassword is the most password bytes OpenSSH's client sends;
// longer ones (most UAA tokens) are cut short.
const OpenSSHMaxPassword = 1023

// codeSuffix marks the name of a user who logged in with a one-time code.
const codeSuffix = " (one-time code)"

// Resolver implements api.Resolver for user name "bosh".
type Resolver struct {
	Director  *director.Client
	UAAURL    string // empty: from the director's /info
	Operators tunnel.KeySet
	// ClientID and ClientSecret are the API's own UAA client, for key users.
	ClientID, ClientSecret string
	AgentPort              int
	CodeTTL                time.Duration
	Now                    func() time.Time
	HTTP                   *http.Client

	mu    sync.Mutex
	uaa   *uaa.Client
	uuid  string
	codes map[string]code
}

type code struct {
	id      api.Identity
	expires time.Time
}

// New builds a resolver from the API's bosh config.
func New(cfg api.BOSHConfig, agentPort int) (*Resolver, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CACertFile != "" {
		pem, err := os.ReadFile(cfg.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("boshresolver: read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("boshresolver: %s holds no certificate", cfg.CACertFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hc := &http.Client{Transport: tr, Timeout: cfg.Timeout}
	r := &Resolver{
		Director: &director.Client{URL: strings.TrimRight(cfg.DirectorURL, "/"), HTTP: hc},
		UAAURL:   strings.TrimRight(cfg.UAAURL, "/"),
		ClientID: cfg.UAAClientID, ClientSecret: cfg.UAAClientSecret,
		AgentPort: agentPort, CodeTTL: cfg.CodeTTL, HTTP: hc,
	}
	if cfg.OperatorKeysFile != "" {
		keys, err := tunnel.LoadAuthorizedKeys(cfg.OperatorKeysFile)
		if err != nil {
			return nil, fmt.Errorf("boshresolver: operator keys: %w", err)
		}
		r.Operators = tunnel.NewKeySet(keys...)
	}
	return r, nil
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Name implements api.Resolver.
func (r *Resolver) Name() string { return "bosh" }

// setup learns the director's UUID and UAA (once it succeeds).
func (r *Resolver) setup(ctx context.Context) (*uaa.Client, string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.uaa != nil {
		return r.uaa, r.uuid, nil
	}
	info, err := r.Director.Info(ctx)
	if err != nil {
		return nil, "", fmt.Errorf("boshresolver: director info: %w", err)
	}
	base := r.UAAURL
	if base == "" {
		if info.UserAuthentication.Type != "uaa" || info.UserAuthentication.Options.URL == "" {
			return nil, "", errors.New("boshresolver: the director does not use UAA")
		}
		base = strings.TrimRight(info.UserAuthentication.Options.URL, "/")
	}
	r.uaa, r.uuid = &uaa.Client{URL: base, HTTP: r.HTTP, Now: r.Now}, info.UUID
	return r.uaa, r.uuid, nil
}

// AuthPassword implements api.Resolver: a token, or a one-time code.
// Refusals the user can act on are [ssh.BannerError]s, so OpenSSH and
// sshdump users read why (the error itself is what the API logs).
func (r *Resolver) AuthPassword(ctx context.Context, password string) (*api.Identity, error) {
	if len(password) == OpenSSHMaxPassword && strings.HasPrefix(password, "eyJ") {
		return nil, banner(ErrTruncatedToken, "")
	}
	if !uaa.LooksLikeToken(password) {
		id, err := r.redeem(password)
		if err != nil {
			return nil, banner(err, "get a new one with: pcap-bosh -e ENVIRONMENT ssh-code")
		}
		return id, nil
	}
	u, uuid, err := r.setup(ctx)
	if err != nil {
		return nil, err
	}
	claims, err := u.Verify(ctx, password)
	switch {
	case errors.Is(err, uaa.ErrExpired), errors.Is(err, uaa.ErrInvalidToken):
		return nil, banner(err, "log in again: bosh -e ENVIRONMENT log-in")
	case err != nil:
		return nil, err
	}
	if !isAdmin(claims.Scope, uuid) {
		return nil, banner(ErrNotAdmin, "")
	}
	token := strings.TrimPrefix(strings.TrimPrefix(password, "bearer "), "Bearer ")
	return &api.Identity{Name: claims.Who(), Resolver: r.Name(), Token: token, Scopes: claims.Scope}, nil
}

// banner wraps a refusal so that the ssh client shows its reason (and a
// hint). Messages never hold the password.
func banner(err error, hint string) error {
	msg := "pcap-api: refused: " + strings.TrimPrefix(strings.TrimPrefix(err.Error(), "boshresolver: "), "uaa: ")
	if hint != "" {
		msg += "; " + hint
	}
	return &ssh.BannerError{Err: err, Message: msg + "\n"}
}

// isAdmin reports whether scopes may administer some deployment.
func isAdmin(scopes []string, uuid string) bool {
	for _, s := range scopes {
		if s == "bosh.admin" || (uuid != "" && s == "bosh."+uuid+".admin") ||
			(strings.HasPrefix(s, "bosh.teams.") && strings.HasSuffix(s, ".admin")) {
			return true
		}
	}
	return false
}

// AuthKey implements api.Resolver: break-glass operator keys, which reach
// the director through the API's own client.
func (r *Resolver) AuthKey(ctx context.Context, key ssh.PublicKey) (*api.Identity, error) {
	if len(r.Operators) == 0 {
		return nil, api.ErrNoAuth
	}
	if err := r.Operators.Check(key); err != nil {
		return nil, err
	}
	u, _, err := r.setup(ctx)
	if err != nil {
		return nil, err
	}
	t, err := u.Grant(ctx, r.ClientID, r.ClientSecret, url.Values{"grant_type": {"client_credentials"}})
	if err != nil {
		return nil, fmt.Errorf("boshresolver: token for key user: %w", err)
	}
	return &api.Identity{Name: "key:" + tunnel.Fingerprint(key), Resolver: r.Name(), Token: t.AccessToken, Scopes: []string{"bosh.admin"}}, nil
}

// MintCode returns a one-time code bound to id (a token-authenticated
// user), valid for CodeTTL, for OpenSSH and sshdump users.
func (r *Resolver) MintCode(id *api.Identity) (string, error) {
	if id.Token == "" || strings.HasPrefix(id.Name, "key:") {
		return "", errors.New("one-time codes are for token users; log in with a token")
	}
	if strings.HasSuffix(id.Name, codeSuffix) {
		// A code is one session: it must not extend itself.
		return "", errors.New("a one-time code cannot mint another; log in with a token")
	}
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	c := strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b))
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for k, v := range r.codes {
		if now.After(v.expires) {
			delete(r.codes, k)
		}
	}
	if len(r.codes) >= maxCodes {
		return "", errors.New("too many one-time codes outstanding; try again later")
	}
	if r.codes == nil {
		r.codes = make(map[string]code)
	}
	r.codes[c] = code{id: *id, expires: now.Add(r.CodeTTL)}
	return c, nil
}

// redeem uses up a one-time code.
func (r *Resolver) redeem(c string) (*api.Identity, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for k, v := range r.codes {
		if subtle.ConstantTimeCompare([]byte(k), []byte(c)) == 1 {
			delete(r.codes, k)
			if r.now().After(v.expires) {
				return nil, ErrBadCode
			}
			id := v.id
			id.Name += codeSuffix
			return &id, nil
		}
	}
	return nil, ErrBadCode
}

// Resolve implements api.Resolver.
func (r *Resolver) Resolve(ctx context.Context, id *api.Identity, req capturecmd.Request) ([]api.Target, []api.Skipped, error) {
	switch {
	case req.App != "" || req.Instances != nil:
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "bosh captures take -d DEPLOYMENT and GROUP[/ID] targets, not --app or --instance")
	case req.Deployment == "":
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "-d DEPLOYMENT is required")
	}
	_, uuid, err := r.setup(ctx)
	if err != nil {
		return nil, nil, tunnel.Reject(tunnel.CodeInternal, err.Error())
	}
	if err := r.authorize(ctx, id, uuid, req.Deployment); err != nil {
		return nil, nil, err
	}
	all, err := r.Director.Instances(ctx, id.Token, req.Deployment)
	switch {
	case errors.Is(err, director.ErrNotFound):
		return nil, nil, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("deployment %q not found", req.Deployment))
	case errors.Is(err, director.ErrUnauthorized):
		return nil, nil, tunnel.Reject(tunnel.CodeNotAllowed, err.Error())
	case err != nil:
		return nil, nil, tunnel.Reject(tunnel.CodeInternal, err.Error())
	}
	picked, skippedVMs, err := director.Select(all, req.Targets)
	if err != nil {
		return nil, nil, tunnel.Reject(tunnel.CodeTargetNotFound, err.Error())
	}
	var targets []api.Target
	for _, in := range picked {
		targets = append(targets, api.Target{
			Name:        in.Name(),
			Agent:       net.JoinHostPort(in.IPs[0], strconv.Itoa(r.AgentPort)),
			Capture:     tunnel.Target{Kind: tunnel.TargetHost},
			Description: fmt.Sprintf("deployment %s, %s/%d, %s", req.Deployment, in.Job, in.Index, in.IPs[0]),
		})
	}
	var skipped []api.Skipped
	for _, s := range skippedVMs {
		skipped = append(skipped, api.Skipped{Name: s.Name, Reason: s.Reason})
	}
	return targets, skipped, nil
}

// authorize checks the token may administer the deployment: bosh.admin,
// the director's own admin scope, or admin of a team owning it. A
// deployment the token cannot see is asked for directly, so that one that
// exists (another team's) is refused as not allowed, as the director
// itself answers, and only a missing one is "not found".
func (r *Resolver) authorize(ctx context.Context, id *api.Identity, uuid, deployment string) error {
	for _, s := range id.Scopes {
		if s == "bosh.admin" || s == "bosh."+uuid+".admin" {
			return nil
		}
	}
	notAdmin := tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("you are not an admin of deployment %q (needs bosh.admin or admin of a team owning it)", deployment))
	ds, err := r.Director.Deployments(ctx, id.Token)
	switch {
	case errors.Is(err, director.ErrUnauthorized):
		return tunnel.Reject(tunnel.CodeNotAllowed, err.Error())
	case err != nil:
		return tunnel.Reject(tunnel.CodeInternal, err.Error())
	}
	for _, d := range ds {
		if d.Name != deployment {
			continue
		}
		for _, team := range d.Teams {
			for _, s := range id.Scopes {
				if s == "bosh.teams."+team+".admin" {
					return nil
				}
			}
		}
		return notAdmin
	}
	_, err = r.Director.Instances(ctx, id.Token, deployment)
	switch {
	case errors.Is(err, director.ErrNotFound):
		return tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("deployment %q not found", deployment))
	case err != nil && !errors.Is(err, director.ErrUnauthorized):
		return tunnel.Reject(tunnel.CodeInternal, err.Error())
	}
	return notAdmin
}
