// Package boshresolver lets BOSH operators capture on the VMs of
// deployments they administer. Users authenticate with an access token of
// the director's UAA (verified: signature, expiry, issuer, and an admin
// scope), with a one-time authorization code of that UAA (OpenSSH sends at
// most 1023 bytes of password, less than most tokens; `pcap-bosh ssh-code`
// gets one as `cf ssh-code` does), which the API exchanges for the user's
// token, or with a break-glass operator key. The API keeps no login state:
// UAA keeps a code single use, whichever API instance receives it. The
// director is asked with the user's own token which instances the
// deployment has.
//
// Foundation admins (bosh.admin, bosh.<director-uuid>.admin, operator
// keys) may add the instances of one CF app to a capture (--app GUID next
// to instance groups), to see both sides of a request in one file. The
// app is looked up with pcap-api's own Cloud Controller client
// (bosh.cf_client), never with the user's bosh token, and each such
// capture is audited ("bosh-app-capture").
package boshresolver

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// ErrNotAdmin is returned for a token without an admin scope.
var ErrNotAdmin = errors.New("boshresolver: token has no bosh admin scope (bosh.admin, bosh.<director-uuid>.admin or bosh.teams.<team>.admin)")

// ErrBadCode is returned for a one-time code UAA refused: unknown, used,
// expired or issued for another client.
var ErrBadCode = errors.New("boshresolver: one-time code is unknown, used or expired")

// ErrNoCodes is returned for a one-time code when the API has no code
// client configured (bosh.code_client_secret).
var ErrNoCodes = errors.New("boshresolver: this pcap-api takes no one-time codes (bosh.code_client_secret is not set); log in with a token")

// ErrTruncatedToken is returned for a password of exactly
// [OpenSSHMaxPassword] bytes that starts like a token, from an OpenSSH
// client: OpenSSH cut it.
var ErrTruncatedToken = errors.New("boshresolver: the password is a UAA token cut at 1023 bytes, as OpenSSH does; use a one-time code (pcap-bosh ssh-code)")

// OpenSSHMaxPassword is the most password bytes OpenSSH's client sends;
// longer ones (most UAA tokens) are cut short.
const OpenSSHMaxPassword = 1023

// ErrNoCFClient is the refusal of --app by a pcap-api without a Cloud
// Controller client.
var ErrNoCFClient = errors.New("boshresolver: this pcap-api has no Cloud Controller client (bosh.cf_client), so it cannot capture app instances")

// AppFinder finds the instances of a CF app as capture targets (named
// TYPE/INDEX, as cf captures name them); *cfresolver.Apps is one. want
// picks indexes (nil: all); ptype "" is web. Refusals are
// *tunnel.RejectErrors.
type AppFinder interface {
	Targets(ctx context.Context, appGUID, ptype string, want []int) ([]api.Target, []api.Skipped, error)
}

