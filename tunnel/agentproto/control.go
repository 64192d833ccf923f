package agentproto

import (
	"encoding/json"
	"fmt"
)

// Channel request types of a capture channel.
const (
	RequestStop  = "stop"
	RequestStats = "stats"
)

// Reasons a capture ended, carried in the final [Stats].
const (
	EndStopped      = "stopped"       // stop request, channel or connection closed
	EndLimitReached = "limit-reached" // duration, packet or byte limit
	EndError        = "error"         // capture failed; see Stats.Error
	EndAgentStopped = "agent-stopped" // the agent shut down mid-capture
)

// Limits that end a capture, carried in the final [Stats] with
// [EndLimitReached].
const (
	LimitDuration = "duration"
	LimitPackets  = "packets"
	LimitBytes    = "bytes"
)

// maxStatsSize bounds a stats payload from the peer.
const maxStatsSize = 64 << 10

// InterfaceStats counts one captured interface. Received, KernelDropped
// and IfDropped are libpcap's ps_recv, ps_drop and ps_ifdrop; AgentDropped
// counts packets libpcap handed over that the agent's bounded queue could
// not hold, or that a failed write lost. Per interface, at the end of a
// capture, Received == Packets + KernelDropped + AgentDropped +
// Unaccounted: Unaccounted is what the agent could not account for (the
// kernel counted it but it was not read in time after a stop, for
// instance); it is 0 unless something is wrong, and negative when more was
// delivered than the kernel counted. IfDropped happen before the filter and
// are not part of Received.
type InterfaceStats struct {
	Name          string `json:"name"`
	LinkType      uint16 `json:"link_type"` // pcap LINKTYPE_ value
	Snaplen       uint32 `json:"snaplen"`
	Received      uint64 `json:"received"`
	KernelDropped uint64 `json:"kernel_dropped"`
	IfDropped     uint64 `json:"if_dropped"`
	AgentDropped  uint64 `json:"agent_dropped"`
	Unaccounted   int64  `json:"unaccounted,omitempty"`
	Packets       uint64 `json:"packets"` // written to the channel
	Bytes         uint64 `json:"bytes"`   // captured bytes written to the channel
}

// Stats is the payload of a [RequestStats] request. The agent sends one
// right after the pcapng header and before any packet, so the client learns
// every interface's name and link type before the first packet arrives.
type Stats struct {
	Interfaces []InterfaceStats `json:"interfaces"`
	Final      bool             `json:"final,omitempty"`
	End        string           `json:"end,omitempty"`   // with Final: one of the End* values
	Error      string           `json:"error,omitempty"` // with EndError: what failed
	Limit      string           `json:"limit,omitempty"` // with EndLimitReached: one of the Limit* values
}

// Total sums the per-interface counters (Name is left empty).
func (s Stats) Total() InterfaceStats {
	var t InterfaceStats
	for _, i := range s.Interfaces {
		t.Received += i.Received
		t.KernelDropped += i.KernelDropped
		t.IfDropped += i.IfDropped
		t.AgentDropped += i.AgentDropped
		t.Unaccounted += i.Unaccounted
		t.Packets += i.Packets
		t.Bytes += i.Bytes
	}
	return t
}

// Marshal encodes s as a request payload.
func (s Stats) Marshal() []byte {
	b, err := json.Marshal(s)
	if err != nil {
		panic("agentproto: stats cannot fail to encode: " + err.Error())
	}
	return b
}

// DecodeStats decodes an untrusted stats payload.
func DecodeStats(b []byte) (Stats, error) {
	var s Stats
	if len(b) > maxStatsSize {
		return s, fmt.Errorf("agentproto: stats payload is %d bytes, at most %d are allowed", len(b), maxStatsSize)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		return Stats{}, fmt.Errorf("agentproto: decode stats: %w", err)
	}
	if len(s.Interfaces) > MaxInterfaces {
		return Stats{}, fmt.Errorf("agentproto: stats for %d interfaces, at most %d are allowed", len(s.Interfaces), MaxInterfaces)
	}
	return s, nil
}
