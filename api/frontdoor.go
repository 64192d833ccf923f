package api

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// identityKey is where authentication leaves the *Identity in
// ssh.Permissions.ExtraData.
type identityKey struct{}

// clientVersionKey carries the client's SSH version string in the context
// of an authentication.
type clientVersionKey struct{}

// ClientVersion is the SSH version string ("SSH-2.0-OpenSSH_9.6p1 …") of
// the client whose login ctx belongs to, or "" outside one. Resolvers use
// it to explain what a known client does to passwords.
func ClientVersion(ctx context.Context) string {
	v, _ := ctx.Value(clientVersionKey{}).(string)
	return v
}

// ErrUnknownUser is a login as an ssh user no resolver answers to.
var ErrUnknownUser = errors.New("api: no resolver for this user")

// WithClientVersion returns ctx carrying the client's SSH version string,
// as the front door passes it to resolvers.
func WithClientVersion(ctx context.Context, v string) context.Context {
	return context.WithValue(ctx, clientVersionKey{}, v)
}

// KeyChecker is a resolver that offers public-key login. CheckKey says,
// without any network request, whether key may log in: the front door
// asks it about every key a client offers or merely queries, and calls
// AuthKey (which may ask UAA or a director) only once the client has
// signed with the key.
type KeyChecker interface {
	CheckKey(key ssh.PublicKey) error
}

// Front door defaults.
const (
	// DefaultMaxSessions is how many session channels one connection may
	// have open at once.
	DefaultMaxSessions = 4
	// DefaultExecTimeout is how long a new session channel may wait for
	// its exec request.
	DefaultExecTimeout = 10 * time.Second
	// authTimeout bounds one authentication's requests to UAA, the Cloud
	// Controller or a director.
	authTimeout = 15 * time.Second
)

// API is the SSH front door: it authenticates users through resolvers,
// parses their capture command and runs sessions. Set the fields before
// use.
type API struct {
	Resolvers map[string]Resolver // by ssh user name
	Pool      *Pool
	Logger    *slog.Logger
	Metrics   *Metrics
	Limits    LimitsConfig

	ReorderWindow time.Duration
	OpenTimeout   time.Duration
	StopTimeout   time.Duration
	// FollowInterval is how often a followed capture resolves its
	// targets again (default DefaultFollowInterval).
	FollowInterval time.Duration
	// Version is pcap-api's, recorded in each capture's section header.
	Version string

	mu      sync.Mutex
	active  int
	perUser map[string]int
	conns   map[*ssh.ServerConn]*connState
}

// connState is what the front door counts per connection.
type connState struct {
	sessions int  // session channels open
	warned   bool // a refused channel was logged
}

// ServerConfig returns the ssh server configuration for the front door.
// No authentication method makes a network request before the client has
// proved who it is: a public key is checked against local key sets when
// offered or queried, and only a signature unlocks the resolver's AuthKey.
func (a *API) ServerConfig(hostKey ssh.Signer) *ssh.ServerConfig {
	resolver := func(meta ssh.ConnMetadata) (Resolver, error) {
		if r, ok := a.Resolvers[meta.User()]; ok {
			return r, nil
		}
		return nil, fmt.Errorf("%w: %q", ErrUnknownUser, meta.User())
	}
	authCtx := func(meta ssh.ConnMetadata) (context.Context, context.CancelFunc) {
		return context.WithTimeout(WithClientVersion(context.Background(), string(meta.ClientVersion())), authTimeout)
	}
	granted := func(meta ssh.ConnMetadata, method string, id *Identity) *ssh.Permissions {
		a.Metrics.login(method)
		return &ssh.Permissions{ExtraData: map[any]any{identityKey{}: id}}
	}
	c := &ssh.ServerConfig{
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			r, err := resolver(meta)
			if err == nil {
				ctx, cancel := authCtx(meta)
				defer cancel()
				var id *Identity
				if id, err = r.AuthPassword(ctx, string(pw)); err == nil {
					return granted(meta, "password", id), nil
				}
			}
			return nil, a.refuseLogin(meta, "password", err)
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			r, err := resolver(meta)
			if err == nil {
				err = ErrNoAuth
				if kc, ok := r.(KeyChecker); ok {
					err = kc.CheckKey(key)
				}
			}
			if err != nil {
				a.Metrics.keyChecked("refused")
				a.Logger.Info("public-key-refused", "user", meta.User(), "remote", meta.RemoteAddr().String(),
					"fingerprint", tunnel.Fingerprint(key), "error", err.Error())
				return nil, err
			}
			a.Metrics.keyChecked("accepted")
			return &ssh.Permissions{}, nil
		},
		VerifiedPublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey, _ *ssh.Permissions, _ string) (*ssh.Permissions, error) {
			r, err := resolver(meta)
			if err == nil {
				ctx, cancel := authCtx(meta)
				defer cancel()
				var id *Identity
				if id, err = r.AuthKey(ctx, key); err == nil {
					return granted(meta, "publickey", id), nil
				}
			}
			return nil, a.refuseLogin(meta, "publickey", err)
		},
		MaxAuthTries: 6,
	}
	// AES-GCM only: OpenSSH's client prefers chacha20-poly1305, which
	// x/crypto/ssh implements in pure Go on amd64, and encrypting the
	// capture for the client then took over half of pcap-api's CPU (make
	// bench: 2.06 against 1.26 CPU-s per 100k 1400-byte packets). Every
	// OpenSSH since 6.2, libssh (sshdump) and the Go clients speak it.
	c.Config.Ciphers = []string{"aes128-gcm@openssh.com", "aes256-gcm@openssh.com"}
	c.AddHostKey(hostKey)
	return c
}

