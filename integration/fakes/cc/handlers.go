package cc

import (
	"errors"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/jsonresp"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// ccError is one entry of a v3 error body.
type ccError struct {
	Code   int    `json:"code"`
	Title  string `json:"title"`
	Detail string `json:"detail"`
}

var (
	errNotAuthenticated = ccError{10002, "CF-NotAuthenticated", "Authentication error"}
	errInvalidAuthToken = ccError{1000, "CF-InvalidAuthToken", "Invalid Auth Token"}
	errNotAuthorized    = ccError{10003, "CF-NotAuthorized", "You are not authorized to perform the requested action"}
	errUnknownRequest   = ccError{10000, "CF-NotFound", "Unknown request"}
	errUAAUnavailable   = ccError{20004, "CF-UaaUnavailable", "The UAA service is currently unavailable"}
)

func notFound(what string) ccError {
	return ccError{10010, "CF-ResourceNotFound", what + " not found"}
}

func badQuery(detail string) ccError {
	return ccError{10005, "CF-BadQueryParameter", "The query parameter is invalid: " + detail}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	jsonresp.Write(w, status, "application/json; charset=utf-8", v)
}

func writeError(w http.ResponseWriter, status int, e ccError) {
	writeJSON(w, status, map[string][]ccError{"errors": {e}})
}

type authedFunc func(w http.ResponseWriter, r *http.Request, v *viewer, ix *index)

// authed checks the bearer token and the read scope, then calls h with the
// token's viewer.
func (s *Server) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		claims, e, status := s.authenticate(r)
		if claims == nil {
			writeError(w, status, e)
			return
		}
		if !canRead(claims) {
			writeError(w, http.StatusForbidden, errNotAuthorized)
			return
		}
		ix := s.index()
		h(w, r, newViewer(claims, ix), ix)
	}
}

func (s *Server) authenticate(r *http.Request) (*uaa.Claims, ccError, int) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, errNotAuthenticated, http.StatusUnauthorized
	}
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, errInvalidAuthToken, http.StatusUnauthorized
	}
	claims, err := s.opts.Verifier.Verify(r.Context(), strings.TrimSpace(token))
	if err != nil {
		if errors.Is(err, uaa.ErrInvalidToken) {
			return nil, errInvalidAuthToken, http.StatusUnauthorized
		}
		return nil, errUAAUnavailable, http.StatusServiceUnavailable
	}
	// The CC decodes tokens with audience_ids: [uaa.resource_id], which is
	// "cloud_controller": a token UAA issued for another resource is not
	// valid here.
	if !slices.Contains(claims.Audience, audienceCC) {
		return nil, errInvalidAuthToken, http.StatusUnauthorized
	}
	return claims, ccError{}, 0
}

func (s *Server) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /{$}", s.handleRoot)
	m.HandleFunc("GET /v3", s.handleV3Root)
	m.HandleFunc("GET /v3/{$}", s.handleV3Root)
	m.HandleFunc("GET /v3/info", s.handleV3Info)
	m.HandleFunc("GET /v2/info", s.handleV2Info)
	m.HandleFunc("GET /v3/organizations", s.authed(s.listOrgs))
	m.HandleFunc("GET /v3/organizations/{guid}", s.authed(s.getOrg))
	m.HandleFunc("GET /v3/spaces", s.authed(s.listSpaces))
	m.HandleFunc("GET /v3/spaces/{guid}", s.authed(s.getSpace))
	m.HandleFunc("GET /v3/apps", s.authed(s.listApps))
	m.HandleFunc("GET /v3/apps/{guid}", s.authed(s.getApp))
	m.HandleFunc("GET /v3/apps/{guid}/permissions", s.authed(s.appPermissions))
	m.HandleFunc("GET /v3/apps/{guid}/ssh_enabled", s.authed(s.appSSHEnabled))
	m.HandleFunc("GET /v3/apps/{guid}/processes", s.authed(s.listAppProcesses))
	m.HandleFunc("GET /v3/apps/{guid}/routes", s.authed(s.appRoutes))
	m.HandleFunc("GET /v3/apps/{guid}/droplets/current", s.authed(s.appCurrentDroplet))
	m.HandleFunc("GET /v3/apps/{guid}/processes/{type}", s.authed(s.getProcess(appProcess)))
	m.HandleFunc("GET /v3/apps/{guid}/processes/{type}/stats", s.authed(s.processStats(appProcess)))
	m.HandleFunc("GET /v3/processes", s.authed(s.listProcesses))
	m.HandleFunc("GET /v3/processes/{guid}", s.authed(s.getProcess(visibleProcess)))
	m.HandleFunc("GET /v3/processes/{guid}/stats", s.authed(s.processStats(visibleProcess)))
	m.HandleFunc("GET /v3/processes/{guid}/sidecars", s.authed(s.processSidecars))
	m.HandleFunc("GET /v3/deployments", s.authed(s.emptyList))
	m.HandleFunc("GET /v3/routes", s.authed(s.emptyList))
	m.HandleFunc("GET /v3/roles", s.authed(s.listRoles))
	m.HandleFunc("GET /v3/roles/{guid}", s.authed(s.getRole))
	m.HandleFunc("GET /v3/users", s.authed(s.listUsers))
	m.HandleFunc("GET /v3/users/{guid}", s.authed(s.getUser))
	m.HandleFunc("GET /v3/audit_events", s.authed(s.listAuditEvents))
	m.HandleFunc("GET /v3/audit_events/{guid}", s.authed(s.getAuditEvent))
	m.HandleFunc("GET /internal/apps/{guid}/ssh_access/{index}", s.sshAccess)
	m.HandleFunc("/v2/", func(w http.ResponseWriter, _ *http.Request) {
		// v2 error format.
		writeJSON(w, http.StatusNotFound, map[string]any{
			"code": 10000, "description": "Unknown request", "error_code": "CF-NotFound",
		})
	})
	m.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, errUnknownRequest)
	})
	return m
}

