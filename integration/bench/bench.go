// Package bench measures pcap against local tcpdump and the classic
// `ssh host tcpdump -w -` pipeline on the same traffic, on this machine:
// packet rate, loss and where it happened, CPU per process, pcap-api's
// memory, fan-out to many agents, time to first packet and stop latency.
//
// Everything runs in network namespaces it makes (netlab) and removes,
// also on failure; traffic is bounded in count and time and never leaves
// those namespaces. Needs root.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// Settings say what to measure.
type Settings struct {
	Tools []string `json:"tools"`
	// Rates are the generator's ceilings in packets per second; 0 is
	// unbounded (as fast as one generator can send).
	Rates []int `json:"rates_pps"`
	Sizes []int `json:"payload_bytes"`
	// PointSeconds sizes a rate point: rate × PointSeconds packets;
	// UnboundedCount is the count of an unbounded point.
	PointSeconds   float64 `json:"point_seconds"`
	UnboundedCount int     `json:"unbounded_count"`
	Repeats        int     `json:"repeats"`

	// FanOut are the agent counts of the fan-out runs, each agent's VM
	// sending FanRate/agents packets per second for FanSeconds.
	FanOut     []int   `json:"fan_out_agents"`
	FanRate    int     `json:"fan_out_total_pps"`
	FanSeconds float64 `json:"fan_out_seconds"`
	FanSize    int     `json:"fan_out_payload_bytes"`
	FanRepeats int     `json:"fan_out_repeats"`

	// FanIn: FanInVMs VMs each send at every FanInRates (per VM) × FanInSizes
	// for FanInSeconds into one pcap capture, and through one OpenSSH +
	// tcpdump pipeline per VM.
	FanInVMs     int     `json:"fan_in_vms"`
	FanInRates   []int   `json:"fan_in_rates_pps_per_vm"`
	FanInSizes   []int   `json:"fan_in_payload_bytes"`
	FanInSeconds float64 `json:"fan_in_seconds"`
	FanInRepeats int     `json:"fan_in_repeats"`

	// LatencyRuns is how many captures are timed per agent count
	// (1 and the largest fan-out).
	LatencyRuns int `json:"latency_runs"`

	// LossLimitPct is the loss under which a rate counts as loss-free.
	LossLimitPct float64 `json:"loss_limit_pct"`
	// Settle is how long an output must stop growing before a capture is
	// stopped with packets missing.
	Settle    time.Duration `json:"settle_ns"`
	BufferKiB int           `json:"buffer_kib"`
	// SSHCipher, when set, is the cipher both OpenSSH clients ask for
	// (ssh -c); by default they negotiate OpenSSH's first choice,
	// chacha20-poly1305@openssh.com.
	SSHCipher string `json:"ssh_cipher,omitempty"`
}

// Full is `make bench`: about six minutes on a two-core machine.
func Full() Settings {
	return Settings{
		Tools:          []string{ToolLocal, ToolSSH, ToolPcap},
		Rates:          []int{25_000, 50_000, 100_000, 200_000, 0},
		Sizes:          []int{100, 1400},
		PointSeconds:   2,
		UnboundedCount: 400_000,
		Repeats:        3,
		FanOut:         []int{1, 10, 50},
		FanRate:        50_000,
		FanSeconds:     3,
		FanSize:        100,
		FanRepeats:     3,
		FanInVMs:       3,
		FanInRates:     []int{10_000, 50_000, 75_000},
		FanInSizes:     []int{100, 1400},
		FanInSeconds:   1,
		FanInRepeats:   3,
		LatencyRuns:    5,
		LossLimitPct:   0.1,
		Settle:         1200 * time.Millisecond,
		BufferKiB:      bufferKiB,
	}
}

// Quick is a smoke run of every part in about a minute.
func Quick() Settings {
	s := Full()
	s.Rates = []int{50_000, 0}
	s.Sizes = []int{100, 1400}
	s.PointSeconds = 1
	s.UnboundedCount = 100_000
	s.Repeats = 1
	s.FanOut = []int{1, 10}
	s.FanSeconds = 1
	s.FanRepeats = 1
	s.FanInRates = []int{50_000}
	s.FanInRepeats = 1
	s.LatencyRuns = 2
	return s
}

