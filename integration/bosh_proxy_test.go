package integration

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/integration/testreq"
)

// jumpboxLab puts a client namespace behind a jumpbox, as bbl does: the
// client (198.19.0.2/30) has no route to the BOSH network 198.18.0.0/24;
// the jumpbox namespace is on both (198.19.0.1 and 198.18.0.50 on the
// LAN's bridge) and does not forward packets (a new namespace's
// ip_forward is 0), and runs the real OpenSSH sshd on 198.19.0.1:22,
// taking the key Key for root.
type jumpboxLab struct {
	Client  *testenv.Netns
	Jumpbox *testenv.Netns
	Addr    string  // the sshd's address, seen from the client
	Key     keyPair // the client's key for root@jumpbox
	HostKey keyPair // the sshd's host key
	SSHD    *testenv.Proc
}

func startJumpbox(t *testing.T, e *boshEnv) *jumpboxLab {
	t.Helper()
	sshd := testreq.Tool(t, "/usr/sbin/sshd", "apt-get install openssh-server")
	testreq.Tool(t, "ssh", "apt-get install openssh-client")
	j := &jumpboxLab{Client: testenv.NewNetns(t), Jumpbox: testenv.NewNetns(t), Addr: "198.19.0.1:22"}
	testenv.AttachToBridge(t, e.Lab.LAN, "jump", j.Jumpbox, "eth0", "198.18.0.50/24")
	testenv.Link(t, j.Jumpbox, "eth1", "198.19.0.1/30", j.Client, "eth0", "198.19.0.2/30")
	if ip := testenv.Run(t, "ip", "netns", "exec", j.Jumpbox.Name, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(ip) != "0" {
		t.Fatalf("the jumpbox namespace forwards packets (ip_forward %q): the test would prove nothing", ip)
	}
	dir := t.TempDir()
	j.Key = newKeyPair(t, dir, "jumpbox_key")
	j.HostKey = newKeyPair(t, dir, "jumpbox_host_key")
	// sshd's privilege separation directory (Debian's sshd needs it).
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := strings.Join([]string{
		"ListenAddress " + j.Addr,
		"HostKey " + j.HostKey.Private,
		"AuthorizedKeysFile " + j.Key.Public,
		"PidFile none",
		"StrictModes no", // the key files are in the test's temp dir
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"AllowTcpForwarding local",
		"PermitTTY no",
		"X11Forwarding no",
		"LogLevel DEBUG1",
	}, "\n") + "\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	j.SSHD = testenv.Start(t, testenv.StartOptions{Netns: j.Jumpbox}, sshd, "-D", "-e", "-f", cfg)
	j.SSHD.WaitLine(t, regexp.MustCompile(`Server listening on 198\.19\.0\.1 port 22`), 30*time.Second)
	return j
}

// knownHosts writes home/.ssh/known_hosts recording the jumpbox's key.
func (j *jumpboxLab) knownHosts(t *testing.T, home string) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(home, ".ssh"), 0o700); err != nil {
		t.Fatal(err)
	}
	kh := filepath.Join(home, ".ssh", "known_hosts")
	line := "198.19.0.1 " + string(ssh.MarshalAuthorizedKey(j.HostKey.Signer.PublicKey()))
	if err := os.WriteFile(kh, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return kh
}

// socks starts `ssh -N -D 127.0.0.1:1080 root@jumpbox` in the client
// namespace: OpenSSH's own SOCKS5 proxy, as bbl print-env sets one up.
func (j *jumpboxLab) socks(t *testing.T, home string) string {
	t.Helper()
	kh := j.knownHosts(t, home)
	p := testenv.Start(t, testenv.StartOptions{Netns: j.Client}, "ssh", "-v", "-N", "-F", "none",
		"-D", "127.0.0.1:1080", "-i", j.Key.Private,
		"-o", "UserKnownHostsFile="+kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "ExitOnForwardFailure=yes", "root@198.19.0.1")
	p.WaitLine(t, regexp.MustCompile(`Local forwarding listening on 127\.0\.0\.1 port 1080`), 30*time.Second)
	return "socks5://127.0.0.1:1080"
}

