// Package httpjson is the one JSON-over-HTTP helper of pcap's hand-written
// clients: the Cloud Controller (api/cfresolver, the cf plugin's app
// lookup), the BOSH director (bosh/director) and UAA (bosh/uaa). It reads
// at most a bounded number of bytes of any response, and a refused request
// is a *StatusError that callers tell apart with errors.As and its Status,
// never by matching the error's text.
//
// It imports only the standard library, so the server, the agent and
// both CLIs may use it (docs/architecture.md).
package httpjson

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
)

// DefaultMaxBody bounds a response body when the Client names no bound:
// 8 MiB holds a Cloud Controller page of its largest size (5000 resources)
// or a director's instance list of a large deployment, and keeps a broken
// or hostile server from making a client hold more than that.
const DefaultMaxBody = 8 << 20

// MaxExcerpt bounds StatusError.Body: JSON error documents of the Cloud
// Controller, UAA and the director are a few hundred bytes; an HTML error
// page is cut.
const MaxExcerpt = 4 << 10

// ErrTooLarge is wrapped by the error for a response body over the bound.
var ErrTooLarge = errors.New("response too large")

// Client sends requests to one server. Its zero value uses
// http.DefaultClient and DefaultMaxBody and names the server "server".
type Client struct {
	// Name names the server in errors, e.g. "Cloud Controller".
	Name string
	// HTTP is the client that sends the requests (http.DefaultClient when
	// nil).
	HTTP *http.Client
	// MaxBody bounds a response body (DefaultMaxBody when 0).
	MaxBody int64
}

// StatusError is a response with a status other than 2xx.
type StatusError struct {
	// Server is the Client's Name.
	Server string
	// Method and URL are the request's; URL has no query, fragment or user
	// information (a query may hold a code or a name the caller did not
	// mean to show).
	Method, URL string
	// Status is the status code; StatusText the status line's text, e.g.
	// "404 Not Found".
	Status     int
	StatusText string
	// Body is the start of the response body, at most MaxExcerpt bytes:
	// enough to read the server's JSON error document.
	Body []byte
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("%s: %s %s: %s", e.Server, e.Method, e.URL, e.StatusText)
}

// Get sends GET rawURL with "Accept: application/json" and, when token is
// not empty, "Authorization: bearer TOKEN", and decodes the answer into
// out (see Do).
func (c Client) Get(ctx context.Context, rawURL, token string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return fmt.Errorf("%s: %w", c.name(), err)
	}
	if token != "" {
		req.Header.Set("Authorization", "bearer "+token)
	}
	return c.Do(req, out)
}

// Do sends req (adding "Accept: application/json" when it has no Accept
// header) and decodes a 2xx answer's JSON body into out; a nil out reads
// and drops the body. Any other status is a *StatusError. A body over the
// bound is an error wrapping ErrTooLarge, never decoded cut short. Errors
// name the server and the request's method and URL without its query;
// a transport failure keeps its cause (errors.Is(err,
// context.DeadlineExceeded) works) without url.Error's full URL.
func (c Client) Do(req *http.Request, out any) error {
	name, where := c.name(), req.Method+" "+Redact(req.URL)
	resp, body, err := c.send(req, c.HTTP)
	if err != nil {
		return err
	}
	if !is2xx(resp.StatusCode) {
		return c.statusError(req, resp, body)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%s: decode response to %s: %w", name, where, err)
	}
	return nil
}

// Redirect sends req without following a redirect and returns the
// Location of a 302 or 303 answer; any other status is a *StatusError
// (its Body the start of the answer, for the server's error document).
// Errors are as Do's. It serves the OAuth calls whose answer is a
// redirect, such as UAA's /oauth/authorize.
func (c Client) Redirect(req *http.Request) (*url.URL, error) {
	hc := http.DefaultClient
	if c.HTTP != nil {
		hc = c.HTTP
	}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, body, err := c.send(req, &noFollow)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		return nil, c.statusError(req, resp, body)
	}
	loc, err := resp.Location()
	if err != nil {
		return nil, fmt.Errorf("%s: %s %s: %s without a location", c.name(), req.Method, Redact(req.URL), resp.Status)
	}
	return loc, nil
}

// send sends req with hc (http.DefaultClient when nil), adding "Accept:
// application/json" when req has none, and reads the answer's body within
// the bound. A body over the bound is an error only for a 2xx answer;
// other answers keep what was read for their excerpt.
func (c Client) send(req *http.Request, hc *http.Client) (*http.Response, []byte, error) {
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	name, where := c.name(), req.Method+" "+Redact(req.URL)
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // ue.Error() repeats the URL with its query
		}
		return nil, nil, fmt.Errorf("%s unreachable: %w", name, err)
	}
	defer resp.Body.Close()
	limit := c.MaxBody
	if limit <= 0 {
		limit = DefaultMaxBody
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: read response to %s: %w", name, where, err)
	}
	if is2xx(resp.StatusCode) && int64(len(body)) > limit {
		return nil, nil, fmt.Errorf("%s: response to %s: %w (over %d bytes)", name, where, ErrTooLarge, limit)
	}
	return resp, body, nil
}

func is2xx(code int) bool { return code >= 200 && code <= 299 }

func (c Client) statusError(req *http.Request, resp *http.Response, body []byte) *StatusError {
	return &StatusError{
		Server: c.name(), Method: req.Method, URL: Redact(req.URL),
		Status: resp.StatusCode, StatusText: resp.Status,
		Body: body[:min(len(body), MaxExcerpt)],
	}
}

func (c Client) name() string {
	if c.Name == "" {
		return "server"
	}
	return c.Name
}

// Redact returns u without user information, query and fragment: what an
// error or a log line may show of a request's URL.
func Redact(u *url.URL) string {
	if u == nil {
		return ""
	}
	r := *u
	r.User, r.RawQuery, r.ForceQuery, r.Fragment, r.RawFragment = nil, "", false, "", ""
	return r.String()
}
