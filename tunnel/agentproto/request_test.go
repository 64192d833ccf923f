package agentproto

import (
	"code.cloudfoundry.org/pcap/tunnel"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"
)

// validRequest is a request every case below starts from and changes one
// thing of.
// rejectCode is the shape tunnel gives a rejection's code on the wire.
var rejectCode = regexp.MustCompile(`^[a-z][a-z-]{1,40}$`)

func validRequest() CaptureRequest {
	return CaptureRequest{
		Version:    ProtocolVersion,
		Target:     Target{Kind: TargetCFInstance, InstanceGUID: "6f1c2a3e-0000-4a5b-8c9d-000000000001"},
		Interfaces: []string{"eth0"},
		Filter:     "tcp port 8080",
		Snaplen:    1500,
	}
}

func TestNormalizeRejects(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *CaptureRequest)
		code   string
		msg    string
	}{
		{"version 0", func(r *CaptureRequest) { r.Version = 0 },
			tunnel.CodeUnsupportedVersion, "protocol version 0 is not supported (this side speaks 1)"},
		{"version 2", func(r *CaptureRequest) { r.Version = 2 },
			tunnel.CodeUnsupportedVersion, "protocol version 2 is not supported (this side speaks 1)"},
		{"empty target kind", func(r *CaptureRequest) { r.Target = Target{} },
			tunnel.CodeBadRequest, `unknown target kind ""`},
		{"unknown target kind", func(r *CaptureRequest) { r.Target = Target{Kind: "vm"} },
			tunnel.CodeBadRequest, `unknown target kind "vm"`},
		{"host with pid", func(r *CaptureRequest) { r.Target = Target{Kind: TargetHost, PID: 1} },
			tunnel.CodeBadRequest, "host target takes no pid or instance guid"},
		{"host with guid", func(r *CaptureRequest) { r.Target = Target{Kind: TargetHost, InstanceGUID: "abc"} },
			tunnel.CodeBadRequest, "host target takes no pid or instance guid"},
		{"pid 0", func(r *CaptureRequest) { r.Target = Target{Kind: TargetPID} },
			tunnel.CodeBadRequest, "pid target needs a positive pid, got 0"},
		{"pid negative", func(r *CaptureRequest) { r.Target = Target{Kind: TargetPID, PID: -7} },
			tunnel.CodeBadRequest, "pid target needs a positive pid, got -7"},
		{"pid with guid", func(r *CaptureRequest) { r.Target = Target{Kind: TargetPID, PID: 7, InstanceGUID: "abc"} },
			tunnel.CodeBadRequest, "pid target needs a positive pid, got 7"},
		{"guid empty", func(r *CaptureRequest) { r.Target.InstanceGUID = "" },
			tunnel.CodeBadRequest, `instance guid "" is not valid`},
		{"guid with slash", func(r *CaptureRequest) { r.Target.InstanceGUID = "../1" },
			tunnel.CodeBadRequest, `instance guid "../1" is not valid`},
		{"guid with NUL", func(r *CaptureRequest) { r.Target.InstanceGUID = "ab\x00cd" },
			tunnel.CodeBadRequest, `instance guid "ab\x00cd" is not valid`},
		{"guid 65 chars", func(r *CaptureRequest) { r.Target.InstanceGUID = strings.Repeat("a", 65) },
			tunnel.CodeBadRequest, `instance guid "` + strings.Repeat("a", 65) + `" is not valid`},
		{"guid with pid", func(r *CaptureRequest) { r.Target.PID = 3 },
			tunnel.CodeBadRequest, `instance guid "6f1c2a3e-0000-4a5b-8c9d-000000000001" is not valid`},
		{"interface empty", func(r *CaptureRequest) { r.Interfaces = []string{""} },
			tunnel.CodeBadInterface, "interface name is empty"},
		{"interface 16 chars", func(r *CaptureRequest) { r.Interfaces = []string{"abcdefghijklmnop"} },
			tunnel.CodeBadInterface, `interface name "abcdefghijklmnop" is longer than 15 characters`},
		{"interface with slash", func(r *CaptureRequest) { r.Interfaces = []string{"eth0/1"} },
			tunnel.CodeBadInterface, `interface name "eth0/1" is not valid (letters, digits and _.:@- only)`},
		{"interface with space", func(r *CaptureRequest) { r.Interfaces = []string{"eth 0"} },
			tunnel.CodeBadInterface, `interface name "eth 0" is not valid (letters, digits and _.:@- only)`},
		{"interface dot", func(r *CaptureRequest) { r.Interfaces = []string{"."} },
			tunnel.CodeBadInterface, `interface name "." is not valid (letters, digits and _.:@- only)`},
		{"interface dotdot", func(r *CaptureRequest) { r.Interfaces = []string{".."} },
			tunnel.CodeBadInterface, `interface name ".." is not valid (letters, digits and _.:@- only)`},
		{"second interface bad", func(r *CaptureRequest) { r.Interfaces = []string{"eth0", "eth1;"} },
			tunnel.CodeBadInterface, `interface name "eth1;" is not valid (letters, digits and _.:@- only)`},
		{"interface twice", func(r *CaptureRequest) { r.Interfaces = []string{"eth0", "eth1", "eth0"} },
			tunnel.CodeBadInterface, `interface "eth0" is listed twice`},
		{"nine interfaces", func(r *CaptureRequest) {
			r.Interfaces = []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8", "e9"}
		}, tunnel.CodeBadInterface, "9 interfaces asked for, at most 8 are allowed"},
		{"filter 5001 chars", func(r *CaptureRequest) { r.Filter = strings.Repeat("a", 5001) },
			tunnel.CodeFilterTooLong, "filter is 5001 characters, at most 5000 are allowed"},
		{"filter with NUL", func(r *CaptureRequest) { r.Filter = "tcp\x00port 80" },
			tunnel.CodeBadFilter, "filter contains a control character or invalid UTF-8"},
		{"filter with escape", func(r *CaptureRequest) { r.Filter = "tcp\x1b[2J" },
			tunnel.CodeBadFilter, "filter contains a control character or invalid UTF-8"},
		{"filter invalid UTF-8", func(r *CaptureRequest) { r.Filter = "tcp port \xff80" },
			tunnel.CodeBadFilter, "filter contains a control character or invalid UTF-8"},
		{"snaplen -1", func(r *CaptureRequest) { r.Snaplen = -1 },
			tunnel.CodeBadSnaplen, "snaplen -1 is out of range 1..262144"},
		{"snaplen 262145", func(r *CaptureRequest) { r.Snaplen = 262145 },
			tunnel.CodeBadSnaplen, "snaplen 262145 is out of range 1..262144"},
		{"snaplen 10^6", func(r *CaptureRequest) { r.Snaplen = 1_000_000 },
			tunnel.CodeBadSnaplen, "snaplen 1000000 is out of range 1..262144"},
		{"negative duration", func(r *CaptureRequest) { r.Limits.Duration = -time.Second },
			tunnel.CodeBadRequest, "duration limit is negative"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.change(&r)
			err := r.Normalize()
			var re *tunnel.RejectError
			if !errors.As(err, &re) {
				t.Fatalf("Normalize() = %v, want a *tunnel.RejectError", err)
			}
			if re.Code != tt.code || re.Message != tt.msg {
				t.Errorf("Normalize() = %s: %q, want %s: %q", re.Code, re.Message, tt.code, tt.msg)
			}
			if err.Error() != tt.msg {
				t.Errorf("Error() = %q, want the message alone", err.Error())
			}

			// The same request through the decoder gets the same answer.
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := DecodeCaptureRequest(b); !errors.As(err, &re) || re.Code != tt.code || re.Message != tt.msg {
				t.Errorf("DecodeCaptureRequest() = %v, want %s: %q", err, tt.code, tt.msg)
			}
		})
	}
}

