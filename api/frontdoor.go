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

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// identityKey is where authentication leaves the *Identity in
// ssh.Permissions.ExtraData.
type identityKey struct{}

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

	mu      sync.Mutex
	active  int
	perUser map[string]int
}

// ServerConfig returns the ssh server configuration for the front door.
func (a *API) ServerConfig(hostKey ssh.Signer) *ssh.ServerConfig {
	auth := func(meta ssh.ConnMetadata, do func(Resolver) (*Identity, error)) (*ssh.Permissions, error) {
		r, ok := a.Resolvers[meta.User()]
		if !ok {
			return nil, fmt.Errorf("api: no resolver for user %q", meta.User())
		}
		id, err := do(r)
		if err != nil {
			// Tokens and codes never reach the log: only the outcome.
			a.Logger.Info("auth-refused", "user", meta.User(), "remote", meta.RemoteAddr().String(), "error", err.Error())
			return nil, err
		}
		return &ssh.Permissions{ExtraData: map[any]any{identityKey{}: id}}, nil
	}
	c := &ssh.ServerConfig{
		PasswordCallback: func(meta ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			return auth(meta, func(r Resolver) (*Identity, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				return r.AuthPassword(ctx, string(pw))
			})
		},
		PublicKeyCallback: func(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			return auth(meta, func(r Resolver) (*Identity, error) {
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				defer cancel()
				return r.AuthKey(ctx, key)
			})
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
	ch, reqs, err := nc.Accept()
	if err != nil {
		return
	}
	defer ch.Close()
	log := a.Logger.With("user", id.String(), "remote", conn.RemoteAddr().String())

	// stop is closed on stdin EOF or a signal; cmd carries the exec.
	stop := make(chan struct{})
	var stopOnce sync.Once
	stopNow := func() { stopOnce.Do(func() { close(stop) }) }
	cmd := make(chan string, 1)
	reqsDone := make(chan struct{})
	go func() {
		defer close(reqsDone)
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
				stopNow()
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
	case <-time.After(30 * time.Second):
		fmt.Fprintln(ch.Stderr(), "pcap: error: no command within 30s")
		return
	}
	go func() {
		// stdin: EOF means stop; nothing read means anything.
		io.Copy(io.Discard, io.LimitReader(ch, 1<<20))
		stopNow()
	}()

	status := a.run(ctx, log, id, line, ch, ch.Stderr(), stop)
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
	r := a.Resolvers[id.Resolver]
	targets, skipped, err := r.Resolve(ctx, id, req)
	if err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	if err := a.checkLimits(&req, targets); err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	release, err := a.acquire(id)
	if err != nil {
		re := tunnel.AsReject(err)
		return fail(re.Code, re.Message)
	}
	defer release()

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
		Metrics: a.Metrics,
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
		case "failed", "lost", "not-stopped":
			log.Warn("capture-source-"+sr.State, "source", sr.Name, "reason", sr.Reason)
		}
	}
	log.Info("capture-ended", "outcome", res.Outcome, "duration_ms", time.Since(start).Milliseconds(),
		"targets", names, "filter", req.Filter, "packets", res.Packets, "bytes", res.Bytes,
		"kernel_dropped", res.Dropped["kernel"], "if_dropped", res.Dropped["interface"],
		"agent_dropped", res.Dropped["agent"], "api_dropped", res.Dropped["api"], "sources", summarize(res.Sources))
	return res.ExitStatus()
}

func summarize(rs []SourceResult) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.Name + "=" + r.State
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

// acquire takes a capture slot of the API and of the user.
func (a *API) acquire(id *Identity) (func(), error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.perUser == nil {
		a.perUser = make(map[string]int)
	}
	key := id.String()
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
