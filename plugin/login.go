package plugin

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/bosh/uaa"
	"code.cloudfoundry.org/pcap/internal/httpjson"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// pinHint is how the plugin takes pcap-api's host key fingerprint.
const pinHint = "--pcap-api-host-key-fingerprint SHA256:… (or PCAP_API_HOST_KEY_FINGERPRINT)"

// httpClient is the client for the Cloud Controller and UAA; insecure when
// the user chose cf api --skip-ssl-validation.
func httpClient(insecure bool) *http.Client {
	hc := &http.Client{Timeout: 30 * time.Second}
	if insecure {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} // the user chose --skip-ssl-validation
		hc.Transport = tr
	}
	return hc
}

// cloudController is the JSON client for the Cloud Controller, reading at
// most maxBody bytes of a response.
func cloudController(hc *http.Client, maxBody int64) httpjson.Client {
	return httpjson.Client{Name: "Cloud Controller", HTTP: hc, MaxBody: maxBody}
}

// sshCodeSource reads where `cf ssh-code` gets its codes from the Cloud
// Controller's root document: the authorization endpoint (links.login,
// else links.uaa) and the OAuth client of app SSH
// (links.app_ssh.meta.oauth_client).
func sshCodeSource(ctx context.Context, hc *http.Client, endpoint string) (authURL, client string, err error) {
	var root struct {
		Links map[string]struct {
			Href string         `json:"href"`
			Meta map[string]any `json:"meta"`
		} `json:"links"`
	}
	if err := cloudController(hc, 1<<20).Get(ctx, strings.TrimRight(endpoint, "/")+"/", "", &root); err != nil {
		return "", "", fmt.Errorf("read the Cloud Controller's root: %w", err)
	}
	authURL = root.Links["login"].Href
	if authURL == "" {
		authURL = root.Links["uaa"].Href
	}
	client, _ = root.Links["app_ssh"].Meta["oauth_client"].(string)
	if authURL == "" || client == "" {
		return "", "", errors.New("the Cloud Controller names no UAA or no app SSH OAuth client (links.app_ssh.meta.oauth_client), which one-time codes need")
	}
	return authURL, client, nil
}

// login is the SSH login to pcap-api: user "cf" with a one-time code
// (never the access token), fetched only once pcap-api's host key passed
// the check.
func (o *options) login(ctx context.Context, conn interface{ AccessToken() (string, error) }, endpoint string, insecure bool, stderr io.Writer, getenv func(string) string) (tunnel.ClientConfig, *frontdoor.HostKeys, error) {
	hk, err := o.hostKeys(stderr, getenv)
	if err != nil {
		return tunnel.ClientConfig{}, nil, err
	}
	hc := httpClient(insecure)
	code := func() (string, error) {
		authURL, client, err := sshCodeSource(ctx, hc, endpoint)
		if err != nil {
			return "", err
		}
		// Ask the cf CLI again: it refreshes a token about to expire.
		token, err := conn.AccessToken()
		if err != nil || strings.TrimSpace(token) == "" {
			return "", errors.New("not logged in (cf login)")
		}
		u := &uaa.Client{URL: authURL, HTTP: hc}
		return u.AuthorizationCode(ctx, client, token)
	}
	return tunnel.ClientConfig{
		User:            "cf",
		Auth:            []ssh.AuthMethod{frontdoor.CodeAuth(code)},
		HostKeyCallback: hk.Callback(),
	}, hk, nil
}

// hostKeys pins pcap-api's host key from the flag or environment, else
// accepts keys recorded in a known_hosts file next to the cf CLI's config
// (written only with --trust-on-first-use).
func (o *options) hostKeys(stderr io.Writer, getenv func(string) string) (*frontdoor.HostKeys, error) {
	home := getenv("CF_HOME")
	if home == "" {
		h, err := os.UserHomeDir()
		if err != nil {
			return nil, err
		}
		home = h
	}
	return frontdoor.NewHostKeys(frontdoor.HostKeyOptions{
		Fingerprint:     o.fingerprint,
		KnownHosts:      filepath.Join(home, ".cf", "pcap_known_hosts"),
		TrustOnFirstUse: o.tofu,
		Stderr:          stderr,
		PinHint:         pinHint,
	})
}
