package bench

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Fan-in: the way operators hit pcap. Several VMs each send at one rate
// and size at once, captured into one file by pcap, and, beside it, the
// same traffic through one `ssh vm tcpdump -w -` pipeline per VM. Each
// run reports loss by place, CPU per delivered packet per process, how
// many packets of the file are older than one before them, and checks
// pcap's accounting per source: delivered + drops by place == received.

// fanIn runs every fan-in point the settings ask for.
func (l *lab) fanIn(ctx context.Context, s Settings, log func(string, ...any)) ([]Point, error) {
	var pts []Point
	tools := []string{ToolPcap, ToolSSH}
	for _, size := range s.FanInSizes {
		for _, rate := range s.FanInRates {
			for rep := range s.FanInRepeats {
				for _, tool := range tools {
					if !containsTool(s.Tools, tool) {
						continue
					}
					if err := ctx.Err(); err != nil {
						return nil, err
					}
					j := job{tool: tool, vms: l.vms[:s.FanInVMs], group: fanGroup(s.FanInVMs), size: size, rate: rate,
						count: max(1, int(float64(rate)*s.FanInSeconds)), settle: s.Settle}
					p, err := l.measure(ctx, j)
					if err != nil {
						return nil, fmt.Errorf("bench: fan-in %s, %d VMs × %d pps × %d B: %w", tool, s.FanInVMs, rate, size, err)
					}
					p.Scenario, p.Agents, p.Rep = ScenarioFanIn, s.FanInVMs, rep
					log("fan-in %-11s %d × %5dk pps × %4dB #%d: sent %d delivered %d (%.3f%% loss) %s, %s (while sending: total %.2f), out of order %d%s",
						tool, s.FanInVMs, rate/1000, size, rep+1, p.Sent, p.Delivered, p.LossPct, dropsText(p.Dropped),
						usText(p.usPerPacket()), p.usPerPacketSending()["total"], p.OutOfOrder, accountingText(p.Accounting))
					pts = append(pts, p)
				}
			}
		}
	}
	return pts, nil
}

// ScenarioFanIn marks fan-in points.
const ScenarioFanIn = "fan-in"

func containsTool(tools []string, t string) bool {
	for _, x := range tools {
		if x == t {
			return true
		}
	}
	return false
}

// usPerPacket is CPU microseconds per delivered packet, per process and
// in total.
func (p Point) usPerPacket() map[string]float64 { return perPacket(p.CPU, p.Delivered) }

// usPerPacketSending is the same for the CPU used while sending (set-up
// and stop left out).
func (p Point) usPerPacketSending() map[string]float64 { return perPacket(p.CPUSending, p.Delivered) }

func perPacket(cpu map[string]float64, delivered uint64) map[string]float64 {
	m := map[string]float64{}
	if delivered == 0 || len(cpu) == 0 {
		return m
	}
	for k, v := range cpu {
		us := v / float64(delivered) * 1e6
		m[k] = us
		m["total"] += us
	}
	return m
}

func usText(m map[string]float64) string {
	var parts []string
	for _, k := range []string{"pcap-agent", "pcap-api", "ssh", "sshd", "tcpdump", "total"} {
		if v, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s %.2f", k, v))
		}
	}
	return "µs/packet: " + strings.Join(parts, ", ")
}

// SourceAccount is pcap's accounting of one source, from its final
// status line: delivered + kernel + agent + api drops must equal what
// libpcap received (interface drops never reached the socket).
type SourceAccount struct {
	Source        string `json:"source"`
	Received      uint64 `json:"received"`
	Delivered     uint64 `json:"delivered"`
	KernelDropped uint64 `json:"kernel_dropped"`
	AgentDropped  uint64 `json:"agent_dropped"`
	APIDropped    uint64 `json:"api_dropped"`
	Exact         bool   `json:"exact"`
}

var sourceEndRe = regexp.MustCompile(`^pcap: (\S+): (ended|lost|not-stopped) (.*)$`)

// accounts parses the sources' final status lines.
func accounts(lines []string) []SourceAccount {
	var out []SourceAccount
	for _, line := range lines {
		m := sourceEndRe.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		kv := parseKV(m[3])
		n := func(k string) uint64 { v, _ := strconv.ParseUint(kv[k], 10, 64); return v }
		a := SourceAccount{Source: m[1], Received: n("received"), Delivered: n("packets"),
			KernelDropped: n("kernel_dropped"), AgentDropped: n("agent_dropped"), APIDropped: n("api_dropped")}
		a.Exact = a.Delivered+a.KernelDropped+a.AgentDropped+a.APIDropped == a.Received
		out = append(out, a)
	}
	return out
}

func accountingText(as []SourceAccount) string {
	var bad []string
	for _, a := range as {
		if !a.Exact {
			bad = append(bad, fmt.Sprintf("%s: delivered %d + kernel %d + agent %d + api %d != received %d",
				a.Source, a.Delivered, a.KernelDropped, a.AgentDropped, a.APIDropped, a.Received))
		}
	}
	if len(bad) == 0 {
		if len(as) == 0 {
			return ""
		}
		return ", accounting exact"
	}
	return ", ACCOUNTING INEXACT: " + strings.Join(bad, "; ")
}

// FanInRow aggregates the repeats of one fan-in point of one tool.
type FanInRow struct {
	Tool         string          `json:"tool"`
	VMs          int             `json:"vms"`
	Size         int             `json:"payload_bytes"`
	RatePerVM    int             `json:"rate_per_vm_pps"`
	Runs         int             `json:"runs"`
	Sent         Stat            `json:"sent"`
	DeliveredPPS Stat            `json:"delivered_pps"`
	LossPct      Stat            `json:"loss_pct"`
	Dropped      map[string]Stat `json:"dropped"`
	// USPerPacket is CPU µs per delivered packet by process, and total.
	USPerPacket map[string]Stat `json:"cpu_us_per_delivered_packet"`
	// USPerPacketSending is the same for the CPU used while sending, the
	// capture's set-up and stop left out (see Point.CPUSending).
	USPerPacketSending map[string]Stat `json:"cpu_us_per_delivered_packet_sending,omitempty"`
	OutOfOrder         Stat            `json:"out_of_order"`
	// AccountingExact: every source of every run had delivered + drops
	// by place == received (pcap only).
	AccountingExact bool `json:"accounting_exact"`
}

func fanInRow(pts []Point) FanInRow {
	p0 := pts[0]
	row := FanInRow{Tool: p0.Tool, VMs: p0.Agents, Size: p0.Size, RatePerVM: p0.Rate / max(1, p0.Agents), Runs: len(pts),
		Sent:               collect(pts, func(p Point) float64 { return float64(p.Sent) }),
		DeliveredPPS:       collect(pts, func(p Point) float64 { return p.DeliveredPPS }),
		LossPct:            collect(pts, func(p Point) float64 { return p.LossPct }),
		Dropped:            keyStats(pts, dropsF),
		USPerPacket:        keyStats(pts, Point.usPerPacket),
		USPerPacketSending: keyStats(pts, Point.usPerPacketSending),
		OutOfOrder:         collect(pts, func(p Point) float64 { return float64(p.OutOfOrder) }),
		AccountingExact:    true,
	}
	for _, p := range pts {
		for _, a := range p.Accounting {
			row.AccountingExact = row.AccountingExact && a.Exact
		}
	}
	return row
}
