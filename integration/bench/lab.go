package bench

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/rundir"
)

// Addresses and ports inside the lab's namespaces (198.18.0.0/15 is
// reserved for benchmarks, RFC 2544).
const (
	lanAddr   = "198.18.0.1"
	apiPort   = 2222
	agentPort = 9494
	sshdPort  = 2200
	sinkAddr  = "198.18.0.250"
	dstPort   = 7000
	// filter is what every tool captures: only the generator's datagrams,
	// never the tunnels that carry the capture itself.
	filter = "udp dst port 7000"
	// bufferKiB is the kernel capture buffer of every tool: pcap-agent's
	// default buffer_size, and tcpdump -B.
	bufferKiB = 32768
)

func vmAddr(i int) string { return fmt.Sprintf("198.18.0.%d", 10+i) }

// sinkMAC is where VM i's traffic goes: a static neighbour entry in the VM
// and a static bridge entry pointing back at the VM's own port, so the
// bridge drops every datagram right after the VM's eth0 sent it (where
// the captures see it), without flooding other VMs or waking any
// socket.
func sinkMAC(i int) string { return fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff) }

// vm is one "VM" namespace with its pcap-agent.
type vm struct {
	idx   int
	ns    *netlab.Netns
	addr  string
	agent *netlab.Proc
}

// lab is the benchmark's world: a LAN namespace with a bridge, pcap-api
// and the capture clients; VM namespaces behind it, each with a pcap-agent
// and its own traffic; Debian's sshd in VM 0. Close removes all of it.
type lab struct {
	bin   string
	dir   rundir.Dir // on tmpfs: keys, configs, capture files
	log   func(format string, a ...any)
	nl    *netlab.Lab
	lan   *netlab.Netns
	vms   []*vm
	procs []*netlab.Proc

	api         *netlab.Proc
	apiHostKey  ssh.PublicKey
	operator    ssh.Signer
	operatorKey string // private key file for OpenSSH
	apiKnown    string // known_hosts for the API

	sshd     *netlab.Proc   // in VM 0
	sshds    []*netlab.Proc // in VM i, i < len(sshds); sshds[0] == sshd
	sshKey   string         // root's key for sshd
	sshKnown string
	tcpdump  string // absolute path
	cipher   string // ssh -c, when set
}

var (
	agentReady = regexp.MustCompile(`"msg":"agent-listening"`)
	apiReady   = regexp.MustCompile(`"msg":"api-listening"`)
	sshdReady  = regexp.MustCompile(`Server listening on `)
)

// newLab builds the lab with n VMs and pcap-api groups "vm0" (VM 0) and
// "fanN" (VMs 0..N-1) for every N of fanOut. On error what was made is
// removed.
func newLab(bin string, n int, fanOut []int, sshdVMs int, log func(string, ...any)) (_ *lab, err error) {
	for _, tool := range []string{"pcap-agent", "pcap-api", "pcap-traffic"} {
		if _, err := os.Stat(filepath.Join(bin, tool)); err != nil {
			return nil, fmt.Errorf("bench: %s not built in %s", tool, bin)
		}
	}
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		return nil, errors.New("bench: tcpdump not found (make deps)")
	}
	for _, tool := range []string{"ip", "bridge", "ssh"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("bench: %s not found (make deps)", tool)
		}
	}
	if _, err := os.Stat("/usr/sbin/sshd"); err != nil {
		return nil, errors.New("bench: /usr/sbin/sshd not found (make deps installs openssh-server)")
	}
	dir, err := os.MkdirTemp("/dev/shm", "pcap-bench-")
	if err != nil {
		return nil, fmt.Errorf("bench: run directory on tmpfs: %w", err)
	}
	l := &lab{bin: bin, dir: rundir.Dir(dir), log: log, nl: netlab.New("pb"), tcpdump: tcpdump}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	if err := l.network(n); err != nil {
		return nil, err
	}
	if err := l.startAgentsAndAPI(fanOut); err != nil {
		return nil, err
	}
	if err := l.startSSHD(min(sshdVMs, n)); err != nil {
		return nil, err
	}
	log("pids: pcap-api %d, pcap-agent of VM 0 %d, sshd %d", l.api.Cmd.Process.Pid, l.vms[0].agent.Cmd.Process.Pid, l.sshd.Cmd.Process.Pid)
	return l, nil
}

