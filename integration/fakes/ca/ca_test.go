package ca_test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
)

func TestIssuedCertificateVerifiesAgainstCA(t *testing.T) {
	a, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(a.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatal("CertPEM is not a PEM certificate")
	}
	conf, err := a.ServerConfig("fake.example.com")
	if err != nil {
		t.Fatal(err)
	}
	leaf := conf.Certificates[0].Leaf
	for _, host := range []string{"127.0.0.1", "localhost", "fake.example.com", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: a.Pool(), DNSName: host}); err != nil {
			t.Errorf("%s: %v", host, err)
		}
	}
	other, err := ca.New()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Pool()}); err == nil {
		t.Error("leaf verified against another CA")
	}

	// A real handshake on loopback.
	ln, err := tls.Listen("tcp", "127.0.0.1:0", conf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), a.ClientConfig())
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Errorf("server handshake: %v", err)
	}
}
