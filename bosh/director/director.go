// Package director is a small client of the BOSH director API (/info,
// /deployments, instances) with the caller's own UAA token, and the
// instance selection that `pcap-bosh`, `bosh pcap` and pcap-api's bosh
// resolver share: GROUP, GROUP/INDEX or GROUP/UUID.
package director

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"code.cloudfoundry.org/pcap/internal/httpjson"
)

// maxBody bounds a director response.
const maxBody = 16 << 20

// ErrNotFound is wrapped by errors for a deployment the director does not
// have (or does not show to this token).
var ErrNotFound = errors.New("not found")

// ErrUnauthorized is wrapped by errors for a token the director refuses.
var ErrUnauthorized = errors.New("unauthorized")

// Client talks to one director.
type Client struct {
	URL  string
	HTTP *http.Client
}

// Info is the director's /info document.
type Info struct {
	Name               string `json:"name"`
	UUID               string `json:"uuid"`
	Version            string `json:"version"`
	UserAuthentication struct {
		Type    string `json:"type"`
		Options struct {
			URL string `json:"url"`
		} `json:"options"`
	} `json:"user_authentication"`
}

// Deployment is an entry of /deployments.
type Deployment struct {
	Name  string   `json:"name"`
	Teams []string `json:"teams"`
}

// Instance is an entry of /deployments/:name/instances.
type Instance struct {
	AgentID   string   `json:"agent_id"`
	CID       string   `json:"cid"`
	Job       string   `json:"job"`
	Index     int      `json:"index"`
	ID        string   `json:"id"`
	AZ        string   `json:"az"`
	IPs       []string `json:"ips"`
	ExpectsVM bool     `json:"expects_vm"`
}

// Name is GROUP/UUID.
func (i Instance) Name() string { return i.Job + "/" + i.ID }

// Info fetches /info (no token needed).
func (c *Client) Info(ctx context.Context) (*Info, error) {
	var info Info
	if err := c.get(ctx, "", "/info", &info); err != nil {
		return nil, err
	}
	return &info, nil
}

// Deployments lists the deployments the token may see.
func (c *Client) Deployments(ctx context.Context, token string) ([]Deployment, error) {
	var ds []Deployment
	if err := c.get(ctx, token, "/deployments", &ds); err != nil {
		return nil, err
	}
	return ds, nil
}

// Instances lists a deployment's instances.
func (c *Client) Instances(ctx context.Context, token, deployment string) ([]Instance, error) {
	var is []Instance
	if err := c.get(ctx, token, "/deployments/"+url.PathEscape(deployment)+"/instances", &is); err != nil {
		return nil, err
	}
	return is, nil
}

func (c *Client) get(ctx context.Context, token, path string, v any) error {
	hj := httpjson.Client{Name: "director", HTTP: c.HTTP, MaxBody: maxBody}
	err := hj.Get(ctx, strings.TrimRight(c.URL, "/")+path, token, v)
	var se *httpjson.StatusError
	if !errors.As(err, &se) {
		return err
	}
	switch se.Status {
	case http.StatusNotFound:
		return fmt.Errorf("director: %s: %w", path, ErrNotFound)
	case http.StatusUnauthorized, http.StatusForbidden:
		return fmt.Errorf("director refused the token for %s (%s): %w", path, se.StatusText, ErrUnauthorized)
	}
	return err
}

// Skipped is a selected instance that cannot be captured.
type Skipped struct {
	Name   string
	Reason string
}

var selectorRe = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,128}(/[A-Za-z0-9-]{1,64})?$`)

// Select picks instances by selectors GROUP, GROUP/INDEX or GROUP/UUID
// (several of each). Unknown groups or instances are one error naming
// them all. Instances without a VM or an IP are returned as skipped.
//
// No selector is the whole deployment, as `bosh pcap -d DEP` and `bosh
// ssh -d DEP` have it: every instance with a VM. Instances the director
// does not expect to have one (errands between runs, detached instances:
// expects_vm false) are left out without a word, as the director leaves
// them out of a deployment-wide ssh; one that should have a VM and has
// none is reported as skipped.
func Select(all []Instance, selectors []string) ([]Instance, []Skipped, error) {
	if len(selectors) == 0 {
		return selectAll(all)
	}
	groups := map[string][]Instance{}
	for _, in := range all {
		groups[in.Job] = append(groups[in.Job], in)
	}
	var picked []Instance
	seen := map[string]bool{}
	var unknown []string
	for _, sel := range selectors {
		if !selectorRe.MatchString(sel) {
			unknown = append(unknown, sel)
			continue
		}
		group, id, hasID := strings.Cut(sel, "/")
		members, ok := groups[group]
		if !ok {
			unknown = append(unknown, sel)
			continue
		}
		found := false
		for _, in := range members {
			if hasID && id != in.ID && id != strconv.Itoa(in.Index) {
				continue
			}
			found = true
			if !seen[in.ID] {
				seen[in.ID] = true
				picked = append(picked, in)
			}
		}
		if !found {
			unknown = append(unknown, sel)
		}
	}
	if len(unknown) > 0 {
		names := make([]string, 0, len(groups))
		for g := range groups {
			names = append(names, g)
		}
		sort.Strings(names)
		return nil, nil, fmt.Errorf("no such instance group or instance: %s (groups: %s)", strings.Join(unknown, ", "), strings.Join(names, ", "))
	}
	ok, skipped := capturable(picked)
	return ok, skipped, nil
}

// selectAll is the whole deployment (see Select).
func selectAll(all []Instance) ([]Instance, []Skipped, error) {
	var picked []Instance
	for _, in := range all {
		if in.CID == "" && !in.ExpectsVM {
			continue
		}
		picked = append(picked, in)
	}
	ok, skipped := capturable(picked)
	return ok, skipped, nil
}

// capturable splits instances into those with a VM and an IP and the
// others, skipped with the reason.
func capturable(picked []Instance) (ok []Instance, skipped []Skipped) {
	for _, in := range picked {
		switch {
		case in.CID == "":
			skipped = append(skipped, Skipped{Name: in.Name(), Reason: "instance has no VM"})
		case len(in.IPs) == 0:
			skipped = append(skipped, Skipped{Name: in.Name(), Reason: "instance has no IP address"})
		default:
			ok = append(ok, in)
		}
	}
	return ok, skipped
}
