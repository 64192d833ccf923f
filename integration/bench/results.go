package bench

import (
	"math"
	"slices"
	"time"
)

// Tools compared.
const (
	ToolLocal = "local-tcpdump" // tcpdump in the VM writing to tmpfs: the ceiling
	ToolSSH   = "ssh-tcpdump"   // ssh root@vm 'tcpdump -U -w -' > file
	ToolPcap  = "pcap"          // pcap-agent → pcap-api → ssh client > file
)

// Point is one measured run of one tool on one batch of traffic.
type Point struct {
	Tool   string `json:"tool"`
	Size   int    `json:"payload_bytes"`
	Rate   int    `json:"rate_ceiling_pps"` // 0: unbounded
	Agents int    `json:"agents,omitempty"` // fan-out runs
	Rep    int    `json:"rep"`

	Sent         uint64  `json:"sent"`
	Delivered    uint64  `json:"delivered"`
	SendSeconds  float64 `json:"send_seconds"`
	OfferedPPS   float64 `json:"offered_pps"`   // sent / send time
	DeliveredPPS float64 `json:"delivered_pps"` // delivered / send time
	LossPct      float64 `json:"loss_pct"`
	// Dropped says where: kernel, interface, agent, api (pcap's own
	// accounting or tcpdump's), and unaccounted = sent − delivered − the
	// rest.
	Dropped map[string]uint64 `json:"dropped"`
	// CPU is CPU seconds (user + system) per process while the point ran,
	// from the capture's start (pcap: before the client connects) to its
	// end.
	CPU map[string]float64 `json:"cpu_seconds"`
	// CPUSending is the part of CPU from the capture being ready to the
	// output holding all it will get, before the stop: the work per
	// packet, without setting the capture up (SSH handshakes, opening
	// rings) or tearing it down; from the threads' schedstat (ns), not
	// the 10 ms ticks of CPU.
	CPUSending    map[string]float64 `json:"cpu_seconds_sending,omitempty"`
	APIPeakRSS    uint64             `json:"api_peak_rss_bytes,omitempty"`
	StopSeconds   float64            `json:"stop_seconds"` // stop → output closed
	GeneratorCPUs float64            `json:"generator_cpu_seconds"`
	// WallSeconds is the point's duration from capture start to stop;
	// ForeignCPU the CPU time processes the benchmark did not start used
	// meanwhile (others sharing the machine), which the figures suffer.
	WallSeconds float64 `json:"wall_seconds"`
	ForeignCPU  float64 `json:"foreign_cpu_seconds"`
	// Scenario is "fan-in" for fan-in points (Agents VMs, Rate in total).
	Scenario string `json:"scenario,omitempty"`
	// OutOfOrder counts the output's packets older than one before them
	// (per file: the OpenSSH pipelines write one file per VM).
	OutOfOrder uint64 `json:"out_of_order"`
	// OutOfOrderInIface are those older than a packet before them on the
	// same interface (pcapng): the capture's own order, not the merge's.
	OutOfOrderInIface uint64 `json:"out_of_order_within_interface"`
	// Accounting is pcap's per-source accounting from its status lines.
	Accounting []SourceAccount `json:"accounting,omitempty"`
	// Warning says what looked wrong with this run, if anything.
	Warning string `json:"warning,omitempty"`
}

func (p Point) foreignLoad() float64 {
	if p.WallSeconds <= 0 {
		return 0
	}
	return p.ForeignCPU / p.WallSeconds
}

func (p Point) cpuTotal() float64 {
	t := 0.0
	for _, v := range p.CPU {
		t += v
	}
	return t
}

// Stat is a median with its spread over repeats.
type Stat struct {
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
}