// refuseLogin audits and counts a refused login and returns the error for
// the ssh library: with a banner, so that the user reads why before
// "Permission denied", unless the resolver set one. Tokens and codes never
// reach the log or the banner: resolvers' errors hold none.
func (a *API) refuseLogin(meta ssh.ConnMetadata, method string, err error) error {
	reason, msg := refusal(err)
	a.Metrics.loginRefused(method, reason)
	a.Logger.Info("auth-refused", "user", meta.User(), "remote", meta.RemoteAddr().String(),
		"method", method, "reason", reason, "error", err.Error())
	var be *ssh.BannerError
	if errors.As(err, &be) || msg == "" {
		return err
	}
	return &ssh.BannerError{Err: err, Message: "pcap-api: refused: " + msg + "\n"}
}

// refusal classifies a login refusal for metrics, and says what the user
// may read about it ("" when nothing: the operator's log has it).
func refusal(err error) (reason, msg string) {
	switch {
	case errors.Is(err, uaa.ErrBadCode):
		return "bad-code", "the one-time code is unknown, used or expired; get a new one (cf ssh-code)"
	case errors.Is(err, uaa.ErrExpired):
		return "expired-token", "the token has expired; log in again"
	case errors.Is(err, uaa.ErrUnavailable):
		return "uaa-unavailable", "the token cannot be checked now (UAA's keys are unavailable); try again later"
	case errors.Is(err, uaa.ErrInvalidToken):
		return "invalid-token", strings.TrimPrefix(err.Error(), "uaa: ")
	case errors.Is(err, uaa.ErrRefused):
		return "token-refused", strings.TrimPrefix(err.Error(), "uaa: ")
	case errors.Is(err, ErrNoAuth):
		return "method-not-offered", ""
	case errors.Is(err, tunnel.ErrUnauthorizedKey):
		return "key-not-allowed", ""
	case errors.Is(err, ErrUnknownUser):
		return "unknown-user", "no such user"
	}
	var be *ssh.BannerError
	if errors.As(err, &be) {
		return "refused", ""
	}
	return "failed", "cannot log in now; try again later"
}

// session channel request payloads (RFC 4254).
type execMsg struct{ Command string }
type signalMsg struct{ Signal string }
type exitStatusMsg struct{ Status uint32 }

// HandleChannel serves one "session" channel: one exec of "capture …".
func (a *API) HandleChannel(ctx context.Context, conn *ssh.ServerConn, nc ssh.NewChannel) {
	id, _ := conn.Permissions.ExtraData[identityKey{}].(*Identity)
	if id == nil {
		nc.Reject(ssh.Prohibited, "not authenticated")
		return
	}
	log := a.Logger.With("user", id.String(), "method", string(id.Method), "remote", conn.RemoteAddr().String())
	done, ok := a.openSession(conn, log)
	if !ok {
		nc.Reject(ssh.ResourceShortage, fmt.Sprintf("at most %d sessions per connection", a.maxSessions()))
		return
	}
	defer done()
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()

	// stop is closed by the first stop (see stop.go); cmd carries the exec.
	stop := newStopSignal()
	cmd := make(chan string, 1)
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
		// The requests end when the channel or the connection closes: the
		// client is gone (ssh killed, sshdump ending), a stop.
		defer stop.Stop()
		execed := false
		for r := range reqs {
			ok := false
			switch r.Type {
			case "exec", "shell":
				var m execMsg
				if execed || (r.Type == "exec" && ssh.Unmarshal(r.Payload, &m) != nil) {
					break
				}
				// Reply before the command runs: a quick command (ssh-code)
				// may otherwise end the channel before the reply is sent,
				// and the client sees EOF instead of a started command.
				execed = true
				if r.WantReply {
					r.Reply(true, nil)
				}
				cmd <- m.Command // "" for a shell: refused with a message
				continue
			case "signal":
				stop.Stop()
				ok = true
			case "env":
				ok = true // accepted and ignored: nothing reads the environment
			}
			if r.WantReply {
				r.Reply(ok, nil)
			}
		}
	}()

	var line string
	select {
	case line = <-cmd:
	case <-reqsDone:
		return
	case <-ctx.Done():
		return
	case <-time.After(a.execTimeout()):
		fmt.Fprintf(ch.Stderr(), "pcap: error: no command within %v\n", a.execTimeout())
		return
	}
	go watchStdin(ch, stop) // a byte is a stop; EOF is not

	status := a.run(ctx, log, id, line, ch, ch.Stderr(), stop.C())
	ch.SendRequest("exit-status", false, ssh.Marshal(exitStatusMsg{Status: uint32(status)}))
	ch.CloseWrite()
}