func (s *Server) href(path string) map[string]string {
	return map[string]string{"href": s.URL() + path}
}

func hrefOrNil(u string) any {
	if u == "" {
		return nil
	}
	return map[string]string{"href": u}
}

func (s *Server) handleRoot(w http.ResponseWriter, _ *http.Request) {
	base := s.URL()
	writeJSON(w, http.StatusOK, map[string]any{
		"links": map[string]any{
			"self":         s.href(""),
			"bits_service": nil,
			"cloud_controller_v2": map[string]any{
				"href": base + "/v2",
				"meta": map[string]string{"version": s.opts.V2Version},
			},
			"cloud_controller_v3": map[string]any{
				"href": base + "/v3",
				"meta": map[string]string{"version": s.opts.V3Version},
			},
			"network_policy_v0": s.href("/networking/v0/external"),
			"network_policy_v1": s.href("/networking/v1/external"),
			"login":             hrefOrNil(s.opts.LoginURL),
			"uaa":               hrefOrNil(s.opts.UAAURL),
			"credhub":           nil,
			"routing":           s.href("/routing"),
			"logging":           hrefOrNil(s.opts.LoggingURL),
			"log_cache":         hrefOrNil(s.opts.LogCacheURL),
			"log_stream":        nil,
			"app_ssh": map[string]any{
				"href": s.appSSHEndpoint(),
				"meta": map[string]string{
					"host_key_fingerprint": s.opts.AppSSHHostKeyFingerprint,
					"oauth_client":         s.opts.AppSSHOAuthClient,
				},
			},
		},
	})
}

func (s *Server) handleV3Root(w http.ResponseWriter, _ *http.Request) {
	links := map[string]any{"self": s.href("/v3")}
	for _, r := range []string{
		"app_usage_events", "apps", "audit_events", "buildpacks", "builds", "deployments",
		"domains", "droplets", "environment_variable_groups", "feature_flags", "info",
		"isolation_segments", "organizations", "organization_quotas", "packages", "processes",
		"resource_matches", "roles", "routes", "security_groups", "service_brokers",
		"service_instances", "service_credential_bindings", "service_offerings", "service_plans",
		"service_route_bindings", "service_usage_events", "spaces", "space_quotas", "stacks",
		"tasks", "users",
	} {
		links[r] = s.href("/v3/" + r)
	}
	writeJSON(w, http.StatusOK, map[string]any{"links": links})
}

func (s *Server) handleV3Info(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"build":          "",
		"cli_version":    map[string]string{"minimum": "", "recommended": ""},
		"custom":         map[string]any{},
		"description":    "pcap fake Cloud Controller",
		"name":           "fake-cc",
		"version":        0,
		"osbapi_version": "2.15",
		"links": map[string]any{
			"self":    s.href("/v3/info"),
			"support": map[string]string{"href": ""},
		},
	})
}

