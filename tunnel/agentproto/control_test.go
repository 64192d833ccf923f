package agentproto

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

func TestStatsRoundTripAndTotal(t *testing.T) {
	s := Stats{
		Interfaces: []InterfaceStats{
			{Name: "eth0", LinkType: 1, Snaplen: 65535, Received: 10, KernelDropped: 1, IfDropped: 2, AgentDropped: 3, Packets: 6, Bytes: 600},
			{Name: "any", LinkType: 276, Snaplen: 96, Received: 5, KernelDropped: 0, IfDropped: 1, AgentDropped: 0, Packets: 5, Bytes: 480},
		},
		Final: true,
		End:   EndError,
		Error: "read from eth0: <gone> & away",
	}
	got, err := DecodeStats(s.Marshal())
	if err != nil {
		t.Fatalf("DecodeStats(Marshal()) = %v", err)
	}
	if !reflect.DeepEqual(got, s) {
		t.Errorf("round trip = %+v, want %+v", got, s)
	}
	want := InterfaceStats{Received: 15, KernelDropped: 1, IfDropped: 3, AgentDropped: 3, Packets: 11, Bytes: 1080}
	if tot := s.Total(); tot != want {
		t.Errorf("Total() = %+v, want %+v", tot, want)
	}
}

func TestDecodeStatsRejects(t *testing.T) {
	nine := make([]string, 9)
	for i := range nine {
		nine[i] = fmt.Sprintf(`{"name":"e%d"}`, i)
	}
	tests := []struct {
		name    string
		payload string
		msg     string
	}{
		{"empty", ``, "agentproto: decode stats: unexpected end of JSON input"},
		{"garbage", `xyz`, "agentproto: decode stats: invalid character 'x' looking for beginning of value"},
		{"trailing data", `{"interfaces":[]} {}`, "agentproto: decode stats: invalid character '{' after top-level value"},
		{"negative counter", `{"interfaces":[{"name":"eth0","received":-1}]}`, "agentproto: decode stats: json: cannot unmarshal number -1 into Go struct field InterfaceStats.interfaces.received of type uint64"},
		{"nine interfaces", `{"interfaces":[` + strings.Join(nine, ",") + `]}`, "agentproto: stats for 9 interfaces, at most 8 are allowed"},
		{"oversize", `{"error":"` + strings.Repeat("x", maxStatsSize) + `"}`, fmt.Sprintf("agentproto: stats payload is %d bytes, at most 65536 are allowed", maxStatsSize+12)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := DecodeStats([]byte(tt.payload))
			if err == nil || err.Error() != tt.msg {
				t.Errorf("DecodeStats() = %+v, %v; want error %q", s, err, tt.msg)
			}
			if !reflect.DeepEqual(s, Stats{}) {
				t.Errorf("rejected stats came back as %+v, want the zero value", s)
			}
		})
	}
}

func FuzzDecodeStats(f *testing.F) {
	seeds := []string{
		``,
		`{}`,
		`null`,
		`{"interfaces":null}`,
		`{"interfaces":[]}`,
		`{"interfaces":[{"name":"eth0","link_type":1,"snaplen":65535,"received":3,"kernel_dropped":1,"if_dropped":0,"agent_dropped":2,"packets":1,"bytes":100}]}`,
		`{"interfaces":[{"name":"any","link_type":276}],"final":true,"end":"limit-reached"}`,
		`{"interfaces":[{"name":"any","link_type":276}],"final":true,"end":"limit-reached","limit":"packets"}`,
		`{"interfaces":[],"final":true,"end":"error","error":"read from eth0: \u003cgone\u003e\u2028"}`,
		`{"interfaces":[{"received":18446744073709551615}]}`,
		`{"interfaces":[{"received":18446744073709551616}]}`,
		`{"interfaces":[{},{},{},{},{},{},{},{},{}]}`,
		`{"final":"yes"}`,
		`{"error":"\xff\xfe"}`,
		`{"interfaces":[]} x`,
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := DecodeStats(b)
		if err != nil {
			if !reflect.DeepEqual(s, Stats{}) {
				t.Fatalf("rejected stats came back as %+v", s)
			}
			return
		}
		if len(s.Interfaces) > MaxInterfaces {
			t.Fatalf("accepted stats for %d interfaces", len(s.Interfaces))
		}
		_ = s.Total()
		// What the agent would send back encodes and decodes to the same
		// value, unless re-encoding grew it past the size bound (invalid
		// UTF-8 becomes U+FFFD, three bytes for one).
		enc := s.Marshal()
		if len(enc) > maxStatsSize {
			return
		}
		back, err := DecodeStats(enc)
		if err != nil {
			t.Fatalf("DecodeStats(Marshal(%+v)) = %v", s, err)
		}
		if !reflect.DeepEqual(back, s) {
			t.Fatalf("round trip changed the stats: %+v → %+v", s, back)
		}
	})
}
