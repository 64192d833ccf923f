package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
)

// job is one capture on one batch of traffic: which tool, which VMs send
// (and are captured), how much.
type job struct {
	tool   string
	vms    []*vm
	group  string // pcap: the static group naming vms
	count  int    // per VM
	size   int
	rate   int // per VM; 0 unbounded
	settle time.Duration
}

// capture is a running capture of one tool.
type capture interface {
	// stop asks the capture to end and waits (bounded) until its output
	// file is closed.
	stop() error
	// account fills in CPU and drop figures after stop.
	account(p *Point)
	// cpuNow is the CPU time its processes have used so far, by name
	// (running ones, cpuPrecise; compare two readings).
	cpuNow() map[string]time.Duration
	// files are the output files, written while the capture runs.
	files() []string
}

// measure runs one job: start the capture, wait until it is ready, send
// the traffic, wait until the output has all of it (or stops growing),
// stop the capture and count what it wrote.
func (l *lab) measure(ctx context.Context, j job) (Point, error) {
	p := Point{Tool: j.tool, Size: j.size, Rate: j.rate * len(j.vms)}
	ext := ".pcap"
	if j.tool == ToolPcap {
		ext = ".pcapng"
	}
	out := l.dir.Path(j.tool + ext)
	var c capture
	var err error
	switch j.tool {
	case ToolLocal:
		c, err = l.startLocal(j, out)
	case ToolSSH:
		c, err = l.startSSHAll(j, out)
	case ToolPcap:
		c, err = l.startPcap(j, out)
	default:
		err = fmt.Errorf("bench: unknown tool %q", j.tool)
	}
	if err != nil {
		return p, err
	}
	defer func() {
		for _, f := range c.files() {
			os.Remove(f)
		}
	}()
	busy0, own0, t0 := processBusy(), ownCPU(), time.Now()
	cpu0 := c.cpuNow()
	stopped := false
	defer func() {
		if !stopped {
			c.stop()
		}
	}()

	gens, err := l.startTraffic(j.vms, j.count, j.size, j.rate)
	if err != nil {
		return p, err
	}
	tr, err := l.waitTraffic(gens, 2*time.Minute)
	if err != nil {
		return p, err
	}
	fc := countersFor(c.files())
	if err := drain(ctx, fc, tr.sent, j.settle); err != nil {
		return p, err
	}
	cpu1 := c.cpuNow()
	stopAt := time.Now()
	stopped = true
	if err := c.stop(); err != nil {
		return p, err
	}
	p.StopSeconds = time.Since(stopAt).Seconds()
	p.WallSeconds = time.Since(t0).Seconds()
	p.ForeignCPU = max(0, (processBusy()-busy0)-(ownCPU()-own0)).Seconds()
	n, err := fc.poll()
	if err != nil {
		return p, fmt.Errorf("bench: count %s output: %w", j.tool, err)
	}
	p.Sent, p.Delivered = tr.sent, n
	p.OutOfOrder, p.OutOfOrderInIface = fc.outOfOrder()
	p.SendSeconds = tr.took.Seconds()
	if p.SendSeconds > 0 {
		p.OfferedPPS = float64(p.Sent) / p.SendSeconds
		p.DeliveredPPS = float64(p.Delivered) / p.SendSeconds
	}
	if p.Sent > 0 {
		p.LossPct = 100 * float64(int64(p.Sent)-int64(p.Delivered)) / float64(p.Sent)
	}
	p.GeneratorCPUs = tr.cpu.Seconds()
	p.Dropped = map[string]uint64{}
	p.CPU = map[string]float64{}
	c.account(&p)
	p.CPUSending = map[string]float64{}
	for name, d := range cpu1 {
		p.CPUSending[name] = max(0, d-cpu0[name]).Seconds()
	}
	var known uint64
	for _, v := range p.Dropped {
		known += v
	}
	if p.Sent > p.Delivered+known {
		p.Dropped["unaccounted"] = p.Sent - p.Delivered - known
	}
	return p, nil
}