func (s *Server) handleV2Info(w http.ResponseWriter, r *http.Request) {
	body := map[string]any{
		"name":                         "fake-cc",
		"build":                        "",
		"support":                      "",
		"version":                      0,
		"description":                  "pcap fake Cloud Controller",
		"authorization_endpoint":       s.opts.LoginURL,
		"token_endpoint":               s.opts.UAAURL,
		"min_cli_version":              nil,
		"min_recommended_cli_version":  nil,
		"app_ssh_endpoint":             s.appSSHEndpoint(),
		"app_ssh_host_key_fingerprint": s.opts.AppSSHHostKeyFingerprint,
		"app_ssh_oauth_client":         s.opts.AppSSHOAuthClient,
		"doppler_logging_endpoint":     s.opts.LoggingURL,
		"api_version":                  s.opts.V2Version,
		"osbapi_version":               "2.15",
		"routing_endpoint":             s.URL() + "/routing",
	}
	if claims, _, _ := s.authenticate(r); claims != nil {
		body["user"] = claims.Subject
	}
	writeJSON(w, http.StatusOK, body)
}

// filter returns the comma-separated values of a v3 list filter, and
// whether the parameter was given at all.
func filter(q url.Values, name string) (map[string]bool, bool) {
	if _, ok := q[name]; !ok {
		return nil, false
	}
	set := map[string]bool{}
	for _, v := range q[name] {
		for _, x := range strings.Split(v, ",") {
			set[x] = true
		}
	}
	return set, true
}

// match is true when the filter was not given or contains v.
func match(q url.Values, name, v string) bool {
	set, ok := filter(q, name)
	return !ok || set[v]
}

func includes(q url.Values, what string) bool {
	set, _ := filter(q, "include")
	return set[what]
}

// paginate writes the v3 list envelope for items (already filtered and
// visible). extra is merged into the body (e.g. "included").
func (s *Server) paginate(w http.ResponseWriter, r *http.Request, items []any, extra map[string]any) {
	q := r.URL.Query()
	page, perPage := 1, 50
	if v := q.Get("page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			writeError(w, http.StatusBadRequest, badQuery("Page must be greater than 0"))
			return
		}
		page = n
	}
	if v := q.Get("per_page"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5000 {
			writeError(w, http.StatusBadRequest, badQuery("Per page must be between 1 and 5000"))
			return
		}
		perPage = n
	}
	total := len(items)
	last := (total + perPage - 1) / perPage
	if last < 1 {
		last = 1
	}
	pageURL := func(p int) map[string]string {
		v := url.Values{}
		for k, vals := range q {
			v[k] = vals
		}
		v.Set("page", strconv.Itoa(p))
		v.Set("per_page", strconv.Itoa(perPage))
		return map[string]string{"href": s.URL() + r.URL.Path + "?" + v.Encode()}
	}
	start := (page - 1) * perPage
	end := start + perPage
	if start > total {
		start = total
	}
	if end > total {
		end = total
	}
	pagination := map[string]any{
		"total_results": total,
		"total_pages":   last,
		"first":         pageURL(1),
		"last":          pageURL(last),
		"next":          nil,
		"previous":      nil,
	}
	if page < last {
		pagination["next"] = pageURL(page + 1)
	}
	if page > 1 {
		pagination["previous"] = pageURL(page - 1)
	}
	body := map[string]any{"pagination": pagination, "resources": append([]any{}, items[start:end]...)}
	for k, v := range extra {
		body[k] = v
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) listOrgs(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	for _, o := range ix.orgs {
		if v.seesOrg(o) && match(q, "names", o.Name) && match(q, "guids", o.GUID) {
			items = append(items, s.presentOrg(o))
		}
	}
	s.paginate(w, r, items, nil)
}

func (s *Server) getOrg(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	o, ok := ix.orgByGUID[r.PathValue("guid")]
	if !ok || !v.seesOrg(o) {
		writeError(w, http.StatusNotFound, notFound("Organization"))
		return
	}
	writeJSON(w, http.StatusOK, s.presentOrg(o))
}

func (s *Server) listSpaces(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	orgs := map[string]*Org{}
	for _, sp := range ix.spaces {
		if v.seesSpace(sp) && match(q, "names", sp.Name) && match(q, "guids", sp.GUID) &&
			match(q, "organization_guids", sp.org.GUID) {
			items = append(items, s.presentSpace(sp))
			orgs[sp.org.GUID] = sp.org
		}
	}
	var extra map[string]any
	if includes(q, "organization") {
		extra = map[string]any{"included": map[string]any{"organizations": s.presentOrgs(orgs)}}
	}
	s.paginate(w, r, items, extra)
}