// Close stops every process by PID, then removes the namespaces and files.
func (l *lab) Close() {
	for i := len(l.procs) - 1; i >= 0; i-- {
		l.procs[i].Stop(5 * time.Second)
	}
	l.nl.Close()
	os.RemoveAll(string(l.dir))
}

func (l *lab) start(o netlab.StartOptions, name string, args ...string) (*netlab.Proc, error) {
	p, err := netlab.StartProc(o, name, args...)
	if err != nil {
		return nil, err
	}
	l.procs = append(l.procs, p)
	return p, nil
}

func (l *lab) network(n int) error {
	l.log("making %d VM namespaces behind a bridge", n)
	lan, err := l.nl.Netns()
	if err != nil {
		return err
	}
	l.lan = lan
	if err := netlab.Bridge(lan, lanAddr+"/24"); err != nil {
		return err
	}
	for i := range n {
		ns, err := l.nl.Netns()
		if err != nil {
			return err
		}
		port := fmt.Sprintf("vm%d", i)
		if err := netlab.Attach(lan, port, ns, "eth0", vmAddr(i)+"/24"); err != nil {
			return err
		}
		if err := netlab.Run("ip", "-n", ns.Name, "neigh", "add", sinkAddr, "lladdr", sinkMAC(i), "dev", "eth0", "nud", "permanent"); err != nil {
			return err
		}
		if err := netlab.Run("bridge", "-n", lan.Name, "fdb", "add", sinkMAC(i), "dev", port, "master", "static"); err != nil {
			return err
		}
		l.vms = append(l.vms, &vm{idx: i, ns: ns, addr: vmAddr(i)})
	}
	return nil
}

// debugListen is where every agent and pcap-api of the lab serve Go's
// profiles, each on the loopback of its own namespace: to see where a
// run's CPU and memory go, e.g.
// nsenter -t <pid> -n go tool pprof http://127.0.0.1:6060/debug/pprof/heap
const debugListen = "127.0.0.1:6060"

func (l *lab) startAgentsAndAPI(fanOut []int) error {
	l.log("starting %d pcap-agents and pcap-api", len(l.vms))
	_, apiClientFile, authorized, err := l.dir.KeyPair("api_client_key", "agent_authorized_keys")
	if err != nil {
		return err
	}
	// One host key for every agent: the API pins it.
	_, agentHostFile, hostKeys, err := l.dir.KeyPair("agent_host_key", "agent_host_keys")
	if err != nil {
		return err
	}
	for _, v := range l.vms {
		cfg, err := l.dir.Write(fmt.Sprintf("agent%d.yml", v.idx), fmt.Sprintf(
			"listen: \"%s:%d\"\nhost_key_file: %q\nauthorized_keys_file: %q\nbuffer_size: %d\ndebug_listen: %q\n",
			v.addr, agentPort, agentHostFile, authorized, bufferKiB<<10, debugListen))
		if err != nil {
			return err
		}
		p, err := l.start(netlab.StartOptions{Netns: v.ns}, filepath.Join(l.bin, "pcap-agent"), "--config", cfg)
		if err != nil {
			return err
		}
		v.agent = p
	}
	for _, v := range l.vms {
		if _, err := v.agent.WaitLine(agentReady, 20*time.Second); err != nil {
			return fmt.Errorf("bench: agent %d: %w", v.idx, err)
		}
	}

	var operators string
	l.operator, l.operatorKey, operators, err = l.dir.KeyPair("operator_key", "operators")
	if err != nil {
		return err
	}
	apiHost, apiHostFile, err := l.dir.Key("api_host_key")
	if err != nil {
		return err
	}
	l.apiHostKey = apiHost.PublicKey()
	l.apiKnown, err = l.dir.Write("api_known_hosts", fmt.Sprintf("[%s]:%d %s", lanAddr, apiPort, ssh.MarshalAuthorizedKey(l.apiHostKey)))
	if err != nil {
		return err
	}
	var groups strings.Builder
	group := func(name string, n int) {
		fmt.Fprintf(&groups, "    %s: [", name)
		for i := range n {
			if i > 0 {
				groups.WriteString(", ")
			}
			fmt.Fprintf(&groups, "\"%s:%d\"", vmAddr(i), agentPort)
		}
		groups.WriteString("]\n")
	}
	group("vm0", 1)
	for _, n := range fanOut {
		group(fanGroup(n), n)
	}
	cfg, err := l.dir.Write("api.yml", fmt.Sprintf(`listen: "%s:%d"
http_listen: ""
debug_listen: %q
host_key_file: %q
agents:
  client_key_file: %q
  host_keys_file: %q
limits:
  max_targets: %d
static:
  operator_keys_file: %q
  groups:
%s`, lanAddr, apiPort, debugListen, apiHostFile, apiClientFile, hostKeys, max(100, len(l.vms)), operators, groups.String()))
	if err != nil {
		return err
	}
	l.api, err = l.start(netlab.StartOptions{Netns: l.lan}, filepath.Join(l.bin, "pcap-api"), "--config", cfg)
	if err != nil {
		return err
	}
	if _, err := l.api.WaitLine(apiReady, 20*time.Second); err != nil {
		return fmt.Errorf("bench: pcap-api: %w", err)
	}
	return nil
}