func TestNormalizeAccepts(t *testing.T) {
	tests := []struct {
		name   string
		change func(r *CaptureRequest)
		check  func(t *testing.T, r CaptureRequest)
	}{
		{"snaplen 0 becomes the default", func(r *CaptureRequest) { r.Snaplen = 0 }, func(t *testing.T, r CaptureRequest) {
			if r.Snaplen != 65535 {
				t.Errorf("snaplen = %d, want 65535", r.Snaplen)
			}
		}},
		{"snaplen 1", func(r *CaptureRequest) { r.Snaplen = 1 }, nil},
		{"snaplen max", func(r *CaptureRequest) { r.Snaplen = MaxSnaplen }, nil},
		{"no interfaces means eth0", func(r *CaptureRequest) { r.Interfaces = nil }, func(t *testing.T, r CaptureRequest) {
			if !reflect.DeepEqual(r.Interfaces, []string{"eth0"}) {
				t.Errorf("interfaces = %q, want [eth0]", r.Interfaces)
			}
		}},
		{"host target", func(r *CaptureRequest) { r.Target = Target{Kind: TargetHost} }, nil},
		{"pid target", func(r *CaptureRequest) { r.Target = Target{Kind: TargetPID, PID: 1} }, nil},
		{"guid 64 chars", func(r *CaptureRequest) { r.Target.InstanceGUID = strings.Repeat("A", 64) }, nil},
		{"interface 15 chars", func(r *CaptureRequest) { r.Interfaces = []string{"abcdefghijklmno"} }, nil},
		{"interface punctuation", func(r *CaptureRequest) { r.Interfaces = []string{"any", "eth0.100", "veth_a-b:1@x"} }, nil},
		{"eight interfaces", func(r *CaptureRequest) {
			r.Interfaces = []string{"e1", "e2", "e3", "e4", "e5", "e6", "e7", "e8"}
		}, nil},
		{"empty filter", func(r *CaptureRequest) { r.Filter = "" }, nil},
		{"filter 5000 chars", func(r *CaptureRequest) { r.Filter = strings.Repeat("a", 5000) }, nil},
		{"filter with tab and newline", func(r *CaptureRequest) { r.Filter = "tcp\tport 80\nor udp" }, nil},
		{"limits", func(r *CaptureRequest) { r.Limits = Limits{Duration: time.Minute, Packets: 10, Bytes: 1 << 20} }, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := validRequest()
			tt.change(&r)
			if err := r.Normalize(); err != nil {
				t.Fatalf("Normalize() = %v, want nil", err)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			// Normalizing twice changes nothing.
			again := r
			again.Interfaces = append([]string(nil), r.Interfaces...)
			if err := again.Normalize(); err != nil || !reflect.DeepEqual(again, r) {
				t.Errorf("second Normalize() = %v, %+v; want nil, %+v", err, again, r)
			}
		})
	}
}