func (s *Server) getSpace(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	sp, ok := ix.spaceByGUID[r.PathValue("guid")]
	if !ok || !v.seesSpace(sp) {
		writeError(w, http.StatusNotFound, notFound("Space"))
		return
	}
	body := s.presentSpace(sp)
	if includes(r.URL.Query(), "organization") {
		body["included"] = map[string]any{"organizations": s.presentOrgs(map[string]*Org{sp.org.GUID: sp.org})}
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) listApps(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	spaces := map[string]*spaceRef{}
	for _, a := range ix.apps {
		if v.seesApp(a) && match(q, "names", a.Name) && match(q, "guids", a.GUID) &&
			match(q, "space_guids", a.space.GUID) && match(q, "organization_guids", a.space.org.GUID) {
			items = append(items, s.presentApp(a))
			spaces[a.space.GUID] = a.space
		}
	}
	s.paginate(w, r, items, s.appIncluded(q, spaces))
}

func (s *Server) appIncluded(q url.Values, spaces map[string]*spaceRef) map[string]any {
	included := map[string]any{}
	if includes(q, "space") || includes(q, "space.organization") {
		included["spaces"] = s.presentSpaces(spaces)
	}
	if includes(q, "space.organization") {
		orgs := map[string]*Org{}
		for _, sp := range spaces {
			orgs[sp.org.GUID] = sp.org
		}
		included["organizations"] = s.presentOrgs(orgs)
	}
	if len(included) == 0 {
		return nil
	}
	return map[string]any{"included": included}
}

// visibleApp looks up an app the viewer may see, writing the 404 if not.
func visibleApp(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) (*appRef, bool) {
	a, ok := ix.appByGUID[r.PathValue("guid")]
	if !ok || !v.seesApp(a) {
		writeError(w, http.StatusNotFound, notFound("App"))
		return nil, false
	}
	return a, true
}

func (s *Server) getApp(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	a, ok := visibleApp(w, r, v, ix)
	if !ok {
		return
	}
	body := s.presentApp(a)
	if extra := s.appIncluded(r.URL.Query(), map[string]*spaceRef{a.space.GUID: a.space}); extra != nil {
		body["included"] = extra["included"]
	}
	writeJSON(w, http.StatusOK, body)
}

func (s *Server) appPermissions(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	a, ok := visibleApp(w, r, v, ix)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]bool{
		"read_basic_data":     true,
		"read_sensitive_data": v.readsSensitive(a),
	})
}

// appSSHEnabled is the CC's AppSshStatusPresenter: enabled when SSH is on
// globally, in the space and for the app; reason names the first switch
// that is off.
func (s *Server) appSSHEnabled(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	a, ok := visibleApp(w, r, v, ix)
	if !ok {
		return
	}
	enabled, reason := s.sshStatus(a)
	writeJSON(w, http.StatusOK, map[string]any{"enabled": enabled, "reason": reason})
}

// appRoutes lists no routes: the fake has none.
func (s *Server) appRoutes(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	if _, ok := visibleApp(w, r, v, ix); ok {
		s.paginate(w, r, nil, nil)
	}
}

// appCurrentDroplet: the fake's apps have no droplet.
func (s *Server) appCurrentDroplet(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	if _, ok := visibleApp(w, r, v, ix); ok {
		writeError(w, http.StatusNotFound, notFound("Droplet"))
	}
}

func (s *Server) listAppProcesses(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	a, ok := visibleApp(w, r, v, ix)
	if !ok {
		return
	}
	q := r.URL.Query()
	var items []any
	for _, p := range ix.procs {
		if p.app == a && match(q, "types", p.Type) && match(q, "guids", p.GUID) {
			items = append(items, s.presentProcess(p, v, true))
		}
	}
	s.paginate(w, r, items, nil)
}

func appProcess(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) (*procRef, bool) {
	a, ok := visibleApp(w, r, v, ix)
	if !ok {
		return nil, false
	}
	for _, p := range ix.procs {
		if p.app == a && p.Type == r.PathValue("type") {
			return p, true
		}
	}
	writeError(w, http.StatusNotFound, notFound("Process"))
	return nil, false
}

