package cfresolver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/tunnel"
)

// AppTargets looks up, with token, the instances of app appGUID's process
// of type ptype ("" is web) and makes the running ones capture targets,
// named as cf captures name them (TYPE/INDEX) and captured in their
// containers by the agents on their cells; want picks indexes (nil: all).
// It checks no permission of its own: the caller has decided that whoever
// asks may capture the app. who names the token's holder in refusals
// ("pcap-api's Cloud Controller client").
func (r *Resolver) AppTargets(ctx context.Context, token, who, appGUID, ptype string, want []int) ([]api.Target, []api.Skipped, error) {
	if !guidRe.MatchString(appGUID) {
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("app guid %q is not valid", appGUID))
	}
	if ptype == "" {
		ptype = "web"
	}
	fail := failFor(appGUID, who, "the token of "+who)
	id := &api.Identity{Token: token}
	a := app{GUID: appGUID}
	if err := r.get(ctx, token, "/v3/apps/"+appGUID, &a); err != nil {
		return nil, nil, fail("look up app", err)
	}
	return r.appTargets(ctx, id, a, ptype, want, fail)
}

// appTargets finds app a's process of type ptype, its instances, and
// picks those in want (nil: all) as targets.
func (r *Resolver) appTargets(ctx context.Context, id *api.Identity, a app, ptype string, want []int, fail func(string, error) error) ([]api.Target, []api.Skipped, error) {
	p, err := r.process(ctx, id, a, ptype, fail)
	if err != nil {
		return nil, nil, err
	}
	all, err := r.instances(ctx, id, p, fail)
	if err != nil {
		return nil, nil, err
	}
	return r.pick(a, ptype, all, want)
}

// failFor turns a failed Cloud Controller request about app appGUID into
// the refusal the user reads; who is whom the app may be invisible to,
// token whose token the Cloud Controller may refuse.
func failFor(appGUID, who, token string) func(string, error) error {
	return func(what string, err error) error {
		var ce *ccError
		if errors.As(err, &ce) {
			switch ce.Status {
			case http.StatusNotFound:
				return tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("app %s not found, or not visible to %s", appGUID, who))
			case http.StatusUnauthorized:
				return tunnel.Reject(tunnel.CodeNotAllowed, "the Cloud Controller refused "+token+": "+ce.Error())
			case http.StatusForbidden:
				return tunnel.Reject(tunnel.CodeNotAllowed, "the Cloud Controller does not allow it: "+ce.Error())
			}
		}
		return tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("%s: %v", what, err))
	}
}

// Apps looks up apps' instances with pcap-api's own client of the
// foundation's UAA (client_credentials grant, e.g. with
// cloud_controller.admin_read_only), for those who are no Cloud
// Controller users: the bosh resolver's operators. It is safe for
// concurrent use.
type Apps struct {
	cc                     *Resolver
	clientID, clientSecret string
}

// appsWho is how refusals name the token Apps uses.
const appsWho = "pcap-api's Cloud Controller client (bosh.cf_client)"

// NewApps builds Apps from the bosh resolver's cf_client config.
func NewApps(cfg api.CFClientConfig, agentPort int) (*Apps, error) {
	hc, err := httpClient(cfg.CACertFile, cfg.Timeout)
	if err != nil {
		return nil, err
	}
	return &Apps{
		cc:       &Resolver{CCURL: strings.TrimRight(cfg.APIURL, "/"), UAAURL: strings.TrimRight(cfg.UAAURL, "/"), AgentPort: agentPort, HTTP: hc},
		clientID: cfg.ClientID, clientSecret: cfg.ClientSecret,
	}, nil
}

// Targets resolves app appGUID's instances as [Resolver.AppTargets] does,
// with the client's token (one grant shared until shortly before it
// expires).
func (a *Apps) Targets(ctx context.Context, appGUID, ptype string, want []int) ([]api.Target, []api.Skipped, error) {
	if !guidRe.MatchString(appGUID) {
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("app guid %q is not valid", appGUID))
	}
	tok, err := a.token(ctx)
	if err != nil {
		return nil, nil, tunnel.Reject(tunnel.CodeInternal, fmt.Sprintf("%s got no token: %v", appsWho, err))
	}
	return a.cc.AppTargets(ctx, tok, appsWho, appGUID, ptype, want)
}

// token is the client's token, from the UAA the Cloud Controller names
// when none is configured.
func (a *Apps) token(ctx context.Context) (string, error) {
	u, err := a.cc.uaaClient(ctx)
	if err != nil {
		return "", err
	}
	return u.ClientToken(ctx, a.clientID, a.clientSecret)
}

// HTTP is the client for the Cloud Controller and UAA.
func (a *Apps) HTTP() *http.Client { return a.cc.HTTP }

// Probe checks what a lookup needs, for pcap-api --probe: that the client
// gets a token and that the Cloud Controller lets it list apps. It
// returns how many apps the client sees.
func (a *Apps) Probe(ctx context.Context) (int, error) {
	tok, err := a.token(ctx)
	if err != nil {
		return 0, err
	}
	var list struct {
		Pagination struct {
			TotalResults int `json:"total_results"`
		} `json:"pagination"`
	}
	if err := a.cc.get(ctx, tok, "/v3/apps?per_page=1", &list); err != nil {
		return 0, fmt.Errorf("cfresolver: list apps: %w", err)
	}
	return list.Pagination.TotalResults, nil
}
