package integration

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// preauthMetric reads one sample of the API's /metrics (0 when absent):
// name with its labels, as Prometheus prints them.
func preauthMetric(t *testing.T, a *apiProc, sample string) float64 {
	t.Helper()
	tr := &http.Transport{}
	if a.Netns != nil {
		tr.DialContext = netlab.DialerIn(a.Netns)
	}
	cl := &http.Client{Timeout: 10 * time.Second, Transport: tr}
	defer cl.CloseIdleConnections()
	resp, err := cl.Get("http://" + a.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric %s: %v", line, err)
			}
			return f
		}
	}
	return 0
}

// dialAPI logs in to a with cfg (its host key pinned), from inside the
// API's namespace when it has one.
func dialAPI(a *apiProc, cfg ssh.ClientConfig) (*ssh.Client, error) {
	cfg.HostKeyCallback = ssh.FixedHostKey(a.HostKey.Signer.PublicKey())
	cfg.Timeout = 10 * time.Second
	var cl *ssh.Client
	dial := func() error {
		var err error
		cl, err = ssh.Dial("tcp", a.Addr, &cfg)
		return err
	}
	var err error
	if a.Netns == nil {
		err = dial()
	} else {
		err = netlab.Do(a.Netns, dial)
	}
	return cl, err
}

// reencodedRSA is an RSA public key marshalled with zero bytes in front
// of its exponent: the same key to a parser, new bytes to a cache.
type reencodedRSA struct {
	ssh.PublicKey
	zeros int
}

func (k reencodedRSA) Marshal() []byte {
	var w struct {
		Name string
		E    []byte
		N    []byte
	}
	parsed := k.PublicKey.(ssh.CryptoPublicKey).CryptoPublicKey()
	w.Name = ssh.KeyAlgoRSA
	e := big.NewInt(int64(rsaOf(parsed).E)).Bytes()
	w.E = append(make([]byte, k.zeros), e...)
	n := rsaOf(parsed).N.Bytes()
	if n[0]&0x80 != 0 {
		n = append([]byte{0}, n...)
	}
	w.N = n
	return ssh.Marshal(w)
}

// queryOnlySigner offers a public key it cannot sign with, as someone who
// knows an operator's public key (it is public) but not the private one:
// the client asks whether the key would do, and stops there.
type queryOnlySigner struct{ pub ssh.PublicKey }

func (s queryOnlySigner) PublicKey() ssh.PublicKey { return s.pub }
func (s queryOnlySigner) Sign(io.Reader, []byte) (*ssh.Signature, error) {
	return nil, errors.New("no private key")
}
func (s queryOnlySigner) SignWithAlgorithm(io.Reader, []byte, string) (*ssh.Signature, error) {
	return nil, errors.New("no private key")
}
func (s queryOnlySigner) Algorithms() []string { return []string{ssh.KeyAlgoRSASHA256} }

