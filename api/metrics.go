package api

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the API's Prometheus metrics. A nil *Metrics counts nothing.
type Metrics struct {
	CapturesActive prometheus.Gauge
	Captures       *prometheus.CounterVec // by outcome
	Packets        prometheus.Counter
	Bytes          prometheus.Counter
	Dropped        *prometheus.CounterVec // by place
	AgentErrors    prometheus.Counter
	Refused        *prometheus.CounterVec // by reason code
}

// NewMetrics registers the metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		CapturesActive: prometheus.NewGauge(prometheus.GaugeOpts{Name: "pcap_api_captures_active", Help: "Captures running now."}),
		Captures:       prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_captures_total", Help: "Captures ended, by outcome."}, []string{"outcome"}),
		Packets:        prometheus.NewCounter(prometheus.CounterOpts{Name: "pcap_api_packets_forwarded_total", Help: "Packets received from agents for clients."}),
		Bytes:          prometheus.NewCounter(prometheus.CounterOpts{Name: "pcap_api_bytes_forwarded_total", Help: "Captured bytes received from agents for clients."}),
		Dropped:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_dropped_packets_total", Help: "Packets dropped, by place (kernel, interface, agent, api)."}, []string{"place"}),
		AgentErrors:    prometheus.NewCounter(prometheus.CounterOpts{Name: "pcap_api_agent_connection_errors_total", Help: "Failures to reach or talk to an agent."}),
		Refused:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_captures_refused_total", Help: "Capture requests refused before starting, by code."}, []string{"code"}),
	}
	reg.MustRegister(m.CapturesActive, m.Captures, m.Packets, m.Bytes, m.Dropped, m.AgentErrors, m.Refused)
	return m
}

func (m *Metrics) forwarded(b *batch) {
	if m == nil {
		return
	}
	m.Packets.Add(float64(len(b.pkts) - b.next))
	m.Bytes.Add(float64(len(b.buf)))
}

func (m *Metrics) agentError() {
	if m != nil {
		m.AgentErrors.Inc()
	}
}

func (m *Metrics) dropped(by map[string]uint64) {
	if m == nil {
		return
	}
	for place, n := range by {
		m.Dropped.WithLabelValues(place).Add(float64(n))
	}
}

func (m *Metrics) refused(code string) {
	if m != nil {
		m.Refused.WithLabelValues(code).Inc()
	}
}
