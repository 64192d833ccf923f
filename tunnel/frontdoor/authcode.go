package frontdoor

import (
	"golang.org/x/crypto/ssh"
)

// CodeAuth is an SSH password authentication whose password is a one-time
// code fetched by get when the server asks for it, that is after the
// host key check passed: a host that fails it never causes a code to be
// minted, let alone receives one.
func CodeAuth(get func() (string, error)) ssh.AuthMethod {
	return ssh.PasswordCallback(get)
}
