package main

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/bosh/director"
	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/internal/httpjson"
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

// getJSON fetches base+path from server into v (when not nil), reading
// at most 1 MiB.
func getJSON(ctx context.Context, hc *http.Client, server, base, path string, v any) error {
	return httpjson.Client{Name: server, HTTP: hc, MaxBody: 1 << 20}.Get(ctx, strings.TrimRight(base, "/")+path, "", v)
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
		p.cf(ctx, "cf", cfg.CF.APIURL, cfg.CF.UAAURL, r.HTTP)
	}
	if cfg.BOSH != nil {
		r, err := boshresolver.New(*cfg.BOSH, cfg.Agents.Port)
		if err != nil {
			return err
		}
		p.bosh(ctx, cfg.BOSH, r.Director, r.HTTP)
		if cc := cfg.BOSH.CFClient; cc != nil {
			apps, err := cfresolver.NewApps(*cc, cfg.Agents.Port)
			if err != nil {
				return err
			}
			if p.cf(ctx, "bosh.cf_client", cc.APIURL, cc.UAAURL, apps.HTTP()) {
				n, err := apps.Probe(ctx)
				p.report("bosh.cf_client: client "+cc.ClientID, err, fmt.Sprintf("gets a token and sees %d apps", n))
			}
		}
	}
	if cfg.CF == nil && cfg.BOSH == nil {
		fmt.Fprintln(out, "ok   nothing to probe: neither cf nor bosh is configured")
	}
	if p.failed > 0 {
		return fmt.Errorf("probe: %d check(s) failed", p.failed)
	}
	return nil
}

// cf checks the Cloud Controller at apiURL and its UAA (uaaURL when
// configured) for the config section who; false when they cannot be
// reached.
func (p *prober) cf(ctx context.Context, who, apiURL, uaaURL string, hc *http.Client) bool {
	var root struct {
		Links map[string]struct {
			Href string `json:"href"`
		} `json:"links"`
	}
	err := getJSON(ctx, hc, "Cloud Controller", apiURL, "/", &root)
	named := strings.TrimRight(root.Links["uaa"].Href, "/")
	if err == nil && named == "" {
		err = errors.New("the root document names no UAA (links.uaa)")
	}
	p.report(who+": Cloud Controller "+apiURL+" /", err, "names UAA "+named)
	if err != nil {
		return false
	}
	p.report(who+": Cloud Controller /v3/info", getJSON(ctx, hc, "Cloud Controller", apiURL, "/v3/info", nil), "answers")
	before := p.failed
	p.uaa(ctx, who, "the Cloud Controller", uaaURL, named, hc)
	return p.failed == before
}

func (p *prober) bosh(ctx context.Context, b *api.BOSHConfig, d *director.Client, hc *http.Client) {
	info, err := d.Info(ctx)
	var named string
	if err == nil {
		named = strings.TrimRight(info.UserAuthentication.Options.URL, "/")
		if info.UserAuthentication.Type != "uaa" || named == "" {
			err = fmt.Errorf("the director does not use UAA (user_authentication type %q)", info.UserAuthentication.Type)
		}
	}
	if err != nil {
		p.report("bosh: director "+b.DirectorURL+" /info", err, "")
		return
	}
	p.report("bosh: director "+b.DirectorURL+" /info", nil, "uuid "+info.UUID+", UAA "+named)
	p.uaa(ctx, "bosh", "the director", b.UAAURL, named, hc)
}

// uaa checks the UAA that by (the Cloud Controller, the director) names,
// and that the configured one, if any, is that one.
func (p *prober) uaa(ctx context.Context, who, by, configured, named string, hc *http.Client) {
	base := named
	if configured != "" {
		base = strings.TrimRight(configured, "/")
		var err error
		if base != named {
			err = fmt.Errorf("%s.uaa_url is %s, but %s trusts %s: its users' tokens would be refused", who, base, by, named)
		}
		p.report(who+": UAA is "+by+"'s", err, "yes")
	}
	p.report(who+": UAA "+base+" /info", getJSON(ctx, hc, "UAA", base, "/info", nil), "answers")
	kids, unusable, err := (&uaa.Client{URL: base, HTTP: hc}).TokenKeys(ctx)
	ok := "keys " + strings.Join(kids, ", ")
	for _, kid := range slices.Sorted(maps.Keys(unusable)) {
		ok += fmt.Sprintf("; %q is not used: %s", kid, unusable[kid])
	}
	p.report(who+": UAA /token_keys", err, ok)
}

// probeTimeout bounds the whole probe.
const probeTimeout = 30 * time.Second