func TestDecodeCaptureRequest(t *testing.T) {
	valid := `{"version":1,"target":{"kind":"host"},"interfaces":["lo"],"filter":"udp","snaplen":0,"limits":{"packets":10}}`
	r, err := DecodeCaptureRequest([]byte(valid))
	if err != nil {
		t.Fatalf("DecodeCaptureRequest(valid) = %v", err)
	}
	want := CaptureRequest{Version: 1, Target: Target{Kind: TargetHost}, Interfaces: []string{"lo"}, Filter: "udp", Snaplen: 65535, Limits: Limits{Packets: 10}}
	if !reflect.DeepEqual(r, want) {
		t.Errorf("DecodeCaptureRequest(valid) = %+v, want %+v", r, want)
	}

	big := `{"version":1,"target":{"kind":"host"},"filter":"` + strings.Repeat(" ", MaxRequestSize) + `"}`
	tests := []struct {
		name    string
		payload string
		msg     string
	}{
		{"empty", ``, "capture request is not valid JSON: EOF"},
		{"garbage", "\x00\xffgarbage", "capture request is not valid JSON: invalid character '\\x00' looking for beginning of value"},
		{"not an object", `[1,2]`, "capture request is not valid JSON: json: cannot unmarshal array into Go value of type agentproto.CaptureRequest"},
		{"truncated", `{"version":1,"target":{"kind":"host"}`, "capture request is not valid JSON: unexpected EOF"},
		{"unknown field", `{"version":1,"target":{"kind":"host"},"command":"rm -rf /"}`, `capture request is not valid JSON: json: unknown field "command"`},
		{"unknown nested field", `{"version":1,"target":{"kind":"host","netns":"/proc/1/ns/net"}}`, `capture request is not valid JSON: json: unknown field "netns"`},
		{"wrong type", `{"version":"1","target":{"kind":"host"}}`, "capture request is not valid JSON: json: cannot unmarshal string into Go struct field CaptureRequest.version of type int"},
		{"trailing object", `{"version":1,"target":{"kind":"host"}} {}`, "capture request has trailing data"},
		{"trailing garbage", `{"version":1,"target":{"kind":"host"}}x`, "capture request has trailing data"},
		{"trailing bracket", `{"version":1,"target":{"kind":"host"}}]`, "capture request has trailing data"},
		{"trailing brace", `{"version":1,"target":{"kind":"host"}}}`, "capture request has trailing data"},
		{"oversize", big, fmt.Sprintf("capture request is %d bytes, at most 16384 are allowed", len(big))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := DecodeCaptureRequest([]byte(tt.payload))
			var re *tunnel.RejectError
			if !errors.As(err, &re) {
				t.Fatalf("DecodeCaptureRequest() = %+v, %v; want a *tunnel.RejectError", r, err)
			}
			if re.Code != tunnel.CodeBadRequest || re.Message != tt.msg {
				t.Errorf("DecodeCaptureRequest() = %s: %q, want %s: %q", re.Code, re.Message, tunnel.CodeBadRequest, tt.msg)
			}
			if !reflect.DeepEqual(r, CaptureRequest{}) {
				t.Errorf("a rejected request came back as %+v, want the zero value", r)
			}
		})
	}

	t.Run("trailing whitespace", func(t *testing.T) {
		if _, err := DecodeCaptureRequest([]byte(valid + " \n\t")); err != nil {
			t.Errorf("DecodeCaptureRequest(valid + whitespace) = %v, want nil", err)
		}
	})
	t.Run("exactly the size limit", func(t *testing.T) {
		pad := MaxRequestSize - len(valid)
		b := []byte(valid + strings.Repeat(" ", pad))
		if len(b) != MaxRequestSize {
			t.Fatalf("test payload is %d bytes", len(b))
		}
		if _, err := DecodeCaptureRequest(b); err != nil {
			t.Errorf("DecodeCaptureRequest(%d bytes) = %v, want nil", len(b), err)
		}
	})
}

