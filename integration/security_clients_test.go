package integration

import (
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
)

// rogueSSH is an SSH server that is not pcap-api: it records every
// password offered to it and refuses every login.
type rogueSSH struct {
	Addr string
	Key  ssh.Signer

	mu        sync.Mutex
	conns     int
	passwords []string
}

// startRogueSSH serves on l until the test ends.
func startRogueSSH(t *testing.T, l net.Listener) *rogueSSH {
	t.Helper()
	key, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	r := &rogueSSH{Addr: l.Addr().String(), Key: key}
	conf := &ssh.ServerConfig{PasswordCallback: func(_ ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		r.mu.Lock()
		r.passwords = append(r.passwords, string(pw))
		r.mu.Unlock()
		return nil, errors.New("rogue: refused")
	}}
	conf.AddHostKey(key)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				if sc, _, _, err := ssh.NewServerConn(c, conf); err == nil {
					sc.Close() // never: every login is refused
				}
			}()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	return r
}

func (r *rogueSSH) seen() (conns int, passwords []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conns, append([]string(nil), r.passwords...)
}

// cfRun runs `cf args…` to completion and returns its exit code and
// output.
func (c *cfCLI) run(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.bin, args...)
	cmd.Env = append(os.Environ(), c.env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("cf %s: %v", strings.Join(args, " "), err)
		return -1, ""
	}
}

// TestSecurityClientsCFRogueHost: the real cf CLI and plugin never send a
// credential to a host whose key they cannot check. Unpinned and
// unrecorded, or pinned to pcap-api's key, a rogue server gets no
// password at all, no one-time code is even asked for, and nothing is
// recorded as trusted. --trust-on-first-use prints the fingerprint it
// trusts and records it once pcap-api accepted the login; a rogue that
// refuses the login is not recorded, and what it got is a single-use
// code, never the user's token.
func TestSecurityClientsCFRogueHost(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, cf := startCFDeveloper(t)
	token := cf.token(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rogue := startRogueSSH(t, l)
	known := filepath.Join(cf.home, ".cf", "pcap_known_hosts")
	out := filepath.Join(t.TempDir(), "out.pcapng")
	rogueFP := tunnel.Fingerprint(rogue.Key.PublicKey())
	nothingSent := func(t *testing.T, authorize int) {
		t.Helper()
		if _, pw := rogue.seen(); len(pw) != 0 {
			t.Errorf("the rogue host got %d passwords", len(pw))
		}
		if n := e.UAA.Requests().Count("/oauth/authorize"); n != authorize {
			t.Errorf("%d one-time codes asked for, want none", n-authorize)
		}
		assertNoFile(t, out)
	}

	t.Run("unpinned", func(t *testing.T) {
		authorize := e.UAA.Requests().Count("/oauth/authorize")
		code, stderr := cf.run(t, "pcap", "myapp", "-o", out, "--pcap-api", rogue.Addr)
		if code != 1 || !strings.Contains(stderr, "offered host key "+rogueFP+": pcap-api's host key is not pinned, so nothing was sent to it") ||
			!strings.Contains(stderr, "--pcap-api-host-key-fingerprint") || !strings.Contains(stderr, "--trust-on-first-use") {
			t.Errorf("exit %d:\n%s", code, stderr)
		}
		if conns, _ := rogue.seen(); conns == 0 {
			t.Error("the plugin never reached the rogue host: the test proves nothing")
		}
		nothingSent(t, authorize)
		if _, err := os.Stat(known); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: %v; want none", known, err)
		}
	})

	t.Run("pinned to pcap-api's key", func(t *testing.T) {
		authorize := e.UAA.Requests().Count("/oauth/authorize")
		code, stderr := cf.run(t, "pcap", "myapp", "-o", out, "--pcap-api", rogue.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(e.API.HostKey))
		if code != 1 || !strings.Contains(stderr, "offered host key "+rogueFP+", not the pinned "+fingerprintOf(e.API.HostKey)) {
			t.Errorf("exit %d:\n%s", code, stderr)
		}
		nothingSent(t, authorize)
	})

	t.Run("trust on first use", func(t *testing.T) {
		// pcap-api accepts the login (and refuses the request): recorded.
		authorize, tokens := e.UAA.Requests().Count("/oauth/authorize"), e.UAA.Requests().Count("/oauth/token")
		code, stderr := cf.run(t, "pcap", "myapp", "-i", "7", "-o", out, "--pcap-api", e.API.Addr, "--trust-on-first-use")
		if code != 1 || !strings.Contains(stderr, "pcap: trusting pcap-api "+e.API.Addr+" on first use: host key "+fingerprintOf(e.API.HostKey)+"\n") ||
			!strings.Contains(stderr, "app myapp has no web instance 7") {
			t.Errorf("first use: exit %d:\n%s", code, stderr)
		}
		// One code asked for by the plugin and exchanged by pcap-api: what
		// pcap-api got as password was that code, not a token.
		if n := e.UAA.Requests().Count("/oauth/authorize") - authorize; n != 1 {
			t.Errorf("%d one-time codes for one login, want 1", n)
		}
		if n := e.UAA.Requests().Count("/oauth/token") - tokens; n != 1 {
			t.Errorf("%d token requests for one login, want 1 (pcap-api's code exchange)", n)
		}
		b, err := os.ReadFile(known)
		if err != nil || strings.Count(string(b), "\n") != 1 || !strings.Contains(string(b), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.API.HostKey.Signer.PublicKey())))) {
			t.Fatalf("%s after first use: %q, %v", known, b, err)
		}
		// Recorded: the next run needs no flag and prints nothing about trust.
		code, stderr = cf.run(t, "pcap", "myapp", "-i", "7", "-o", out, "--pcap-api", e.API.Addr)
		if code != 1 || strings.Contains(stderr, "trusting") || !strings.Contains(stderr, "app myapp has no web instance 7") {
			t.Errorf("second use: exit %d:\n%s", code, stderr)
		}

		// A rogue host, trusted on first use: it gets a one-time code of
		// the developer (not the token), refuses the login, and is not
		// recorded.
		_, stderr = cf.run(t, "pcap", "myapp", "-o", out, "--pcap-api", rogue.Addr, "--trust-on-first-use")
		if !strings.Contains(stderr, "pcap: trusting pcap-api "+rogue.Addr+" on first use: host key "+rogueFP+"\n") {
			t.Errorf("the fingerprint trusted was not shown:\n%s", stderr)
		}
		if after, _ := os.ReadFile(known); string(after) != string(b) {
			t.Errorf("a host that refused the login was recorded:\n%s", after)
		}
		_, pw := rogue.seen()
		if len(pw) == 0 {
			t.Fatal("the rogue host got no password: the test proves nothing")
		}
		for _, p := range pw {
			if uaa.LooksLikeToken(p) || strings.Contains(p, token) || strings.Contains(token, p) {
				t.Fatal("the rogue host got the token")
			}
		}
		u := &uaa.Client{URL: e.UAA.URL()}
		tok, err := u.ExchangeCode(context.Background(), "ssh-proxy", "ssh-proxy-secret", pw[0])
		if err != nil {
			t.Fatalf("what the rogue host got is not a one-time code: %v", err)
		}
		if c, err := u.Verify(context.Background(), tok.AccessToken); err != nil || c.UserName != "developer" {
			t.Errorf("the code is %+v, %v; want the developer's", c, err)
		}
		if _, err := u.ExchangeCode(context.Background(), "ssh-proxy", "ssh-proxy-secret", pw[0]); !errors.Is(err, uaa.ErrBadCode) {
			t.Errorf("a code exchanged twice: %v, want ErrBadCode", err)
		}
	})
}