// run parses and runs one capture command, returning the exit status.
func (a *API) run(ctx context.Context, log *slog.Logger, id *Identity, line string, stdout, stderr io.Writer, stop <-chan struct{}) int {
	status := capturecmd.NewStatus(stderr)
	fail := func(code, msg string) int {
		a.Metrics.refused(code)
		log.Info("capture-refused", "code", code, "reason", msg)
		status.Line("error", code, "reason", msg)
		return ExitFailed
	}
	if line == "" {
		return fail(tunnel.CodeBadRequest, `no command: this server runs only "capture …" (try "capture --help")`)
	}
	if strings.TrimSpace(line) == "ssh-code" {
		return a.mintCode(log, id, stdout, status)
	}
	req, err := capturecmd.ParseCommand(line, stdout)
	if errors.Is(err, capturecmd.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		return fail(tunnel.CodeBadRequest, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	// The slots come first: a user at a limit costs the Cloud
	// Controller or director nothing.
	release, err := a.acquire(id)
	if err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	defer release()
	r := a.Resolvers[id.Resolver]
	rctx, audited := CollectAudit(ctx)
	targets, skipped, err := r.Resolve(rctx, id, req)
	if err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	if err := a.checkLimits(&req, targets); err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	for _, e := range audited() {
		log.Info(e.Event, e.Attrs...)
	}

	names := make([]string, len(targets))
	for i, t := range targets {
		names[i] = t.Name
	}
	log.Info("capture-started", "resolver", id.Resolver, "targets", names, "interfaces", req.Interfaces,
		"filter", req.Filter, "snaplen", req.Snaplen, "format", req.Format, "duration", req.Limits.Duration.String())
	start := time.Now()
	s := &Session{
		Pool: a.Pool, Req: req, Targets: targets, Skipped: skipped,
		Out: stdout, Status: status,
		OpenTimeout: a.OpenTimeout, StopTimeout: a.StopTimeout, ReorderWindow: a.ReorderWindow,
		Metrics: a.Metrics, Header: a.header(line),
		MaxTargets: a.Limits.MaxTargets,
	}
	if f, ok := r.(Follower); ok && !req.NoFollow && f.Follows(req) {
		failing := false // the follower's goroutine alone calls it
		s.Follow = func(ctx context.Context) ([]Target, error) {
			t, _, err := r.Resolve(ctx, id, req)
			switch {
			case err != nil && tunnel.AsReject(err).Code != tunnel.CodeTargetNotFound:
				if !failing {
					log.Warn("capture-follow-failed", "reason", tunnel.AsReject(err).Message)
				}
				failing = true
			case failing:
				failing = false
				log.Info("capture-follow-resumed")
			}
			return t, err
		}
		s.FollowInterval = a.FollowInterval
	}
	res, err := s.Run(ctx, stop)
	if err != nil {
		status.Line("error", "failed", "reason", err.Error())
	}
	if a.Metrics != nil {
		a.Metrics.Captures.WithLabelValues(res.Outcome).Inc()
	}
	// Why a source failed is the operator's to see too: an agent that
	// is unreachable, refuses, or offers a host key that is not pinned.
	for _, sr := range res.Sources {
		switch sr.State {
		case StateFailed, StateLost, StateAgentStopped, StateNotStopped:
			log.Warn("capture-source-"+string(sr.State), "source", sr.Name, "reason", sr.Reason)
		}
	}
	log.Info("capture-ended", "outcome", res.Outcome, "duration_ms", time.Since(start).Milliseconds(),
		"targets", names, "filter", req.Filter, "packets", res.Packets, "bytes", res.Bytes,
		"kernel_dropped", res.Dropped.Kernel, "if_dropped", res.Dropped.Interface,
		"agent_dropped", res.Dropped.Agent, "api_dropped", res.Dropped.API, "sources", summarize(res.Sources))
	return res.ExitStatus()
}

func summarize(rs []SourceResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name + "=" + string(r.State)
	}
	return out
}

// checkLimits enforces max targets and max duration (applied when none was
// asked).
func (a *API) checkLimits(req *capturecmd.Request, targets []Target) error {
	if a.Limits.MaxTargets > 0 && len(targets) > a.Limits.MaxTargets {
		return tunnel.Reject(tunnel.CodeLimitReached, fmt.Sprintf("%d targets selected, at most %d are allowed per capture", len(targets), a.Limits.MaxTargets))
	}
	if max := a.Limits.MaxDuration; max > 0 {
		if req.Limits.Duration > max {
			return tunnel.Reject(tunnel.CodeLimitReached, fmt.Sprintf("duration %v is longer than the allowed %v", req.Limits.Duration, max))
		}
		if req.Limits.Duration == 0 {
			req.Limits.Duration = max
		}
	}
	return nil
}

func (a *API) maxSessions() int {
	if a.Limits.MaxSessionsPerConnection > 0 {
		return a.Limits.MaxSessionsPerConnection
	}
	return DefaultMaxSessions
}

func (a *API) execTimeout() time.Duration {
	if a.Limits.ExecTimeout > 0 {
		return a.Limits.ExecTimeout
	}
	return DefaultExecTimeout
}

// openSession counts a session channel of conn, or refuses it (counted,
// and logged once per connection) when conn has its maximum open.
func (a *API) openSession(conn *ssh.ServerConn, log *slog.Logger) (func(), bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.conns == nil {
		a.conns = make(map[*ssh.ServerConn]*connState)
	}
	cs := a.conns[conn]
	if cs == nil {
		cs = &connState{}
		a.conns[conn] = cs
	}
	if cs.sessions >= a.maxSessions() {
		a.Metrics.sessionRefused()
		if !cs.warned {
			cs.warned = true
			log.Warn("session-refused", "reason", fmt.Sprintf("at most %d sessions per connection", a.maxSessions()))
		}
		return nil, false
	}
	cs.sessions++
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		if cs.sessions--; cs.sessions == 0 {
			delete(a.conns, conn)
		}
	}, true
}

