package integration

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// TestAgentRejectsBadInput: every bad request is refused with the exact
// code and message the user reads, over the same connection, which keeps
// working afterwards.
func TestAgentRejectsBadInput(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s, ct := agStartContainer(t, agentOptions{})
	missingGUID := agGUID(t)

	tests := []struct {
		name   string
		change func(r *agentproto.CaptureRequest)
		code   string
		msg    string
	}{
		{"bad BPF syntax", func(r *agentproto.CaptureRequest) { r.Filter = "tcp[" },
			tunnel.CodeBadFilter, "filter does not compile on eth0: syntax error"},
		{"bad BPF port", func(r *agentproto.CaptureRequest) { r.Filter = "udp port 99999" },
			tunnel.CodeBadFilter, "filter does not compile on eth0: illegal port number 99999 > 65535"},
		{"filter too long", func(r *agentproto.CaptureRequest) { r.Filter = strings.Repeat("udp or ", 714) + "tcp" },
			tunnel.CodeFilterTooLong, "filter is 5001 characters, at most 5000 are allowed"},
		{"snaplen 10^6", func(r *agentproto.CaptureRequest) { r.Snaplen = 1_000_000 },
			tunnel.CodeBadSnaplen, "snaplen 1000000 is out of range 1..262144"},
		{"snaplen negative", func(r *agentproto.CaptureRequest) { r.Snaplen = -1 },
			tunnel.CodeBadSnaplen, "snaplen -1 is out of range 1..262144"},
		{"unknown interface", func(r *agentproto.CaptureRequest) { r.Interfaces = []string{"eth7"} },
			tunnel.CodeUnknownInterface, `no interface "eth7" in the target's network namespace`},
		{"second interface unknown", func(r *agentproto.CaptureRequest) { r.Interfaces = []string{"eth0", "eth1"} },
			tunnel.CodeUnknownInterface, `no interface "eth1" in the target's network namespace`},
		{"interface with slash", func(r *agentproto.CaptureRequest) { r.Interfaces = []string{"eth0/1"} },
			tunnel.CodeBadInterface, `interface name "eth0/1" is not valid (letters, digits and _.:@- only)`},
		{"interface with space", func(r *agentproto.CaptureRequest) { r.Interfaces = []string{"eth 0"} },
			tunnel.CodeBadInterface, `interface name "eth 0" is not valid (letters, digits and _.:@- only)`},
		{"unknown guid", func(r *agentproto.CaptureRequest) { r.Target.InstanceGUID = missingGUID },
			tunnel.CodeTargetNotFound, "no container with instance guid " + missingGUID + " on this host"},
		{"unknown pid", func(r *agentproto.CaptureRequest) {
			// Above PID_MAX_LIMIT (4194304): no process can have it.
			r.Target = agentproto.Target{Kind: agentproto.TargetPID, PID: 4194305}
		}, tunnel.CodeTargetNotFound, "no process with pid 4194305 on this host"},
		{"unsupported version", func(r *agentproto.CaptureRequest) { r.Version = 2 },
			tunnel.CodeUnsupportedVersion, "protocol version 2 is not supported (this side speaks 1)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := agContainerReq(ct, "udp dst port 9000")
			tt.change(&req)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			capt, err := agentproto.OpenCapture(ctx, s.Client, req)
			if err == nil {
				capt.Close()
			}
			agWantReject(t, err, tt.code, tt.msg)
		})
	}

	// Raw payloads, as any SSH client could send them.
	raw := agRawDial(t, s)
	oversize := `{"version":1,"target":{"kind":"host"},"filter":"` + strings.Repeat("x", agentproto.MaxRequestSize) + `"}`
	rawTests := []struct {
		name    string
		payload string
		code    string
		msg     string
	}{
		{"raw unsupported version", `{"version":2,"target":{"kind":"host"},"interfaces":["lo"]}`,
			tunnel.CodeUnsupportedVersion, "protocol version 2 is not supported (this side speaks 1)"},
		{"raw version 0", `{"target":{"kind":"host"}}`,
			tunnel.CodeUnsupportedVersion, "protocol version 0 is not supported (this side speaks 1)"},
		{"garbage", "\x00\x01garbage\xff",
			tunnel.CodeBadRequest, `capture request is not valid JSON: invalid character '\x00' looking for beginning of value`},
		{"empty", "",
			tunnel.CodeBadRequest, "capture request is not valid JSON: EOF"},
		{"unknown field", `{"version":1,"target":{"kind":"host"},"exec":"/bin/sh"}`,
			tunnel.CodeBadRequest, `capture request is not valid JSON: json: unknown field "exec"`},
		{"trailing data", `{"version":1,"target":{"kind":"host"}}]`,
			tunnel.CodeBadRequest, "capture request has trailing data"},
		{"oversize", oversize,
			tunnel.CodeBadRequest, fmt.Sprintf("capture request is %d bytes, at most 16384 are allowed", len(oversize))},
	}
	for _, tt := range rawTests {
		t.Run(tt.name, func(t *testing.T) {
			ch, _, err := raw.OpenChannel(agentproto.ChannelCapture, []byte(tt.payload))
			if err == nil {
				ch.Close()
				t.Fatal("agent accepted the payload")
			}
			var oce *ssh.OpenChannelError
			if !errors.As(err, &oce) || oce.Message != tt.code+": "+tt.msg {
				t.Errorf("raw rejection = %v, want %q", err, tt.code+": "+tt.msg)
			}
			agWantReject(t, tunnel.ParseRejection(err), tt.code, tt.msg)
		})
	}
	agLog(t, s.Agent, "capture-rejected", `"code":"unsupported-version"`, 5*time.Second)

	t.Run("snaplen 0 means 65535", func(t *testing.T) {
		req := agContainerReq(ct, "udp dst port 9000")
		req.Snaplen = 0
		file, st := agCaptureSent(t, s, req, ct.NS, 5)
		ifs := agInterfaces(t, file)
		if len(ifs) != 1 || ifs[0].SnapLength != 65535 {
			t.Errorf("interface blocks %+v, want one with snaplen 65535", ifs)
		}
		if len(st.Interfaces) != 1 || st.Interfaces[0].Snaplen != 65535 || st.Interfaces[0].Packets != 5 {
			t.Errorf("stats %+v, want snaplen 65535 and 5 packets", st.Interfaces)
		}
		if got := countPackets(t, file, ""); got != 5 {
			t.Errorf("capture holds %d packets, want 5", got)
		}
	})

	t.Run("small snaplen truncates", func(t *testing.T) {
		req := agContainerReq(ct, "udp dst port 9000")
		req.Snaplen = 64
		file, _ := agCaptureSent(t, s, req, ct.NS, 5)
		if got := countPackets(t, file, "frame.cap_len == 64 && frame.len == 142"); got != 5 {
			t.Errorf("capture holds %d packets cut to 64 of 142 bytes, want 5", got)
		}
	})
}