// Resolver implements api.Resolver for user name "bosh".
type Resolver struct {
	Director  *director.Client
	UAAURL    string // empty: from the director's /info
	Operators tunnel.KeySet
	// ClientID and ClientSecret are the API's own UAA client, for key users.
	ClientID, ClientSecret string
	// CodeClientID and CodeClientSecret are the UAA client one-time codes
	// are issued for; the API exchanges codes with them.
	CodeClientID, CodeClientSecret string
	AgentPort                      int
	Now                            func() time.Time
	HTTP                           *http.Client
	// TokenAudiences are the audiences a token must carry one of
	// (["bosh_cli", "bosh"] when empty).
	TokenAudiences []string
	// Apps looks up the app of --app with pcap-api's own Cloud Controller
	// client; nil refuses --app.
	Apps AppFinder

	setupMu sync.Mutex // held while learning the director's UAA (HTTP)
	mu      sync.Mutex // guards the fields below; never held across HTTP
	uaa     *uaa.Client
	uuid    string
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
		CodeClientID: cfg.CodeClientID, CodeClientSecret: cfg.CodeClientSecret,
		AgentPort: agentPort, HTTP: hc, TokenAudiences: cfg.TokenAudiences,
	}
	if cfg.OperatorKeysFile != "" {
		keys, err := tunnel.LoadAuthorizedKeys(cfg.OperatorKeysFile)
		if err != nil {
			return nil, fmt.Errorf("boshresolver: operator keys: %w", err)
		}
		r.Operators = tunnel.NewKeySet(keys...)
	}
	if cfg.CFClient != nil {
		apps, err := cfresolver.NewApps(*cfg.CFClient, agentPort)
		if err != nil {
			return nil, fmt.Errorf("boshresolver: cf_client: %w", err)
		}
		r.Apps = apps
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
	r.setupMu.Lock()
	defer r.setupMu.Unlock()
	r.mu.Lock()
	u, uuid := r.uaa, r.uuid
	r.mu.Unlock()
	if u != nil {
		return u, uuid, nil
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
	u = &uaa.Client{URL: base, HTTP: r.HTTP, Now: r.Now}
	r.mu.Lock()
	r.uaa, r.uuid = u, info.UUID
	r.mu.Unlock()
	return u, info.UUID, nil
}

// AuthPassword implements api.Resolver: a token, or a one-time code that
// is exchanged with the director's UAA for the user's token.
// Refusals the user can act on are [ssh.BannerError]s, so OpenSSH and
// sshdump users read why (the error itself is what the API logs).
func (r *Resolver) AuthPassword(ctx context.Context, password string) (*api.Identity, error) {
	if len(password) == OpenSSHMaxPassword && strings.HasPrefix(password, "eyJ") &&
		strings.HasPrefix(api.ClientVersion(ctx), "SSH-2.0-OpenSSH") {
		return nil, banner(ErrTruncatedToken, "")
	}
	isCode := !uaa.LooksLikeToken(password)
	if isCode && r.CodeClientSecret == "" {
		return nil, banner(ErrNoCodes, "")
	}
	u, uuid, err := r.setup(ctx)
	if err != nil {
		return nil, err
	}
	token := strings.TrimPrefix(strings.TrimPrefix(password, "bearer "), "Bearer ")
	if isCode {
		t, err := u.ExchangeCode(ctx, r.CodeClientID, r.CodeClientSecret, password)
		switch {
		case errors.Is(err, uaa.ErrBadCode):
			// The user reads the reason; the log also gets UAA's.
			b := banner(ErrBadCode, "get a new one with: pcap-bosh -e ENVIRONMENT ssh-code").(*ssh.BannerError)
			b.Err = fmt.Errorf("%w: %w", ErrBadCode, err)
			return nil, b
		case err != nil:
			return nil, err
		}
		token = t.AccessToken
	}
	claims, err := u.Verify(ctx, token)
	switch {
	case errors.Is(err, uaa.ErrExpired), errors.Is(err, uaa.ErrInvalidToken):
		return nil, banner(err, "log in again: bosh -e ENVIRONMENT log-in")
	case err != nil:
		return nil, err
	}
	auds := r.TokenAudiences
	if len(auds) == 0 {
		auds = []string{"bosh_cli", "bosh"}
	}
	if err := uaa.CheckBOSH(claims, auds); err != nil {
		return nil, banner(err, "log in with the bosh CLI: bosh -e ENVIRONMENT log-in")
	}
	if !isAdmin(claims.Scope, uuid) {
		return nil, banner(ErrNotAdmin, "")
	}
	method := api.MethodToken
	if isCode {
		method = api.MethodCode
	}
	// Subject is the same for the token and a code minted for it: one
	// user, one quota.
	return &api.Identity{Name: claims.Who(), Method: method, Resolver: r.Name(), Token: token, Scopes: claims.Scope, Subject: claims.StableID()}, nil
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

// CheckKey implements api.KeyChecker: whether key is a break-glass
// operator key. It is local: a client may ask about keys it does not hold.
func (r *Resolver) CheckKey(key ssh.PublicKey) error {
	if len(r.Operators) == 0 {
		return api.ErrNoAuth
	}
	return r.Operators.Check(key)
}

// AuthKey implements api.Resolver: break-glass operator keys, which reach
// the director through the API's own client. The front door calls it only
// once the client has proved it holds key; the client's token is shared by
// every key user until shortly before it expires.
func (r *Resolver) AuthKey(ctx context.Context, key ssh.PublicKey) (*api.Identity, error) {
	if err := r.CheckKey(key); err != nil {
		return nil, err
	}
	u, _, err := r.setup(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := u.ClientToken(ctx, r.ClientID, r.ClientSecret)
	if err != nil {
		return nil, fmt.Errorf("boshresolver: token for key user: %w", err)
	}
	fp := "key:" + tunnel.Fingerprint(key)
	return &api.Identity{Name: fp, Method: api.MethodKey, Resolver: r.Name(), Token: tok, Scopes: []string{"bosh.admin"}, Subject: fp}, nil
}

// MintCode asks the director's UAA for a one-time code for the code
// client on behalf of id (a token user), for users of pcap-api's
// "ssh-code" command. The API keeps nothing: the code is UAA's, single use
// and short lived, and any API instance exchanges it.
func (r *Resolver) MintCode(id *api.Identity) (string, error) {
	if id.Token == "" || id.Method == api.MethodKey {
		return "", errors.New("one-time codes are for token users; log in with a token")
	}
	if id.Method == api.MethodCode {
		// A code is one session: it must not extend itself.
		return "", errors.New("a one-time code cannot mint another; log in with a token")
	}
	timeout := 10 * time.Second
	if r.HTTP != nil && r.HTTP.Timeout > 0 {
		timeout = r.HTTP.Timeout
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	u, _, err := r.setup(ctx)
	if err != nil {
		return "", err
	}
	c, err := u.AuthorizationCode(ctx, r.CodeClientID, id.Token)
	if err != nil {
		return "", fmt.Errorf("UAA gave no one-time code: %w", err)
	}
	return c, nil
}

// Follows implements api.Follower: a capture of a whole deployment, or
// one that names an instance group without an ID, follows it as VMs are
// added, deleted and recreated.
func (r *Resolver) Follows(req capturecmd.Request) bool {
	if len(req.Targets) == 0 {
		return true
	}
	for _, t := range req.Targets {
		if !strings.Contains(t, "/") {
			return true
		}
	}
	return false
}

// Resolve implements api.Resolver.
func (r *Resolver) Resolve(ctx context.Context, id *api.Identity, req capturecmd.Request) ([]api.Target, []api.Skipped, error) {
	switch {
	case req.App == "" && req.Instances != nil:
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "--instance picks instances of the app of --app GUID; name VMs as GROUP/ID")
	case req.Deployment == "":
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "-d DEPLOYMENT is required")
	}
	_, uuid, err := r.setup(ctx)
	if err != nil {
		return nil, nil, tunnel.Reject(tunnel.CodeInternal, err.Error())
	}
	if req.App != "" {
		// Before anything else is asked: a refused --app costs the
		// director and the Cloud Controller nothing.
		if err := r.mayCaptureApps(id, uuid); err != nil {
			return nil, nil, err
		}
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
			Capture:     agentproto.Target{Kind: agentproto.TargetHost},
			Description: fmt.Sprintf("deployment %s, %s/%d, %s", req.Deployment, in.Job, in.Index, in.IPs[0]),
			Address:     api.HostAddr(in.IPs[0]),
		})
	}
	var skipped []api.Skipped
	for _, s := range skippedVMs {
		skipped = append(skipped, api.Skipped{Name: s.Name, Reason: s.Reason})
	}
	if req.App != "" {
		return r.addApp(ctx, id, req, targets, skipped)
	}
	return targets, skipped, nil
}