// drain waits until the output holds every packet sent, or has not grown
// for settle (tcpdump hands over a partly filled ring block only after its
// 1 s timeout), bounded to settle + 10 s.
func drain(ctx context.Context, fc fileCounters, sent uint64, settle time.Duration) error {
	start := time.Now()
	last, lastAt := uint64(0), start
	for {
		n, err := fc.poll()
		if err != nil && !os.IsNotExist(err) {
			return err
		}
		now := time.Now()
		if n >= sent || now.Sub(lastAt) >= settle || now.Sub(start) > settle+10*time.Second {
			return nil
		}
		if n != last {
			last, lastAt = n, now
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(25 * time.Millisecond):
		}
	}
}

var (
	tcpdumpReady   = regexp.MustCompile(`listening on eth0`)
	tcpdumpDropped = regexp.MustCompile(`(\d+) packets? dropped by kernel`)
)

func rusageCPU(p *netlab.Proc) float64 {
	if st := p.Cmd.ProcessState; st != nil {
		return (st.UserTime() + st.SystemTime()).Seconds()
	}
	return 0
}

// waitExit waits for p (bounded) and forgets it.
func (l *lab) waitExit(p *netlab.Proc, timeout time.Duration, what string) error {
	if _, ok := p.Wait(timeout); !ok {
		p.Stop(time.Second)
		l.forget(p)
		return fmt.Errorf("bench: %s did not exit within %v of stop:\n%s", what, timeout, p.Output())
	}
	l.forget(p)
	return nil
}

// localCapture is tcpdump inside the VM writing to tmpfs.
type localCapture struct {
	l   *lab
	p   *netlab.Proc
	out string
}

func (c *localCapture) files() []string { return []string{c.out} }