// TestAgentRefusesWrongKeys: the agent refuses a client key it does not
// list; the client refuses an agent whose host key is not pinned.
func TestAgentRefusesWrongKeys(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	s := agStart(t, agentOptions{})
	stranger := newKeyPair(t, t.TempDir(), "stranger")

	t.Run("unauthorized client key", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := tunnel.Dial(ctx, s.Agent.Addr, tunnel.ClientConfig{
			User:            "pcap-api",
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(stranger.Signer)},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{s.Agent.HostKey.Signer.PublicKey()}),
		})
		if err == nil {
			c.Close()
			t.Fatal("the agent accepted a key it does not list")
		}
		if !strings.Contains(err.Error(), "ssh: unable to authenticate") {
			t.Errorf("dial = %v, want an authentication failure", err)
		}
		// The agent says whose key it refused.
		agLog(t, s.Agent, "connection-refused", `"error":"tunnel: handshake: .*`+
			regexp.QuoteMeta(tunnel.Fingerprint(stranger.Signer.PublicKey())+": "+tunnel.ErrUnauthorizedKey.Error()), 5*time.Second)
	})

	t.Run("wrong host key", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		c, err := tunnel.Dial(ctx, s.Agent.Addr, tunnel.ClientConfig{
			User:            "pcap-api",
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Key.Signer)},
			HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{stranger.Signer.PublicKey()}),
		})
		if err == nil {
			c.Close()
			t.Fatal("the client accepted a host key it did not pin")
		}
		if !errors.Is(err, tunnel.ErrHostKeyMismatch) {
			t.Errorf("dial = %v, want an error wrapping tunnel.ErrHostKeyMismatch", err)
		}
		if fp := tunnel.Fingerprint(s.Agent.HostKey.Signer.PublicKey()); !strings.Contains(err.Error(), fp) {
			t.Errorf("dial = %v, want it to name the offered key %s", err, fp)
		}
	})

	t.Run("authorized client still works", func(t *testing.T) {
		capt := agOpen(t, s.Client, agentproto.CaptureRequest{
			Version: agentproto.ProtocolVersion, Target: agentproto.Target{Kind: agentproto.TargetHost}, Interfaces: []string{"lo"},
			Filter: "udp dst port 9", // nothing sends there
		})
		wait := drain(t, capt)
		if _, st := agStop(t, capt, wait, time.Second); st.End != agentproto.EndStopped {
			t.Errorf("final stats %+v, want stopped", st)
		}
	})
}