// captureRouters runs pcap-bosh in ns with env and args (after -e fake,
// the output, a filter, the API flags), sends 7, 8 and 9 datagrams from
// the three router VMs, stops it with Ctrl-C and checks tshark's exact
// per-VM counts.
func captureRouters(t *testing.T, e *boshEnv, ns *testenv.Netns, env []string, args ...string) *testenv.Proc {
	t.Helper()
	out := filepath.Join(t.TempDir(), "routers.pcapng")
	args = append(append([]string{"-e", "fake", "-o", out, "-f", "udp dst port 7000", "--duration", "60s"}, args...), boshAPIFlags(e.API)...)
	p := testenv.Start(t, testenv.StartOptions{Netns: ns, Env: env}, filepath.Join(testenv.Binaries(t), "pcap-bosh"), args...)
	for i := range 3 {
		p.WaitLine(t, regexp.MustCompile(`^pcap: `+regexp.QuoteMeta(strings.TrimSuffix(boshRouterIface(i), ":eth0"))+`: started`), 60*time.Second)
	}
	sent := []int{7, 8, 9}
	for i, vm := range e.Lab.VMs {
		sendUDP(t, vm, "198.18.0.1:7000", sent[i])
	}
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err, ok := p.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("pcap-bosh: exited=%v err=%v\n%s", ok, err, p.Output())
	}
	capinfos(t, out)
	per := interfaceCounts(t, out)
	for i, want := range sent {
		if per[boshRouterIface(i)] != want {
			t.Errorf("%s has %d packets, want %d (all: %v)", boshRouterIface(i), per[boshRouterIface(i)], want, per)
		}
	}
	if len(per) != 3 {
		t.Errorf("interfaces with packets: %v, want 3", per)
	}
	return p
}

// directFails checks that from the client namespace, without a proxy,
// the director cannot be reached at all.
func directFails(t *testing.T, e *boshEnv, j *jumpboxLab, home string) {
	t.Helper()
	r := runIn(t, e, j.Client, []string{"HOME=" + home, "BOSH_ALL_PROXY="}, "-e", "fake", "ssh-code")
	if r.Code != 1 || !strings.Contains(r.Stderr, "director unreachable") || !strings.Contains(r.Stderr, "network is unreachable") {
		t.Fatalf("direct from the client namespace: exit %d, stderr %q; want the director unreachable", r.Code, r.Stderr)
	}
}

// runIn runs pcap-bosh to completion in ns.
func runIn(t *testing.T, e *boshEnv, ns *testenv.Netns, env []string, args ...string) boshResult {
	t.Helper()
	return runInNetns(t, ns, env, filepath.Join(testenv.Binaries(t), "pcap-bosh"), args...)
}

