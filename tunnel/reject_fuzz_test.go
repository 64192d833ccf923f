package tunnel

import (
	"errors"
	"regexp"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// FuzzParseRejection feeds arbitrary open-failure messages, as an agent
// (or anything on its address) could send them, to ParseRejection. It
// never panics, always returns a *RejectError, keeps a well-formed
// "code: message" apart, and passes anything else through whole as
// internal. A rejection made here survives the round trip.
func FuzzParseRejection(f *testing.F) {
	for _, s := range []string{
		"bad-filter: filter does not compile on eth0: syntax error",
		"limit-reached: agent is running its maximum of 4 captures",
		"internal: ", ": no code", "no separator", "", "x: one letter code",
		"Bad-Code: capital", "a-very-long-code-that-goes-on-and-on-and-on-and-on: long",
		"bad-request: \x00\xff\x1b[2J", "unknown channel type \"pcap-capture\"",
	} {
		f.Add(s)
	}
	code := regexp.MustCompile(`^[a-z][a-z-]{1,40}$`)
	f.Fuzz(func(t *testing.T, msg string) {
		err := ParseRejection(&ssh.OpenChannelError{Reason: ssh.Prohibited, Message: msg})
		var re *RejectError
		if !errors.As(err, &re) {
			t.Fatalf("ParseRejection(%q) = %T %v, want a *RejectError", msg, err, err)
		}
		if c, m, ok := strings.Cut(msg, ": "); ok && code.MatchString(c) {
			if re.Code != c || re.Message != m {
				t.Fatalf("ParseRejection(%q) = %q, %q; want %q, %q", msg, re.Code, re.Message, c, m)
			}
		} else if re.Code != CodeInternal || re.Message != msg {
			t.Fatalf("ParseRejection(%q) = %q, %q; want internal and the whole message", msg, re.Code, re.Message)
		}
		// What this side sends parses back to itself.
		if code.MatchString(re.Code) {
			back := ParseRejection(&ssh.OpenChannelError{Message: re.wire()})
			var re2 *RejectError
			if !errors.As(back, &re2) || *re2 != *re {
				t.Fatalf("round trip of %+v gave %+v", re, back)
			}
		}
		// Errors that are not open failures come back unchanged.
		other := errors.New(msg)
		if got := ParseRejection(other); got != other {
			t.Fatalf("ParseRejection changed a plain error: %v", got)
		}
	})
}