// TestSecurityClientsBOSH: pcap-bosh (the real binary, in the LAN with a
// real bosh log-in) sends a rogue host nothing, unpinned or pinned to
// pcap-api's key, and records nothing; the password it sends pcap-api is a
// one-time code of the director's UAA (the UAA saw the code asked for and
// exchanged, pcap-api logged the code user). -o with --force refuses a
// symbolic link (its target untouched, pcap-api not contacted) and
// replaces an existing file only once the capture started, mode 0600.
func TestSecurityClientsBOSH(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 1)
	env := []string{"HOME=" + home}
	rogue := startRogueSSH(t, testenv.ListenIn(t, e.Lab.LAN, "198.18.0.1:0"))
	rogueFP := tunnel.Fingerprint(rogue.Key.PublicKey())
	known := filepath.Join(home, ".bosh", "pcap_known_hosts")
	dir := t.TempDir()
	out := filepath.Join(dir, "out.pcapng")

	for _, tc := range []struct {
		name, want string
		flags      []string
	}{
		{"unpinned", "offered host key " + rogueFP + ": pcap-api's host key is not pinned, so nothing was sent to it", nil},
		{"pinned to pcap-api's key", "offered host key " + rogueFP + ", not the pinned " + fingerprintOf(e.API.HostKey),
			[]string{"--pcap-api-host-key-fingerprint", fingerprintOf(e.API.HostKey)}},
	} {
		t.Run("rogue host, "+tc.name, func(t *testing.T) {
			authorize := e.UAA.Requests().Count("/oauth/authorize")
			conns, _ := rogue.seen()
			r := e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "cf", "router", "-n", "-o", out, "--pcap-api", rogue.Addr}, tc.flags...)...)
			if r.Code != 1 || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("exit %d:\n%s", r.Code, r.Stderr)
			}
			if now, pw := rogue.seen(); now == conns || len(pw) != 0 {
				t.Errorf("the rogue host had %d connections and got %d passwords; want some and none", now-conns, len(pw))
			}
			if n := e.UAA.Requests().Count("/oauth/authorize") - authorize; n != 0 {
				t.Errorf("%d one-time codes asked for, want none", n)
			}
			if _, err := os.Stat(known); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: %v; want none", known, err)
			}
			assertNoFile(t, out)
		})
	}

	t.Run("pcap-api gets a code, not the token", func(t *testing.T) {
		authorize := e.UAA.Requests().Count("/oauth/authorize")
		tokens := e.UAA.Requests().Count("/oauth/token")
		r := e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "cf", "router", "-n", "--duration", "1s", "-o", out}, boshAPIFlags(e.API)...)...)
		if r.Code != 0 {
			t.Fatalf("exit %d:\n%s", r.Code, r.Stderr)
		}
		capinfos(t, out)
		if fi, err := os.Stat(out); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, %v; want mode 0600", out, fi, err)
		}
		// One code asked for by pcap-bosh, exchanged by pcap-api: the
		// access token (still valid, nothing to refresh) never went out.
		if n := e.UAA.Requests().Count("/oauth/authorize") - authorize; n != 1 {
			t.Errorf("%d codes asked for, want 1", n)
		}
		if n := e.UAA.Requests().Count("/oauth/token") - tokens; n != 1 {
			t.Errorf("%d token requests, want 1 (pcap-api's code exchange)", n)
		}
		e.API.WaitLine(t, regexp.MustCompile(`"msg":"capture-started".*"user":"bosh:admin","method":"one-time-code"`), 5*time.Second)
	})

	t.Run("output file", func(t *testing.T) {
		started := func() int { return len(e.API.Lines(regexp.MustCompile(`"msg":"capture-started"`))) }
		target := filepath.Join(dir, "precious")
		if err := os.WriteFile(target, []byte("keep me"), 0o644); err != nil {
			t.Fatal(err)
		}
		link := filepath.Join(dir, "link.pcapng")
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
		before, authorize := started(), e.UAA.Requests().Count("/oauth/authorize")
		r := e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "cf", "router", "-n", "--duration", "1s", "-o", link, "--force"}, boshAPIFlags(e.API)...)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, link+": output exists and is a symbolic link or a directory") {
			t.Errorf("--force onto a symbolic link: exit %d:\n%s", r.Code, r.Stderr)
		}
		if b, _ := os.ReadFile(target); string(b) != "keep me" {
			t.Errorf("the link's target now holds %q", b)
		}
		if started() != before || e.UAA.Requests().Count("/oauth/authorize") != authorize {
			t.Error("pcap-api was asked to capture into a symbolic link")
		}

		// An existing file stays as it is when the capture never starts.
		old := filepath.Join(dir, "old.pcapng")
		if err := os.WriteFile(old, []byte("an earlier capture"), 0o644); err != nil {
			t.Fatal(err)
		}
		r = e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "nope", "router", "-n", "-o", old, "--force"}, boshAPIFlags(e.API)...)...)
		if r.Code != 1 || !strings.Contains(r.Stderr, `deployment \"nope\" not found`) {
			t.Errorf("refused capture: exit %d:\n%s", r.Code, r.Stderr)
		}
		if b, _ := os.ReadFile(old); string(b) != "an earlier capture" {
			t.Errorf("a refused capture with --force changed the file: %q", b)
		}
		// Once it starts, the file is replaced and made 0600.
		r = e.pcapBosh(t, env, append([]string{"-e", "fake", "-d", "cf", "router", "-n", "--duration", "1s", "-o", old, "--force"}, boshAPIFlags(e.API)...)...)
		if r.Code != 0 {
			t.Fatalf("capture with --force: exit %d:\n%s", r.Code, r.Stderr)
		}
		capinfos(t, old)
		if fi, _ := os.Stat(old); fi.Mode().Perm() != 0o600 {
			t.Errorf("replaced file mode %v, want 0600", fi.Mode())
		}
	})

	t.Run("the code exchange is pcap-api's", func(t *testing.T) {
		// What pcap-bosh ssh-code prints is worth nothing without
		// pcap-api's client secret: UAA refuses it to another client
		// that may exchange codes, and then it is used up.
		code := e.sshCode(t, home)
		hc := relDirectorClient(t, e).HTTP // the env's CA, inside the LAN
		u := &uaa.Client{URL: e.UAA.URL(), HTTP: hc}
		if _, err := u.ExchangeCode(context.Background(), "ssh-proxy", "ssh-proxy-secret", code); !errors.Is(err, uaa.ErrBadCode) {
			t.Errorf("another client exchanged the code: %v", err)
		}
		cl := boshSSH{API: e.API, Password: code}.start(t, "capture", "--help")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 255 {
			t.Errorf("the code after another client tried it: ssh exited %d, want 255", c)
		}
	})
}
