package api

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

func TestCheckLimits(t *testing.T) {
	a := &API{Limits: LimitsConfig{MaxTargets: 2, MaxDuration: time.Minute}}
	two := []Target{{Name: "a/0"}, {Name: "a/1"}}
	cases := []struct {
		name     string
		duration time.Duration
		targets  []Target
		wantErr  string
		wantDur  time.Duration
	}{
		{"no duration gets the maximum", 0, two, "", time.Minute},
		{"a shorter duration is kept", 5 * time.Second, two, "", 5 * time.Second},
		{"the maximum itself", time.Minute, two, "", time.Minute},
		{"longer than the maximum", time.Minute + time.Second, two, "duration 1m1s is longer than the allowed 1m0s", 0},
		{"too many targets", 0, append(two, Target{Name: "a/2"}), "3 targets selected, at most 2 are allowed per capture", 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			req := capturecmd.Request{Limits: agentproto.Limits{Duration: c.duration}}
			err := a.checkLimits(&req, c.targets)
			if c.wantErr == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if req.Limits.Duration != c.wantDur {
					t.Errorf("duration = %v, want %v", req.Limits.Duration, c.wantDur)
				}
				return
			}
			re := tunnel.AsReject(err)
			if err == nil || re.Code != tunnel.CodeLimitReached || re.Message != c.wantErr {
				t.Errorf("error = %v, want %s: %q", err, tunnel.CodeLimitReached, c.wantErr)
			}
		})
	}
}

func TestAcquireLimits(t *testing.T) {
	a := &API{Limits: LimitsConfig{MaxCaptures: 3, MaxCapturesPerUser: 2}}
	alice := &Identity{Name: "alice", Resolver: "static"}
	bob := &Identity{Name: "bob", Resolver: "static"}
	carol := &Identity{Name: "carol", Resolver: "static"}
	mustAcquire := func(id *Identity) func() {
		t.Helper()
		release, err := a.acquire(id)
		if err != nil {
			t.Fatalf("acquire for %s: %v", id.Name, err)
		}
		return release
	}
	wantRefused := func(id *Identity, msg string) {
		t.Helper()
		_, err := a.acquire(id)
		if re := tunnel.AsReject(err); err == nil || re.Code != tunnel.CodeLimitReached || re.Message != msg {
			t.Errorf("acquire for %s = %v, want limit-reached %q", id.Name, err, msg)
		}
	}
	a1 := mustAcquire(alice)
	a2 := mustAcquire(alice)
	wantRefused(alice, "you are running your maximum of 2 captures")
	b1 := mustAcquire(bob)
	wantRefused(carol, "the API is running its maximum of 3 captures; try again later")
	a1()
	c1 := mustAcquire(carol)
	a2()
	b1()
	c1()
	if a.active != 0 || len(a.perUser) != 0 {
		t.Errorf("after every release: active %d, per user %v", a.active, a.perUser)
	}
	mustAcquire(alice)()
}

func TestRunHelpAndRefusals(t *testing.T) {
	a := &API{Logger: slog.New(slog.DiscardHandler), Resolvers: map[string]Resolver{
		"static": &StaticResolver{Groups: map[string][]string{"lab": {"127.0.0.1:1"}}},
	}, Limits: LimitsConfig{MaxTargets: 1, MaxDuration: time.Minute, MaxCaptures: 1, MaxCapturesPerUser: 1}}
	id := &Identity{Name: "op", Resolver: "static"}
	cases := []struct {
		name       string
		line       string
		wantStatus int
		wantStdout string
		wantStderr string
	}{
		{"help", "capture --help", ExitOK, "capture [flags] TARGET...", ""},
		{"no command", "", ExitFailed, "", `pcap: error: bad-request reason="no command: this server runs only \"capture …\" (try \"capture --help\")"` + "\n"},
		{"unknown flag", "capture --bogus lab", ExitFailed, "", `pcap: error: bad-request reason="flag provided but not defined: -bogus"` + "\n"},
		{"several problems on one line", "capture -s 0 --format x lab", ExitFailed, "",
			`pcap: error: bad-request reason="snaplen 0 is out of range 1..262144; format \"x\" is not pcapng or pcap"` + "\n"},
		{"unknown target", "capture web", ExitFailed, "", `pcap: error: target-not-found reason="unknown target(s): web; groups are: lab"` + "\n"},
		{"duration over the maximum", "capture --duration 2m lab", ExitFailed, "", `pcap: error: limit-reached reason="duration 2m0s is longer than the allowed 1m0s"` + "\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			status := a.run(context.Background(), a.Logger, id, c.line, &stdout, &stderr, make(chan struct{}))
			if status != c.wantStatus {
				t.Errorf("exit status %d, want %d", status, c.wantStatus)
			}
			if !strings.Contains(stdout.String(), c.wantStdout) || (c.wantStdout == "" && stdout.Len() != 0) {
				t.Errorf("stdout = %q, want it to hold %q", stdout.String(), c.wantStdout)
			}
			if stderr.String() != c.wantStderr {
				t.Errorf("stderr\n got  %q\n want %q", stderr.String(), c.wantStderr)
			}
		})
	}
}

