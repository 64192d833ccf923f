package agentproto

import (
	"bytes"
	"code.cloudfoundry.org/pcap/tunnel"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"time"
)

// ChannelCapture is the SSH channel type of a capture.
const ChannelCapture = "pcap-capture"

// ProtocolVersion is the version of the capture protocol spoken here.
const ProtocolVersion = 1

// Request limits, shared by every hop.
const (
	MaxFilterLen      = 5000
	MaxSnaplen        = 262144
	DefaultSnaplen    = 65535
	MaxInterfaces     = 8
	MaxRequestSize    = 16 << 10
	DefaultInterface  = "eth0"
	maxInterfaceChars = 15 // IFNAMSIZ minus the NUL
)

// Target kinds.
const (
	TargetHost       = "host"        // the agent's own network namespace
	TargetPID        = "pid"         // the network namespace of a process
	TargetCFInstance = "cf-instance" // a CF app instance, by its instance GUID
)

// Target says whose network namespace to capture in.
type Target struct {
	Kind         string `json:"kind"`
	PID          int    `json:"pid,omitempty"`
	InstanceGUID string `json:"instance_guid,omitempty"`
}

// String describes the target for messages and logs.
func (t Target) String() string {
	switch t.Kind {
	case TargetPID:
		return fmt.Sprintf("pid %d", t.PID)
	case TargetCFInstance:
		return "instance " + t.InstanceGUID
	default:
		return t.Kind
	}
}

// Limits end a capture on their own; zero means no limit.
type Limits struct {
	Duration time.Duration `json:"duration,omitempty"`
	Packets  uint64        `json:"packets,omitempty"`
	Bytes    uint64        `json:"bytes,omitempty"`
}

// CaptureRequest is the payload of a [ChannelCapture] channel open.
type CaptureRequest struct {
	Version    int      `json:"version"`
	Target     Target   `json:"target"`
	Interfaces []string `json:"interfaces"`
	Filter     string   `json:"filter,omitempty"`
	Snaplen    int      `json:"snaplen,omitempty"`
	Limits     Limits   `json:"limits,omitempty"`
	// Watermarks asks the agent to follow its packets with watermark
	// blocks (see control_watermark.go), for a client that merges by
	// time. Other pcapng readers would show them as records of their own.
	Watermarks bool `json:"watermarks,omitempty"`
}

var (
	ifaceRe = regexp.MustCompile(`^[A-Za-z0-9_.:@-]+$`)
	guidRe  = regexp.MustCompile(`^[A-Za-z0-9-]{1,64}$`)
)

// ValidateInterface checks an interface name without looking it up.
func ValidateInterface(name string) error {
	switch {
	case name == "":
		return tunnel.Reject(tunnel.CodeBadInterface, "interface name is empty")
	case len(name) > maxInterfaceChars:
		return tunnel.Reject(tunnel.CodeBadInterface, fmt.Sprintf("interface name %q is longer than %d characters", name, maxInterfaceChars))
	case name == "." || name == ".." || !ifaceRe.MatchString(name):
		return tunnel.Reject(tunnel.CodeBadInterface, fmt.Sprintf("interface name %q is not valid (letters, digits and _.:@- only)", name))
	}
	return nil
}

// ValidateFilter checks what can be checked of a BPF filter without
// compiling it: its length and that it is printable text.
func ValidateFilter(f string) error {
	if len(f) > MaxFilterLen {
		return tunnel.Reject(tunnel.CodeFilterTooLong, fmt.Sprintf("filter is %d characters, at most %d are allowed", len(f), MaxFilterLen))
	}
	for _, r := range f {
		if r == 0 || r == '\uFFFD' || (r < 0x20 && r != '\t' && r != '\n') {
			return tunnel.Reject(tunnel.CodeBadFilter, "filter contains a control character or invalid UTF-8")
		}
	}
	return nil
}

// Normalize fills defaults (version aside) and validates the request. It
// returns a [*tunnel.RejectError] describing the first problem.
func (r *CaptureRequest) Normalize() error {
	if r.Version != ProtocolVersion {
		return tunnel.Reject(tunnel.CodeUnsupportedVersion, fmt.Sprintf("protocol version %d is not supported (this side speaks %d)", r.Version, ProtocolVersion))
	}
	switch r.Target.Kind {
	case TargetHost:
		if r.Target.PID != 0 || r.Target.InstanceGUID != "" {
			return tunnel.Reject(tunnel.CodeBadRequest, "host target takes no pid or instance guid")
		}
	case TargetPID:
		if r.Target.PID <= 0 || r.Target.InstanceGUID != "" {
			return tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("pid target needs a positive pid, got %d", r.Target.PID))
		}
	case TargetCFInstance:
		if !guidRe.MatchString(r.Target.InstanceGUID) || r.Target.PID != 0 {
			return tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("instance guid %q is not valid", r.Target.InstanceGUID))
		}
	default:
		return tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("unknown target kind %q", r.Target.Kind))
	}
	if len(r.Interfaces) == 0 {
		r.Interfaces = []string{DefaultInterface}
	}
	if len(r.Interfaces) > MaxInterfaces {
		return tunnel.Reject(tunnel.CodeBadInterface, fmt.Sprintf("%d interfaces asked for, at most %d are allowed", len(r.Interfaces), MaxInterfaces))
	}
	seen := make(map[string]bool, len(r.Interfaces))
	for _, name := range r.Interfaces {
		if err := ValidateInterface(name); err != nil {
			return err
		}
		if seen[name] {
			return tunnel.Reject(tunnel.CodeBadInterface, fmt.Sprintf("interface %q is listed twice", name))
		}
		seen[name] = true
	}
	if err := ValidateFilter(r.Filter); err != nil {
		return err
	}
	if r.Snaplen == 0 {
		r.Snaplen = DefaultSnaplen
	}
	if r.Snaplen < 1 || r.Snaplen > MaxSnaplen {
		return tunnel.Reject(tunnel.CodeBadSnaplen, fmt.Sprintf("snaplen %d is out of range 1..%d", r.Snaplen, MaxSnaplen))
	}
	if r.Limits.Duration < 0 {
		return tunnel.Reject(tunnel.CodeBadRequest, "duration limit is negative")
	}
	return nil
}

// Marshal encodes the request as a channel-open payload. HTML characters
// are not escaped, so a valid request always fits in [MaxRequestSize]
// (escaped, a filter of "&" or "<" grows sixfold).
func (r CaptureRequest) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, fmt.Errorf("agentproto: encode capture request: %w", err)
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// DecodeCaptureRequest decodes and validates an untrusted channel-open
// payload. Every error is a [*tunnel.RejectError].
func DecodeCaptureRequest(b []byte) (CaptureRequest, error) {
	var r CaptureRequest
	if len(b) > MaxRequestSize {
		return r, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("capture request is %d bytes, at most %d are allowed", len(b), MaxRequestSize))
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return CaptureRequest{}, tunnel.Reject(tunnel.CodeBadRequest, "capture request is not valid JSON: "+err.Error())
	}
	// Anything but white space after the object is trailing data (More
	// alone misses a stray "]" or "}").
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return CaptureRequest{}, tunnel.Reject(tunnel.CodeBadRequest, "capture request has trailing data")
	}
	if err := r.Normalize(); err != nil {
		return CaptureRequest{}, err
	}
	return r, nil
}