// startSSHD starts Debian's sshd in VMs 0..n-1 on its own port with its
// own host key and one authorized key for root, configured entirely on the
// command line (no system configuration is read or changed).
func (l *lab) startSSHD(n int) error {
	l.log("starting sshd in %d VM(s) on port %d", n, sshdPort)
	// Privilege separation needs the empty directory /run/sshd, which
	// Debian's ssh.service creates at boot; make it when missing. It is
	// left in place (on tmpfs), as another run may be using it.
	if _, err := os.Stat("/run/sshd"); errors.Is(err, os.ErrNotExist) {
		if err := os.Mkdir("/run/sshd", 0o755); err != nil && !errors.Is(err, os.ErrExist) {
			return fmt.Errorf("bench: make /run/sshd: %w", err)
		}
	}
	host, hostFile, err := l.dir.Key("sshd_host_key")
	if err != nil {
		return err
	}
	_, clientFile, authorized, err := l.dir.KeyPair("root_key", "root_authorized_keys")
	if err != nil {
		return err
	}
	l.sshKey = clientFile
	var known strings.Builder
	for i := range n {
		fmt.Fprintf(&known, "[%s]:%d %s", vmAddr(i), sshdPort, ssh.MarshalAuthorizedKey(host.PublicKey()))
	}
	l.sshKnown, err = l.dir.Write("sshd_known_hosts", known.String())
	if err != nil {
		return err
	}
	for i := range n {
		if err := l.startOneSSHD(i, hostFile, authorized); err != nil {
			return err
		}
	}
	l.sshd = l.sshds[0]
	return nil
}

func (l *lab) startOneSSHD(i int, hostFile, authorized string) error {
	opts := []string{
		fmt.Sprintf("Port=%d", sshdPort),
		"ListenAddress=" + vmAddr(i),
		"HostKey=" + hostFile,
		"AuthorizedKeysFile=" + authorized,
		"PermitRootLogin=prohibit-password",
		"PasswordAuthentication=no",
		"KbdInteractiveAuthentication=no",
		"UsePAM=no",
		"StrictModes=no", // the files live on world-writable /dev/shm
		"PidFile=none",
		"UseDNS=no",
		"LogLevel=INFO",
	}
	args := []string{"-D", "-e", "-f", "/dev/null"}
	for _, o := range opts {
		args = append(args, "-o", o)
	}
	p, err := l.start(netlab.StartOptions{Netns: l.vms[i].ns}, "/usr/sbin/sshd", args...)
	if err != nil {
		return err
	}
	if _, err := p.WaitLine(sshdReady, 10*time.Second); err != nil {
		return fmt.Errorf("bench: sshd in VM %d: %w", i, err)
	}
	l.sshds = append(l.sshds, p)
	return nil
}

// sshArgs are the OpenSSH client's options: no user or system config,
// the server's key pinned, key authentication only.
func (l *lab) sshArgs(port int, key, knownHosts, dest string) []string {
	args := []string{"-p", fmt.Sprint(port), "-i", key, "-F", "none",
		"-o", "UserKnownHostsFile=" + knownHosts, "-o", "StrictHostKeyChecking=yes",
		"-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR"}
	if l.cipher != "" {
		args = append(args, "-c", l.cipher)
	}
	return append(args, dest)
}
