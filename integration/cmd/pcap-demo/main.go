// Command pcap-demo runs the whole pcap stack on this machine: three "VMs"
// (network namespaces behind a bridge in a namespace of their own), a
// pcap-agent in each, pcap-api in the bridge's namespace, bounded UDP
// traffic in every VM, and a capture through the real OpenSSH client into
// a pcapng file. Everything it makes is removed when it ends. Needs root.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/netlab"
	"code.cloudfoundry.org/pcap/integration/rundir"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pcap-demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	bin   string
	dir   rundir.Dir
	lab   *netlab.Lab
	procs []*netlab.Proc
}

func run() error {
	bin := flag.String("bin", "bin", "directory holding pcap-agent, pcap-api and pcap-traffic")
	out := flag.String("out", "demo.pcapng", "capture file to write")
	cfOut := flag.String("cf-out", "demo-cf.pcapng", "capture file of the cf part (\"\" skips it)")
	cfCLI := flag.String("cf", "build/bin/cf", "the cf CLI for the cf part")
	seconds := flag.Int("seconds", 5, "capture duration in seconds (1..60)")
	flag.Parse()
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces, libpcap)")
	}
	if *seconds < 1 || *seconds > 60 {
		return fmt.Errorf("-seconds %d out of range 1..60", *seconds)
	}
	for _, tool := range []string{"ip", "ssh", "tshark", "capinfos"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found: run `make deps`", tool)
		}
	}
	abs, err := filepath.Abs(*bin)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "pcap-demo-")
	if err != nil {
		return err
	}
	d := &demo{bin: abs, dir: rundir.Dir(dir), lab: netlab.New("pdemo")}
	defer os.RemoveAll(dir)
	defer d.lab.Close()
	defer d.stopAll()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := d.main(ctx, *out, *seconds); err != nil {
		return err
	}
	if *cfOut == "" {
		return nil
	}
	cf, err := filepath.Abs(*cfCLI)
	if err != nil {
		return err
	}
	return d.cf(ctx, cf, *cfOut, *seconds)
}

func (d *demo) stopAll() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		d.procs[i].Stop(5 * time.Second)
	}
}

func (d *demo) start(o netlab.StartOptions, name string, args ...string) (*netlab.Proc, error) {
	p, err := netlab.StartProc(o, name, args...)
	if err != nil {
		return nil, err
	}
	d.procs = append(d.procs, p)
	return p, nil
}

var (
	agentReady = regexp.MustCompile(`"msg":"agent-listening"`)
	apiReady   = regexp.MustCompile(`"msg":"api-listening"`)
)

