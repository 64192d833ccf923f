package plugin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	cfplugin "code.cloudfoundry.org/cli/v8/plugin"
	plugin_models "code.cloudfoundry.org/cli/v8/plugin/models"
	"code.cloudfoundry.org/cli/v8/plugin/pluginfakes"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	fakeuaa "code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor/frontdoortest"
)

func TestDeriveAPIAddr(t *testing.T) {
	cases := []struct {
		endpoint, want, err string
	}{
		{endpoint: "https://api.sys.example.com", want: "pcap.sys.example.com:2222"},
		{endpoint: "https://api.sys.example.com/", want: "pcap.sys.example.com:2222"},
		{endpoint: "https://api.sys.example.com:443", want: "pcap.sys.example.com:2222"},
		{endpoint: "http://api.example.com:8080/v3", want: "pcap.example.com:2222"},
		{endpoint: "https://cf-api.system.internal", want: "pcap.system.internal:2222"},
		{endpoint: "https://127.0.0.1:8443", err: `cannot derive the pcap-api address from "https://127.0.0.1:8443": give --pcap-api`},
		{endpoint: "https://[::1]:8443", err: `cannot derive the pcap-api address from "https://[::1]:8443": give --pcap-api`},
		{endpoint: "https://localhost", err: `cannot derive the pcap-api address from "https://localhost": give --pcap-api`},
		{endpoint: "", err: `cannot derive the pcap-api address from "": give --pcap-api`},
		{endpoint: "api.sys.example.com", err: `cannot derive the pcap-api address from "api.sys.example.com": give --pcap-api`},
	}
	for _, tc := range cases {
		t.Run(tc.endpoint, func(t *testing.T) {
			got, err := deriveAPIAddr(tc.endpoint)
			switch {
			case tc.err != "" && (err == nil || err.Error() != tc.err):
				t.Errorf("deriveAPIAddr = %q, %v; want error %q", got, err, tc.err)
			case tc.err == "" && (err != nil || got != tc.want):
				t.Errorf("deriveAPIAddr = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestMetadata(t *testing.T) {
	m := (&Plugin{}).GetMetadata()
	if m.Name != "pcap" || m.Version != (cfplugin.VersionType{Major: 0, Minor: 1, Build: 0}) {
		t.Errorf("name %q version %+v", m.Name, m.Version)
	}
	if len(m.Commands) != 1 || m.Commands[0].Name != "pcap" {
		t.Fatalf("commands = %+v", m.Commands)
	}
	c := m.Commands[0]
	if !strings.HasPrefix(c.UsageDetails.Usage, "cf pcap APP_NAME [-i INDEXES] [-t TYPE] [-f FILTER]") ||
		!strings.Contains(c.UsageDetails.Usage, "cf pcap myapp -o - | wireshark -k -i -") ||
		!strings.Contains(c.UsageDetails.Usage, "cf pcap myapp --interface lo -f 'tcp port 8080' -o plain.pcapng") ||
		!strings.Contains(c.UsageDetails.Usage, "the app's plaintext is on lo") {
		t.Errorf("usage = %q", c.UsageDetails.Usage)
	}
	if c.HelpText == "" {
		t.Error("no help text")
	}
	// Every flag the command parses is documented, under the name the cf
	// CLI shows ("-x" for -x, "--name" for --name).
	for _, f := range []string{"i", "-process", "f", "-interface", "s", "-duration", "c", "-max-bytes", "-format", "o", "-force", "-pcap-api", "-pcap-api-host-key-fingerprint", "-rotate-size", "-rotate-every", "-rotate-files"} {
		if c.UsageDetails.Options[f] == "" {
			t.Errorf("option %q is not documented", f)
		}
	}
}

// world is a fake UAA and Cloud Controller with app "myapp" in space
// "dev", and a cf CLI connection targeting it as developer.
type world struct {
	UAA   *fakeuaa.Server
	CC    *cc.Server
	Token string
	Conn  *pluginfakes.FakeCliConnection
}

const (
	spaceGUID = "5c000000-0000-4000-8000-000000000001"
	appGUID   = "ac000000-0000-4000-8000-000000000001"
	devID     = "dc000000-0000-4000-8000-000000000001"
)

func startWorld(t *testing.T) *world {
	t.Helper()
	u := fakeuaa.StartForTest(t, fakeuaa.Options{Users: []fakeuaa.User{
		{Username: "developer", Password: "pw", ID: devID, Scopes: []string{"openid", "cloud_controller.read"}},
	}})
	c := cc.StartForTest(t, cc.Options{Verifier: u.Verifier(nil), UAAURL: u.URL(), World: cc.World{
		Users: []cc.User{{GUID: devID, Username: "developer"}},
		Organizations: []cc.Org{{Name: "org", Spaces: []cc.Space{{GUID: spaceGUID, Name: "dev", Apps: []cc.App{
			{GUID: appGUID, Name: "myapp", Processes: []cc.Process{{Type: "web", Instances: []cc.Instance{{Index: 0}}}}},
		}}}}},
		Roles: []cc.Role{{Type: cc.RoleSpaceDeveloper, User: devID, Space: spaceGUID}},
	}})
	tok, err := u.MintToken("developer", 0)
	if err != nil {
		t.Fatal(err)
	}
	conn := &pluginfakes.FakeCliConnection{}
	conn.ApiEndpointReturns(c.URL(), nil)
	conn.AccessTokenReturns("bearer "+tok, nil) // as the cf CLI gives it
	conn.GetCurrentSpaceReturns(plugin_models.Space{SpaceFields: plugin_models.SpaceFields{Guid: spaceGUID, Name: "dev"}}, nil)
	conn.IsSSLDisabledReturns(false, nil)
	return &world{UAA: u, CC: c, Token: tok, Conn: conn}
}

// frontDoor is the fake front door the clients' tests share.
type frontDoor = frontdoortest.Server

// startFrontDoor starts fd for user "cf" (the plugin's login).
func startFrontDoor(t *testing.T, fd *frontDoor) *frontDoor {
	t.Helper()
	fd.User = "cf"
	return frontdoortest.Start(t, fd)
}

// result is what one plugin run did.
type result struct {
	code           int
	exited         bool
	stdout, stderr string
}

func runPlugin(t *testing.T, conn cfplugin.CliConnection, env map[string]string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	r := result{code: -1}
	p := &Plugin{
		Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string { return env[k] },
		Exit:   func(c int) { r.code, r.exited = c, true },
	}
	p.Run(conn, args)
	r.stdout, r.stderr = stdout.String(), stderr.String()
	return r
}

func TestRunIgnoresOtherCommands(t *testing.T) {
	r := runPlugin(t, &pluginfakes.FakeCliConnection{}, nil, "CLI-MESSAGE-UNINSTALL")
	if r.exited || r.stdout != "" || r.stderr != "" {
		t.Errorf("uninstall message: %+v", r)
	}
}

// TestVersionInsideCF: `cf pcap --version` prints the build's version on
// stdout without asking the cf CLI for anything.
func TestVersionInsideCF(t *testing.T) {
	for _, flag := range []string{"--version", "-v"} {
		conn := &pluginfakes.FakeCliConnection{}
		r := runPlugin(t, conn, nil, "pcap", flag)
		if r.code != 0 || r.stdout != "cf pcap version "+Version+"\n" || r.stderr != "" {
			t.Errorf("cf pcap %s: %+v", flag, r)
		}
		if conn.ApiEndpointCallCount() != 0 || conn.AccessTokenCallCount() != 0 {
			t.Errorf("cf pcap %s asked the cf CLI for its target or token", flag)
		}
	}
}

// TestFlagsAfterAppName: flags parse wherever they are, and become the
// capture command sent to pcap-api with the app's guid and the user's
// own token.
func TestFlagsAfterAppName(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG", Stderr: "pcap: summary: limit-reached sources=2\n"})
	dir := t.TempDir()
	env := map[string]string{"CF_HOME": dir}
	want := "capture --app " + appGUID + " --type worker --instance 0,2 --interface eth1 --interface any --filter 'tcp port 8080' --snaplen 128 --duration 30s --count 5"
	flags := []string{"-i", "0,2", "-f", "tcp port 8080", "--interface", "eth1", "--interface", "any", "-s", "128",
		"--duration", "30s", "-c", "5", "-t", "worker"}
	api := []string{"--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", fd.Fingerprint}
	for i, args := range [][]string{
		append(append(append([]string{"pcap", "myapp"}, flags...), "-o", "after.pcapng"), api...),
		append(append(append([]string{"pcap"}, flags...), "-o", "before.pcapng", "myapp"), api...),
		append(append(append(append([]string{"pcap"}, flags[:4]...), "myapp"), flags[4:]...), append([]string{"--force", "-o", "between.pcapng"}, api...)...),
	} {
		out := filepath.Join(dir, strings.Fields("after before between")[i]+".pcapng")
		for j := range args {
			if strings.HasSuffix(args[j], ".pcapng") {
				args[j] = out
			}
		}
		r := runPlugin(t, w.Conn, env, args...)
		if !r.exited || r.code != 0 {
			t.Fatalf("cf %s: exit %d (exited %v)\n%s", strings.Join(args, " "), r.code, r.exited, r.stderr)
		}
		if b, _ := os.ReadFile(out); string(b) != "PCAPNG" {
			t.Errorf("%s holds %q", out, b)
		}
		if r.stdout != "" {
			t.Errorf("stdout = %q: capture bytes were written to stdout without -o -", r.stdout)
		}
		if r.stderr != "pcap: summary: limit-reached sources=2\n" {
			t.Errorf("stderr = %q", r.stderr)
		}
	}
	_, passwords, commands := fd.Seen()
	if !reflect.DeepEqual(commands, []string{want, want, want}) {
		t.Errorf("commands =\n%q\nwant 3 times\n%q", commands, want)
	}
	if len(passwords) != 3 {
		t.Errorf("%d passwords sent, want 3", len(passwords))
	}
	for _, pw := range passwords {
		if uaa.LooksLikeToken(pw) || strings.Contains(pw, w.Token) {
			t.Fatal("the password sent is a token, not a one-time code")
		}
		// A `cf ssh-code` code: for the client the CC's root names
		// (ssh-proxy), the developer's, exchanged once by pcap-api.
		u := &uaa.Client{URL: w.UAA.URL()}
		tok, err := u.ExchangeCode(context.Background(), "ssh-proxy", "ssh-proxy-secret", pw)
		if err != nil {
			t.Fatalf("exchange the code sent: %v", err)
		}
		if c, err := u.Verify(context.Background(), tok.AccessToken); err != nil || c.UserName != "developer" {
			t.Errorf("the code is for %+v, %v; want developer", c, err)
		}
	}
	// Three codes, asked for with the user's token the way cf ssh-code does.
	if n := w.UAA.Requests().Count("/oauth/authorize"); n != 3 {
		t.Errorf("%d authorize requests, want 3", n)
	}
	// The app was looked up by name in the targeted space, with CC v3.
	if n := w.CC.Requests().Count("/v3/apps"); n != 3 {
		t.Errorf("GET /v3/apps made %d times, want 3", n)
	}
	for _, e := range w.CC.Requests().Entries() {
		if e.Path == "/v3/apps" && e.RawQuery != "names=myapp&space_guids="+spaceGUID {
			t.Errorf("app lookup query = %q", e.RawQuery)
		}
	}
}

// TestEnvoyHint: with no --interface (eth0, which carries only envoy's TLS
// under route integrity), one stderr line points at lo; naming any
// interface, eth0 included, keeps the plugin quiet.
func TestEnvoyHint(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG", Stderr: "pcap: summary: stopped sources=1\n"})
	const hint = "pcap: hint: with route integrity, eth0 carries TLS; the app's plaintext is on lo (--interface lo)\n"
	for _, tc := range []struct {
		flags  []string
		stderr string
	}{
		{nil, hint + "pcap: summary: stopped sources=1\n"},
		{[]string{"--interface", "eth0"}, "pcap: summary: stopped sources=1\n"},
		{[]string{"--interface", "lo", "-f", "tcp port 8080"}, "pcap: summary: stopped sources=1\n"},
	} {
		args := append([]string{"pcap", "myapp", "-o", "-", "--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", fd.Fingerprint}, tc.flags...)
		r := runPlugin(t, w.Conn, map[string]string{"CF_HOME": t.TempDir()}, args...)
		if r.code != 0 || r.stderr != tc.stderr {
			t.Errorf("cf %s: exit %d, stderr\n%q\nwant\n%q", strings.Join(args, " "), r.code, r.stderr, tc.stderr)
		}
	}
	_, _, commands := fd.Seen()
	// eth0 named or not is the same capture; lo is asked for.
	if len(commands) != 3 || commands[0] != commands[1] || !strings.HasSuffix(commands[2], " --interface lo --filter 'tcp port 8080'") {
		t.Errorf("commands = %q", commands)
	}
}

func TestOutputToStdout(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG"})
	t.Chdir(t.TempDir())
	r := runPlugin(t, w.Conn, map[string]string{"CF_HOME": t.TempDir()},
		"pcap", "myapp", "-o", "-", "--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", fd.Fingerprint)
	if r.code != 0 || r.stdout != "PCAPNG" {
		t.Errorf("exit %d, stdout %q; want 0 and the capture\n%s", r.code, r.stdout, r.stderr)
	}
	if _, err := os.Stat("-"); err == nil {
		t.Error(`a file named "-" was created`)
	}
}

// TestExitStatus: the API's exit status is the plugin's (the cf CLI
// turns any non-zero status into 1).
func TestExitStatus(t *testing.T) {
	w := startWorld(t)
	for _, status := range []uint32{0, 1, 3} {
		fd := startFrontDoor(t, &frontDoor{Exit: status, Stderr: fmt.Sprintf("pcap: summary: status %d\n", status)})
		out := filepath.Join(t.TempDir(), "out.pcapng")
		r := runPlugin(t, w.Conn, map[string]string{"CF_HOME": t.TempDir()},
			"pcap", "myapp", "-o", out, "--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", fd.Fingerprint)
		if r.code != int(status) || strings.Contains(r.stderr, "FAILED") {
			t.Errorf("API exit %d: plugin exit %d, stderr %q", status, r.code, r.stderr)
		}
	}
}

func TestRunErrors(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG"})
	dir := t.TempDir()
	existing := filepath.Join(dir, "existing.pcapng")
	if err := os.WriteFile(existing, []byte("keep"), 0o644); err != nil {
		t.Fatal(err)
	}
	api := []string{"--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", fd.Fingerprint}
	noAPI := &pluginfakes.FakeCliConnection{}
	noSpace := &pluginfakes.FakeCliConnection{}
	noSpace.ApiEndpointReturns(w.CC.URL(), nil)
	noSpace.AccessTokenReturns("bearer "+w.Token, nil)
	noToken := &pluginfakes.FakeCliConnection{}
	noToken.ApiEndpointReturns(w.CC.URL(), nil)
	refreshFailed := &pluginfakes.FakeCliConnection{}
	refreshFailed.ApiEndpointReturns(w.CC.URL(), nil)
	refreshFailed.AccessTokenReturns("", errors.New("the refresh token has expired"))
	cases := []struct {
		name   string
		conn   cfplugin.CliConnection
		args   []string
		stderr string
	}{
		{"no output", w.Conn, append([]string{"pcap", "myapp"}, api...),
			"FAILED: no output given: -o FILE, or -o - to write the capture to stdout\n"},
		{"no app", w.Conn, append([]string{"pcap", "-o", "x"}, api...),
			"FAILED: give exactly one app name\nUSAGE:\n   " + usage + "\n"},
		{"two apps", w.Conn, append([]string{"pcap", "myapp", "yourapp", "-o", "x"}, api...),
			"FAILED: give exactly one app name\nUSAGE:\n   " + usage + "\n"},
		{"bad index", w.Conn, append([]string{"pcap", "myapp", "-i", "0,x", "-o", "x"}, api...),
			"FAILED: instance index \"x\" is not a number 0..100000\n"},
		{"unknown flag", w.Conn, append([]string{"pcap", "myapp", "--bogus", "-o", "x"}, api...),
			"FAILED: flag provided but not defined: -bogus (see cf help pcap)\n"},
		{"tcpdump -w", w.Conn, append([]string{"pcap", "myapp", "-w", "x"}, api...),
			"FAILED: flag provided but not defined: -w (to write a file, use -o FILE; see cf help pcap)\n"},
		// Local checks come before asking the cf CLI for anything.
		{"bad snaplen", noAPI, append([]string{"pcap", "myapp", "-s", "0", "-o", "x"}, api...),
			"FAILED: snaplen 0 is out of range 1..262144\n"},
		{"bad format", noAPI, append([]string{"pcap", "myapp", "--format", "cap", "-o", "x"}, api...),
			"FAILED: format \"cap\" is not pcapng or pcap\n"},
		{"app not found", w.Conn, append([]string{"pcap", "nosuchapp", "-o", filepath.Join(dir, "n.pcapng")}, api...),
			"FAILED: app nosuchapp not found in the targeted space\n"},
		{"rotate to stdout", noAPI, append([]string{"pcap", "myapp", "--rotate-size", "1MB", "-o", "-"}, api...),
			"FAILED: rotation: rotating needs -o FILE (the files are named FILE_00001_TIMESTAMP.pcapng, …)\n"},
		{"rotate pcap", noAPI, append([]string{"pcap", "myapp", "--rotate-every", "1m", "--format", "pcap", "-o", "x"}, api...),
			"FAILED: rotation: rotating writes pcapng files only, not --format pcap\n"},
		{"rotate files alone", noAPI, append([]string{"pcap", "myapp", "--rotate-files", "3", "-o", "x"}, api...),
			"FAILED: rotation: --rotate-files needs --rotate-size or --rotate-every\n"},
		{"bad rotate size", noAPI, append([]string{"pcap", "myapp", "--rotate-size", "1.5GB", "-o", "x"}, api...),
			"FAILED: --rotate-size: size \"1.5GB\": unknown unit (use B, kB, MB, GB, TB, KiB, MiB, GiB or TiB)\n"},
		{"existing output", noAPI, append([]string{"pcap", "myapp", "-o", existing}, api...),
			"FAILED: " + existing + ": output file exists (use --force to overwrite)\n"},
		{"not logged in", noAPI, append([]string{"pcap", "myapp", "-o", "x"}, api...),
			"FAILED: no cf API targeted (cf api, cf login)\n"},
		{"no token", noToken, append([]string{"pcap", "myapp", "-o", "x"}, api...),
			"FAILED: not logged in (cf login)\n"},
		{"token refresh failed", refreshFailed, append([]string{"pcap", "myapp", "-o", "x"}, api...),
			"FAILED: not logged in (cf login): the refresh token has expired\n"},
		{"no space", noSpace, append([]string{"pcap", "myapp", "-o", "x"}, api...),
			"FAILED: no space targeted (cf target -o ORG -s SPACE)\n"},
		{"no address", w.Conn, []string{"pcap", "myapp", "-o", "x"},
			"FAILED: cannot derive the pcap-api address from \"" + w.CC.URL() + "\": give --pcap-api\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Chdir(dir)
			r := runPlugin(t, tc.conn, map[string]string{"CF_HOME": dir}, tc.args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1", r.code)
			}
			if r.stderr != tc.stderr {
				t.Errorf("stderr:\n%q\nwant\n%q", r.stderr, tc.stderr)
			}
		})
	}
	if b, _ := os.ReadFile(existing); string(b) != "keep" {
		t.Errorf("existing output file now holds %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "n.pcapng")); err == nil {
		t.Error("an output file was created for an app that does not exist")
	}
	if _, _, commands := fd.Seen(); len(commands) != 0 {
		t.Errorf("the API was asked %q", commands)
	}
}

// TestHostKey: a pinned fingerprint must match; without one, a key is
// trusted only on first use with --trust-on-first-use (its fingerprint
// printed), recorded under CF_HOME once pcap-api accepted the login, and a
// changed key later is a hard error. A host that fails the check gets no
// password at all.
func TestHostKey(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG"})
	other := startFrontDoor(t, &frontDoor{})
	home := t.TempDir()
	env := map[string]string{"CF_HOME": home}
	out := filepath.Join(t.TempDir(), "out.pcapng")
	known := filepath.Join(home, ".cf", "pcap_known_hosts")
	noPasswords := func(t *testing.T, what string) {
		t.Helper()
		if _, pw, _ := fd.Seen(); len(pw) != 0 {
			t.Errorf("%s: pcap-api got %d passwords, want none", what, len(pw))
		}
		if n := w.UAA.Requests().Count("/oauth/authorize"); n != 0 {
			t.Errorf("%s: %d one-time codes asked for, want none", what, n)
		}
	}

	r := runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--pcap-api", fd.Addr, "--pcap-api-host-key-fingerprint", other.Fingerprint)
	if r.code != 1 || !strings.Contains(r.stderr, "offered host key "+fd.Fingerprint+", not the pinned "+other.Fingerprint+": host key does not match the pinned key; nothing was sent to it") {
		t.Errorf("wrong pinned fingerprint: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(out); err == nil {
		t.Error("output file left behind by a refused connection")
	}
	noPasswords(t, "wrong pin")

	// Neither pinned nor recorded, no --trust-on-first-use: refused, with
	// how to pin.
	r = runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--pcap-api", fd.Addr)
	if r.code != 1 || !strings.Contains(r.stderr, "offered host key "+fd.Fingerprint+": pcap-api's host key is not pinned, so nothing was sent to it") ||
		!strings.Contains(r.stderr, "--pcap-api-host-key-fingerprint SHA256:… (or PCAP_API_HOST_KEY_FINGERPRINT)") || !strings.Contains(r.stderr, "--trust-on-first-use") {
		t.Errorf("no pin: exit %d\n%s", r.code, r.stderr)
	}
	if _, err := os.Stat(known); err == nil {
		t.Errorf("%s written without --trust-on-first-use", known)
	}
	noPasswords(t, "no pin")

	// Trust on first use, asked for: a host that refuses the login is not
	// recorded.
	refusing := startFrontDoor(t, &frontDoor{Accept: func(string) bool { return false }})
	r = runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--pcap-api", refusing.Addr, "--trust-on-first-use")
	if r.code != 1 || !strings.Contains(r.stderr, "pcap: trusting pcap-api "+refusing.Addr+" on first use: host key "+refusing.Fingerprint+"\n") {
		t.Errorf("first use, refused: exit %d\n%s", r.code, r.stderr)
	}
	if b, err := os.ReadFile(known); err == nil && len(b) != 0 {
		t.Errorf("a host that refused the login was recorded: %q", b)
	}

	r = runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--pcap-api", fd.Addr, "--trust-on-first-use")
	if r.code != 0 || !strings.Contains(r.stderr, "pcap: trusting pcap-api "+fd.Addr+" on first use: host key "+fd.Fingerprint+"\n") {
		t.Fatalf("first use: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(known)
	if err != nil || !strings.Contains(string(b), strings.TrimSpace(string(ssh.MarshalAuthorizedKey(fd.Signer.PublicKey())))) {
		t.Fatalf("%s after first use: %q, %v", known, b, err)
	}
	if fi, err := os.Stat(known); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("%s: %v, %v; want mode 0600", known, fi.Mode(), err)
	}
	// Same key again, without the flag: fine, and nothing printed.
	r = runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--force", "--pcap-api", fd.Addr)
	if r.code != 0 || strings.Contains(r.stderr, "trusting") {
		t.Fatalf("second use: exit %d\n%s", r.code, r.stderr)
	}
	// The server's key changes: refused, even with --trust-on-first-use.
	line := strings.Replace(string(b), strings.Fields(string(ssh.MarshalAuthorizedKey(fd.Signer.PublicKey())))[1],
		strings.Fields(string(ssh.MarshalAuthorizedKey(other.Signer.PublicKey())))[1], 1)
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	r = runPlugin(t, w.Conn, env, "pcap", "myapp", "-o", out, "--force", "--pcap-api", fd.Addr, "--trust-on-first-use")
	if r.code != 1 || !strings.Contains(r.stderr, "offered host key "+fd.Fingerprint+", but "+known+" has another key for it: host key does not match the pinned key") {
		t.Errorf("changed key: exit %d\n%s", r.code, r.stderr)
	}
	if _, pw, commands := fd.Seen(); len(commands) != 2 || len(pw) != 2 {
		t.Errorf("the API got %d passwords and ran %d commands, want 2 and 2 (the refused connections none)", len(pw), len(commands))
	}
}

// TestPcapAPIFromEnvironment: PCAP_API and PCAP_API_HOST_KEY_FINGERPRINT
// stand in for the flags.
func TestPcapAPIFromEnvironment(t *testing.T) {
	w := startWorld(t)
	fd := startFrontDoor(t, &frontDoor{Stdout: "PCAPNG"})
	t.Setenv("PCAP_API", fd.Addr)
	t.Setenv("PCAP_API_HOST_KEY_FINGERPRINT", fd.Fingerprint)
	out := filepath.Join(t.TempDir(), "out.pcapng")
	r := runPlugin(t, w.Conn, map[string]string{"CF_HOME": t.TempDir()}, "pcap", "myapp", "-o", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if _, _, commands := fd.Seen(); len(commands) != 1 {
		t.Errorf("commands = %q", commands)
	}
}
