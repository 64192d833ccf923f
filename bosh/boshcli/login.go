package boshcli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// DefaultCodeClient is the UAA client of the director's UAA that one-time
// codes are issued for (manifests/ops-files/director-uaa-pcap-client.yml);
// pcap-api exchanges them with its secret (bosh.code_client_id).
const DefaultCodeClient = "pcap_ssh"

// pinHint is how pcap-bosh takes pcap-api's host key fingerprint.
const pinHint = "--pcap-api-host-key-fingerprint SHA256:… (or PCAP_API_HOST_KEY_FINGERPRINT)"

// loginFlags are the flags of the login to pcap-api, common to all
// commands.
func loginFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "pcap-api-host-key-fingerprint", EnvVars: []string{"PCAP_API_HOST_KEY_FINGERPRINT"}, Usage: "pin pcap-api's host key (`SHA256:…`); else a key in ~/.bosh/pcap_known_hosts"},
		&cli.BoolFlag{Name: "trust-on-first-use", Usage: "accept and record pcap-api's host key if none is pinned or recorded yet (prints its fingerprint)"},
		&cli.StringFlag{Name: "code-client", EnvVars: []string{"PCAP_BOSH_CODE_CLIENT"}, Value: DefaultCodeClient, Usage: "`CLIENT` of the director's UAA that one-time codes are issued for"},
	}
}

// oneTimeCode asks the director's UAA for a one-time code for the code
// client, with the user's token, as `cf ssh-code` does with the CF UAA.
// pcap-api (any instance) exchanges it; UAA keeps it single use.
func (s *session) oneTimeCode(ctx context.Context) (string, error) {
	if s.env.client != "" {
		return "", fmt.Errorf("one-time codes are for users: UAA issues none to the client %s (BOSH_CLIENT); run bosh log-in as a user", s.env.client)
	}
	info, err := s.env.Director.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("find the director's UAA: %w", err)
	}
	base := info.UserAuthentication.Options.URL
	if base == "" {
		return "", errors.New("the director names no UAA")
	}
	token, err := s.env.Token(ctx)
	if err != nil {
		return "", fmt.Errorf("get a token for %s: %w", s.env.URL, err)
	}
	u := &uaa.Client{URL: base, HTTP: s.env.HTTP}
	code, err := u.AuthorizationCode(ctx, s.codeClient, token)
	switch {
	case errors.Is(err, uaa.ErrInvalidToken):
		if c, ok := readClaims(token); ok && c.UserName == "" {
			return "", fmt.Errorf("one-time codes are for users, and the token is client %s's: run bosh log-in as a user, or set BOSH_CLIENT and BOSH_CLIENT_SECRET", c.ClientID)
		}
		return "", fmt.Errorf("the director's UAA issued no one-time code: %s", s.env.Diagnose(ctx, token))
	case err != nil:
		return "", fmt.Errorf("%w (is the director's UAA client %s set up, see manifests/ops-files/director-uaa-pcap-client.yml, or --code-client?)", err, s.codeClient)
	}
	return code, nil
}

// hostKeys pins pcap-api's host key from the flag or environment, else
// accepts keys recorded in ~/.bosh/pcap_known_hosts (written only with
// --trust-on-first-use).
func hostKeys(c *cli.Context, stderr io.Writer) (*frontdoor.HostKeys, error) {
	home, err := os.UserHomeDir()
	if err != nil {
		return nil, err
	}
	return frontdoor.NewHostKeys(frontdoor.HostKeyOptions{
		Fingerprint:     common(c, "pcap-api-host-key-fingerprint"),
		KnownHosts:      filepath.Join(home, ".bosh", "pcap_known_hosts"),
		TrustOnFirstUse: anyBool(c, "trust-on-first-use"),
		Stderr:          stderr,
		PinHint:         pinHint,
	})
}

// anyBool reads a bool flag set on the app or the command.
func anyBool(c *cli.Context, name string) bool {
	for _, x := range c.Lineage() {
		if x.Bool(name) {
			return true
		}
	}
	return false
}

// auth is the SSH login to pcap-api: a one-time code, asked for only when
// pcap-api asks for a password, that is once its host key passed the
// check. A client-credentials login (BOSH_CLIENT), for which UAA issues no
// codes, sends its own short-lived token instead, and only to a host whose
// key is pinned or recorded, not to one trusted on first use. Why no code could be had is kept for the error message.
func (s *session) auth(ctx context.Context) ssh.AuthMethod {
	return frontdoor.CodeAuth(func() (string, error) {
		if s.env.client != "" {
			if s.hostKeys.FirstUse() {
				s.codeErr = fmt.Errorf("the token of client %s is not sent to a pcap-api trusted on first use: pin its host key with %s", s.env.client, pinHint)
				return "", s.codeErr
			}
			return s.token, nil
		}
		c, err := s.oneTimeCode(ctx)
		s.codeErr = err
		return c, err
	})
}