// waitStarted waits until the capture client p has reported each of the n
// targets of group (indexes 0..n-1) started.
func waitStarted(p *netlab.Proc, group string, n int) error {
	for i := range n {
		re := regexp.MustCompile(fmt.Sprintf(`^pcap: %s/%d: started`, regexp.QuoteMeta(group), i))
		if _, err := p.WaitLine(re, 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func step(format string, a ...any) { fmt.Printf("==> "+format+"\n", a...) }

func (d *demo) main(ctx context.Context, out string, seconds int) error {

	step("making a LAN namespace with a bridge and three VM namespaces")
	lan, err := d.lab.Netns()
	if err != nil {
		return err
	}
	if err := netlab.Bridge(lan, "198.18.0.1/24"); err != nil {
		return err
	}
	var vms []*netlab.Netns
	for i := range 3 {
		vm, err := d.lab.Netns()
		if err != nil {
			return err
		}
		if err := netlab.Attach(lan, fmt.Sprintf("vm%d", i), vm, "eth0", fmt.Sprintf("198.18.0.%d/24", 10+i)); err != nil {
			return err
		}
		vms = append(vms, vm)
	}

	step("generating keys")
	_, apiClientFile, authorized, err := d.dir.KeyPair("api_client_key", "agent_authorized_keys")
	if err != nil {
		return err
	}
	_, operatorFile, operators, err := d.dir.KeyPair("operator_key", "operators")
	if err != nil {
		return err
	}
	apiHost, apiHostFile, err := d.dir.Key("api_host_key")
	if err != nil {
		return err
	}

	step("starting a pcap-agent in each VM")
	var agentHostKeys strings.Builder
	var agents []string
	for i, vm := range vms {
		hk, hkFile, err := d.dir.Key(fmt.Sprintf("agent%d_host_key", i))
		if err != nil {
			return err
		}
		agentHostKeys.Write(ssh.MarshalAuthorizedKey(hk.PublicKey()))
		addr := fmt.Sprintf("198.18.0.%d:9494", 10+i)
		cfg, err := d.dir.Write(fmt.Sprintf("agent%d.yml", i), fmt.Sprintf("listen: %q\nhost_key_file: %q\nauthorized_keys_file: %q\n", addr, hkFile, authorized))
		if err != nil {
			return err
		}
		p, err := d.start(netlab.StartOptions{Netns: vm}, filepath.Join(d.bin, "pcap-agent"), "--config", cfg)
		if err != nil {
			return err
		}
		if _, err := p.WaitLine(agentReady, 20*time.Second); err != nil {
			return err
		}
		agents = append(agents, fmt.Sprintf("%q", addr))
	}

	step("starting pcap-api in the LAN namespace")
	hostKeys, err := d.dir.Write("agent_host_keys", agentHostKeys.String())
	if err != nil {
		return err
	}
	apiCfg, err := d.dir.Write("api.yml", fmt.Sprintf(`listen: "198.18.0.1:2222"
http_listen: "198.18.0.1:8080"
host_key_file: %q
agents:
  client_key_file: %q
  host_keys_file: %q
static:
  operator_keys_file: %q
  groups:
    demo: [%s]
`, apiHostFile, apiClientFile, hostKeys, operators, strings.Join(agents, ", ")))
	if err != nil {
		return err
	}
	api, err := d.start(netlab.StartOptions{Netns: lan}, filepath.Join(d.bin, "pcap-api"), "--config", apiCfg)
	if err != nil {
		return err
	}
	if _, err := api.WaitLine(apiReady, 20*time.Second); err != nil {
		return err
	}

	step("capturing for %ds: ssh -p 2222 static@198.18.0.1 capture --duration %ds -f 'udp port 7000' demo > %s", seconds, seconds, out)
	knownHosts, err := d.dir.Write("known_hosts", "[198.18.0.1]:2222 "+string(ssh.MarshalAuthorizedKey(apiHost.PublicKey())))
	if err != nil {
		return err
	}
	f, err := os.Create(out)
	if err != nil {
		return err
	}
	defer f.Close()
	// The capture ends by its duration (stdin EOF would not stop it; a line
	// on stdin would). An *os.File, so exec starts no copying goroutine.
	stdinR, stdinW, err := os.Pipe()
	if err != nil {
		return err
	}
	defer stdinW.Close()
	defer stdinR.Close()
	client, err := d.start(netlab.StartOptions{Netns: lan, Stdout: f, Stdin: stdinR},
		"ssh", "-p", "2222", "-i", operatorFile, "-F", "none", "-o", "UserKnownHostsFile="+knownHosts,
		"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
		"static@198.18.0.1", "capture", "--duration", fmt.Sprintf("%ds", seconds), "-f", "'udp port 7000'", "demo")
	if err != nil {
		return err
	}
	if err := waitStarted(client, "demo", len(vms)); err != nil {
		return err
	}

	step("sending UDP traffic in every VM (100, 200 and 300 packets/s)")
	for i, vm := range vms {
		rate := 100 * (i + 1)
		count := rate * (seconds - 1)
		if count < rate {
			count = rate / 2
		}
		if _, err := d.start(netlab.StartOptions{Netns: vm}, filepath.Join(d.bin, "pcap-traffic"),
			"-to", "198.18.0.1:7000", "-count", fmt.Sprint(count), "-rate", fmt.Sprint(rate), "-max-time", fmt.Sprintf("%ds", seconds+5)); err != nil {
			return err
		}
	}

	select {
	case <-client.Done():
	case <-ctx.Done():
		client.Stop(5 * time.Second)
	case <-time.After(time.Duration(seconds+30) * time.Second):
		return fmt.Errorf("capture did not end in time:\n%s\n--- pcap-api:\n%s", client.Output(), api.Output())
	}
	fmt.Println(client.Output())
	if err, _ := client.Wait(0); err != nil {
		return fmt.Errorf("ssh capture: %w", err)
	}
	f.Close()

	step("capinfos %s", out)
	if err := show("capinfos", "-c", "-u", "-I", out); err != nil {
		return err
	}
	step("tshark -r %s (first 10 packets)", out)
	return show("tshark", "-r", out, "-c", "10", "-T", "fields", "-e", "frame.number", "-e", "frame.interface_name",
		"-e", "frame.time_relative", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport", "-E", "header=y")
}

func show(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}