// TestBOSHProxySOCKS5: with BOSH_ALL_PROXY=socks5://… (OpenSSH's ssh -D
// to a jumpbox), pcap-bosh reaches the director, its UAA (a one-time
// code) and pcap-api from a namespace that has no route to them, and
// captures; without it, nothing is reachable.
func TestBOSHProxySOCKS5(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 3)
	j := startJumpbox(t, e)
	directFails(t, e, j, home)
	proxy := j.socks(t, t.TempDir())
	env := []string{"HOME=" + home, "BOSH_ALL_PROXY=" + proxy}

	r := runIn(t, e, j.Client, env, "-e", "fake", "ssh-code")
	if r.Code != 0 || !regexp.MustCompile(`^[A-Za-z0-9_-]{6,}\n$`).MatchString(r.Stdout) {
		t.Fatalf("ssh-code through the proxy: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	captureRouters(t, e, j.Client, env, "-d", "cf", "router")
}

// TestBOSHProxyJumpbox: with BOSH_ALL_PROXY=ssh+socks5://root@JUMPBOX:22?private-key=FILE
// pcap-bosh logs in to the real sshd itself and has it forward the
// director, UAA and pcap-api connections; the jumpbox's key is the one
// ~/.ssh/known_hosts records. A bad value fails before anything is
// contacted; a jumpbox that does not take the key fails clearly.
func TestBOSHProxyJumpbox(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 3)
	j := startJumpbox(t, e)
	j.knownHosts(t, home)
	directFails(t, e, j, home)
	proxy := "ssh+socks5://root@" + j.Addr + "?private-key=" + j.Key.Private

	t.Run("bad values", func(t *testing.T) {
		for value, want := range map[string]string{
			"http://198.19.0.1:3128":      `pcap-bosh: BOSH_ALL_PROXY: unsupported scheme "http"; use socks5:// or ssh+socks5://` + "\n",
			"ssh+socks5://root@" + j.Addr: "pcap-bosh: BOSH_ALL_PROXY: ssh+socks5:// needs ?private-key=FILE (the jumpbox's private key)\n",
		} {
			before := len(j.SSHD.Lines(regexp.MustCompile(`Connection from`)))
			r := runIn(t, e, j.Client, []string{"HOME=" + home, "BOSH_ALL_PROXY=" + value}, "-e", "fake", "-d", "cf", "-o", filepath.Join(t.TempDir(), "x"))
			if r.Code != 1 || r.Stderr != want {
				t.Errorf("%s: exit %d, stderr %q; want 1, %q", value, r.Code, r.Stderr, want)
			}
			if after := len(j.SSHD.Lines(regexp.MustCompile(`Connection from`))); after != before {
				t.Errorf("%s: the jumpbox was contacted", value)
			}
		}
	})
	t.Run("key the jumpbox does not take", func(t *testing.T) {
		other := newKeyPair(t, t.TempDir(), "other")
		r := runIn(t, e, j.Client, []string{"HOME=" + home, "BOSH_ALL_PROXY=ssh+socks5://root@" + j.Addr + "?private-key=" + other.Private}, "-e", "fake", "ssh-code")
		if r.Code != 1 || !strings.Contains(r.Stderr, "through jumpbox root@198.19.0.1:22: log in as root: ssh: handshake failed: ssh: unable to authenticate") {
			t.Errorf("exit %d, stderr %q", r.Code, r.Stderr)
		}
		if strings.Contains(r.Stderr, "PRIVATE KEY") {
			t.Errorf("the error shows the key: %q", r.Stderr)
		}
	})

	env := []string{"HOME=" + home, "BOSH_ALL_PROXY=" + proxy}
	r := runIn(t, e, j.Client, env, "-e", "fake", "ssh-code")
	if r.Code != 0 || !regexp.MustCompile(`^[A-Za-z0-9_-]{6,}\n$`).MatchString(r.Stdout) {
		t.Fatalf("ssh-code through the jumpbox: exit %d, stdout %q, stderr %q", r.Code, r.Stdout, r.Stderr)
	}
	before := len(j.SSHD.Lines(regexp.MustCompile(`Accepted publickey for root`)))
	captureRouters(t, e, j.Client, env, "-d", "cf", "router")
	// One login to the jumpbox carried the director, UAA and pcap-api.
	if n := len(j.SSHD.Lines(regexp.MustCompile(`Accepted publickey for root`))) - before; n != 1 {
		t.Errorf("%d logins to the jumpbox for one capture, want 1:\n%s", n, j.SSHD.Output())
	}
	for _, hostPort := range []string{strings.TrimPrefix(e.Director.URL(), "https://"), strings.TrimPrefix(e.UAA.URL(), "https://"), e.API.Addr} {
		host, port := splitHostPort(t, hostPort)
		re := regexp.MustCompile(fmt.Sprintf(`direct_tcpip: originator \S+ port \d+, target %s port %s$`, regexp.QuoteMeta(host), port))
		if len(j.SSHD.Lines(re)) == 0 {
			t.Errorf("the jumpbox forwarded nothing to %s", hostPort)
		}
	}
}

// TestBOSHWholeDeployment: pcap-bosh -d cf with no instance group
// captures on every VM of the deployment (the three routers), leaving out
// the errand that has no VM without a word, as bosh pcap -d does.
func TestBOSHWholeDeployment(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e, home := startBOSHAdmin(t, 3)
	p := captureRouters(t, e, e.Lab.LAN, []string{"HOME=" + home}, "-d", "cf")
	if got := p.Lines(regexp.MustCompile(`errand`)); len(got) != 0 {
		t.Errorf("the errand without a VM is mentioned: %q", got)
	}
	if got := p.Lines(regexp.MustCompile(`^pcap: .*: started`)); len(got) != 3 {
		t.Errorf("started lines %q, want the 3 routers", got)
	}
}
