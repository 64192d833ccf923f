package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
)

// Load reads results written by Save and analyses them again (with this
// version's analysis and chart).
func Load(path string) (*Results, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Results
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", path, err)
	}
	r.analyse()
	return &r, nil
}

// analyse aggregates the points into rows, best rates, ratios and targets.
func (r *Results) analyse() {
	r.Sweep, r.Best, r.Ratios, r.FanOut, r.FanIn, r.Targets, r.Warnings = nil, nil, nil, nil, nil, nil, nil
	s := r.Settings
	for _, size := range s.Sizes {
		for _, rate := range s.Rates {
			for _, tool := range s.Tools {
				var pts []Point
				for _, p := range r.Points {
					if p.Tool == tool && p.Size == size && p.Rate == rate {
						pts = append(pts, p)
					}
				}
				if len(pts) > 0 {
					r.Sweep = append(r.Sweep, sweepRow(pts))
				}
			}
		}
		for _, tool := range s.Tools {
			b := Best{Tool: tool, Size: size}
			for _, row := range r.Sweep {
				if row.Tool != tool || row.Size != size || row.LossPct.Median >= s.LossLimitPct {
					continue
				}
				if row.Rate == 0 {
					b.LimitedByGenerator = true
				}
				if row.DeliveredPPS.Median > b.DeliveredPPS {
					b.DeliveredPPS, b.Rate, b.Unbounded = row.DeliveredPPS.Median, row.Rate, row.Rate == 0
				}
			}
			r.Best = append(r.Best, b)
		}
		pc := r.best(ToolPcap, size)
		for _, other := range []string{ToolSSH, ToolLocal} {
			if o := r.best(other, size); pc != nil && o != nil && o.DeliveredPPS > 0 {
				r.Ratios = append(r.Ratios, Ratio{Size: size, Over: other, Ratio: round(pc.DeliveredPPS/o.DeliveredPPS, 3)})
			}
		}
	}
	for _, n := range s.FanOut {
		var pts []Point
		for _, p := range r.FanPts {
			if p.Agents == n {
				pts = append(pts, p)
			}
		}
		if len(pts) > 0 {
			r.FanOut = append(r.FanOut, fanRow(n, pts))
		}
	}
	for _, size := range s.FanInSizes {
		for _, rate := range s.FanInRates {
			for _, tool := range []string{ToolPcap, ToolSSH} {
				var pts []Point
				for _, p := range r.FanInPts {
					if p.Tool == tool && p.Size == size && p.Rate == rate*p.Agents {
						pts = append(pts, p)
					}
				}
				if len(pts) > 0 {
					r.FanIn = append(r.FanIn, fanInRow(pts))
				}
			}
		}
	}
	r.targets()
	var foreign, wall float64
	for _, p := range slices.Concat(r.Points, r.FanPts, r.FanInPts) {
		if t := accountingText(p.Accounting); strings.HasPrefix(t, ", ACCOUNTING INEXACT") {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s %s, %d bytes, %s pps: %s", p.Scenario, p.Tool, p.Size, rateName(p.Rate), t[2:]))
		}
		foreign += p.ForeignCPU
		wall += p.WallSeconds
		if p.Warning != "" {
			r.Warnings = append(r.Warnings, fmt.Sprintf("%s, %d bytes, ceiling %s, agents %d, run %d: %s",
				p.Tool, p.Size, rateName(p.Rate), max(1, p.Agents), p.Rep+1, p.Warning))
		}
	}
	if wall > 0 {
		r.ForeignLoad = round(foreign/wall, 2)
		if r.ForeignLoad >= 0.1 {
			r.Warnings = append(r.Warnings, fmt.Sprintf(
				"the machine was shared: processes the benchmark did not start used %.2f CPUs on average while it measured (of %s); the figures are lower and noisier than on a quiet machine",
				r.ForeignLoad, r.Machine["cpus"]))
		}
	}
}

func (r *Results) best(tool string, size int) *Best {
	for i := range r.Best {
		if r.Best[i].Tool == tool && r.Best[i].Size == size {
			return &r.Best[i]
		}
	}
	return nil
}

func collect(pts []Point, f func(Point) float64) Stat {
	xs := make([]float64, len(pts))
	for i, p := range pts {
		xs[i] = f(p)
	}
	return statOf(xs)
}

func keyStats(pts []Point, keys func(Point) map[string]float64) map[string]Stat {
	names := map[string]bool{}
	for _, p := range pts {
		for k := range keys(p) {
			names[k] = true
		}
	}
	out := map[string]Stat{}
	for k := range names {
		out[k] = collect(pts, func(p Point) float64 { return keys(p)[k] })
	}
	return out
}