// TestMarshalDecodeRoundTrip: whatever Normalize accepts, Marshal encodes
// into a payload the other side's decoder accepts unchanged, even filters
// made of the characters JSON encoders like to escape.
func TestMarshalDecodeRoundTrip(t *testing.T) {
	filters := map[string]string{
		"plain":           "tcp port 443 and host 10.0.0.1",
		"ampersands":      strings.Repeat("&", MaxFilterLen),
		"angle brackets":  strings.Repeat("<>", MaxFilterLen/2),
		"quotes":          strings.Repeat(`"\`, MaxFilterLen/2),
		"line separators": strings.Repeat("\u2028", MaxFilterLen/3),
		"non-ASCII":       strings.Repeat("é", MaxFilterLen/2),
	}
	for name, f := range filters {
		t.Run(name, func(t *testing.T) {
			r := CaptureRequest{
				Version:    ProtocolVersion,
				Target:     Target{Kind: TargetCFInstance, InstanceGUID: strings.Repeat("a", 64)},
				Interfaces: []string{"abcdefghijklmn1", "abcdefghijklmn2", "abcdefghijklmn3", "abcdefghijklmn4", "abcdefghijklmn5", "abcdefghijklmn6", "abcdefghijklmn7", "abcdefghijklmn8"},
				Filter:     f,
				Snaplen:    MaxSnaplen,
				Limits:     Limits{Duration: 1<<63 - 1, Packets: 1<<64 - 1, Bytes: 1<<64 - 1},
			}
			if err := r.Normalize(); err != nil {
				t.Fatalf("Normalize() = %v", err)
			}
			b, err := r.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeCaptureRequest(b)
			if err != nil {
				t.Fatalf("DecodeCaptureRequest(Marshal()) = %v (payload %d bytes)", err, len(b))
			}
			if !reflect.DeepEqual(got, r) {
				t.Errorf("round trip = %+v, want %+v", got, r)
			}
		})
	}
}

func TestTargetString(t *testing.T) {
	tests := map[Target]string{
		{Kind: TargetHost}:                             "host",
		{Kind: TargetPID, PID: 42}:                     "pid 42",
		{Kind: TargetCFInstance, InstanceGUID: "abc"}:  "instance abc",
		{Kind: "something-else", InstanceGUID: "nope"}: "something-else",
	}
	for tg, want := range tests {
		if got := tg.String(); got != want {
			t.Errorf("%#v.String() = %q, want %q", tg, got, want)
		}
	}
}

func FuzzDecodeCaptureRequest(f *testing.F) {
	seeds := []string{
		``,
		`{}`,
		`null`,
		`{"version":1,"target":{"kind":"host"}}`,
		`{"version":1,"target":{"kind":"host"},"interfaces":["lo","any"],"filter":"udp port 53","snaplen":96}`,
		`{"version":1,"target":{"kind":"pid","pid":1},"interfaces":["eth0"],"limits":{"duration":1000000000,"packets":5,"bytes":100}}`,
		`{"version":1,"target":{"kind":"cf-instance","instance_guid":"6f1c2a3e-0000-4a5b-8c9d-000000000001"},"filter":"tcp[13] & 2 != 0 and len < 100"}`,
		`{"version":1,"target":{"kind":"host"},"filter":"\u2028\u0026\u003c\"\\"}`,
		`{"version":2,"target":{"kind":"host"}}`,
		`{"version":1,"target":{"kind":"pid","pid":-1}}`,
		`{"version":1,"target":{"kind":"host"},"interfaces":["a/b"]}`,
		`{"version":1,"target":{"kind":"host"},"snaplen":1000000}`,
		`{"version":1,"target":{"kind":"host"},"limits":{"duration":-1}}`,
		`{"version":1,"target":{"kind":"host"}}]`,
		`{"version":1,"target":{"kind":"host"},"x":1}`,
		`{"VERSION":1,"Target":{"KIND":"host"}}`,
		"\x00\xff\xfe",
	}
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeCaptureRequest(b)
		if err != nil {
			var re *tunnel.RejectError
			if !errors.As(err, &re) || !rejectCode.MatchString(re.Code) || re.Message == "" {
				t.Fatalf("DecodeCaptureRequest error %#v is not a *tunnel.RejectError with a code and message", err)
			}
			if !reflect.DeepEqual(r, CaptureRequest{}) {
				t.Fatalf("rejected request came back as %+v", r)
			}
			return
		}
		// Accepted: it validates again, unchanged.
		again := r
		again.Interfaces = append([]string(nil), r.Interfaces...)
		if err := again.Normalize(); err != nil {
			t.Fatalf("accepted request %+v fails Normalize: %v", r, err)
		}
		if !reflect.DeepEqual(again, r) {
			t.Fatalf("Normalize changed an accepted request: %+v → %+v", r, again)
		}
		if r.Snaplen < 1 || r.Snaplen > MaxSnaplen || len(r.Interfaces) == 0 || len(r.Interfaces) > MaxInterfaces || len(r.Filter) > MaxFilterLen {
			t.Fatalf("accepted request breaks a limit: %+v", r)
		}
		// And survives the trip to the next hop.
		enc, err := r.Marshal()
		if err != nil {
			t.Fatalf("Marshal(%+v) = %v", r, err)
		}
		back, err := DecodeCaptureRequest(enc)
		if err != nil {
			t.Fatalf("DecodeCaptureRequest(Marshal(%+v)) = %v", r, err)
		}
		if !reflect.DeepEqual(back, r) {
			t.Fatalf("round trip changed the request: %+v → %+v", r, back)
		}
	})
}