// Validate returns every problem at once.
func (s Settings) Validate() error {
	var errs []error
	for _, t := range s.Tools {
		if t != ToolLocal && t != ToolSSH && t != ToolPcap {
			errs = append(errs, fmt.Errorf("unknown tool %q", t))
		}
	}
	errs = append(errs, outOfRange("rate", s.Rates, 0, 10_000_000)...)
	errs = append(errs, outOfRange("payload size", s.Sizes, 1, maxPayload)...)
	errs = append(errs, outOfRange("fan-out payload size", []int{s.FanSize}, 1, maxPayload)...)
	errs = append(errs, outOfRange("fan-out", s.FanOut, 1, 200)...)
	if s.Repeats < 1 || s.FanRepeats < 0 || s.LatencyRuns < 0 {
		errs = append(errs, errors.New("repeats must be at least 1 (fan-out and latency runs at least 0)"))
	}
	if s.PointSeconds <= 0 || s.PointSeconds > 60 || s.FanSeconds < 0 || s.FanSeconds > 60 {
		errs = append(errs, errors.New("point and fan-out seconds must be in 0..60"))
	}
	errs = append(errs, outOfRange("unbounded count", []int{s.UnboundedCount}, 1, 10_000_000)...)
	errs = append(errs, outOfRange("fan-in rate", s.FanInRates, 1, 1_000_000)...)
	errs = append(errs, outOfRange("fan-in payload size", s.FanInSizes, 1, maxPayload)...)
	if len(s.FanInRates) > 0 && len(s.FanInSizes) > 0 {
		if s.FanInVMs < 1 || s.FanInVMs > 20 || s.FanInSeconds <= 0 || s.FanInSeconds > 60 || s.FanInRepeats < 1 {
			errs = append(errs, errors.New("fan-in needs 1..20 VMs, 0..60 seconds and at least 1 repeat"))
		}
	}
	if s.FanRate < 1 && len(s.FanOut) > 0 {
		errs = append(errs, errors.New("fan-out rate must be positive"))
	}
	if s.Settle <= 0 || s.Settle > 10*time.Second {
		errs = append(errs, errors.New("settle must be in (0, 10s]"))
	}
	return errors.Join(errs...)
}

// maxPayload is the largest UDP payload of one unfragmented datagram
// (1500-byte MTU).
const maxPayload = 1472

// outOfRange returns an error for each of vals outside lo..hi, naming it
// as what.
func outOfRange(what string, vals []int, lo, hi int) []error {
	var errs []error
	for _, v := range vals {
		if v < lo || v > hi {
			errs = append(errs, fmt.Errorf("%s %d out of range %d..%d", what, v, lo, hi))
		}
	}
	return errs
}

func (s Settings) vmsNeeded() int {
	n := 1
	for _, f := range s.FanOut {
		n = max(n, f)
	}
	if s.fanIn() {
		n = max(n, s.FanInVMs)
	}
	return n
}

func (s Settings) fanIn() bool { return len(s.FanInRates) > 0 && len(s.FanInSizes) > 0 }

// groups are the agent counts that need a static group of their own.
func (s Settings) groups() []int {
	g := slices.Clone(s.FanOut)
	if s.fanIn() && !slices.Contains(g, s.FanInVMs) {
		g = append(g, s.FanInVMs)
	}
	return g
}

// sshdVMs is how many VMs run sshd for the OpenSSH + tcpdump pipelines.
func (s Settings) sshdVMs() int {
	if s.fanIn() && slices.Contains(s.Tools, ToolSSH) {
		return max(1, s.FanInVMs)
	}
	return 1
}

func (s Settings) count(rate int) int {
	if rate == 0 {
		return s.UnboundedCount
	}
	return max(1, int(float64(rate)*s.PointSeconds))
}

// Options configure [Run].
type Options struct {
	// Bin holds pcap-agent, pcap-api and pcap-traffic.
	Bin      string
	Settings Settings
	// Log receives progress lines (default: none).
	Log io.Writer
}