func dropsF(p Point) map[string]float64 {
	m := map[string]float64{}
	for k, v := range p.Dropped {
		m[k] = float64(v)
	}
	return m
}

// delivery aggregates the traffic of a point's repeats.
func delivery(pts []Point) Delivery {
	return Delivery{
		Runs:         len(pts),
		Sent:         collect(pts, func(p Point) float64 { return float64(p.Sent) }),
		OfferedPPS:   collect(pts, func(p Point) float64 { return p.OfferedPPS }),
		DeliveredPPS: collect(pts, func(p Point) float64 { return p.DeliveredPPS }),
		LossPct:      collect(pts, func(p Point) float64 { return p.LossPct }),
		Dropped:      keyStats(pts, dropsF),
	}
}

func sweepRow(pts []Point) SweepRow {
	p0 := pts[0]
	return SweepRow{
		Tool: p0.Tool, Size: p0.Size, Rate: p0.Rate, Delivery: delivery(pts),
		CPU: keyStats(pts, func(p Point) map[string]float64 { return p.CPU }),
		CPUPer100k: collect(pts, func(p Point) float64 {
			return p.cpuTotal() / max(1, float64(p.Delivered)) * 1e5
		}),
		APIPeakRSS:  collect(pts, func(p Point) float64 { return float64(p.APIPeakRSS) }),
		StopSeconds: collect(pts, func(p Point) float64 { return p.StopSeconds }),
		ForeignCPU:  collect(pts, func(p Point) float64 { return p.ForeignCPU }),
	}
}

func fanRow(n int, pts []Point) FanRow {
	return FanRow{
		Agents: n, Size: pts[0].Size, Delivery: delivery(pts),
		APIPeakRSS: collect(pts, func(p Point) float64 { return float64(p.APIPeakRSS) }),
		APICPUPer100: collect(pts, func(p Point) float64 {
			return p.CPU["pcap-api"] / max(1, float64(p.Delivered)) * 1e5
		}),
		AgentCPU:    collect(pts, func(p Point) float64 { return p.CPU["pcap-agent"] }),
		StopSeconds: collect(pts, func(p Point) float64 { return p.StopSeconds }),
	}
}

const mib = 1 << 20

func (r *Results) targets() {
	add := func(t Target) { r.Targets = append(r.Targets, t) }
	for _, size := range r.Settings.Sizes {
		pc := r.best(ToolPcap, size)
		if pc == nil {
			continue
		}
		for _, c := range []struct {
			tool string
			want float64
		}{{ToolSSH, 1.5}, {ToolLocal, 0.9}} {
			o := r.best(c.tool, size)
			if o == nil || o.DeliveredPPS == 0 {
				continue
			}
			ratio := pc.DeliveredPPS / o.DeliveredPPS
			t := Target{
				Name:     fmt.Sprintf("loss-free rate, %d-byte payloads: pcap / %s", size, c.tool),
				Want:     fmt.Sprintf(">= %.2f", c.want),
				Measured: round(ratio, 3), Unit: "ratio", Met: ratio >= c.want,
				Note: fmt.Sprintf("pcap %.0f pps (%s), %s %.0f pps (%s)", pc.DeliveredPPS, bestWhere(*pc), c.tool, o.DeliveredPPS, bestWhere(*o)),
			}
			if pc.LimitedByGenerator && o.LimitedByGenerator {
				t.Note += "; both lost nothing even at the unbounded point, so neither limit was reached: the ratio compares how fast one generator could send beside each tool, not the tools"
			}
			add(t)
		}
	}
	if len(r.FanOut) > 0 {
		f := r.FanOut[len(r.FanOut)-1]
		api := f.Dropped["api"].Max
		add(Target{Name: fmt.Sprintf("fan-out: %d agents into one capture, packets dropped at the api", f.Agents),
			Want: "0", Measured: api, Unit: "packets (max of runs)", Met: api == 0,
			Note: fmt.Sprintf("median loss %.3f%% overall, %s", f.LossPct.Median, statDrops(f.Dropped))})
	}
	r.fanInTargets(add)
	var peak, low, high float64
	var lowN, highN uint64
	for _, p := range r.FanPts {
		peak = max(peak, float64(p.APIPeakRSS))
	}
	// Flat: one source, from the smallest to the largest capture.
	for _, p := range r.Points {
		if p.Tool != ToolPcap || p.APIPeakRSS == 0 {
			continue
		}
		rss := float64(p.APIPeakRSS)
		peak = max(peak, rss)
		if lowN == 0 || p.Delivered < lowN {
			low, lowN = rss, p.Delivered
		}
		if p.Delivered > highN {
			high, highN = rss, p.Delivered
		}
	}
	if peak > 0 {
		add(Target{Name: "pcap-api peak RSS (VmHWM), any run", Want: "< 64 MiB", Measured: round(peak/mib, 1), Unit: "MiB", Met: peak < 64*mib})
		add(Target{Name: "pcap-api peak RSS flat as volume grows (one source: largest capture minus smallest)", Want: "< 8 MiB",
			Measured: round((high-low)/mib, 1), Unit: "MiB", Met: high-low < 8*mib,
			Note: fmt.Sprintf("%.1f MiB at %d packets, %.1f MiB at %d packets", low/mib, lowN, high/mib, highN)})
	}
	for _, lt := range r.Latency {
		add(Target{Name: fmt.Sprintf("time to first packet, %d agent(s), median", lt.Agents), Want: "< 300 ms",
			Measured: round(lt.FirstPacket.Median*1000, 1), Unit: "ms", Met: lt.FirstPacket.Median < 0.3,
			Note: fmt.Sprintf("min %.1f, max %.1f ms over %d runs; connect+auth before it %.1f ms", lt.FirstPacket.Min*1000, lt.FirstPacket.Max*1000, lt.Runs, lt.Connect.Median*1000)})
		add(Target{Name: fmt.Sprintf("stop to closed file, %d agent(s), median", lt.Agents), Want: "< 1000 ms",
			Measured: round(lt.Stop.Median*1000, 1), Unit: "ms", Met: lt.Stop.Median < 1,
			Note: fmt.Sprintf("min %.1f, max %.1f ms", lt.Stop.Min*1000, lt.Stop.Max*1000)})
	}
}