// TestSecurityPreauthKeyQueries: asking whether an operator key would do
// (a public-key query, no signature) costs the API no UAA grant, however
// re-encoded; refused keys are counted and audited; a key user who signs
// gets in, and the break-glass token is granted once and reused.
func TestSecurityPreauthKeyQueries(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 1)
	dir := t.TempDir()
	op := newRSAKeyPair(t, dir, "operator")
	a := e.startSecondAPI(t, "198.18.0.1:2223", func(c *api.Config) {
		c.BOSH.OperatorKeysFile, c.BOSH.UAAClientID, c.BOSH.UAAClientSecret = op.Public, "ops", "ops-secret"
	})

	dial := func(auth ssh.AuthMethod) error {
		c, err := dialAPI(a, ssh.ClientConfig{User: "bosh", Auth: []ssh.AuthMethod{auth}})
		if err == nil {
			c.Close()
		}
		return err
	}
	const queries = 500
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var accepted atomic.Int32
	for i := range queries {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			k := reencodedRSA{PublicKey: op.Signer.PublicKey(), zeros: i % 64}
			err := dial(ssh.PublicKeys(queryOnlySigner{k}))
			// The API said yes to the key: the client then failed to sign.
			if err != nil && strings.Contains(err.Error(), "no private key") {
				accepted.Add(1)
			} else {
				t.Errorf("query %d: %v, want the client to fail signing an accepted key", i, err)
			}
		}()
	}
	wg.Wait()
	if accepted.Load() != queries {
		t.Fatalf("%d of %d queries accepted", accepted.Load(), queries)
	}
	if n := e.UAA.Grants("client_credentials"); n != 0 {
		t.Errorf("%d client_credentials grants for %d key queries, want 0", n, queries)
	}
	if n := preauthMetric(t, a, `pcap_api_public_key_checks_total{result="accepted"}`); n != queries {
		t.Errorf("pcap_api_public_key_checks_total{accepted} = %v, want %d", n, queries)
	}

	// A key that is not an operator's: refused, counted, audited.
	stranger := newRSAKeyPair(t, dir, "stranger")
	if err := dial(ssh.PublicKeys(stranger.Signer)); err == nil {
		t.Fatal("a stranger's key logged in")
	}
	if n := preauthMetric(t, a, `pcap_api_public_key_checks_total{result="refused"}`); n != 1 {
		t.Errorf("pcap_api_public_key_checks_total{refused} = %v, want 1", n)
	}
	a.WaitLine(t, regexp.MustCompile(`"msg":"public-key-refused","user":"bosh".*"fingerprint":"`+regexp.QuoteMeta(fingerprintOf(stranger))+`"`), 5*time.Second)

	// The operator proves the key: one grant, reused by the next login.
	for i := range 3 {
		if err := dial(ssh.PublicKeys(op.Signer)); err != nil {
			t.Fatalf("operator login %d: %v", i, err)
		}
	}
	if n := e.UAA.Grants("client_credentials"); n != 1 {
		t.Errorf("%d client_credentials grants for 3 key logins, want 1 (cached)", n)
	}
	if n := preauthMetric(t, a, `pcap_api_logins_total{method="publickey"}`); n != 3 {
		t.Errorf("pcap_api_logins_total{publickey} = %v, want 3", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	r := relExec(ctx, a, "bosh", ssh.PublicKeys(op.Signer), "capture -d cf router/0 --duration 1s")
	if r.Status != 0 || !strings.Contains(r.Stderr, ": started ") {
		t.Errorf("operator capture: status %d, err %v, stderr:\n%s", r.Status, r.Err, r.Stderr)
	}
}

// TestSecurityPreauthSessionsPerConnection: one connection asking for
// 5000 session channels gets the configured few; the rest are refused as a
// resource shortage, without the API's goroutines growing with them, and
// a session with no command ends after exec_timeout.
func TestSecurityPreauthSessionsPerConnection(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{VMs: 1, APIConfig: func(c *api.Config) {
		c.Limits.MaxSessionsPerConnection, c.Limits.ExecTimeout = 4, 20*time.Second
	}})
	cl, err := dialAPI(c.API, ssh.ClientConfig{User: "static", Auth: []ssh.AuthMethod{ssh.PublicKeys(c.Operators[0].Signer)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	before := preauthMetric(t, c.API, "go_goroutines")

	// The 4 accepted sessions send no command: they stay open for
	// exec_timeout, longer than asking for the others takes.
	const channels = 5000
	began := time.Now()
	var open []ssh.Channel
	refused := 0
	for i := range channels {
		ch, reqs, err := cl.OpenChannel("session", nil)
		var oce *ssh.OpenChannelError
		switch {
		case err == nil:
			go ssh.DiscardRequests(reqs)
			open = append(open, ch)
		case errors.As(err, &oce) && oce.Reason == ssh.ResourceShortage:
			refused++
		default:
			t.Fatalf("channel %d: %v", i, err)
		}
	}
	if took := time.Since(began); took > 15*time.Second {
		t.Fatalf("asking for %d channels took %v, near exec_timeout (20s): the count below would not hold", channels, took)
	}
	if len(open) != 4 || refused != channels-4 {
		t.Fatalf("%d channels open, %d refused; want 4 and %d", len(open), refused, channels-4)
	}
	during := preauthMetric(t, c.API, "go_goroutines")
	if during > before+50 {
		t.Errorf("goroutines: %v before, %v with %d channels asked for; want them bounded", before, during, channels)
	}
	if n := preauthMetric(t, c.API, "pcap_api_sessions_refused_total"); n != channels-4 {
		t.Errorf("pcap_api_sessions_refused_total = %v, want %d", n, channels-4)
	}
	if n := relCount(c.API, `"msg":"session-refused"`); n != 1 {
		t.Errorf("%d session-refused lines, want 1 per connection", n)
	}
	// No command: each open session is told and closed after exec_timeout.
	for i, ch := range open {
		done := make(chan []byte, 1)
		go func() {
			b, _ := io.ReadAll(io.LimitReader(ch.Stderr(), 1<<10))
			done <- b
		}()
		select {
		case b := <-done:
			if string(b) != "pcap: error: no command within 20s\n" {
				t.Errorf("session %d: stderr %q", i, b)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("session %d still open 60s later, exec_timeout is 20s", i)
		}
	}
	// The slots are free again.
	s, err := cl.NewSession()
	if err != nil {
		t.Fatalf("a session after the others ended: %v", err)
	}
	s.Close()
}

// TestSecurityPreauthUserLimitBeforeLookups: 300 concurrent execs of a
// user limited to one capture make the Cloud Controller answer at most
// one request at a time: the slot is taken before any lookup.
func TestSecurityPreauthUserLimitBeforeLookups(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	var agentKeys []keyPair
	for _, c := range e.Cells {
		agentKeys = append(agentKeys, c.Agent.HostKey)
	}
	a := startAPI(t, apiOptions{
		ClientKey: newKeyPair(t, t.TempDir(), "api_client"), AgentKeys: agentKeys, AgentPort: e.AgentPort,
		Config: func(c *api.Config) {
			c.CF = &api.CFConfig{APIURL: e.CC.URL(), AllowInsecureHTTP: true, UAAClientSecret: "ssh-proxy-secret"}
			c.Limits.MaxCapturesPerUser = 1
		},
	})
	tok, err := e.UAA.MintToken("developer", 0)
	if err != nil {
		t.Fatal(err)
	}
	cmd := "capture --app " + cfApp + " --duration 1s"
	dial := func() (*ssh.Client, error) {
		return dialAPI(a, ssh.ClientConfig{User: "cf", Auth: []ssh.AuthMethod{ssh.Password(tok)}})
	}
	// One login first: the API learns UAA from the Cloud Controller.
	warm, err := dial()
	if err != nil {
		t.Fatal(err)
	}
	warm.Close()
	e.CC.Requests().Reset()

	const conns, perConn = 75, 4
	var wg sync.WaitGroup
	var limited atomic.Int32
	start := make(chan struct{})
	for range conns {
		cl, err := dial()
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		for range perConn {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				s, err := cl.NewSession()
				if err != nil {
					t.Errorf("session: %v", err)
					return
				}
				defer s.Close()
				var stderr strings.Builder
				s.Stderr = &stderr
				s.Run(cmd)
				if strings.Contains(stderr.String(), "you are running your maximum of 1 captures") {
					limited.Add(1)
				}
			}()
		}
	}
	close(start)
	wg.Wait()
	t.Logf("%d of %d execs refused at the limit; the CC served %d requests, at most %d at once",
		limited.Load(), conns*perConn, e.CC.Requests().Len(), e.CC.Requests().MaxInFlight())
	if limited.Load() == 0 {
		t.Error("no exec was refused at the user's limit")
	}
	if n := e.CC.Requests().MaxInFlight(); n > 1 {
		t.Errorf("the Cloud Controller had %d requests in flight at once, want at most 1", n)
	}
}

// TestSecurityPreauthQuotaSharedByCodeAndToken: a user limited to one
// capture who captures with a token cannot start another with a one-time
// code minted for the same token.
func TestSecurityPreauthQuotaSharedByCodeAndToken(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 1)
	a := e.startSecondAPI(t, "198.18.0.1:2224", func(c *api.Config) { c.Limits.MaxCapturesPerUser = 1 })
	tok := e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli"})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	code := strings.TrimSpace(string(relExec(ctx, a, "bosh", ssh.Password(tok), "ssh-code").Stdout))
	if code == "" || strings.ContainsAny(code, " \n") {
		t.Fatalf("ssh-code printed %q", code)
	}
	cl, err := dialAPI(a, ssh.ClientConfig{User: "bosh", Auth: []ssh.AuthMethod{ssh.Password(tok)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	s, err := cl.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	pr, pw := io.Pipe()
	defer pw.Close()
	s.Stderr = pw
	s.Stdout = io.Discard
	stdin, err := s.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("capture -d cf router/0 --duration 60s"); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	go func() {
		buf := make([]byte, 4096)
		var got strings.Builder
		for {
			n, err := pr.Read(buf)
			got.Write(buf[:n])
			if strings.Contains(got.String(), ": started ") {
				close(started)
				io.Copy(io.Discard, pr)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the token's capture did not start")
	}
	r := relExec(ctx, a, "bosh", ssh.Password(code), "capture -d cf router/0 --duration 1s")
	if r.Status != 1 || !strings.Contains(r.Stderr, "you are running your maximum of 1 captures") {
		t.Errorf("code login while the token's capture runs: status %d, err %v, stderr %q; want limit-reached", r.Status, r.Err, r.Stderr)
	}
	// A line on stdin stops a capture (EOF does not).
	io.WriteString(stdin, "\n")
	waited := make(chan error, 1)
	go func() { waited <- s.Wait() }()
	select {
	case <-waited:
	case <-time.After(30 * time.Second):
		t.Error("the token's capture did not stop within 30s of a line on stdin")
	}
}

// TestSecurityPreauthCutTokenOnlyFromOpenSSH: a password of 1023 bytes
// that starts like a token is refused as "cut by OpenSSH" only when the
// client says it is OpenSSH; the reason reaches the client as a banner.
func TestSecurityPreauthCutTokenOnlyFromOpenSSH(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 1)
	scopes := []string{"openid", "bosh.admin"}
	for i := range 40 {
		scopes = append(scopes, fmt.Sprintf("bosh.teams.team-%02d.admin", i))
	}
	long := e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli", Scopes: scopes})
	if len(long) <= 1023 {
		t.Fatalf("token is %d bytes", len(long))
	}
	login := func(version string) (string, error) {
		var banner strings.Builder
		cl, err := dialAPI(e.API, ssh.ClientConfig{User: "bosh", Auth: []ssh.AuthMethod{ssh.Password(long[:1023])},
			ClientVersion: version, BannerCallback: func(m string) error { banner.WriteString(m); return nil }})
		if err == nil {
			cl.Close()
		}
		return banner.String(), err
	}
	const cut = "pcap-api: refused: the password is a UAA token cut at 1023 bytes, as OpenSSH does; use a one-time code (pcap-bosh ssh-code)\n"
	banner, err := login("SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13")
	if err == nil || banner != cut {
		t.Errorf("as OpenSSH: err %v, banner %q; want refused with %q", err, banner, cut)
	}
	banner, err = login("SSH-2.0-Go")
	if err == nil || strings.Contains(banner, "cut at 1023") {
		t.Errorf("as a Go client: err %v, banner %q; want refused, not as cut by OpenSSH", err, banner)
	}
	e.API.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused","user":"bosh".*"method":"password"`), 5*time.Second)
}

// TestSecurityPreauthCFReasonShown: a cf@ user of plain OpenSSH with a
// used or garbage one-time code reads why before "Permission denied".
func TestSecurityPreauthCFReasonShown(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	cl := boshSSH{API: e.API, User: "cf", Password: "notavalidcodeatall", Out: io.Discard}.start(t, "capture", "--app", cfApp)
	if code := boshExitCode(t, cl.Proc, 60*time.Second); code == 0 {
		t.Error("ssh exit 0, want the login refused")
	}
	wantLine(t, cl, `^pcap-api: refused: the one-time code is unknown, used or expired; get a new one \(cf ssh-code\)$`)
	wantLine(t, cl, `Permission denied`)
	if n := preauthMetric(t, e.API, `pcap_api_logins_refused_total{method="password",reason="bad-code"}`); n < 1 {
		t.Errorf("pcap_api_logins_refused_total{bad-code} = %v, want at least 1", n)
	}
}

// TestSecurityPreauthCheckConfig: --check-config never prints a secret,
// and --probe reports what a login would fail on.
func TestSecurityPreauthCheckConfig(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startBOSHEnv(t, 1)
	dir := t.TempDir()
	host := newKeyPair(t, dir, "host")
	client := newKeyPair(t, dir, "client")
	bin := filepath.Join(testenv.Binaries(t), "pcap-api")
	write := func(name, bosh string) string {
		p := filepath.Join(dir, name)
		cfg := fmt.Sprintf("host_key_file: %q\nagents:\n  client_key_file: %q\n  host_key_fingerprints: [\"SHA256:x\"]\nbosh:\n  director_url: %q\n  uaa_client_id: ops\n  uaa_client_secret: ops-s3cret-value\n  operator_keys_file: %q\n%s",
			host.Private, client.Private, e.Director.URL(), client.Public, bosh)
		writeFile(t, p, cfg)
		return p
	}
	good := write("good.yml", fmt.Sprintf("  ca_cert_file: %q\n", e.CAFile))
	out, err := e.inLAN(t, nil, "", bin, "--config", good, "--check-config", "--probe")
	if err != nil {
		t.Errorf("probe of a good config: %v\n%s", err, out)
	}
	if strings.Contains(out, "ops-s3cret-value") || !strings.Contains(out, "uaa_client_secret: (redacted)") {
		t.Errorf("--check-config printed the secret, or no redaction:\n%s", out)
	}
	for _, want := range []string{"ok   bosh: director " + e.Director.URL() + " /info: uuid " + boshDirectorUUID, "ok   bosh: UAA " + e.UAA.URL() + " /info", "ok   bosh: UAA /token_keys: keys key-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
	// Without the CA: the director's certificate is not trusted.
	noCA := write("noca.yml", "")
	out, err = e.inLAN(t, nil, "", bin, "--config", noCA, "--check-config", "--probe")
	if err == nil || !strings.Contains(out, "FAIL bosh: director") || !strings.Contains(out, "is ca_cert_file the CA that signed it?") {
		t.Errorf("probe without the CA: err %v, output:\n%s", err, out)
	}
	// Another UAA than the director's.
	other := write("other.yml", fmt.Sprintf("  ca_cert_file: %q\n  uaa_url: https://198.18.0.1:1\n", e.CAFile))
	out, err = e.inLAN(t, nil, "", bin, "--config", other, "--check-config", "--probe")
	if err == nil || !strings.Contains(out, "FAIL bosh: UAA is the director's: bosh.uaa_url is https://198.18.0.1:1, but the director trusts "+e.UAA.URL()) {
		t.Errorf("probe with another UAA: err %v, output:\n%s", err, out)
	}
}

// newRSAKeyPair is newKeyPair with an RSA key (whose encoding has room
// for re-encoding).
func newRSAKeyPair(t *testing.T, dir, name string) keyPair {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(k, "")
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPair{Signer: s, Private: filepath.Join(dir, name), Public: filepath.Join(dir, name+".pub")}
	writeFile(t, kp.Private, string(pem.EncodeToMemory(blk)))
	writeFile(t, kp.Public, string(ssh.MarshalAuthorizedKey(s.PublicKey())))
	return kp
}

func rsaOf(k crypto.PublicKey) *rsa.PublicKey { return k.(*rsa.PublicKey) }

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestSecurityPreauthProbeCF: --probe follows the Cloud Controller to its
// UAA, and says when the configured UAA is another one.
func TestSecurityPreauthProbeCF(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	dir := t.TempDir()
	host, client := newKeyPair(t, dir, "host"), newKeyPair(t, dir, "client")
	probe := func(uaaURL string) (string, error) {
		p := filepath.Join(dir, "api.yml")
		cfg := api.DefaultConfig()
		cfg.HostKeyFile, cfg.Agents.ClientKeyFile, cfg.Agents.HostKeyFingerprints = host.Private, client.Private, []string{"SHA256:x"}
		cfg.CF = &api.CFConfig{APIURL: e.CC.URL(), UAAURL: uaaURL, AllowInsecureHTTP: true, UAAClientSecret: "ssh-proxy-s3cret"}
		writeYAML(t, p, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", p, "--check-config", "--probe").CombinedOutput()
		return string(out), err
	}
	out, err := probe("")
	if err != nil {
		t.Errorf("probe: %v\n%s", err, out)
	}
	for _, want := range []string{"ok   cf: Cloud Controller " + e.CC.URL() + " /: names UAA " + e.UAA.URL(),
		"ok   cf: Cloud Controller /v3/info: answers", "ok   cf: UAA " + e.UAA.URL() + " /info: answers", "ok   cf: UAA /token_keys: keys key-1"} {
		if !strings.Contains(out, want) {
			t.Errorf("probe output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "ssh-proxy-s3cret") {
		t.Errorf("--check-config printed the secret:\n%s", out)
	}
	out, err = probe("http://127.0.0.1:1")
	if err == nil || !strings.Contains(out, "FAIL cf: UAA is the Cloud Controller's: cf.uaa_url is http://127.0.0.1:1, but the Cloud Controller trusts "+e.UAA.URL()) ||
		!strings.Contains(out, "FAIL cf: UAA http://127.0.0.1:1 /info") {
		t.Errorf("probe with another UAA: err %v, output:\n%s", err, out)
	}
}

// TestSecurityPreauthOversizedUAAKey: a UAA whose /token_keys publishes
// the signing key's id with a modulus of a million bits (each check of a
// signature with it took seconds of CPU) does not make pcap-api do that
// work: the key is left out, the token naming it is refused saying why,
// and --probe names the key it leaves out.
func TestSecurityPreauthOversizedUAAKey(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	other, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
	huge := b64(bytes.Repeat([]byte{0xff}, 1<<17))
	keys, err := json.Marshal(map[string]any{"keys": []map[string]string{
		{"kid": "key-1", "kty": "RSA", "alg": "RS256", "n": huge, "e": "AQAB"},
		{"kid": "key-2", "kty": "RSA", "alg": "RS256", "n": b64(other.N.Bytes()), "e": "AQAB"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	// This UAA answers /token_keys itself and passes the rest to the
	// env's UAA, whose key-1 signs the tokens.
	target, err := url.Parse(e.UAA.URL())
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/token_keys" {
			w.Header().Set("Content-Type", "application/json")
			w.Write(keys)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer front.Close()
	a := e.startAPI(t, func(c *api.Config) { c.CF.UAAURL = front.URL })
	tok, err := e.UAA.MintTokenWithIssuer("developer", time.Hour, front.URL+"/oauth/token")
	if err != nil {
		t.Fatal(err)
	}

	cl := boshSSH{API: a, User: "cf", Password: tok, Out: io.Discard}.start(t, "capture", "--app", cfApp)
	if code := boshExitCode(t, cl.Proc, 60*time.Second); code == 0 {
		t.Error("ssh exit 0, want the login refused")
	}
	wantLine(t, cl, `^pcap-api: refused: token is not valid: signing key "key-1" is not used: an RSA key of 1048576 bits, over the 16384 this client verifies with$`)
	if n := preauthMetric(t, a, `pcap_api_logins_refused_total{method="password",reason="invalid-token"}`); n < 1 {
		t.Errorf("pcap_api_logins_refused_total{invalid-token} = %v, want at least 1", n)
	}

	dir := t.TempDir()
	host, client := newKeyPair(t, dir, "host"), newKeyPair(t, dir, "client")
	p := filepath.Join(dir, "api.yml")
	cfg := api.DefaultConfig()
	cfg.HostKeyFile, cfg.Agents.ClientKeyFile, cfg.Agents.HostKeyFingerprints = host.Private, client.Private, []string{"SHA256:x"}
	cfg.CF = e.cfAPIConfig()
	cfg.CF.UAAURL = front.URL
	writeYAML(t, p, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The probe exits non-zero here (the front is not the UAA the Cloud
	// Controller names); only its /token_keys line matters.
	out, _ := exec.CommandContext(ctx, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", p, "--check-config", "--probe").CombinedOutput()
	if want := `ok   cf: UAA /token_keys: keys key-2; "key-1" is not used: an RSA key of 1048576 bits, over the 16384 this client verifies with`; !strings.Contains(string(out), want) {
		t.Errorf("probe output lacks %q:\n%s", want, out)
	}
}
