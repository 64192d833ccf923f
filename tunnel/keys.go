package tunnel

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
)

// ErrHostKeyMismatch is wrapped by the error a pinned host-key check returns
// when the server presents a key that is not pinned.
var ErrHostKeyMismatch = errors.New("host key does not match the pinned key")

// ErrUnauthorizedKey is returned by [KeySet.Check] for a key not in the set.
var ErrUnauthorizedKey = errors.New("public key is not authorized")

// LoadSigner reads a private key (OpenSSH or PEM) from a file.
func LoadSigner(path string) (ssh.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tunnel: read private key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("tunnel: parse private key %s: %w", path, err)
	}
	return s, nil
}

// GenerateKey makes a new ed25519 key and returns the signer and the private
// key in OpenSSH PEM form (for writing key files in tests and demos).
func GenerateKey() (ssh.Signer, []byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: generate key: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: encode key: %w", err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, nil, fmt.Errorf("tunnel: signer: %w", err)
	}
	return s, pem.EncodeToMemory(block), nil
}

// ParseAuthorizedKeys parses keys in authorized_keys format (one per line,
// comments and blank lines allowed).
func ParseAuthorizedKeys(b []byte) ([]ssh.PublicKey, error) {
	var keys []ssh.PublicKey
	for n, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(line)
		if err != nil {
			return nil, fmt.Errorf("tunnel: parse authorized key on line %d: %w", n+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// LoadAuthorizedKeys reads an authorized_keys file.
func LoadAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tunnel: read authorized keys: %w", err)
	}
	return ParseAuthorizedKeys(b)
}

// Fingerprint is the OpenSSH SHA256 fingerprint of a key ("SHA256:…").
func Fingerprint(k ssh.PublicKey) string { return ssh.FingerprintSHA256(k) }

// KeySet is a set of public keys, compared by their wire encoding.
type KeySet map[string]ssh.PublicKey

// NewKeySet builds a set of keys.
func NewKeySet(keys ...ssh.PublicKey) KeySet {
	s := make(KeySet, len(keys))
	for _, k := range keys {
		s[string(k.Marshal())] = k
	}
	return s
}

// Check returns nil when k is in the set, else an error wrapping
// [ErrUnauthorizedKey].
func (s KeySet) Check(k ssh.PublicKey) error {
	if _, ok := s[string(k.Marshal())]; ok {
		return nil
	}
	return fmt.Errorf("tunnel: %s: %w", Fingerprint(k), ErrUnauthorizedKey)
}

// PinnedHostKey returns a host-key callback that accepts only the given
// keys, or keys whose SHA256 fingerprint is listed in fingerprints.
func PinnedHostKey(keys []ssh.PublicKey, fingerprints ...string) ssh.HostKeyCallback {
	set := NewKeySet(keys...)
	fps := make(map[string]bool, len(fingerprints))
	for _, f := range fingerprints {
		fps[strings.TrimSpace(f)] = true
	}
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		if set.Check(key) == nil || fps[Fingerprint(key)] {
			return nil
		}
		return fmt.Errorf("tunnel: host %s offered %s: %w", host, Fingerprint(key), ErrHostKeyMismatch)
	}
}
