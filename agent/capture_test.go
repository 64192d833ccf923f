package agent

import (
	"errors"
	"net"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcap"
)

func TestExcludeConn(t *testing.T) {
	tcp := func(ip string, port int) *net.TCPAddr { return &net.TCPAddr{IP: net.ParseIP(ip), Port: port} }
	tests := []struct {
		name          string
		local, remote net.Addr
		want          string
	}{
		{"IPv4", tcp("127.0.0.1", 9494), tcp("127.0.0.1", 51000),
			"tcp and host 127.0.0.1 and host 127.0.0.1 and port 9494 and port 51000"},
		{"IPv4 in IPv6 form", tcp("::ffff:10.0.16.5", 9494), tcp("::ffff:10.0.0.7", 40000),
			"tcp and host 10.0.16.5 and host 10.0.0.7 and port 9494 and port 40000"},
		{"IPv6", &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 9494, Zone: "eth0"}, tcp("2001:db8::7", 40000),
			"tcp and host fe80::1 and host 2001:db8::7 and port 9494 and port 40000"},
		{"not TCP", &net.UnixAddr{Name: "/run/x", Net: "unix"}, tcp("127.0.0.1", 1), ""},
		{"remote not TCP", tcp("127.0.0.1", 1), &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := excludeConn(tt.local, tt.remote); got != tt.want {
				t.Errorf("excludeConn() = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestCombineFilters(t *testing.T) {
	tests := []struct{ user, exclude, want string }{
		{"", "", ""},
		{"udp", "", "udp"},
		{"", "tcp and port 1", "not (tcp and port 1)"},
		{"udp or tcp", "tcp and port 1", "(udp or tcp) and not (tcp and port 1)"},
	}
	for _, tt := range tests {
		if got := combineFilters(tt.user, tt.exclude); got != tt.want {
			t.Errorf("combineFilters(%q, %q) = %q, want %q", tt.user, tt.exclude, got, tt.want)
		}
	}
}

// frame builds an Ethernet frame carrying TCP or UDP between two endpoints.
func frame(t *testing.T, proto string, src string, sport int, dst string, dport int) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{0, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{0, 0, 0, 0, 0, 2}}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if ip := net.ParseIP(src); ip.To4() != nil {
		eth.EthernetType = layers.EthernetTypeIPv4
		v4 := &layers.IPv4{Version: 4, TTL: 64, SrcIP: ip.To4(), DstIP: net.ParseIP(dst).To4()}
		nl, ls = v4, []gopacket.SerializableLayer{eth, v4}
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		v6 := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: ip, DstIP: net.ParseIP(dst)}
		nl, ls = v6, []gopacket.SerializableLayer{eth, v6}
	}
	switch proto {
	case "tcp":
		l := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), ACK: true, Window: 100}
		l.SetNetworkLayerForChecksum(nl)
		ls = append(ls, l)
		setProto(nl, layers.IPProtocolTCP)
	case "udp":
		l := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		l.SetNetworkLayerForChecksum(nl)
		ls = append(ls, l)
		setProto(nl, layers.IPProtocolUDP)
	}
	ls = append(ls, gopacket.Payload("payload"))
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func setProto(nl gopacket.NetworkLayer, p layers.IPProtocol) {
	switch l := nl.(type) {
	case *layers.IPv4:
		l.Protocol = p
	case *layers.IPv6:
		l.NextHeader = p
	}
}

// TestExclusionFilterMatches compiles the agent's combined filter with
// libpcap and runs it over packets: the tunnel's own connection is left
// out in both directions; everything else the user asked for stays.
func TestExclusionFilterMatches(t *testing.T) {
	type pkt struct {
		name                   string
		proto                  string
		src                    string
		sport                  int
		dst                    string
		dport                  int
		wantUser, wantAllTraff bool
	}
	tests := []struct {
		name          string
		local, remote *net.TCPAddr
		user          string
		pkts          []pkt
	}{
		{
			name:   "loopback IPv4",
			local:  &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9494},
			remote: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 51000},
			user:   "udp dst port 9000 or tcp port 9494",
			pkts: []pkt{
				{"tunnel agent→client", "tcp", "127.0.0.1", 9494, "127.0.0.1", 51000, false, false},
				{"tunnel client→agent", "tcp", "127.0.0.1", 51000, "127.0.0.1", 9494, false, false},
				{"another client of the agent", "tcp", "127.0.0.1", 51001, "127.0.0.1", 9494, true, true},
				{"user's udp", "udp", "127.0.0.1", 40000, "127.0.0.1", 9000, true, true},
				{"udp on the tunnel's ports", "udp", "127.0.0.1", 51000, "127.0.0.1", 9494, false, true},
				{"other udp", "udp", "127.0.0.1", 40000, "127.0.0.1", 9001, false, true},
			},
		},
		{
			name:   "IPv6 between hosts",
			local:  &net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 9494},
			remote: &net.TCPAddr{IP: net.ParseIP("2001:db8::2"), Port: 40000},
			user:   "tcp",
			pkts: []pkt{
				{"tunnel", "tcp", "2001:db8::2", 40000, "2001:db8::1", 9494, false, false},
				{"tunnel back", "tcp", "2001:db8::1", 9494, "2001:db8::2", 40000, false, false},
				{"same ports, other host", "tcp", "2001:db8::3", 40000, "2001:db8::1", 9494, true, true},
				{"IPv4 on the same ports", "tcp", "10.0.0.2", 40000, "10.0.0.1", 9494, true, true},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			excl := excludeConn(tt.local, tt.remote)
			withUser, err := pcap.NewBPF(layers.LinkTypeEthernet, 65535, combineFilters(tt.user, excl))
			if err != nil {
				t.Fatalf("compile %q: %v", combineFilters(tt.user, excl), err)
			}
			alone, err := pcap.NewBPF(layers.LinkTypeEthernet, 65535, combineFilters("", excl))
			if err != nil {
				t.Fatalf("compile %q: %v", combineFilters("", excl), err)
			}
			for _, p := range tt.pkts {
				data := frame(t, p.proto, p.src, p.sport, p.dst, p.dport)
				ci := gopacket.CaptureInfo{CaptureLength: len(data), Length: len(data)}
				if got := withUser.Matches(ci, data); got != p.wantUser {
					t.Errorf("%s: user filter matches = %v, want %v", p.name, got, p.wantUser)
				}
				if got := alone.Matches(ci, data); got != p.wantAllTraff {
					t.Errorf("%s: no user filter matches = %v, want %v", p.name, got, p.wantAllTraff)
				}
			}
		})
	}
}

func TestBPFMessage(t *testing.T) {
	tests := map[string]string{
		"can't parse filter expression: syntax error": "syntax error",
		"syntax error":                 "syntax error",
		"unknown host 'nowhere'":       "unknown host 'nowhere'",
		"port 99999: not a valid port": "port 99999: not a valid port",
	}
	for in, want := range tests {
		if got := bpfMessage(errors.New(in)); got != want {
			t.Errorf("bpfMessage(%q) = %q, want %q", in, got, want)
		}
	}
}
