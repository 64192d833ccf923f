package integration

import (
	"context"
	"encoding/pem"
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

// relAuthz is one case of an authorisation matrix: a credential, and
// whether it may capture.
type relAuthz struct {
	name     string
	password string // the token (or code) the user logs in with
	user     string // the identity the audit log names, e.g. "cf:developer"
	allowed  bool
	// For a capture refused after login: its exact stderr.
	refused string
	// For a login refused: the error the API logs (auth-refused).
	authErr string
}

var relAgentContactRe = `"msg":"(connection-opened|capture-started|capture-rejected)"`

// relRunAuthz runs every case, one after the other, as sshUser at api
// with command, and checks the outcome, the audit log, and that a refused
// case contacted no agent. Allowed commands must end by themselves, and
// each must start one capture on one agent.
func relRunAuthz(t *testing.T, api *apiProc, agents []*agentProc, sshUser, command string, cases []relAuthz) {
	t.Helper()
	// Logs are collected from pipes: a line may arrive a moment after
	// the client has its answer, so expected lines are awaited.
	const wait = 5 * time.Second
	agentCaptures := func() int {
		n := 0
		for _, a := range agents {
			n += relCount(a, `"msg":"(capture-started|capture-rejected)"`)
		}
		return n
	}
	capturesBefore := agentCaptures()
	allowed := 0
	userRe := func(msg, user string) string {
		return `"msg":"` + msg + `","user":"` + regexp.QuoteMeta(user) + `"`
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			agentsBefore := agentCaptures()
			started, refused := relCount(api, userRe("capture-started", tc.user)), relCount(api, userRe("capture-refused", tc.user))
			authRefused := relCount(api, userRe("auth-refused", sshUser))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			r := relExec(ctx, api, sshUser, ssh.Password(tc.password), command)
			switch {
			case tc.allowed:
				allowed++
				if r.Status != 0 || r.Err != nil || !strings.Contains(r.Stderr, ": started ") {
					t.Errorf("allowed: status %d, err %v, stderr:\n%s", r.Status, r.Err, r.Stderr)
				}
				if len(r.Stdout) == 0 {
					t.Error("allowed, but no capture on stdout")
				}
				relWaitCount(t, api, userRe("capture-started", tc.user), started+1, wait)
				waitUntil(t, wait, "an agent to log the capture", func() bool { return agentCaptures() > agentsBefore })
			case tc.refused != "":
				if r.Status != 1 || r.Err != nil || r.Stderr != tc.refused || len(r.Stdout) != 0 {
					t.Errorf("status %d, err %v, %d bytes of capture, stderr:\n%q\nwant 1, nil, none, stderr:\n%q", r.Status, r.Err, len(r.Stdout), r.Stderr, tc.refused)
				}
				relWaitCount(t, api, userRe("capture-refused", tc.user), refused+1, wait)
			default:
				if r.Err == nil || !strings.Contains(r.Err.Error(), "ssh: unable to authenticate") || len(r.Stdout) != 0 {
					t.Errorf("login: status %d, err %v, %d bytes of capture; want it refused", r.Status, r.Err, len(r.Stdout))
				}
				relWaitCount(t, api, userRe("auth-refused", sshUser), authRefused+1, wait)
				lines := api.Lines(regexp.MustCompile(userRe("auth-refused", sshUser)))
				if want := `"error":"` + tc.authErr + `"}`; !strings.HasSuffix(lines[authRefused], want) {
					t.Errorf("auth-refused logged as\n%s\nwant it to end with\n%s", lines[authRefused], want)
				}
			}
			if !tc.allowed {
				if n := agentCaptures() - agentsBefore; n != 0 {
					t.Errorf("refused, but agents logged %d captures", n)
				}
				if n := relCount(api, userRe("capture-started", tc.user)) - started; n != 0 {
					t.Errorf("refused, but the API started %d captures", n)
				}
			}
		})
	}
	// Whatever arrives late: the agents saw exactly the allowed captures.
	waitUntil(t, wait, "the agents' logs", func() bool { return agentCaptures()-capturesBefore >= allowed })
	if n := agentCaptures() - capturesBefore; n != allowed {
		t.Errorf("agents logged %d captures for %d allowed cases", n, allowed)
	}
}

// relSecrets are credentials a test used, to look for in logs.
type relSecrets map[string]string // secret → what it is

func (s relSecrets) add(what, v string) {
	if len(v) >= 8 {
		s[v] = what
	}
}

// addToken adds a JWT whole, and its payload and signature (the header is
// the same in every token: not a secret).
func (s relSecrets) addToken(what, tok string) {
	s.add(what, tok)
	if parts := strings.Split(tok, "."); len(parts) == 3 {
		s.add(what+" (payload)", parts[1])
		s.add(what+" (signature)", parts[2])
	}
}

// addKeyFile adds the base64 lines of a PEM private key file.
func (s relSecrets) addKeyFile(t *testing.T, what, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || !strings.Contains(block.Type, "PRIVATE KEY") {
		return
	}
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); len(l) >= 40 && !strings.HasPrefix(l, "-----") {
			s.add(what, l)
		}
	}
}

// addConfigKeys adds every private key a pcap-api or pcap-agent process
// loads: the *_file settings of its YAML config (the last argument).
func (s relSecrets) addConfigKeys(t *testing.T, what string, args []string) {
	t.Helper()
	b, err := os.ReadFile(args[len(args)-1])
	if err != nil {
		t.Fatal(err)
	}
	var cfg map[string]any
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			switch v := v.(type) {
			case map[string]any:
				walk(prefix+k+".", v)
			case string:
				if strings.HasSuffix(k, "_file") && v != "" { // unset: marshalled empty
					s.addKeyFile(t, what+" "+prefix+k, v)
				}
			}
		}
	}
	walk("", cfg)
}

// check fails t for every secret found in a log.
func (s relSecrets) check(t *testing.T, logs map[string]string) {
	t.Helper()
	kinds := map[string]bool{}
	for _, what := range s {
		kinds[strings.SplitN(what, " ", 2)[0]] = true
	}
	var names []string
	for n := range logs {
		names = append(names, n)
	}
	sort.Strings(names)
	total := 0
	for _, n := range names {
		total += len(logs[n])
		for secret, what := range s {
			if strings.Contains(logs[n], secret) {
				t.Errorf("%s holds %s", n, what)
			}
		}
	}
	t.Logf("looked for %d secrets in %d logs (%d bytes): %s", len(s), len(logs), total, strings.Join(names, ", "))
	if len(s) == 0 || total == 0 {
		t.Error("nothing to check")
	}
}
