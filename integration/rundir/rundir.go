// Package rundir is the private run directory of the lab programs
// (pcap-bench's lab, pcap-demo): the SSH keys, authorized-keys lists and
// configuration files they give the real binaries. Every file is written
// with mode 0600.
package rundir

import (
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
)

// Dir is a run directory's path.
type Dir string

// Path is name inside d.
func (d Dir) Path(name string) string { return filepath.Join(string(d), name) }

// Write writes content to name in d and returns its path.
func (d Dir) Write(name, content string) (string, error) {
	p := d.Path(name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		return "", fmt.Errorf("rundir: %w", err)
	}
	return p, nil
}

// Key writes a new private key (PEM) to name and returns its signer and
// path.
func (d Dir) Key(name string) (ssh.Signer, string, error) {
	s, pemBytes, err := tunnel.GenerateKey()
	if err != nil {
		return nil, "", fmt.Errorf("rundir: %w", err)
	}
	p, err := d.Write(name, string(pemBytes))
	return s, p, err
}

// KeyPair writes a new private key to keyName and its public key, as a
// one-line authorized-keys list, to pubName (what an agent's
// authorized_keys_file, the API's agent host keys or sshd's
// AuthorizedKeysFile take). It returns the signer and both paths.
func (d Dir) KeyPair(keyName, pubName string) (signer ssh.Signer, keyFile, pubFile string, err error) {
	signer, keyFile, err = d.Key(keyName)
	if err != nil {
		return nil, "", "", err
	}
	pubFile, err = d.Write(pubName, string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err != nil {
		return nil, "", "", err
	}
	return signer, keyFile, pubFile, nil
}