// TestHeaderRecordsCommand: the section header records the command as
// sent and the version; a long command is cut to a bounded, valid UTF-8
// comment (a pcapng option holds at most 65535 bytes).
func TestHeaderRecordsCommand(t *testing.T) {
	a := &API{Version: "v1.2.3"}
	h := a.header("  capture --app web -f 'tcp port 8080'\n")
	if h.Comment != "pcap v1.2.3: capture --app web -f 'tcp port 8080'" || h.Application != "pcap-api v1.2.3" {
		t.Errorf("header = %+v", h)
	}
	if h := (&API{}).header("capture lab"); h.Comment != "pcap dev: capture lab" || h.Application != "pcap-api dev" {
		t.Errorf("no version: header = %+v", h)
	}
	long := "capture -f '" + strings.Repeat("é", 70000) + "'"
	h = a.header(long)
	if !utf8.ValidString(h.Comment) || len(h.Comment) > len("pcap v1.2.3: ")+maxCommentCommand+len("…") || !strings.HasPrefix(h.Comment, "pcap v1.2.3: capture -f 'éé") {
		t.Errorf("long command: %d-byte comment, valid UTF-8 %v", len(h.Comment), utf8.ValidString(h.Comment))
	}
}

// auditingResolver asks for an audit event at every Resolve.
type auditingResolver struct{ *StaticResolver }

func (r auditingResolver) Resolve(ctx context.Context, id *Identity, req capturecmd.Request) ([]Target, []Skipped, error) {
	Audit(ctx, "test-audit", "who", id.Name)
	return r.StaticResolver.Resolve(ctx, id, req)
}

// TestRunAuditsOnlyWhatPassesLimits: an audit event a resolver asks for is
// not written when the capture is refused after Resolve (here: too many
// targets), so the log never shows an audited capture that did not run.
func TestRunAuditsOnlyWhatPassesLimits(t *testing.T) {
	var logs bytes.Buffer
	a := &API{Logger: slog.New(slog.NewJSONHandler(&logs, nil)), Resolvers: map[string]Resolver{
		"static": auditingResolver{&StaticResolver{Groups: map[string][]string{"lab": {"127.0.0.1:1", "127.0.0.1:2"}}}},
	}, Limits: LimitsConfig{MaxTargets: 1, MaxDuration: time.Minute, MaxCaptures: 1, MaxCapturesPerUser: 1}}
	var stdout, stderr bytes.Buffer
	id := &Identity{Name: "op", Resolver: "static"}
	if status := a.run(context.Background(), a.Logger, id, "capture lab", &stdout, &stderr, make(chan struct{})); status != ExitFailed {
		t.Errorf("exit status %d, want %d", status, ExitFailed)
	}
	if !strings.Contains(logs.String(), `"msg":"capture-refused"`) || strings.Contains(logs.String(), "test-audit") {
		t.Errorf("log:\n%s", logs.String())
	}
	// The collector itself: what is asked is kept, in order.
	ctx, audited := CollectAudit(context.Background())
	Audit(ctx, "a", "k", 1)
	Audit(ctx, "b")
	Audit(context.Background(), "nowhere")
	if got := audited(); len(got) != 2 || got[0].Event != "a" || got[0].Attrs[1] != 1 || got[1].Event != "b" {
		t.Errorf("audited = %v", got)
	}
}
