// Command fakecloud runs the fake UAA, Cloud Controller and BOSH director
// on loopback ports for demos and scripts. It prints "ready" on stdout once
// all three listen, writes their URLs and the CA certificate as JSON to
// -out, and runs until SIGINT or SIGTERM.
package main

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"code.cloudfoundry.org/pcap/integration/fakes/ca"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/fakes/director"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

//go:embed example-world.json
var exampleWorld []byte

// config is the -world file: one document for all three fakes.
type config struct {
	UAA struct {
		Users   []uaa.User   `json:"users"`
		Clients []uaa.Client `json:"clients,omitempty"`
	} `json:"uaa"`
	CC       cc.World `json:"cc"`
	Director struct {
		Name        string                `json:"name,omitempty"`
		UUID        string                `json:"uuid,omitempty"`
		Deployments []director.Deployment `json:"deployments"`
	} `json:"director"`
}

// endpoints is what -out receives.
type endpoints struct {
	UAAURL       string `json:"uaa_url"`
	CCURL        string `json:"cc_url"`
	DirectorURL  string `json:"director_url"`
	DirectorUUID string `json:"director_uuid"`
	CACert       string `json:"ca_cert"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "fakecloud:", err)
		os.Exit(1)
	}
}

func run() error {
	uaaAddr := flag.String("uaa-addr", "127.0.0.1:0", "UAA listen address (HTTPS)")
	ccAddr := flag.String("cc-addr", "127.0.0.1:0", "Cloud Controller listen address")
	ccTLS := flag.Bool("cc-tls", false, "serve the Cloud Controller over HTTPS too")
	directorAddr := flag.String("director-addr", "127.0.0.1:0", "BOSH director listen address (HTTPS)")
	worldFile := flag.String("world", "", "world JSON file (default: the built-in example)")
	outFile := flag.String("out", "", "write URLs and CA certificate as JSON to this file")
	caFile := flag.String("ca-out", "", "write the CA certificate PEM to this file")
	appSSH := flag.String("app-ssh-endpoint", "", "links.app_ssh host:port in the CC root")
	appSSHFingerprint := flag.String("app-ssh-fingerprint", "", "links.app_ssh host key fingerprint")
	flag.Parse()

	raw := exampleWorld
	if *worldFile != "" {
		b, err := os.ReadFile(*worldFile)
		if err != nil {
			return err
		}
		raw = b
	}
	var conf config
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&conf); err != nil {
		return fmt.Errorf("world: %w", err)
	}

	authority, err := ca.New()
	if err != nil {
		return err
	}
	tlsConf, err := authority.ServerConfig()
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: authority.ClientConfig()}}

	u, err := uaa.New(uaa.Options{Users: conf.UAA.Users, Clients: conf.UAA.Clients, TLS: tlsConf})
	if err != nil {
		return err
	}
	if err := u.Start(*uaaAddr); err != nil {
		return err
	}
	defer u.Close()

	ccOpts := cc.Options{
		World:                    conf.CC,
		Verifier:                 u.Verifier(client),
		UAAURL:                   u.URL(),
		AppSSHEndpoint:           *appSSH,
		AppSSHHostKeyFingerprint: *appSSHFingerprint,
	}
	if *ccTLS {
		ccOpts.TLS = tlsConf
	}
	c, err := cc.New(ccOpts)
	if err != nil {
		return err
	}
	if err := c.Start(*ccAddr); err != nil {
		return err
	}
	defer c.Close()

	d, err := director.New(director.Options{
		Name:        conf.Director.Name,
		UUID:        conf.Director.UUID,
		UAAURL:      u.URL(),
		Verifier:    u.Verifier(client),
		Deployments: conf.Director.Deployments,
		CA:          authority,
	})
	if err != nil {
		return err
	}
	if err := d.Start(*directorAddr); err != nil {
		return err
	}
	defer d.Close()

	if *outFile != "" {
		b, err := json.MarshalIndent(endpoints{
			UAAURL:       u.URL(),
			CCURL:        c.URL(),
			DirectorURL:  d.URL(),
			DirectorUUID: d.UUID(),
			CACert:       string(authority.CertPEM()),
		}, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(*outFile, append(b, '\n'), 0o600); err != nil {
			return err
		}
	}
	if *caFile != "" {
		if err := os.WriteFile(*caFile, authority.CertPEM(), 0o600); err != nil {
			return err
		}
	}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	if _, err := fmt.Println("ready"); err != nil {
		return errors.Join(errors.New("write ready"), err)
	}
	<-sig
	return nil
}
