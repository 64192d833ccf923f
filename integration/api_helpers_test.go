package integration

import (
	"bytes"
	"cmp"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// apiProc is a running pcap-api.
type apiProc struct {
	*testenv.Proc
	Addr     string // ssh front door
	HTTPAddr string
	HostKey  keyPair
	Netns    *testenv.Netns
}

type apiOptions struct {
	Netns     *testenv.Netns
	Listen    string // default 127.0.0.1:0
	ClientKey keyPair
	AgentKeys []keyPair // agents' host keys to pin
	Operators []keyPair
	Groups    map[string][]string
	AgentPort int // agents.port (default 9494)
	// Config changes the config before it is written: the resolvers'
	// sections, limits, timeouts.
	Config func(*api.Config)
}

var apiListeningRe = regexp.MustCompile(`"msg":"api-listening".*"address":"([^"]+)".*"http_address":"([^"]*)"`)

// startAPI starts pcap-api with a config made from o: pcap-api's defaults,
// a new host key, the static resolver with o's operators and groups, then
// o.Config's changes, marshalled as YAML.
func startAPI(t *testing.T, o apiOptions) *apiProc {
	t.Helper()
	dir := t.TempDir()
	host := newKeyPair(t, dir, "api_host_key")
	write := func(name string, keys []keyPair) string {
		var b bytes.Buffer
		for _, k := range keys {
			b.Write(ssh.MarshalAuthorizedKey(k.Signer.PublicKey()))
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := api.DefaultConfig()
	cfg.Listen = cmp.Or(o.Listen, "127.0.0.1:0")
	cfg.HTTPListen = strings.Split(cfg.Listen, ":")[0] + ":0"
	cfg.HostKeyFile = host.Private
	cfg.LogLevel = "debug"
	cfg.Agents.ClientKeyFile = o.ClientKey.Private
	cfg.Agents.HostKeysFile = write("agent_host_keys", o.AgentKeys)
	cfg.Agents.DialTimeout = 5 * time.Second
	cfg.Agents.Port = cmp.Or(o.AgentPort, 9494)
	cfg.Static = &api.StaticConfig{OperatorKeysFile: write("operators", o.Operators), Groups: o.Groups}
	if o.Config != nil {
		o.Config(&cfg)
	}
	cfgFile := filepath.Join(dir, "api.yml")
	writeYAML(t, cfgFile, cfg)
	p := testenv.Start(t, testenv.StartOptions{Netns: o.Netns}, filepath.Join(testenv.Binaries(t), "pcap-api"), "--config", cfgFile)
	m := p.WaitLine(t, apiListeningRe, 30*time.Second)
	return &apiProc{Proc: p, Addr: m[1], HTTPAddr: m[2], HostKey: host, Netns: o.Netns}
}

// writeYAML writes a config (api.Config, agent.Config) to path as YAML,
// as an operator would.
func writeYAML(t *testing.T, path string, cfg any) {
	t.Helper()
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// sshClient runs the real OpenSSH client against the API.
type sshClient struct {
	*testenv.Proc
	// Stdin is the client's stdin; closing it stops the capture (see
	// stopStdin).
	Stdin io.WriteCloser
}

// stopStdin is an ssh client's stdin: Close sends a line, which pcap-api
// takes for a stop (what a user's Enter sends), then EOF. EOF alone does
// not stop a capture.
type stopStdin struct{ *os.File }

func (s stopStdin) Close() error {
	s.File.WriteString("\n") // fails only when ssh has gone already
	return s.File.Close()
}

// runSSH starts `ssh -p PORT user@HOST command…` with key auth and the
// API's host key pinned; stdout goes to out. Closing Stdin stops the
// capture.
func runSSH(t *testing.T, a *apiProc, user string, key keyPair, out io.Writer, command ...string) *sshClient {
	t.Helper()
	return startSSHClient(t, a.Netns, out, nil, "ssh", append(opensshArgs(t, a, user, key), command...)...)
}

// startSSHClient starts an ssh client (or sshpass running one) in ns with
// stdout to out and a stdin that stops the capture when closed.
func startSSHClient(t *testing.T, ns *testenv.Netns, out io.Writer, env []string, name string, args ...string) *sshClient {
	t.Helper()
	// An *os.File stdin: exec starts no copying goroutine, so the process
	// counts as done when ssh exits, whether or not stdin was closed.
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, testenv.StartOptions{Netns: ns, Stdin: pr, Stdout: out, Env: env}, name, args...)
	pr.Close() // the child has its copy
	t.Cleanup(func() { pw.Close() })
	return &sshClient{Proc: p, Stdin: stopStdin{pw}}
}

// opensshArgs are the OpenSSH client's arguments up to the command: key
// auth with key as user, the API's host key pinned, no config file.
func opensshArgs(t *testing.T, a *apiProc, user string, key keyPair) []string {
	t.Helper()
	host, port, kh := pinnedKnownHosts(t, a, t.TempDir())
	return []string{"-p", port, "-i", key.Private, "-F", "none",
		"-o", "UserKnownHostsFile=" + kh, "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes",
		"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
		user + "@" + host}
}

// pinnedKnownHosts writes dir/known_hosts with the API's host key for its
// address and returns the address's host, port and the file's path.
func pinnedKnownHosts(t *testing.T, a *apiProc, dir string) (host, port, path string) {
	t.Helper()
	host, port = splitHostPort(t, a.Addr)
	path = filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(a.HostKey.Signer.PublicKey()))
	if err := os.WriteFile(path, []byte(line), 0o644); err != nil {
		t.Fatal(err)
	}
	return host, port, path
}

func splitHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	if i < 0 {
		t.Fatalf("bad address %q", addr)
	}
	return addr[:i], addr[i+1:]
}

// lab is a LAN namespace with a bridge (198.18.0.1/24) and VM namespaces
// attached to it, each with its address 198.18.0.(10+i) on eth0.
type lab struct {
	LAN *testenv.Netns
	VMs []*testenv.Netns
}

func newLab(t *testing.T, vms int, ifName func(i int) string) *lab {
	t.Helper()
	l := &lab{LAN: testenv.NewNetns(t)}
	testenv.Bridge(t, l.LAN, "198.18.0.1/24")
	for i := range vms {
		vm := testenv.NewNetns(t)
		name := "eth0"
		if ifName != nil {
			name = ifName(i)
		}
		testenv.AttachToBridge(t, l.LAN, fmt.Sprintf("vm%d", i), vm, name, fmt.Sprintf("198.18.0.%d/24", 10+i))
		l.VMs = append(l.VMs, vm)
	}
	return l
}

func (l *lab) vmAddr(i int) string { return fmt.Sprintf("198.18.0.%d", 10+i) }