// Run measures everything Settings ask for and returns the results. It
// ends early, cleaning up, when ctx is cancelled.
func Run(ctx context.Context, o Options) (*Results, error) {
	s := o.Settings
	if err := s.Validate(); err != nil {
		return nil, fmt.Errorf("bench: settings: %w", err)
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench: needs root (network namespaces, libpcap, sshd)")
	}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	start := time.Now()
	log := func(format string, a ...any) {
		fmt.Fprintf(logw, "[%5.1fs] "+format+"\n", append([]any{time.Since(start).Seconds()}, a...)...)
	}
	res := &Results{Date: start.UTC(), Machine: machine(), Settings: s}

	l, err := newLab(o.Bin, s.vmsNeeded(), s.groups(), s.sshdVMs(), log)
	if err != nil {
		return nil, err
	}
	l.cipher = s.SSHCipher
	defer l.Close()

	// Latency of one agent first: the very first capture also dials it.
	// Many agents come last, so that the memory they make pcap-api hold
	// is not counted against the single-source points.
	timeCaptures := func(n int) error {
		if s.LatencyRuns == 0 || !slices.Contains(s.Tools, ToolPcap) {
			return nil
		}
		lt, err := l.latency(ctx, n, s.LatencyRuns, log)
		if err != nil {
			return err
		}
		res.Latency = append(res.Latency, lt)
		return nil
	}
	if err := timeCaptures(1); err != nil {
		return nil, err
	}

	for _, size := range s.Sizes {
		for _, rate := range s.Rates {
			for rep := range s.Repeats {
				for _, tool := range s.Tools {
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					j := job{tool: tool, vms: l.vms[:1], group: "vm0", count: s.count(rate), size: size, rate: rate, settle: s.Settle}
					p, err := l.measure(ctx, j)
					if err != nil {
						return nil, fmt.Errorf("bench: %s, %d bytes, rate %s: %w", tool, size, rateName(rate), err)
					}
					p.Rep = rep
					log("%-13s %4dB %9s #%d: sent %d delivered %d (%.3f%% loss) %s, cpu %.2fs, foreign load %.1f CPUs",
						tool, size, rateName(rate), rep+1, p.Sent, p.Delivered, p.LossPct, dropsText(p.Dropped), p.cpuTotal(), p.foreignLoad())
					res.Points = append(res.Points, p)
				}
			}
		}
	}

	if slices.Contains(s.Tools, ToolPcap) {
		for _, n := range s.FanOut {
			for rep := range s.FanRepeats {
				if err := ctx.Err(); err != nil {
					return nil, err
				}
				perVM := max(1, s.FanRate/n)
				j := job{tool: ToolPcap, vms: l.vms[:n], group: fanGroup(n), size: s.FanSize, rate: perVM,
					count: max(1, int(float64(perVM)*s.FanSeconds)), settle: s.Settle}
				p, err := l.measure(ctx, j)
				if err != nil {
					return nil, fmt.Errorf("bench: fan-out to %d agents: %w", n, err)
				}
				p.Agents, p.Rep = n, rep
				log("fan-out %3d agents #%d: sent %d delivered %d (%.3f%% loss) %s, api rss %.1f MiB, foreign load %.1f CPUs",
					n, rep+1, p.Sent, p.Delivered, p.LossPct, dropsText(p.Dropped), float64(p.APIPeakRSS)/(1<<20), p.foreignLoad())
				res.FanPts = append(res.FanPts, p)
			}
		}
	}
	if s.fanIn() {
		pts, err := l.fanIn(ctx, s, log)
		if err != nil {
			return nil, err
		}
		res.FanInPts = pts
	}
	if n := slices.Max(append(slices.Clone(s.FanOut), 1)); n > 1 {
		if err := timeCaptures(n); err != nil {
			return nil, err
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.analyse()
	return res, nil
}

func fanGroup(n int) string { return fmt.Sprintf("fan%d", n) }

func rateName(r int) string {
	if r == 0 {
		return "unbounded"
	}
	return fmt.Sprintf("%dk", r/1000)
}

func dropsText(d map[string]uint64) string {
	var parts []string
	for _, k := range []string{"kernel", "interface", "agent", "api", "unaccounted"} {
		if d[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s=%d", k, d[k]))
		}
	}
	if len(parts) == 0 {
		return "no drops"
	}
	return "dropped " + strings.Join(parts, " ")
}

// latency times LatencyRuns captures of n agents while their VMs send a
// steady trickle of traffic.
func (l *lab) latency(ctx context.Context, n, runs int, log func(string, ...any)) (Latency, error) {
	lt := Latency{Agents: n, Runs: runs}
	group := fanGroup(n)
	if n == 1 {
		group = "vm0"
	}
	perVM := max(200, 2000/n)
	gens, err := l.startTraffic(l.vms[:n], perVM*(runs*3+10), 100, perVM)
	if err != nil {
		return lt, err
	}
	defer func() {
		for _, g := range gens {
			g.Stop(time.Second)
			l.forget(g)
		}
	}()
	var conn, first, stop, notStarted []float64
	for i := range runs {
		r, err := l.timeCapture(ctx, group)
		if err != nil {
			return lt, fmt.Errorf("bench: timing a capture of %d agents: %w", n, err)
		}
		log("latency %3d agents #%d: connect %v, first packet %v, stop %v, %d not started", n, i+1,
			r.connect.Round(time.Millisecond), r.firstPacket.Round(time.Millisecond), r.stop.Round(time.Millisecond), r.notStarted)
		conn = append(conn, r.connect.Seconds())
		first = append(first, r.firstPacket.Seconds())
		stop = append(stop, r.stop.Seconds())
		notStarted = append(notStarted, float64(r.notStarted))
	}
	lt.Connect, lt.FirstPacket, lt.Stop = statOf(conn), statOf(first), statOf(stop)
	lt.NotStarted = statOf(notStarted)
	return lt, nil
}

// machine describes where the figures were taken.
func machine() map[string]string {
	m := map[string]string{
		"cpus": fmt.Sprint(runtime.NumCPU()),
		"go":   runtime.Version(),
	}
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	// The code measured, when run from a git checkout.
	if out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output(); err == nil {
		m["commit"] = strings.TrimSpace(string(out))
		if out, err := exec.Command("git", "status", "--porcelain", "--", "agent", "api", "tunnel").Output(); err == nil && len(out) > 0 {
			m["commit"] += " with uncommitted changes to agent/api/tunnel"
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		if f := strings.Fields(strings.SplitN(string(b), "\n", 2)[0]); len(f) >= 2 {
			m["memory_kib"] = f[1]
		}
	}
	return m
}
