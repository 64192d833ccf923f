package integration

import (
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestCFFrontDoorAuth: a `cf ssh-code` one-time code is the password of
// the real OpenSSH client (through sshpass) for one capture, and only
// once; expired, forged and wrong-issuer tokens are refused at
// authentication (with the Go client: these tokens are longer than the
// 1023 bytes of password OpenSSH sends); neither codes nor tokens reach the
// API's log.
func TestCFFrontDoorAuth(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)

	code := strings.TrimSpace(cf.must(t, "ssh-code"))
	if code == "" || strings.ContainsAny(code, " \n") {
		t.Fatalf("cf ssh-code printed %q", code)
	}
	out := filepath.Join(t.TempDir(), "code.pcapng")
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	// As a user types it: ssh joins the words of the remote command with
	// spaces, so the filter is quoted for the API's word splitter.
	s := runSSHPassword(t, e.API, "cf", code, f,
		"capture", "--app", cfApp, "--instance", "1", "-f", "'udp dst port 9000'", "-c", "6", "--duration", "30s")
	s.WaitLine(t, regexp.MustCompile(`^pcap: web/1: started interfaces=eth0`), 30*time.Second)
	sendUDP(t, e.Containers[1].NS, "198.18.0.1:9000", 6)
	sendUDP(t, e.Containers[0].NS, "198.18.0.1:9000", 4) // not asked for
	if err, ok := s.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("ssh with a one-time code: exited %v, %v\n%s", ok, err, s.Output())
	}
	f.Close()
	s.WaitLine(t, regexp.MustCompile(`^pcap: summary: limit-reached sources=1 packets=6 `), time.Second)
	capinfos(t, out)
	if per := interfaceCounts(t, out); per["web/1:eth0"] != 6 || len(per) != 1 {
		t.Errorf("packets per interface = %v, want web/1:eth0=6 only", per)
	}
	if !regexpLine(e.API, `"msg":"capture-started".*"user":"cf:developer","method":"one-time-code"`) {
		t.Errorf("the API did not log a capture by cf:developer with a one-time code:\n%s", e.API.Output())
	}

	// The same code a second time is refused at authentication.
	again := filepath.Join(t.TempDir(), "again.pcapng")
	f2, err := os.Create(again)
	if err != nil {
		t.Fatal(err)
	}
	s2 := runSSHPassword(t, e.API, "cf", code, f2, "capture", "--app", cfApp, "-c", "1")
	err, ok := s2.Wait(30 * time.Second)
	f2.Close()
	if !ok || err == nil {
		t.Errorf("a used code: ssh exited %v with %v, want a failure", ok, err)
	}
	if !strings.Contains(s2.Output(), "Permission denied") {
		t.Errorf("a used code: ssh said:\n%s", s2.Output())
	}
	if b, _ := os.ReadFile(again); len(b) != 0 {
		t.Errorf("a used code got %d bytes of capture", len(b))
	}
	e.API.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused".*"user":"cf".*"error":"uaa: one-time code was refused: uaa: token request refused \(400 Bad Request\): invalid_grant Invalid authorization code: \[code\]"`), 5*time.Second)

	// Tokens that are not good: refused before anything else.
	must := func(tok string, err error) string {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := cf.token(t)
	bad := []struct {
		name, token, reason string
	}{
		{"expired", must(e.UAA.MintToken("developer", -time.Minute)), "uaa: token has expired"},
		{"forged", must(e.UAA.MintForgedToken("developer", 0)), "uaa: token is not valid: signature does not verify"},
		{"wrong issuer", must(e.UAA.MintTokenWithIssuer("developer", 0, "https://uaa.elsewhere.example.com/oauth/token")),
			"uaa: token is not valid: issued by another UAA"},
		{"truncated", good[:len(good)-20], "uaa: token is not valid: signature does not verify"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			status, n, stderr, err := execAPI(t, e, tc.token, "capture", "--app", cfApp, "-c", "1")
			if err == nil || !strings.Contains(err.Error(), "ssh: unable to authenticate") {
				t.Errorf("status %d, err %v, stderr %q; want an authentication failure", status, err, stderr)
			}
			if n != 0 {
				t.Errorf("got %d bytes of capture", n)
			}
			e.API.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused".*"error":"`+regexp.QuoteMeta(tc.reason)+`"`), 5*time.Second)
		})
	}
	// The cf CLI's own token works from the Go client: the refusals above
	// are about the tokens.
	status, n, stderr, err := execAPI(t, e, good, "capture", "--app", cfApp, "--instance", "7")
	want := "pcap: error: target-not-found reason=\"app myapp has no web instance 7 (it has 4: 0..3)\"\n"
	if err != nil || status != 1 || n != 0 || stderr != want {
		t.Errorf("cf's own token: status %d, err %v, %d bytes, stderr %q; want 1, nil, 0, %q", status, err, n, stderr, want)
	}

	if n := len(e.API.Lines(regexp.MustCompile(`"msg":"capture-started"`))); n != 1 {
		t.Errorf("the API started %d captures, want 1 (the one-time code's)", n)
	}
	log := e.API.Output()
	for _, secret := range append([]string{code, good}, bad[0].token, bad[1].token, bad[2].token) {
		if strings.Contains(log, secret) {
			t.Errorf("the API's log contains a code or token (%.12s…)", secret)
		}
	}
}

func regexpLine(p *apiProc, re string) bool {
	return len(p.Lines(regexp.MustCompile(re))) > 0
}

// runSSHPassword starts the real OpenSSH client through sshpass with
// password authentication only, the API's host key pinned, and stdin held
// open (EOF would stop the capture). The password goes through the
// environment, not the command line.
func runSSHPassword(t *testing.T, a *apiProc, user, password string, out io.Writer, command ...string) *sshClient {
	t.Helper()
	host, port, kh := pinnedKnownHosts(t, a, t.TempDir())
	args := []string{"-e", "ssh", "-p", port, "-F", "none",
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes",
		"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
		"-o", "NumberOfPasswordPrompts=1", "-o", "LogLevel=ERROR",
		user + "@" + host}
	return startSSHClient(t, a.Netns, out, []string{"SSHPASS=" + password}, "sshpass", append(args, command...)...)
}
