package tunnel

import (
	"errors"
	"regexp"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Rejection codes: machine-readable reasons a capture is refused or ends.
const (
	CodeBadRequest         = "bad-request"
	CodeUnsupportedVersion = "unsupported-version"
	CodeBadFilter          = "bad-filter"
	CodeFilterTooLong      = "filter-too-long"
	CodeBadSnaplen         = "bad-snaplen"
	CodeBadInterface       = "bad-interface"
	CodeUnknownInterface   = "unknown-interface"
	CodeTargetNotFound     = "target-not-found"
	CodeLimitReached       = "limit-reached"
	CodeNotAllowed         = "not-allowed"
	CodeInternal           = "internal"
)

// RejectError is a refusal with a machine-readable Code and a Message the
// user reads verbatim.
type RejectError struct {
	Code    string
	Message string
}

// Reject returns a *RejectError.
func Reject(code, message string) *RejectError {
	return &RejectError{Code: code, Message: message}
}

func (e *RejectError) Error() string { return e.Message }

// wire is the text carried in an ssh.OpenChannelError message.
func (e *RejectError) wire() string { return e.Code + ": " + e.Message }

var codeRe = regexp.MustCompile(`^[a-z][a-z-]{1,40}$`)

// ParseRejection turns an error from opening a capture channel into a
// *RejectError when it carries one; other errors come back unchanged.
func ParseRejection(err error) error {
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) {
		return err
	}
	code, msg, ok := strings.Cut(oce.Message, ": ")
	if !ok || !codeRe.MatchString(code) {
		return Reject(CodeInternal, oce.Message)
	}
	return Reject(code, msg)
}

// AsReject returns err as a *RejectError, wrapping foreign errors with
// CodeInternal.
func AsReject(err error) *RejectError {
	var re *RejectError
	if errors.As(err, &re) {
		return re
	}
	return Reject(CodeInternal, err.Error())
}

func rejectionReason(code string) ssh.RejectionReason {
	switch code {
	case CodeLimitReached:
		return ssh.ResourceShortage
	case CodeNotAllowed:
		return ssh.Prohibited
	case CodeInternal, CodeTargetNotFound, CodeUnknownInterface:
		return ssh.ConnectionFailed
	default:
		return ssh.Prohibited
	}
}

// RejectChannel refuses a new channel with err's code and message.
func RejectChannel(nc ssh.NewChannel, err error) error {
	re := AsReject(err)
	return nc.Reject(rejectionReason(re.Code), re.wire())
}
