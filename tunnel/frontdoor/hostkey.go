package frontdoor

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"code.cloudfoundry.org/pcap/tunnel"
)

// ErrHostKeyNotPinned is returned when pcap-api offers a host key that is
// neither pinned nor recorded, and trust on first use was not asked for.
var ErrHostKeyNotPinned = errors.New("pcap-api's host key is not pinned")

// HostKeyOptions say how a CLI checks pcap-api's host key. A credential
// (a one-time code) is only sent once the check passed: x/crypto/ssh runs
// the host key callback before user authentication.
type HostKeyOptions struct {
	// Fingerprint pins the key (SHA256:…), from a flag or the environment.
	// When set, KnownHosts is neither read nor written.
	Fingerprint string
	// KnownHosts records keys trusted on first use; keys already in it are
	// accepted.
	KnownHosts string
	// TrustOnFirstUse accepts (and, once logged in, records) an unknown
	// key, printing its fingerprint on Stderr.
	TrustOnFirstUse bool
	Stderr          io.Writer
	// PinHint names how the CLI takes a fingerprint, for the error, e.g.
	// "--pcap-api-host-key-fingerprint SHA256:… (or PCAP_API_HOST_KEY_FINGERPRINT)".
	PinHint string
}

// HostKeys checks pcap-api's host key. Use Callback in the SSH client
// config; Run calls Commit once pcap-api has accepted the login, so that a
// host that is trusted on first use but refuses the login is not recorded.
type HostKeys struct {
	o     HostKeyOptions
	check ssh.HostKeyCallback // known_hosts; nil when pinned

	mu      sync.Mutex
	pending string // known_hosts line to record on Commit
}

// NewHostKeys prepares the check.
func NewHostKeys(o HostKeyOptions) (*HostKeys, error) {
	h := &HostKeys{o: o}
	if o.Fingerprint != "" {
		if !strings.HasPrefix(o.Fingerprint, "SHA256:") {
			return nil, fmt.Errorf("host key fingerprint %q: want the SHA256:… form ssh-keygen -l prints", o.Fingerprint)
		}
		return h, nil
	}
	if o.KnownHosts == "" {
		return nil, errors.New("apiclient: no known hosts file")
	}
	if _, err := os.Stat(o.KnownHosts); errors.Is(err, os.ErrNotExist) {
		h.check = func(string, net.Addr, ssh.PublicKey) error {
			return &knownhosts.KeyError{} // nothing recorded yet
		}
		return h, nil
	}
	check, err := knownhosts.New(o.KnownHosts)
	if err != nil {
		return nil, fmt.Errorf("read known hosts: %w", err)
	}
	h.check = check
	return h, nil
}

// Callback is the ssh.HostKeyCallback.
func (h *HostKeys) Callback() ssh.HostKeyCallback {
	return func(host string, remote net.Addr, key ssh.PublicKey) error {
		fp := tunnel.Fingerprint(key)
		if h.o.Fingerprint != "" {
			if fp == strings.TrimSpace(h.o.Fingerprint) {
				return nil
			}
			return fmt.Errorf("pcap-api at %s offered host key %s, not the pinned %s: %w; nothing was sent to it", host, fp, h.o.Fingerprint, tunnel.ErrHostKeyMismatch)
		}
		err := h.check(host, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return fmt.Errorf("pcap-api at %s offered host key %s, but %s has another key for it: %w; nothing was sent to it", host, fp, h.o.KnownHosts, tunnel.ErrHostKeyMismatch)
		case errors.As(err, &ke) && h.o.TrustOnFirstUse:
			h.mu.Lock()
			h.pending = knownhosts.Line([]string{knownhosts.Normalize(host)}, key) + "\n"
			h.mu.Unlock()
			if h.o.Stderr != nil {
				fmt.Fprintf(h.o.Stderr, "pcap: trusting pcap-api %s on first use: host key %s\n", host, fp)
			}
			return nil
		case errors.As(err, &ke):
			return fmt.Errorf("pcap-api at %s offered host key %s: %w, so nothing was sent to it. "+
				"Ask your operator for pcap-api's host key fingerprint (or run `ssh-keyscan -p PORT HOST | ssh-keygen -lf -` on a network you trust) "+
				"and give it with %s; or accept this key once with --trust-on-first-use",
				host, fp, ErrHostKeyNotPinned, h.o.PinHint)
		default:
			return fmt.Errorf("check pcap-api's host key: %w", err)
		}
	}
}

// FirstUse reports whether the key was accepted only because trust on
// first use was asked for (and is not recorded yet).
func (h *HostKeys) FirstUse() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.pending != ""
}

// Commit records a key trusted on first use in the known hosts file.
func (h *HostKeys) Commit() error {
	h.mu.Lock()
	line := h.pending
	h.pending = ""
	h.mu.Unlock()
	if line == "" {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(h.o.KnownHosts), 0o700); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	f, err := os.OpenFile(h.o.KnownHosts, os.O_APPEND|os.O_WRONLY|os.O_CREATE|nofollow, 0o600)
	if err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(line); err != nil {
		return fmt.Errorf("record host key: %w", err)
	}
	return nil
}