// fanInTargets adds the fan-in targets: CPU per delivered packet
// (agents + api + client), loss, time order and exact accounting.
func (r *Results) fanInTargets(add func(Target)) {
	for _, row := range r.FanIn {
		if row.Tool != ToolPcap {
			continue
		}
		name := fmt.Sprintf("fan-in %d × %dk pps × %d B", row.VMs, row.RatePerVM/1000, row.Size)
		var ssh *FanInRow
		for i, o := range r.FanIn {
			if o.Tool == ToolSSH && o.Size == row.Size && o.RatePerVM == row.RatePerVM {
				ssh = &r.FanIn[i]
			}
		}
		cpuWant := map[int]float64{100: 3, 1400: 8}[row.Size]
		if cpuWant > 0 {
			us := row.USPerPacket["total"].Median
			t := Target{Name: name + ": CPU per delivered packet, agents + api + client", Want: fmt.Sprintf("<= %.0f µs", cpuWant),
				Measured: round(us, 2), Unit: "µs", Met: us <= cpuWant, Note: usText(medians(row.USPerPacket))}
			if ssh != nil {
				t.Note += fmt.Sprintf("; OpenSSH + tcpdump %.2f µs", ssh.USPerPacket["total"].Median)
			}
			add(t)
			// The same while the traffic flows: a one-second point spends
			// much of its CPU on setting the capture up (SSH handshakes,
			// rings), which a longer capture spreads thinner.
			if sending, ok := row.USPerPacketSending["total"]; ok {
				us := sending.Median
				t := Target{Name: name + ": CPU per delivered packet while sending (set-up and stop left out)", Want: fmt.Sprintf("<= %.0f µs", cpuWant),
					Measured: round(us, 2), Unit: "µs", Met: us <= cpuWant, Note: usText(medians(row.USPerPacketSending))}
				if ssh != nil {
					t.Note += fmt.Sprintf("; OpenSSH + tcpdump %.2f µs", ssh.USPerPacketSending["total"].Median)
				}
				add(t)
			}
		}
		lossWant := -1.0
		switch {
		case row.Size == 1400 && row.RatePerVM == 50_000:
			lossWant = 1
		case row.Size == 100 && row.RatePerVM == 75_000:
			lossWant = 0
		}
		if lossWant >= 0 {
			l := row.LossPct.Median
			t := Target{Name: name + ": loss", Want: fmt.Sprintf("< %.0f%%", lossWant), Measured: round(l, 3), Unit: "%",
				Met: l < lossWant || (lossWant == 0 && l == 0), Note: statDrops(row.Dropped)}
			if lossWant == 0 {
				t.Want = "0%"
			}
			if ssh != nil {
				t.Note += fmt.Sprintf("; OpenSSH + tcpdump %.3f%%", ssh.LossPct.Median)
			}
			add(t)
		}
		add(Target{Name: name + ": packets out of time order in the file", Want: "0", Measured: row.OutOfOrder.Max,
			Unit: "packets (max of runs)", Met: row.OutOfOrder.Max == 0})
		add(Target{Name: name + ": delivered + drops by place == received, every source", Want: "exact",
			Measured: map[bool]float64{true: 1, false: 0}[row.AccountingExact], Unit: "(1: exact, 0: not)", Met: row.AccountingExact})
	}
}

