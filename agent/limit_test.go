package agent

import (
	"errors"
	"io"
	"testing"

	"github.com/gopacket/gopacket/layers"

	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestWriteBatchNamesTheLimit: the writer stops at exactly the limit and
// its error says which limit fired, for the final stats' limit=.
func TestWriteBatchNamesTheLimit(t *testing.T) {
	b := &batch{}
	for i := range 5 {
		b.pkts = append(b.pkts, pktMeta{ts: int64(i) * 1e9, off: int32(len(b.buf)), caplen: 100})
		b.buf = appendEPB(b.buf, 0, int64(i)*1e9, make([]byte, 100), 100)
	}
	tests := []struct {
		name   string
		limits agentproto.Limits
		n      int
		limit  string
	}{
		{"packets", agentproto.Limits{Packets: 3}, 3, agentproto.LimitPackets},
		{"packets at the batch's end", agentproto.Limits{Packets: 5}, 5, agentproto.LimitPackets},
		{"bytes", agentproto.Limits{Bytes: 250}, 2, agentproto.LimitBytes},
		{"both, bytes first", agentproto.Limits{Packets: 4, Bytes: 350}, 3, agentproto.LimitBytes},
		{"none", agentproto.Limits{Packets: 10, Bytes: 10000}, 5, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := newWriter(io.Discard, []*source{{name: "eth0", linkType: layers.LinkTypeEthernet}}, 65535, "", tt.limits)
			if err != nil {
				t.Fatal(err)
			}
			n, err := w.writeBatch(b)
			if n != tt.n || limitOf(err) != tt.limit || (tt.limit != "") != errors.Is(err, errLimit) {
				t.Errorf("writeBatch = %d, %v (limit %q); want %d, limit %q", n, err, limitOf(err), tt.n, tt.limit)
			}
		})
	}
}
