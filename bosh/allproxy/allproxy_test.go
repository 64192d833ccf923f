package allproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"code.cloudfoundry.org/pcap/bosh/allproxy"
)

func newKey(t *testing.T) (ssh.Signer, []byte) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return s, pem.EncodeToMemory(block)
}

func writeFile(t *testing.T, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestParse: each bad value is one clear error before any connection,
// and none repeats the proxy's password.
func TestParse(t *testing.T) {
	_, keyPEM := newKey(t)
	key := writeFile(t, "key", keyPEM)
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("pw"))
	if err != nil {
		t.Fatal(err)
	}
	locked := writeFile(t, "locked", pem.EncodeToMemory(block))
	notKey := writeFile(t, "notkey", []byte("hello"))
	noFile := filepath.Join(t.TempDir(), "missing")
	for _, tc := range []struct {
		value, via, err string
	}{
		{value: "", via: "direct"},
		{value: "socks5://127.0.0.1:1080", via: "SOCKS5 proxy 127.0.0.1:1080"},
		{value: "socks5://proxy.example", via: "SOCKS5 proxy proxy.example:1080"},
		{value: "socks5h://u:s3cret@[::1]:9", via: "SOCKS5 proxy [::1]:9"},
		{value: "ssh+socks5://ops@10.0.0.5:22?private-key=" + key, via: "jumpbox ops@10.0.0.5:22"},
		{value: "ssh+socks5://10.0.0.5:2222?private-key=" + key, via: "jumpbox jumpbox@10.0.0.5:2222"},
		{value: "http://proxy:3128", err: `BOSH_ALL_PROXY: unsupported scheme "http"; use socks5:// or ssh+socks5://`},
		{value: "ssh+http://u@h:22?private-key=" + key, err: `BOSH_ALL_PROXY: unsupported scheme "ssh+http"; use socks5:// or ssh+socks5://`},
		{value: "127.0.0.1:1080", err: "BOSH_ALL_PROXY: not a URL; use socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE"},
		{value: "socks5://u:s3cret@h:x", err: "BOSH_ALL_PROXY: not a URL (socks5://…); use socks5://HOST:PORT or ssh+socks5://USER@HOST:PORT?private-key=FILE"},
		{value: "socks5://:1080", err: "BOSH_ALL_PROXY: socks5:// names no host"},
		{value: "socks5://h:1080/x", err: "BOSH_ALL_PROXY: socks5:// takes HOST:PORT only, no path or query"},
		{value: "ssh+socks5://u@h?private-key=" + key, err: "BOSH_ALL_PROXY: ssh+socks5:// needs the jumpbox's port: ssh+socks5://USER@h:22?private-key=FILE"},
		{value: "ssh+socks5://u@h:22", err: "BOSH_ALL_PROXY: ssh+socks5:// needs ?private-key=FILE (the jumpbox's private key)"},
		{value: "ssh+socks5://u:s3cret@h:22?private-key=" + key, err: "BOSH_ALL_PROXY: ssh+socks5:// logs in with a private key, not a password"},
		{value: "ssh+socks5://u@h:22?private-key=" + noFile, err: "BOSH_ALL_PROXY: read the private key: open " + noFile + ": no such file or directory"},
		{value: "ssh+socks5://u@h:22?private-key=" + locked, err: "BOSH_ALL_PROXY: the private key " + locked + " is protected by a passphrase; give an unencrypted key, as the bosh CLI needs"},
		{value: "ssh+socks5://u@h:22?private-key=" + notKey, err: "BOSH_ALL_PROXY: the private key " + notKey + ": ssh: no key found"},
	} {
		t.Run(tc.value, func(t *testing.T) {
			d, err := allproxy.Parse(tc.value, allproxy.Options{KnownHosts: filepath.Join(t.TempDir(), "none")})
			if tc.err != "" {
				if err == nil || err.Error() != tc.err || !errors.Is(err, allproxy.ErrBadProxy) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer d.Close()
			if d.String() != tc.via {
				t.Errorf("String() = %q, want %q", d.String(), tc.via)
			}
			if strings.Contains(d.String(), "s3cret") {
				t.Errorf("String() shows the password: %q", d.String())
			}
		})
	}
}

// jumpboxServer is an SSH server on 127.0.0.1:0 that takes one client key
// and forwards direct-tcpip channels, as a jumpbox's sshd does. It
// returns the address and a count of forwarded channels.
func jumpboxServer(t *testing.T, hostKey ssh.Signer, client ssh.PublicKey) (string, chan string) {
	t.Helper()
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(c ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if c.User() == "jumpbox" && string(k.Marshal()) == string(client.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("no")
	}}
	cfg.AddHostKey(hostKey)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	forwarded := make(chan string, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
				if err != nil {
					return
				}
				defer sc.Close()
				go ssh.DiscardRequests(reqs)
				for nc := range chans {
					if nc.ChannelType() != "direct-tcpip" {
						nc.Reject(ssh.UnknownChannelType, "no")
						continue
					}
					// host string, port uint32, origin string, origin port uint32
					b := nc.ExtraData()
					n := binary.BigEndian.Uint32(b)
					host := string(b[4 : 4+n])
					port := binary.BigEndian.Uint32(b[4+n:])
					addr := net.JoinHostPort(host, strconv.Itoa(int(port)))
					up, err := net.Dial("tcp", addr)
					if err != nil {
						nc.Reject(ssh.ConnectionFailed, err.Error())
						continue
					}
					ch, creqs, err := nc.Accept()
					if err != nil {
						up.Close()
						continue
					}
					forwarded <- addr
					go ssh.DiscardRequests(creqs)
					go func() { io.Copy(ch, up); ch.CloseWrite() }()
					go func() { io.Copy(up, ch); up.Close() }()
				}
			}()
		}
	}()
	return ln.Addr().String(), forwarded
}

