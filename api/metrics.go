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

	// The front door, before and at login.
	KeyChecks       *prometheus.CounterVec // by result (accepted, refused)
	Logins          *prometheus.CounterVec // by method
	LoginsRefused   *prometheus.CounterVec // by method and reason
	SessionsRefused prometheus.Counter
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

		KeyChecks: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_public_key_checks_total",
			Help: "Public keys offered or queried (checked locally, before any signature), by result."}, []string{"result"}),
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_logins_total",
			Help: "Logins granted, by method (password, publickey)."}, []string{"method"}),
		LoginsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "pcap_api_logins_refused_total",
			Help: "Logins refused after the client proved a key or sent a password, by method and reason."}, []string{"method", "reason"}),
		SessionsRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "pcap_api_sessions_refused_total",
			Help: "Session channels refused because their connection had its maximum open."}),
	}
	reg.MustRegister(m.CapturesActive, m.Captures, m.Packets, m.Bytes, m.Dropped, m.AgentErrors, m.Refused,
		m.KeyChecks, m.Logins, m.LoginsRefused, m.SessionsRefused)
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

// dropped counts a source's drops by place (the label values are the
// metric's API), and what its agent could not account for, if anything.
func (m *Metrics) dropped(d Drops, unaccounted int64) {
	if m == nil {
		return
	}
	m.Dropped.WithLabelValues("kernel").Add(float64(d.Kernel))
	m.Dropped.WithLabelValues("interface").Add(float64(d.Interface))
	m.Dropped.WithLabelValues("agent").Add(float64(d.Agent))
	m.Dropped.WithLabelValues("api").Add(float64(d.API))
	if unaccounted > 0 {
		m.Dropped.WithLabelValues("unaccounted").Add(float64(unaccounted))
	}
}

func (m *Metrics) refused(code string) {
	if m != nil {
		m.Refused.WithLabelValues(code).Inc()
	}
}

func (m *Metrics) keyChecked(result string) {
	if m != nil {
		m.KeyChecks.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) login(method string) {
	if m != nil {
		m.Logins.WithLabelValues(method).Inc()
	}
}

func (m *Metrics) loginRefused(method, reason string) {
	if m != nil {
		m.LoginsRefused.WithLabelValues(method, reason).Inc()
	}
}

func (m *Metrics) sessionRefused() {
	if m != nil {
		m.SessionsRefused.Inc()
	}
}
