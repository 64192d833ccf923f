package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// TestCFRoles: only space developers and admins may capture an app (the
// Cloud Controller's SSH access check decides). A space auditor, an org
// manager and a developer of another space are refused with a clear
// message, cf exits non-zero, and no agent is contacted; then a space
// developer and an admin capture.
func TestCFRoles(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	dir := t.TempDir()

	notAllowed := regexp.MustCompile(`^pcap: error: not-allowed reason="you may not capture app ` + cfApp + `: app captures follow SSH access, which takes the space developer role in the app's space \(or admin\)"$`)
	for _, user := range []string{"auditor", "orgmanager"} {
		cf := newCFCLI(t)
		cf.login(t, e, user)
		out := filepath.Join(dir, user+".pcapng")
		p := cf.start(t, e, nil, "myapp", "-o", out)
		if code := cfExit(t, p, 60*time.Second); code != 1 {
			t.Errorf("%s: cf pcap exited %d, want 1\n%s", user, code, p.Output())
		}
		if len(p.Lines(notAllowed)) != 1 {
			t.Errorf("%s: no line matching %q:\n%s", user, notAllowed, p.Output())
		}
		assertNoFile(t, out)
	}

	// A developer of another space does not see the app: the plugin does
	// not find it in the targeted space; the API, asked directly with the
	// user's own cf token, answers what the CC's SSH access check answers
	// (which, like `cf ssh`, tells a refusal from an unknown app).
	other := newCFCLI(t)
	other.loginTo(t, e, "otherdev", "other")
	out := filepath.Join(dir, "otherdev.pcapng")
	p := other.start(t, e, nil, "myapp", "-o", out)
	if code := cfExit(t, p, 60*time.Second); code != 1 {
		t.Errorf("otherdev: cf pcap exited %d, want 1\n%s", code, p.Output())
	}
	if want := "FAILED: app myapp not found in the targeted space"; !strings.Contains(p.Output(), want) {
		t.Errorf("otherdev: output lacks %q:\n%s", want, p.Output())
	}
	assertNoFile(t, out)
	token := other.token(t)
	status, stdout, stderr, err := execAPI(t, e, token, "capture", "--app", cfApp, "-c", "1")
	want := fmt.Sprintf("pcap: error: not-allowed reason=\"you may not capture app %s: app captures follow SSH access, which takes the space developer role in the app's space (or admin)\"\n", cfApp)
	if err != nil || status != 1 || stderr != want || stdout != 0 {
		t.Errorf("otherdev at the API: status %d, err %v, %d bytes of capture, stderr %q; want 1, nil, 0, %q", status, err, stdout, stderr, want)
	}

	// The API refused each after asking the Cloud Controller, and never
	// contacted an agent. (Its log is read as it comes: wait for the last.)
	e.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-refused","user":"cf:otherdev"`), 5*time.Second)
	refused := e.API.Lines(regexp.MustCompile(`"msg":"capture-refused"`))
	if len(refused) != 3 {
		t.Errorf("API logged %d capture-refused, want 3:\n%s", len(refused), strings.Join(refused, "\n"))
	}
	if n := len(e.API.Lines(regexp.MustCompile(`"msg":"capture-started"`))); n != 0 {
		t.Errorf("API started %d captures for refused users", n)
	}
	assertNoAgentContact(t, e)
	if strings.Contains(e.API.Output(), token) {
		t.Error("the API logged a token")
	}

	// A space developer and an admin capture, each one instance.
	for _, tc := range []struct {
		user  string
		index int
	}{{"developer", 0}, {"admin", 2}} {
		cf := newCFCLI(t)
		cf.login(t, e, tc.user)
		out := filepath.Join(dir, tc.user+".pcapng")
		p := cf.start(t, e, nil, "myapp", "-i", fmt.Sprint(tc.index), "-f", "udp dst port 9000", "-c", "5", "-o", out)
		p.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: web/%d: started`, tc.index)), 30*time.Second)
		sendUDP(t, e.Containers[tc.index].NS, "198.18.0.1:9000", 5)
		if code := cfExit(t, p, 30*time.Second); code != 0 {
			t.Fatalf("%s: cf pcap exited %d, want 0\n%s", tc.user, code, p.Output())
		}
		per := interfaceCounts(t, out)
		name := fmt.Sprintf("web/%d:eth0", tc.index)
		if per[name] != 5 || len(per) != 1 {
			t.Errorf("%s: packets per interface = %v, want %s=5 only", tc.user, per, name)
		}
	}
	// Now both cells were contacted: the check above can see contact.
	for i, c := range e.Cells {
		if len(c.Agent.Lines(agentContactRe)) == 0 {
			t.Errorf("cell %d: no contact logged after a capture on it", i)
		}
	}
}

var agentContactRe = regexp.MustCompile(`"msg":"(connection-opened|capture-started)"`)

// assertNoAgentContact fails t when any cell's agent logged a connection
// or a capture.
func assertNoAgentContact(t *testing.T, e *cfEnv) {
	t.Helper()
	for i, c := range e.Cells {
		if lines := c.Agent.Lines(agentContactRe); len(lines) > 0 {
			t.Errorf("cell %d's agent was contacted:\n%s", i, strings.Join(lines, "\n"))
		}
	}
}

// cfExit waits for a started cf command and returns its exit code.
func cfExit(t *testing.T, p *testenv.Proc, timeout time.Duration) int {
	t.Helper()
	if _, ok := p.Wait(timeout); !ok {
		t.Fatalf("cf did not exit within %v:\n%s", timeout, p.Output())
	}
	return p.Cmd.ProcessState.ExitCode()
}

func assertNoFile(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); err == nil {
		t.Errorf("%s exists after a refused capture", path)
	}
}

// loginTo is login with another space to target.
func (c *cfCLI) loginTo(t *testing.T, e *cfEnv, user, space string) {
	t.Helper()
	c.must(t, "api", e.CC.URL())
	c.must(t, "auth", user, user+"-pw")
	c.must(t, "target", "-o", "org", "-s", space)
	c.must(t, "install-plugin", "-f", filepath.Join(testenv.Binaries(t), "pcap-cf-plugin"))
}

// token is the cf CLI's current access token, without "bearer ".
func (c *cfCLI) token(t *testing.T) string {
	t.Helper()
	out := strings.TrimSpace(c.must(t, "oauth-token"))
	tok, ok := strings.CutPrefix(out, "bearer ")
	if !ok {
		t.Fatalf("cf oauth-token printed %q", out)
	}
	return tok
}

// execAPI runs a command at the API's front door as user "cf" with the
// Go SSH client, password auth; it returns the exit status, how many
// capture bytes came and the status lines.
func execAPI(t *testing.T, e *cfEnv, password string, command ...string) (int, int, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	status, err := frontdoor.Exec(ctx, frontdoor.ExecOptions{
		Addr: e.API.Addr,
		Config: tunnel.ClientConfig{
			User: "cf", Auth: []ssh.AuthMethod{ssh.Password(password)},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{e.API.HostKey.Signer.PublicKey()}),
		},
		Command: capturecmd.Quote(command),
		Stdout:  &stdout, Stderr: &stderr,
	})
	return status, stdout.Len(), stderr.String(), err
}
