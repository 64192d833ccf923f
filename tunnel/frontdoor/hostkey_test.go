package frontdoor

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"code.cloudfoundry.org/pcap/tunnel"
)

func TestHostKeys(t *testing.T) {
	signer, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	key, fp := signer.PublicKey(), tunnel.Fingerprint(signer.PublicKey())
	other, _, err := tunnel.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 2222}
	const host = "127.0.0.1:2222"
	known := filepath.Join(t.TempDir(), "sub", "known_hosts")

	t.Run("pinned", func(t *testing.T) {
		h, err := NewHostKeys(HostKeyOptions{Fingerprint: fp, KnownHosts: known})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Callback()(host, addr, key); err != nil {
			t.Errorf("pinned key: %v", err)
		}
		if err := h.Callback()(host, addr, other.PublicKey()); !errors.Is(err, tunnel.ErrHostKeyMismatch) {
			t.Errorf("another key: %v, want ErrHostKeyMismatch", err)
		}
		if _, err := NewHostKeys(HostKeyOptions{Fingerprint: "aa:bb:cc"}); err == nil {
			t.Error("an MD5-style fingerprint was taken")
		}
	})

	t.Run("not pinned", func(t *testing.T) {
		h, err := NewHostKeys(HostKeyOptions{KnownHosts: known, PinHint: "--pin"})
		if err != nil {
			t.Fatal(err)
		}
		err = h.Callback()(host, addr, key)
		if !errors.Is(err, ErrHostKeyNotPinned) || !strings.Contains(err.Error(), fp) || !strings.Contains(err.Error(), "--pin") {
			t.Errorf("unknown key without TOFU: %v", err)
		}
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(known); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("known hosts written: %v", err)
		}
	})

	t.Run("trust on first use", func(t *testing.T) {
		var stderr bytes.Buffer
		h, err := NewHostKeys(HostKeyOptions{KnownHosts: known, TrustOnFirstUse: true, Stderr: &stderr})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.Callback()(host, addr, key); err != nil {
			t.Fatal(err)
		}
		if want := "pcap: trusting pcap-api " + host + " on first use: host key " + fp + "\n"; stderr.String() != want {
			t.Errorf("stderr %q, want %q", stderr.String(), want)
		}
		if _, err := os.Stat(known); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("known hosts written before the login was accepted: %v", err)
		}
		if err := h.Commit(); err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(known)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Fatalf("known hosts after Commit: %v, %v", fi, err)
		}
		// Recorded: accepted without the flag; another key is refused
		// even with it.
		for _, tofu := range []bool{false, true} {
			h, err := NewHostKeys(HostKeyOptions{KnownHosts: known, TrustOnFirstUse: tofu})
			if err != nil {
				t.Fatal(err)
			}
			if err := h.Callback()(host, addr, key); err != nil {
				t.Errorf("recorded key (tofu %v): %v", tofu, err)
			}
			if err := h.Callback()(host, addr, other.PublicKey()); !errors.Is(err, tunnel.ErrHostKeyMismatch) {
				t.Errorf("changed key (tofu %v): %v, want ErrHostKeyMismatch", tofu, err)
			}
		}
	})
}