func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(c, c); c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// TestJumpbox: connections go through one SSH connection to the jumpbox,
// logged in to with the key file; a jumpbox whose key differs from the
// one known_hosts records is refused, one not listed is accepted.
func TestJumpbox(t *testing.T) {
	hostKey, _ := newKey(t)
	clientKey, clientPEM := newKey(t)
	addr, forwarded := jumpboxServer(t, hostKey, clientKey.PublicKey())
	echo := echoServer(t)
	keyFile := writeFile(t, "key", clientPEM)
	value := "ssh+socks5://" + addr + "?private-key=" + keyFile
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	roundTrip := func(t *testing.T, d *allproxy.Dialer) error {
		t.Helper()
		c, err := d.DialContext(ctx, "tcp", echo)
		if err != nil {
			return err
		}
		defer c.Close()
		if _, err := c.Write([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 4)
		if _, err := io.ReadFull(c, b); err != nil || string(b) != "ping" {
			t.Fatalf("echo %q, %v", b, err)
		}
		return nil
	}

	t.Run("not in known_hosts", func(t *testing.T) {
		d, err := allproxy.Parse(value, allproxy.Options{KnownHosts: filepath.Join(t.TempDir(), "none")})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		for range 2 {
			if err := roundTrip(t, d); err != nil {
				t.Fatal(err)
			}
			if got := <-forwarded; got != echo {
				t.Errorf("forwarded to %s, want %s", got, echo)
			}
		}
	})
	t.Run("recorded key", func(t *testing.T) {
		kh := writeFile(t, "known_hosts", []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, hostKey.PublicKey())+"\n"))
		d, err := allproxy.Parse(value, allproxy.Options{KnownHosts: kh})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		if err := roundTrip(t, d); err != nil {
			t.Fatal(err)
		}
		<-forwarded
	})
	t.Run("other key recorded", func(t *testing.T) {
		other, _ := newKey(t)
		kh := writeFile(t, "known_hosts", []byte(knownhosts.Line([]string{knownhosts.Normalize(addr)}, other.PublicKey())+"\n"))
		d, err := allproxy.Parse(value, allproxy.Options{KnownHosts: kh})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = roundTrip(t, d)
		if err == nil || !strings.Contains(err.Error(), "is not the one "+kh+" records for it") {
			t.Fatalf("err = %v, want a host key mismatch", err)
		}
	})
	t.Run("key the jumpbox does not take", func(t *testing.T) {
		_, otherPEM := newKey(t)
		d, err := allproxy.Parse("ssh+socks5://"+addr+"?private-key="+writeFile(t, "other", otherPEM), allproxy.Options{KnownHosts: filepath.Join(t.TempDir(), "none")})
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		err = roundTrip(t, d)
		if err == nil || !strings.Contains(err.Error(), "through jumpbox jumpbox@"+addr+": log in as jumpbox: ssh: handshake failed: ssh: unable to authenticate") {
			t.Fatalf("err = %v", err)
		}
	})
}

// TestSOCKS5NoProxy: with socks5://, NO_PROXY names what is dialled
// directly, as in the bosh CLI; the rest goes to the proxy (here a closed
// port, so it fails, saying through what).
func TestSOCKS5NoProxy(t *testing.T) {
	echo := echoServer(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	d, err := allproxy.Parse("socks5://"+closed, allproxy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.DialContext(ctx, "tcp", echo); err == nil {
		c.Close()
		t.Fatal("dialled without the proxy")
	} else if !strings.HasPrefix(err.Error(), "through SOCKS5 proxy "+closed+": ") {
		t.Errorf("err = %v", err)
	}

	d, err = allproxy.Parse("socks5://"+closed, allproxy.Options{NoProxy: "example.com,127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := d.DialContext(ctx, "tcp", echo)
	if err != nil {
		t.Fatalf("NO_PROXY host: %v", err)
	}
	c.Close()
}