// acquire takes a capture slot of the API and of the user (by the user's
// stable key).
func (a *API) acquire(id *Identity) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perUser == nil {
		a.perUser = make(map[string]int)
	}
	key := id.Key()
	if a.Limits.MaxCaptures > 0 && a.active >= a.Limits.MaxCaptures {
		return nil, tunnel.Reject(tunnel.CodeLimitReached, fmt.Sprintf("the API is running its maximum of %d captures; try again later", a.Limits.MaxCaptures))
	}
	if a.Limits.MaxCapturesPerUser > 0 && a.perUser[key] >= a.Limits.MaxCapturesPerUser {
		return nil, tunnel.Reject(tunnel.CodeLimitReached, fmt.Sprintf("you are running your maximum of %d captures", a.Limits.MaxCapturesPerUser))
	}
	a.active++
	a.perUser[key]++
	if a.Metrics != nil {
		a.Metrics.CapturesActive.Inc()
	}
	return func() {
		a.mu.Lock()
		defer a.mu.Unlock()
		a.active--
		if a.perUser[key]--; a.perUser[key] == 0 {
			delete(a.perUser, key)
		}
		if a.Metrics != nil {
			a.Metrics.CapturesActive.Dec()
		}
	}, nil
}

// CodeMinter is a resolver that mints one-time codes ("ssh-code" command)
// for users whose client cannot send a whole token as password.
type CodeMinter interface {
	MintCode(id *Identity) (string, error)
}

func (a *API) mintCode(log *slog.Logger, id *Identity, stdout io.Writer, status *capturecmd.Status) int {
	m, ok := a.Resolvers[id.Resolver].(CodeMinter)
	if !ok {
		status.Line("error", tunnel.CodeBadRequest, "reason", "this login does not mint one-time codes")
		return ExitFailed
	}
	c, err := m.MintCode(id)
	if err != nil {
		status.Line("error", tunnel.CodeNotAllowed, "reason", err.Error())
		return ExitFailed
	}
	log.Info("ssh-code-minted") // the code itself is a credential: never logged
	fmt.Fprintln(stdout, c)
	return ExitOK
}

// maxCommentCommand bounds the command line recorded in the section
// comment (a pcapng option holds at most 65535 bytes).
const maxCommentCommand = 4096

// header is what a capture's section header records: the capture command
// as the user sent it (it holds no secret: logins travel in the SSH
// authentication, never in the command) and pcap-api's version.
func (a *API) header(line string) OutputHeader {
	v := a.Version
	if v == "" {
		v = "dev"
	}
	line = strings.TrimSpace(line)
	if len(line) > maxCommentCommand {
		line = strings.ToValidUTF8(line[:maxCommentCommand], "") + "…"
	}
	return OutputHeader{Comment: "pcap " + v + ": " + line, Application: "pcap-api " + v}
}
