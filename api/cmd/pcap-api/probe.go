package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/api/cfresolver"
)

// prober contacts what the config names, the way a login would, and
// reports one line per check.
type prober struct {
	out    io.Writer
	failed int
}

func (p *prober) report(what string, err error, ok string) {
	if err != nil {
		p.failed++
		fmt.Fprintf(p.out, "FAIL %s: %v\n", what, explain(err))
		return
	}
	fmt.Fprintf(p.out, "ok   %s: %s\n", what, ok)
}

// explain adds what to do about the usual causes.
func explain(err error) string {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	switch {
	case errors.As(err, &ua):
		return err.Error() + " (is ca_cert_file the CA that signed it?)"
	case errors.As(err, &hn):
		return err.Error() + " (the URL's host is not in the certificate)"
	}
	return err.Error()
}

// getJSON fetches base+path into v (when not nil).
func getJSON(ctx context.Context, hc *http.Client, base, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// probe runs every check the config calls for and returns an error when
// one failed.
func probe(ctx context.Context, cfg api.Config, out io.Writer) error {
	p := &prober{out: out}
	if cfg.CF != nil {
		r, err := cfresolver.New(*cfg.CF, cfg.Agents.Port)
		if err != nil {
			return err
		}
		p.cf(ctx, cfg.CF, r.HTTP)
	}
	if cfg.BOSH != nil {
		r, err := boshresolver.New(*cfg.BOSH, cfg.Agents.Port)
		if err != nil {
			return err
		}
		p.bosh(ctx, cfg.BOSH, r.HTTP)
	}
	if cfg.CF == nil && cfg.BOSH == nil {
		fmt.Fprintln(out, "ok   nothing to probe: neither cf nor bosh is configured")
	}
	if p.failed > 0 {
		return fmt.Errorf("probe: %d check(s) failed", p.failed)
	}
	return nil
}

func (p *prober) cf(ctx context.Context, cf *api.CFConfig, hc *http.Client) {
	var root struct {
		Links map[string]struct {
			Href string `json:"href"`
		} `json:"links"`
	}
	err := getJSON(ctx, hc, cf.APIURL, "/", &root)
	named := strings.TrimRight(root.Links["uaa"].Href, "/")
	if err == nil && named == "" {
		err = errors.New("the root document names no UAA (links.uaa)")
	}
	p.report("cf: Cloud Controller "+cf.APIURL+" /", err, "names UAA "+named)
	if err != nil {
		return
	}
	p.report("cf: Cloud Controller /v3/info", getJSON(ctx, hc, cf.APIURL, "/v3/info", nil), "answers")
	uaaURL := named
	if cf.UAAURL != "" {
		uaaURL = strings.TrimRight(cf.UAAURL, "/")
		var err error
		if uaaURL != named {
			err = fmt.Errorf("cf.uaa_url is %s, but the Cloud Controller trusts %s: its users' tokens would be refused", uaaURL, named)
		}
		p.report("cf: UAA is the Cloud Controller's", err, "yes")
	}
	p.uaa(ctx, "cf", uaaURL, hc)
}

func (p *prober) bosh(ctx context.Context, b *api.BOSHConfig, hc *http.Client) {
	var info struct {
		UUID               string `json:"uuid"`
		UserAuthentication struct {
			Type    string `json:"type"`
			Options struct {
				URL string `json:"url"`
			} `json:"options"`
		} `json:"user_authentication"`
	}
	err := getJSON(ctx, hc, b.DirectorURL, "/info", &info)
	named := strings.TrimRight(info.UserAuthentication.Options.URL, "/")
	if err == nil && (info.UserAuthentication.Type != "uaa" || named == "") {
		err = fmt.Errorf("the director does not use UAA (user_authentication type %q)", info.UserAuthentication.Type)
	}
	p.report("bosh: director "+b.DirectorURL+" /info", err, "uuid "+info.UUID+", UAA "+named)
	if err != nil {
		return
	}
	uaaURL := named
	if b.UAAURL != "" {
		uaaURL = strings.TrimRight(b.UAAURL, "/")
		var err error
		if uaaURL != named {
			err = fmt.Errorf("bosh.uaa_url is %s, but the director trusts %s: its users' tokens would be refused", uaaURL, named)
		}
		p.report("bosh: UAA is the director's", err, "yes")
	}
	p.uaa(ctx, "bosh", uaaURL, hc)
}

func (p *prober) uaa(ctx context.Context, who, base string, hc *http.Client) {
	p.report(who+": UAA "+base+" /info", getJSON(ctx, hc, base, "/info", nil), "answers")
	var keys struct {
		Keys []struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
		} `json:"keys"`
	}
	err := getJSON(ctx, hc, base, "/token_keys", &keys)
	var kids []string
	for _, k := range keys.Keys {
		if k.Kty == "RSA" {
			kids = append(kids, k.Kid)
		}
	}
	if err == nil && len(kids) == 0 {
		err = errors.New("/token_keys has no RSA key: no token could be verified")
	}
	p.report(who+": UAA /token_keys", err, "keys "+strings.Join(kids, ", "))
}

// probeTimeout bounds the whole probe.
const probeTimeout = 30 * time.Second