// mayCaptureApps checks that id administers the whole director: app
// instances are the foundation's tenants, which a team admin (who
// administers some deployments) does not administer, and pcap-api's own
// Cloud Controller client sees every app. Break-glass key users act as
// bosh.admin.
func (r *Resolver) mayCaptureApps(id *api.Identity, uuid string) error {
	if !slices.ContainsFunc(id.Scopes, func(s string) bool { return s == "bosh.admin" || s == "bosh."+uuid+".admin" }) {
		return tunnel.Reject(tunnel.CodeNotAllowed, "--app is for admins of the whole director (bosh.admin or bosh."+uuid+".admin); a team admin may capture only the VMs of the team's deployments")
	}
	if r.Apps == nil {
		return tunnel.Reject(tunnel.CodeNotAllowed, strings.TrimPrefix(ErrNoCFClient.Error(), "boshresolver: "))
	}
	return nil
}

// addApp adds the instances of the app of req to the VMs' targets, and
// asks the front door to audit it.
func (r *Resolver) addApp(ctx context.Context, id *api.Identity, req capturecmd.Request, targets []api.Target, skipped []api.Skipped) ([]api.Target, []api.Skipped, error) {
	apps, appSkipped, err := r.Apps.Targets(ctx, req.App, req.Process, req.Instances)
	if err != nil {
		return nil, nil, err
	}
	names := map[string]bool{}
	for _, t := range targets {
		names[t.Name] = true
	}
	instances := []string{}
	for _, t := range apps {
		if names[t.Name] {
			return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("app instance %s has the name of a VM of deployment %s; capture them apart", t.Name, req.Deployment))
		}
		instances = append(instances, t.Name)
	}
	api.Audit(ctx, "bosh-app-capture", "operator", id.Name, "subject", id.Subject, "deployment", req.Deployment,
		"app", req.App, "process", req.Process, "instances", instances, "vms", len(targets))
	return append(targets, apps...), append(skipped, appSkipped...), nil
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