func (l *lab) startLocal(j job, out string) (capture, error) {
	p, err := l.start(netlab.StartOptions{Netns: j.vms[0].ns}, l.tcpdump,
		"-i", "eth0", "-n", "-B", fmt.Sprint(bufferKiB), "-w", out, filter)
	if err != nil {
		return nil, err
	}
	c := &localCapture{l: l, p: p, out: out}
	if _, err := p.WaitLine(tcpdumpReady, 10*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (c *localCapture) stop() error {
	c.p.Signal(syscall.SIGINT)
	return c.l.waitExit(c.p, 10*time.Second, "tcpdump")
}

func (c *localCapture) cpuNow() map[string]time.Duration {
	d, _ := cpuPrecise(c.p.Cmd.Process.Pid)
	return map[string]time.Duration{"tcpdump": d}
}

func (c *localCapture) account(p *Point) {
	p.CPU["tcpdump"] = rusageCPU(c.p)
	if m, err := c.p.WaitLine(tcpdumpDropped, 2*time.Second); err == nil {
		p.Dropped["kernel"], _ = strconv.ParseUint(m[1], 10, 64)
	}
}

// sshCapture is `ssh root@vm 'tcpdump -U -w - …' > file`, against Debian's
// sshd in the VM.
type sshCapture struct {
	l      *lab
	sshd   *netlab.Proc
	p      *netlab.Proc
	f      *os.File
	tree   *treeCPU
	done   chan struct{}
	polled chan struct{}
}

func (c *sshCapture) files() []string { return []string{c.f.Name()} }

// startSSHAll starts one pipeline per VM of j, each into its own file
// (out for VM 0, out.<i> for VM i).
func (l *lab) startSSHAll(j job, out string) (capture, error) {
	if len(j.vms) == 1 {
		return l.startSSH(0, out)
	}
	if len(j.vms) > len(l.sshds) {
		return nil, fmt.Errorf("bench: %d VMs to capture with OpenSSH, sshd runs in %d", len(j.vms), len(l.sshds))
	}
	var all sshCaptures
	for i := range j.vms {
		path := out
		if i > 0 {
			path = fmt.Sprintf("%s.%d", out, i)
		}
		c, err := l.startSSH(i, path)
		if err != nil {
			all.stop()
			return nil, err
		}
		all = append(all, c)
	}
	return all, nil
}

// sshCaptures are parallel OpenSSH + tcpdump pipelines, one per VM.
type sshCaptures []*sshCapture

func (cs sshCaptures) files() []string {
	var fs []string
	for _, c := range cs {
		fs = append(fs, c.files()...)
	}
	return fs
}

func (cs sshCaptures) stop() error {
	var errs []error
	for _, c := range cs {
		errs = append(errs, c.stop())
	}
	return errors.Join(errs...)
}

func (cs sshCaptures) cpuNow() map[string]time.Duration {
	all := map[string]time.Duration{}
	for _, c := range cs {
		for name, d := range c.cpuNow() {
			all[name] += d
		}
	}
	return all
}

func (cs sshCaptures) account(p *Point) {
	kernel := uint64(0)
	for _, c := range cs {
		c.account(p)
		kernel += p.Dropped["kernel"]
		delete(p.Dropped, "kernel")
	}
	if kernel > 0 {
		p.Dropped["kernel"] = kernel
	}
}

func (l *lab) startSSH(vmIdx int, out string) (*sshCapture, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	remote := fmt.Sprintf("%s -U -w - -i eth0 -n -B %d '%s'", l.tcpdump, bufferKiB, filter)
	args := append(l.sshArgs(sshdPort, l.sshKey, l.sshKnown, "root@"+vmAddr(vmIdx)), remote)
	p, err := l.start(netlab.StartOptions{Netns: l.lan, Stdout: f}, "ssh", args...)
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &sshCapture{l: l, sshd: l.sshds[vmIdx], p: p, f: f, done: make(chan struct{}), polled: make(chan struct{})}
	if _, err := p.WaitLine(tcpdumpReady, 10*time.Second); err != nil {
		c.stop()
		return nil, err
	}
	// sshd's per-connection processes and tcpdump come and go with the
	// capture: sample their CPU time while it runs.
	c.tree = newTreeCPU(c.sshd.Cmd.Process.Pid)
	go func() {
		defer close(c.polled)
		for {
			c.tree.sample()
			select {
			case <-c.done:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return c, nil
}

// stop interrupts the remote tcpdump by its PID, as Ctrl-C on a terminal
// would: it writes its statistics and exits, and ssh with it.
func (c *sshCapture) stop() error {
	defer c.f.Close()
	if c.tree != nil {
		close(c.done)
		<-c.polled
		c.tree.sample()
	}
	for _, pid := range descendants(c.sshd.Cmd.Process.Pid) {
		if procName(pid) == "tcpdump" {
			syscall.Kill(pid, syscall.SIGINT)
		}
	}
	return c.l.waitExit(c.p, 10*time.Second, "ssh tcpdump")
}

// cpuNow: the client, and sshd's processes for it with tcpdump, which
// live as long as the capture.
func (c *sshCapture) cpuNow() map[string]time.Duration {
	d, _ := cpuPrecise(c.p.Cmd.Process.Pid)
	m := map[string]time.Duration{"ssh": d}
	for _, pid := range descendants(c.sshd.Cmd.Process.Pid) {
		if d, err := cpuPrecise(pid); err == nil {
			m[procName(pid)] += d
		}
	}
	return m
}

func (c *sshCapture) account(p *Point) {
	p.CPU["ssh"] += rusageCPU(c.p)
	if c.tree != nil {
		for name, d := range c.tree.byName() {
			p.CPU[name] += d.Seconds()
		}
	}
	if m, err := c.p.WaitLine(tcpdumpDropped, 2*time.Second); err == nil {
		p.Dropped["kernel"], _ = strconv.ParseUint(m[1], 10, 64)
	}
}

// pcapCapture is `ssh static@api capture -f … GROUP > file` through
// pcap-api and the agents of the VMs.
type pcapCapture struct {
	l        *lab
	j        job
	p        *netlab.Proc
	f        *os.File
	out      string
	stdin    *os.File
	apiCPU   time.Duration
	agentCPU time.Duration
}

var summaryRe = regexp.MustCompile(`^pcap: summary: (\S+) (.*)$`)

func (l *lab) startPcap(j job, out string) (capture, error) {
	f, err := os.Create(out)
	if err != nil {
		return nil, err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		f.Close()
		return nil, err
	}
	c := &pcapCapture{l: l, j: j, f: f, out: out, stdin: pw}
	c.apiCPU, _ = cpuTime(l.api.Cmd.Process.Pid)
	for _, v := range j.vms {
		d, _ := cpuTime(v.agent.Cmd.Process.Pid)
		c.agentCPU += d
	}
	resetPeakRSS(l.api.Cmd.Process.Pid)
	args := append(l.sshArgs(apiPort, l.operatorKey, l.apiKnown, "static@"+lanAddr),
		"capture", "-f", "'"+filter+"'", j.group)
	c.p, err = l.start(netlab.StartOptions{Netns: l.lan, Stdin: pr, Stdout: f}, "ssh", args...)
	pr.Close()
	if err != nil {
		pw.Close()
		f.Close()
		return nil, err
	}
	for i := range j.vms {
		re := regexp.MustCompile(fmt.Sprintf(`^pcap: %s/%d: started`, regexp.QuoteMeta(j.group), i))
		if _, err := c.p.WaitLine(re, 30*time.Second); err != nil {
			c.stop()
			return nil, err
		}
	}
	return c, nil
}

func (c *pcapCapture) files() []string { return []string{c.out} }

// stop types a line into the client's stdin, which stops the capture
// (stdin EOF alone does not: api/stop.go), and closes it.
func (c *pcapCapture) stop() error {
	defer c.f.Close()
	c.stdin.Write([]byte("\n")) // an error means ssh is gone: waitExit tells
	c.stdin.Close()
	return c.l.waitExit(c.p, 15*time.Second, "pcap capture")
}

func (c *pcapCapture) cpuNow() map[string]time.Duration {
	m := map[string]time.Duration{}
	m["ssh"], _ = cpuPrecise(c.p.Cmd.Process.Pid)
	m["pcap-api"], _ = cpuPrecise(c.l.api.Cmd.Process.Pid)
	for _, v := range c.j.vms {
		d, _ := cpuPrecise(v.agent.Cmd.Process.Pid)
		m["pcap-agent"] += d
	}
	return m
}

func (c *pcapCapture) account(p *Point) {
	p.CPU["ssh"] = rusageCPU(c.p)
	if d, err := cpuTime(c.l.api.Cmd.Process.Pid); err == nil {
		p.CPU["pcap-api"] = (d - c.apiCPU).Seconds()
	}
	var agents time.Duration
	for _, v := range c.j.vms {
		d, _ := cpuTime(v.agent.Cmd.Process.Pid)
		agents += d
	}
	p.CPU["pcap-agent"] = (agents - c.agentCPU).Seconds()
	p.APIPeakRSS, _ = peakRSS(c.l.api.Cmd.Process.Pid)
	m, err := c.p.WaitLine(summaryRe, 2*time.Second)
	if err != nil {
		p.Warning = "pcap printed no summary line: " + c.p.Output()
		return
	}
	kv := parseKV(m[2])
	if m[1] != "stopped" {
		p.Warning = fmt.Sprintf("pcap capture ended %s, not stopped: %s", m[1], c.p.Output())
	} else if n, err := strconv.ParseUint(kv["packets"], 10, 64); err != nil || n != p.Delivered {
		p.Warning = fmt.Sprintf("pcap's summary says packets=%s, the file holds %d", kv["packets"], p.Delivered)
	}
	p.Accounting = accounts(c.p.Lines(sourceEndRe))
	if p.OutOfOrder > 0 {
		// Say why: a source cut from the merge, or merge buffers full.
		why := c.p.Lines(regexp.MustCompile(`watermark-late`))
		p.Warning += fmt.Sprintf(" %d packets out of order, %d of them on their own interface; merge status: %q.", p.OutOfOrder, p.OutOfOrderInIface, why)
	}
	if n, err := strconv.ParseUint(kv["out_of_order"], 10, 64); err == nil && n != p.OutOfOrder {
		p.Warning += fmt.Sprintf(" pcap's summary says out_of_order=%d, the file has %d.", n, p.OutOfOrder)
	}
	for key, place := range map[string]string{"kernel_dropped": "kernel", "if_dropped": "interface", "agent_dropped": "agent", "api_dropped": "api"} {
		if n, err := strconv.ParseUint(kv[key], 10, 64); err == nil && n > 0 {
			p.Dropped[place] = n
		}
	}
}

// parseKV splits "k=v k=v" (values without spaces, as the summary has).
func parseKV(s string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(s) {
		if k, v, ok := strings.Cut(f, "="); ok {
			out[k] = v
		}
	}
	return out
}
