package integration

import (
	"bytes"
	"cmp"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
)

// keyPair is an SSH key written to disk for a binary to load.
type keyPair struct {
	Signer  ssh.Signer
	Private string // path of the private key file
	Public  string // path of the public key (authorized_keys format)
}

func newKeyPair(t *testing.T, dir, name string) keyPair {
	t.Helper()
	s, pemBytes, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kp := keyPair{Signer: s, Private: filepath.Join(dir, name), Public: filepath.Join(dir, name+".pub")}
	if err := os.WriteFile(kp.Private, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kp.Public, ssh.MarshalAuthorizedKey(s.PublicKey()), 0o644); err != nil {
		t.Fatal(err)
	}
	return kp
}

// agentProc is a running pcap-agent.
type agentProc struct {
	*testenv.Proc
	Addr    string
	HostKey keyPair
	// NetnsDir is where this agent finds containers, as on a Diego cell
	// (see newContainer).
	NetnsDir string
}

type agentOptions struct {
	Netns       *testenv.Netns
	Listen      string // default 127.0.0.1:0
	ClientKeys  []keyPair
	MaxCaptures int
	NetnsDir    string // containers.netns_dir; default: a new directory
	// Config changes the config before it is written.
	Config func(*agent.Config)
}

var listeningRe = regexp.MustCompile(`"msg":"agent-listening".*"address":"([^"]+)"`)

func startAgent(t *testing.T, o agentOptions) *agentProc {
	t.Helper()
	bin := testenv.Binaries(t)
	dir := t.TempDir()
	host := newKeyPair(t, dir, "host_key")
	var auth bytes.Buffer
	for _, k := range o.ClientKeys {
		auth.Write(ssh.MarshalAuthorizedKey(k.Signer.PublicKey()))
	}
	authFile := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authFile, auth.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	netnsDir := o.NetnsDir
	if netnsDir == "" {
		netnsDir = filepath.Join(dir, "container-netns")
		if err := os.Mkdir(netnsDir, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	cfg := agent.DefaultConfig()
	cfg.Listen = cmp.Or(o.Listen, "127.0.0.1:0")
	cfg.HostKeyFile, cfg.AuthorizedKeysFile = host.Private, authFile
	cfg.MaxCaptures = cmp.Or(o.MaxCaptures, 4)
	cfg.LogLevel = "debug"
	cfg.Containers.NetnsDir = netnsDir
	if o.Config != nil {
		o.Config(&cfg)
	}
	cfgFile := filepath.Join(dir, "agent.yml")
	writeYAML(t, cfgFile, cfg)
	p := testenv.Start(t, testenv.StartOptions{Netns: o.Netns}, filepath.Join(bin, "pcap-agent"), "--config", cfgFile)
	m := p.WaitLine(t, listeningRe, 30*time.Second)
	return &agentProc{Proc: p, Addr: m[1], HostKey: host, NetnsDir: netnsDir}
}

// dialAgent connects to an agent as the holder of key.
func dialAgent(t *testing.T, a *agentProc, key keyPair) *tunnel.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := tunnel.Dial(ctx, a.Addr, tunnel.ClientConfig{
		User:            "pcap-api",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(key.Signer)},
		HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{a.HostKey.Signer.PublicKey()}),
	})
	if err != nil {
		t.Fatalf("dial agent: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// drain copies a capture stream into a file in the background; wait
// returns the file once the stream has ended.
func drain(t *testing.T, r io.Reader) (wait func() string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "out.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.Copy(f, r)
		f.Close()
		done <- err
	}()
	return func() string {
		t.Helper()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("read capture: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("capture stream did not end within 10s")
		}
		return path
	}
}

// sendUDP runs pcap-traffic inside ns and waits for it.
func sendUDP(t *testing.T, ns *testenv.Netns, to string, count int) {
	t.Helper()
	sendUDPAt(t, ns, to, count, 2000)
}

// sendUDPAt is sendUDP at rate datagrams per second.
func sendUDPAt(t *testing.T, ns *testenv.Netns, to string, count, rate int) {
	t.Helper()
	bin := testenv.Binaries(t)
	name, args := filepath.Join(bin, "pcap-traffic"), []string{"-to", to, "-count", strconv.Itoa(count), "-rate", strconv.Itoa(rate), "-max-time", "20s"}
	if ns != nil {
		name, args = "ip", append([]string{"netns", "exec", ns.Name, name}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("pcap-traffic: %v\n%s", err, out)
	}
}

// tshark runs tshark with args and returns its output.
func tshark(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "tshark", args...).Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("tshark %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return string(out)
}

// tsharkPipe starts tshark with args (which read "-r -") on a new pipe,
// stdout to stdout, and returns it and the pipe's write end, for a
// capture client's stdout: close that once the client holds its copy.
func tsharkPipe(t *testing.T, stdout io.Writer, args ...string) (*testenv.Proc, *os.File) {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pw.Close() })
	ts := testenv.Start(t, testenv.StartOptions{Stdin: pr, Stdout: stdout}, "tshark", args...)
	pr.Close() // tshark holds its copy
	return ts, pw
}

// countPackets counts the packets of file matching a display filter.
func countPackets(t *testing.T, file, displayFilter string) int {
	t.Helper()
	args := []string{"-r", file, "-T", "fields", "-e", "frame.number"}
	if displayFilter != "" {
		args = append(args, "-Y", displayFilter)
	}
	out := strings.TrimSpace(tshark(t, args...))
	if out == "" {
		return 0
	}
	return len(strings.Split(out, "\n"))
}

// capinfos checks a file with capinfos and returns its report.
func capinfos(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("capinfos", file).CombinedOutput()
	if err != nil {
		t.Fatalf("capinfos %s: %v\n%s", file, err, out)
	}
	return string(out)
}