func (s *Server) listProcesses(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	for _, p := range ix.procs {
		if v.seesApp(p.app) && match(q, "types", p.Type) && match(q, "guids", p.GUID) &&
			match(q, "app_guids", p.app.GUID) && match(q, "space_guids", p.app.space.GUID) &&
			match(q, "organization_guids", p.app.space.org.GUID) {
			items = append(items, s.presentProcess(p, v, true))
		}
	}
	s.paginate(w, r, items, nil)
}

func visibleProcess(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) (*procRef, bool) {
	p, ok := ix.procByGUID[r.PathValue("guid")]
	if !ok || !v.seesApp(p.app) {
		writeError(w, http.StatusNotFound, notFound("Process"))
		return nil, false
	}
	return p, true
}

// processFinder finds the process a request names; when there is none it
// has answered already (appProcess, visibleProcess).
type processFinder func(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) (*procRef, bool)

// getProcess answers with the process find finds.
func (s *Server) getProcess(find processFinder) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
		if p, ok := find(w, r, v, ix); ok {
			writeJSON(w, http.StatusOK, s.presentProcess(p, v, false))
		}
	}
}

// processStats answers with the stats of the process find finds.
func (s *Server) processStats(find processFinder) authedFunc {
	return func(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
		if p, ok := find(w, r, v, ix); ok {
			writeJSON(w, http.StatusOK, s.presentStats(p))
		}
	}
}

// processSidecars lists no sidecars: the fake has none.
func (s *Server) processSidecars(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	if _, ok := visibleProcess(w, r, v, ix); ok {
		s.paginate(w, r, nil, nil)
	}
}

// emptyList answers list endpoints for resources the fake never has (app
// deployments, routes).
func (s *Server) emptyList(w http.ResponseWriter, r *http.Request, _ *viewer, _ *index) {
	s.paginate(w, r, nil, nil)
}

func (s *Server) listRoles(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	users := map[string]User{}
	spaces := map[string]*spaceRef{}
	orgs := map[string]*Org{}
	for _, role := range ix.world.Roles {
		if !v.seesRole(role, ix) || !match(q, "types", role.Type) || !match(q, "guids", role.GUID) ||
			!match(q, "user_guids", role.User) {
			continue
		}
		if _, ok := q["space_guids"]; ok && !match(q, "space_guids", role.Space) {
			continue
		}
		if _, ok := q["organization_guids"]; ok && !match(q, "organization_guids", role.Organization) {
			continue
		}
		items = append(items, s.presentRole(role))
		users[role.User] = ix.user(role.User)
		if sp, ok := ix.spaceByGUID[role.Space]; ok {
			spaces[sp.GUID] = sp
		}
		if o, ok := ix.orgByGUID[role.Organization]; ok {
			orgs[o.GUID] = o
		}
	}
	included := map[string]any{}
	if includes(q, "user") {
		included["users"] = presentSorted(users, s.presentUser)
	}
	if includes(q, "space") {
		included["spaces"] = s.presentSpaces(spaces)
	}
	if includes(q, "organization") {
		included["organizations"] = s.presentOrgs(orgs)
	}
	var extra map[string]any
	if len(included) > 0 {
		extra = map[string]any{"included": included}
	}
	s.paginate(w, r, items, extra)
}

func (s *Server) getRole(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	for _, role := range ix.world.Roles {
		if role.GUID == r.PathValue("guid") && v.seesRole(role, ix) {
			writeJSON(w, http.StatusOK, s.presentRole(role))
			return
		}
	}
	writeError(w, http.StatusNotFound, notFound("Role"))
}

func (ix *index) user(guid string) User {
	if u, ok := ix.users[guid]; ok {
		return u
	}
	return User{GUID: guid, Origin: "uaa"}
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	q := r.URL.Query()
	var items []any
	for _, u := range ix.world.Users {
		if v.seesUser(u.GUID, ix) && match(q, "guids", u.GUID) && match(q, "usernames", u.Username) &&
			match(q, "origins", u.Origin) {
			items = append(items, s.presentUser(u))
		}
	}
	s.paginate(w, r, items, nil)
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request, v *viewer, ix *index) {
	guid := r.PathValue("guid")
	if _, known := ix.users[guid]; !known || !v.seesUser(guid, ix) {
		writeError(w, http.StatusNotFound, notFound("User"))
		return
	}
	writeJSON(w, http.StatusOK, s.presentUser(ix.user(guid)))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