func medians(m map[string]Stat) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		out[k] = v.Median
	}
	return out
}

func bestWhere(b Best) string {
	if b.DeliveredPPS == 0 {
		return "lost packets at every rate"
	}
	at := "at the " + rateName(b.Rate) + " point"
	if b.Unbounded {
		at = "at the unbounded point"
	}
	if b.LimitedByGenerator {
		at += ", no loss even unbounded"
	}
	return at
}

func statDrops(d map[string]Stat) string {
	var parts []string
	for _, k := range []string{"kernel", "interface", "agent", "api", "unaccounted"} {
		if s, ok := d[k]; ok && s.Max > 0 {
			parts = append(parts, fmt.Sprintf("%s=%.0f", k, s.Median))
		}
	}
	if len(parts) == 0 {
		return "no drops"
	}
	return "drops " + strings.Join(parts, " ")
}

func kpps(x float64) string { return fmt.Sprintf("%.1fk", x/1000) }

func spread(s Stat, f func(float64) string) string {
	if s.Min == s.Max {
		return f(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", f(s.Median), f(s.Min), f(s.Max))
}

func pct(x float64) string { return fmt.Sprintf("%.3f", x) }

// cpuText lists CPU seconds per process, biggest first.
func cpuText(m map[string]Stat) string {
	type kv struct {
		k string
		v float64
	}
	var xs []kv
	for k, v := range m {
		if v.Median >= 0.005 {
			xs = append(xs, kv{k, v.Median})
		}
	}
	slices.SortFunc(xs, func(a, b kv) int {
		if a.v > b.v {
			return -1
		}
		if a.v < b.v {
			return 1
		}
		return strings.Compare(a.k, b.k)
	})
	var parts []string
	for _, x := range xs {
		parts = append(parts, fmt.Sprintf("%s %.2f", x.k, x.v))
	}
	return strings.Join(parts, ", ")
}

// table starts a text table on w with the tab-separated header.
func table(w io.Writer, header string) *tabwriter.Writer {
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	return tw
}

// WriteTable prints the results as text tables.
func (r *Results) WriteTable(w io.Writer) {
	commit := ""
	if c := r.Machine["commit"]; c != "" {
		commit = ", commit " + c
	}
	fmt.Fprintf(w, "pcap benchmark, %s, %s CPUs (%s), kernel %s, %s%s; %.0f s\n",
		r.Date.Format("2006-01-02 15:04 UTC"), r.Machine["cpus"], r.Machine["cpu"], r.Machine["kernel"], r.Machine["go"], commit, r.Seconds)
	cipher := r.Settings.SSHCipher
	if cipher == "" {
		cipher = "OpenSSH's default"
	}
	fmt.Fprintf(w, "filter %q, kernel buffer %d KiB for every tool, output on tmpfs, ssh cipher %s; median of %d (min–max); foreign load %.2f CPUs\n\n",
		filter, r.Settings.BufferKiB, cipher, r.Settings.Repeats, r.ForeignLoad)
	tw := table(w, "payload\tceiling\ttool\toffered pps\tdelivered pps\tloss %\tdrops (median)\tCPU s (median)\tCPU s/100k\tapi peak RSS")
	for _, row := range r.Sweep {
		rss := ""
		if row.APIPeakRSS.Max > 0 {
			rss = fmt.Sprintf("%.1f MiB", row.APIPeakRSS.Max/mib)
		}
		fmt.Fprintf(tw, "%d B\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.2f\t%s\n", row.Size, rateName(row.Rate), row.Tool,
			kpps(row.OfferedPPS.Median), spread(row.DeliveredPPS, kpps), spread(row.LossPct, pct),
			statDrops(row.Dropped), cpuText(row.CPU), row.CPUPer100k.Median, rss)
	}
	tw.Flush()

	fmt.Fprintf(w, "\nHighest rate delivered with < %.1f%% loss (median):\n", r.Settings.LossLimitPct)
	tw = table(w, "payload\ttool\tdelivered pps\tat")
	for _, b := range r.Best {
		fmt.Fprintf(tw, "%d B\t%s\t%s\t%s\n", b.Size, b.Tool, kpps(b.DeliveredPPS), bestWhere(b))
	}
	tw.Flush()
	for _, ra := range r.Ratios {
		fmt.Fprintf(w, "  %d B: pcap / %s = %.2f\n", ra.Size, ra.Over, ra.Ratio)
	}

	if len(r.FanOut) > 0 {
		fmt.Fprintf(w, "\nFan-out: N agents (one VM each, own traffic) into one capture, %d pps in total, %d-byte payloads:\n",
			r.Settings.FanRate, r.Settings.FanSize)
		tw = table(w, "agents\tsent\tdelivered pps\tloss %\tdrops (median)\tapi peak RSS\tapi CPU s/100k\tagents CPU s\tstop s")
		for _, f := range r.FanOut {
			fmt.Fprintf(tw, "%d\t%.0f\t%s\t%s\t%s\t%s\t%.3f\t%.2f\t%.2f\n", f.Agents, f.Sent.Median,
				spread(f.DeliveredPPS, kpps), spread(f.LossPct, pct), statDrops(f.Dropped),
				spread(f.APIPeakRSS, func(x float64) string { return fmt.Sprintf("%.1f MiB", x/mib) }),
				f.APICPUPer100.Median, f.AgentCPU.Median, f.StopSeconds.Median)
		}
		tw.Flush()
	}
	if len(r.FanIn) > 0 {
		fmt.Fprintf(w, "\nFan-in: %d VMs each sending at the rate into one capture (pcap) or one OpenSSH + tcpdump pipeline per VM, %.1f s:\n",
			r.Settings.FanInVMs, r.Settings.FanInSeconds)
		tw = table(w, "payload\tpps per VM\ttool\tsent\tdelivered pps\tloss %\tdrops (median)\tCPU µs per delivered packet (median)\tout of order\taccounting")
		for _, f := range r.FanIn {
			acct := ""
			if f.Tool == ToolPcap {
				acct = map[bool]string{true: "exact", false: "INEXACT"}[f.AccountingExact]
			}
			fmt.Fprintf(tw, "%d B\t%s\t%s\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%s\n", f.Size, rateName(f.RatePerVM), f.Tool, f.Sent.Median,
				spread(f.DeliveredPPS, kpps), spread(f.LossPct, pct), statDrops(f.Dropped),
				strings.TrimPrefix(usText(medians(f.USPerPacket)), "µs/packet: "), f.OutOfOrder.Max, acct)
		}
		tw.Flush()
	}
	if len(r.Latency) > 0 {
		fmt.Fprintln(w, "\nLatency of pcap captures (Go SSH client in the LAN namespace):")
		tw = table(w, "agents\truns\tconnect+auth ms\trequest → first packet ms\tstop → file closed ms\tnot started at the stop")
		ms := func(x float64) string { return fmt.Sprintf("%.1f", x*1000) }
		count := func(x float64) string { return fmt.Sprintf("%.0f", x) }
		for _, lt := range r.Latency {
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n", lt.Agents, lt.Runs, spread(lt.Connect, ms), spread(lt.FirstPacket, ms), spread(lt.Stop, ms), spread(lt.NotStarted, count))
		}
		tw.Flush()
	}
	fmt.Fprintln(w, "\nTargets:")
	for _, t := range r.Targets {
		mark := "MET   "
		if !t.Met {
			mark = "MISSED"
		}
		fmt.Fprintf(w, "  %s %s: %v %s (want %s)", mark, t.Name, t.Measured, t.Unit, t.Want)
		if t.Note != "" {
			fmt.Fprintf(w, "; %s", t.Note)
		}
		fmt.Fprintln(w)
	}
	for _, warn := range r.Warnings {
		fmt.Fprintln(w, "warning:", warn)
	}
}

// Save writes dir/<date>.json, dir/latest.json and dir/latest.svg.
func (r *Results) Save(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, err
	}
	b = append(b, '\n')
	dated := filepath.Join(dir, r.Date.Format("2006-01-02T150405Z")+".json")
	latest := filepath.Join(dir, "latest.json")
	chart := filepath.Join(dir, "latest.svg")
	for _, f := range []struct {
		path string
		data []byte
	}{{dated, b}, {latest, b}, {chart, []byte(r.SVG())}} {
		if err := os.WriteFile(f.path, f.data, 0o644); err != nil {
			return nil, err
		}
	}
	return []string{dated, latest, chart}, nil
}