func statOf(xs []float64) Stat {
	if len(xs) == 0 {
		return Stat{}
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	m := s[len(s)/2]
	if len(s)%2 == 0 {
		m = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return Stat{Median: m, Min: s[0], Max: s[len(s)-1]}
}

// Delivery is what a sweep or fan-out row says of its repeats' traffic;
// in JSON its fields stand in the row itself.
type Delivery struct {
	Runs         int             `json:"runs"`
	Sent         Stat            `json:"sent"`
	OfferedPPS   Stat            `json:"offered_pps"`
	DeliveredPPS Stat            `json:"delivered_pps"`
	LossPct      Stat            `json:"loss_pct"`
	Dropped      map[string]Stat `json:"dropped"`
}

// SweepRow aggregates the repeats of one (tool, size, rate).
type SweepRow struct {
	Tool string `json:"tool"`
	Size int    `json:"payload_bytes"`
	Rate int    `json:"rate_ceiling_pps"`
	Delivery
	CPU         map[string]Stat `json:"cpu_seconds"`
	CPUPer100k  Stat            `json:"cpu_seconds_per_100k_delivered"`
	APIPeakRSS  Stat            `json:"api_peak_rss_bytes"`
	StopSeconds Stat            `json:"stop_seconds"`
	ForeignCPU  Stat            `json:"foreign_cpu_seconds"`
}

// Best is a tool's highest loss-free rate for one payload size.
type Best struct {
	Tool string `json:"tool"`
	Size int    `json:"payload_bytes"`
	// DeliveredPPS is the median delivered rate of the highest rate point
	// whose median loss is under LossLimitPct; Rate names that point.
	DeliveredPPS float64 `json:"delivered_pps"`
	Rate         int     `json:"rate_ceiling_pps"`
	// Unbounded is set when the best point is the unbounded one.
	Unbounded bool `json:"at_unbounded"`
	// LimitedByGenerator is set when even the unbounded generator was
	// captured without loss: the tool's real limit lies higher, and the
	// figure is what one generator managed beside it.
	LimitedByGenerator bool `json:"limited_by_generator"`
}

// FanRow aggregates the repeats of one fan-out point.
type FanRow struct {
	Agents int `json:"agents"`
	Size   int `json:"payload_bytes"`
	Delivery
	APIPeakRSS   Stat `json:"api_peak_rss_bytes"`
	APICPUPer100 Stat `json:"api_cpu_seconds_per_100k"`
	AgentCPU     Stat `json:"agents_cpu_seconds"`
	StopSeconds  Stat `json:"stop_seconds"`
}

// Latency is time to first packet and stop latency of pcap captures.
type Latency struct {
	Agents int `json:"agents"`
	Runs   int `json:"runs"`
	// FirstPacket: exec request sent → first packet at the client.
	FirstPacket Stat `json:"first_packet_seconds"`
	// Stop: stop sent → stream ended and file closed.
	Stop Stat `json:"stop_seconds"`
	// NotStarted: targets still opening at the stop (sent at the first
	// packet), given up rather than waited for.
	NotStarted Stat `json:"not_started"`
	// Connect: TCP connect + SSH handshake + auth, before the request.
	Connect Stat `json:"connect_seconds"`
}

// Target is one of the targets and whether it was met.
type Target struct {
	Name     string  `json:"name"`
	Want     string  `json:"want"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Met      bool    `json:"met"`
	Note     string  `json:"note,omitempty"`
}

// Results is everything one run measured; it is written as JSON.
type Results struct {
	Date     time.Time         `json:"date"`
	Machine  map[string]string `json:"machine"`
	Settings Settings          `json:"settings"`
	Seconds  float64           `json:"seconds"`
	// ForeignLoad is the CPUs that processes the benchmark did not start
	// used on average while points ran.
	ForeignLoad float64 `json:"foreign_load_cpus"`

	Points   []Point    `json:"points"`
	Sweep    []SweepRow `json:"sweep"`
	Best     []Best     `json:"best"`
	Ratios   []Ratio    `json:"ratios"`
	FanOut   []FanRow   `json:"fan_out"`
	FanPts   []Point    `json:"fan_out_points"`
	FanIn    []FanInRow `json:"fan_in"`
	FanInPts []Point    `json:"fan_in_points"`
	Latency  []Latency  `json:"latency"`
	Targets  []Target   `json:"targets"`
	Warnings []string   `json:"warnings,omitempty"`
}

// Ratio is the headline: pcap's best loss-free rate over another tool's.
type Ratio struct {
	Size  int     `json:"payload_bytes"`
	Over  string  `json:"over"`
	Ratio float64 `json:"ratio"`
}

func round(x float64, digits int) float64 {
	p := math.Pow(10, float64(digits))
	return math.Round(x*p) / p
}
