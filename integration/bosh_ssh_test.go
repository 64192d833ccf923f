package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// sshdumpPath is where Debian's wireshark-common (pulled in by tshark)
// installs Wireshark's sshdump extcap.
const sshdumpPath = "/usr/lib/x86_64-linux-gnu/wireshark/extcap/sshdump"

// usedCodeRe is pcap-api's log line for a code UAA refused.
var usedCodeRe = regexp.MustCompile(`"msg":"auth-refused".*"error":"boshresolver: one-time code is unknown, used or expired: uaa: one-time code was refused: .*invalid_grant Invalid authorization code: \[code\]"`)

// TestBoshPlainSSHClients: operators without pcap-bosh use the real
// OpenSSH client and Wireshark's sshdump, with a one-time code from
// `pcap-bosh ssh-code` (the director UAA's) as password.
func TestBoshPlainSSHClients(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 3)
	startedRe := regexp.MustCompile(`^pcap: router/[0-9a-f-]+: started `)

	var usedCode string
	t.Run("OpenSSH into a file", func(t *testing.T) {
		code := e.sshCode(t, home)
		out := filepath.Join(t.TempDir(), "edge.pcapng")
		f, err := os.Create(out)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		cl := boshSSH{API: e.API, Password: code, Out: f}.start(t, "capture", "-d", "cf", "router", "-f", "'udp dst port 7000'")
		boshWaitLines(t, cl.Proc, startedRe, 3, 30*time.Second)
		sent := []int{7, 8, 9}
		for i, vm := range e.Lab.VMs {
			sendUDP(t, vm, "198.18.0.1:7000", sent[i])
			sendUDP(t, vm, "198.18.0.1:7009", 2) // filtered out
		}
		cl.Stdin.Close() // a line, then EOF: stops the capture
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 0 {
			t.Fatalf("ssh exited %d:\n%s", c, cl.Output())
		}
		cl.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=3 packets=24 `), time.Second)
		per := interfaceCounts(t, out)
		for i, want := range sent {
			if per[boshRouterIface(i)] != want {
				t.Errorf("%s: %d packets, want %d (all: %v)", boshRouterIface(i), per[boshRouterIface(i)], want, per)
			}
		}
		if len(per) != 3 || countISBs(t, out) != 3 {
			t.Errorf("interfaces %v and %d statistics blocks, want 3 of each", per, countISBs(t, out))
		}
		// Audited as the user who minted the code.
		if n := len(e.API.Lines(regexp.MustCompile(`"msg":"capture-started".*"user":"bosh:admin","method":"one-time-code"`))); n != 1 {
			t.Errorf("%d capture-started lines for bosh:admin by one-time code, want 1", n)
		}
		usedCode = code
	})

	t.Run("a used code is refused", func(t *testing.T) {
		if usedCode == "" {
			t.Fatal("the previous subtest used no code")
		}
		refused := len(e.API.Lines(usedCodeRe))
		cl := boshSSH{API: e.API, Password: usedCode}.start(t, "capture", "-d", "cf", "router")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 255 {
			t.Errorf("ssh exited %d, want 255", c)
		}
		cl.WaitLine(t, regexp.MustCompile(`^pcap-api: refused: one-time code is unknown, used or expired; get a new one with: pcap-bosh -e ENVIRONMENT ssh-code$`), time.Second)
		cl.WaitLine(t, regexp.MustCompile(`^bosh@198\.18\.0\.1: Permission denied \(password,publickey\)\.$`), time.Second)
		e.API.WaitCount(t, usedCodeRe, refused+1, 5*time.Second)
	})

	t.Run("OpenSSH into tshark, live", func(t *testing.T) {
		code := e.sshCode(t, home)
		ts, pw := tsharkPipe(t, nil, "-r", "-", "-l", "-T", "fields", "-e", "frame.interface_name")
		cl := boshSSH{API: e.API, Password: code, Out: pw}.start(t, "capture", "-d", "cf", "router", "-f", "'udp dst port 7003'")
		pw.Close() // ssh holds its copy
		boshWaitLines(t, cl.Proc, startedRe, 3, 30*time.Second)
		sent := []int{4, 5, 6}
		for i, vm := range e.Lab.VMs {
			sendUDP(t, vm, "198.18.0.1:7003", sent[i])
		}
		// tshark shows every packet while the capture still runs.
		ifaceRe := regexp.MustCompile(`^router/`)
		boshWaitLines(t, ts, ifaceRe, 15, 20*time.Second)
		select {
		case <-cl.Done():
			t.Fatalf("ssh ended before the stop:\n%s", cl.Output())
		default:
		}
		cl.Stdin.Close()
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 0 {
			t.Fatalf("ssh exited %d:\n%s", c, cl.Output())
		}
		if c := boshExitCode(t, ts, 15*time.Second); c != 0 {
			t.Fatalf("tshark exited %d:\n%s", c, ts.Output())
		}
		per := map[string]int{}
		for _, l := range ts.Lines(ifaceRe) {
			per[l]++
		}
		for i, want := range sent {
			if per[boshRouterIface(i)] != want {
				t.Errorf("%s: %d packets, want %d (all: %v)", boshRouterIface(i), per[boshRouterIface(i)], want, per)
			}
		}
	})

	// The codes are the director UAA's: pcap-api keeps no login state, so
	// a code works at whichever instance receives it, and only once in all
	// (UAA's promise). Expiry is UAA's too (TestOneTimeCodes/expires).
	t.Run("any pcap-api instance takes a code, once", func(t *testing.T) {
		second := e.startSecondAPI(t, "198.18.0.1:2223", nil)
		code := e.sshCode(t, home) // from UAA, no pcap-api involved
		cl := boshSSH{API: second, Password: code}.start(t, "capture", "--help")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 0 {
			t.Fatalf("code at the second pcap-api: ssh exited %d:\n%s", c, cl.Output())
		}
		cl = boshSSH{API: e.API, Password: code}.start(t, "capture", "--help")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 255 {
			t.Errorf("the same code at the first pcap-api: ssh exited %d, want 255", c)
		}
		cl.WaitLine(t, regexp.MustCompile(`^pcap-api: refused: one-time code is unknown, used or expired; get a new one with: pcap-bosh -e ENVIRONMENT ssh-code$`), time.Second)
		e.API.WaitLine(t, usedCodeRe, 5*time.Second)

		// A code from one instance's ssh-code command (for a token user),
		// used at the other.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r := relExec(ctx, e.API, "bosh", ssh.Password(e.mint(t, uaa.Mint{Username: "admin", ClientID: "bosh_cli"})), "ssh-code")
		minted := strings.TrimSpace(string(r.Stdout))
		if r.Status != 0 || r.Err != nil || minted == "" {
			t.Fatalf("ssh-code at the first pcap-api: status %d, err %v, stderr %q", r.Status, r.Err, r.Stderr)
		}
		cl = boshSSH{API: second, Password: minted}.start(t, "capture", "-d", "nope", "router")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 1 {
			t.Fatalf("a code of the first pcap-api at the second: ssh exited %d, want 1 (logged in, no such deployment):\n%s", c, cl.Output())
		}
		second.WaitLine(t, regexp.MustCompile(`"msg":"capture-refused".*"user":"bosh:admin","method":"one-time-code"`), 5*time.Second)
	})

	t.Run("a token longer than 1023 bytes through OpenSSH", func(t *testing.T) {
		dir := t.TempDir()
		long := e.mint(t, uaa.Mint{Username: "admin"})
		for i := 0; len(long) <= 1023; i++ { // pad the scopes if UAA's token is short
			long = e.mint(t, uaa.Mint{Username: "admin", Scopes: append([]string{"openid", "bosh.admin"}, strings.Repeat("x", 50*i))})
		}
		t.Logf("the token is %d bytes", len(long))
		file := filepath.Join(dir, "token")
		if err := os.WriteFile(file, []byte(long+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cl := boshSSH{API: e.API, Askpass: file}.start(t, "capture", "--help")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 255 {
			t.Errorf("ssh exited %d, want 255", c)
		}
		cl.WaitLine(t, regexp.MustCompile(`^pcap-api: refused: the password is a UAA token cut at 1023 bytes, as OpenSSH does; use a one-time code \(pcap-bosh ssh-code\)$`), time.Second)
		cl.WaitLine(t, regexp.MustCompile(`^bosh@198\.18\.0\.1: Permission denied \(password,publickey\)\.$`), time.Second)
		e.API.WaitLine(t, regexp.MustCompile(`"msg":"auth-refused".*"error":"boshresolver: the password is a UAA token cut at 1023 bytes`), time.Second)

		// The same token is fine where it arrives whole: pcap-bosh.
		r := e.pcapBosh(t, []string{"HOME=" + e.writeBoshConfig(t, long, "")}, "-e", "fake", "ssh-code")
		if r.Code != 0 || strings.TrimSpace(r.Stdout) == "" {
			t.Errorf("pcap-bosh with the long token: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
		}
		// And a token within 1023 bytes passes OpenSSH (a client token
		// with one scope is short enough).
		short := e.mint(t, uaa.Mint{ClientID: "ops", Scopes: []string{"bosh.admin"}})
		if len(short) > 1023 {
			t.Fatalf("short token is %d bytes", len(short))
		}
		if err := os.WriteFile(file, []byte(short+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cl = boshSSH{API: e.API, Askpass: file}.start(t, "capture", "--help")
		if c := boshExitCode(t, cl.Proc, 15*time.Second); c != 0 {
			t.Errorf("short token (%d bytes): ssh exited %d:\n%s", len(short), c, cl.Output())
		}
	})

	t.Run("sshdump", func(t *testing.T) {
		if _, err := os.Stat(sshdumpPath); err != nil {
			t.Fatalf("Wireshark's sshdump is not installed (Debian package wireshark-common): %v", err)
		}
		code := e.sshCode(t, home)
		out := filepath.Join(t.TempDir(), "sshdump.pcapng")
		const filter = "udp dst port 7001"
		p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + t.TempDir()}}, sshdumpPath,
			"--extcap-interface=sshdump", "--capture", "--fifo", out,
			"--remote-host", "198.18.0.1", "--remote-port", "2222",
			"--remote-username", "bosh", "--remote-password", code,
			"--remote-capture-command", `capture -d cf router -f "`+filter+`" -c 6 --duration 60s`)
		// Each VM's capture ends at 6 packets; then the session ends.
		per := e.routersCapture(t, p, "sshdump exited", out, filter, 7001, 6)
		if len(per) != 3 {
			t.Errorf("interfaces with packets: %v, want 3", per)
		}
		if b, err := exec.Command("capinfos", "-c", out).CombinedOutput(); err != nil {
			t.Errorf("capinfos: %v\n%s", err, b)
		}
	})
}
