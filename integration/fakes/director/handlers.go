package director

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/jsonresp"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// task is a finished director task (every fake task completes at once).
type task struct {
	ID          int
	State       string
	Description string
	Deployment  string
	Teams       []string
	User        string
	Timestamp   int64
	Result      string
	Events      string
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	jsonresp.Write(w, status, "application/json", v)
}

// writeError writes a DirectorError body.
func writeError(w http.ResponseWriter, status, code int, description string) {
	writeJSON(w, status, map[string]any{"code": code, "description": description})
}

func (s *Server) routes() http.Handler {
	m := http.NewServeMux()
	m.HandleFunc("GET /info", s.handleInfo)
	m.HandleFunc("GET /deployments", s.authed(s.listDeployments))
	m.HandleFunc("GET /deployments/{deployment}", s.authed(s.getDeployment))
	m.HandleFunc("GET /deployments/{deployment}/instances", s.authed(s.listInstances))
	m.HandleFunc("GET /deployments/{deployment}/vms", s.authed(s.listVMs))
	m.HandleFunc("GET /tasks/{id}", s.authed(s.getTask))
	m.HandleFunc("GET /tasks/{id}/output", s.authed(s.taskOutput))
	m.HandleFunc("GET /locks", s.authed(func(w http.ResponseWriter, _ *http.Request, _ *uaa.Claims) {
		writeJSON(w, http.StatusOK, []any{})
	}))
	m.HandleFunc("/", s.authed(func(w http.ResponseWriter, _ *http.Request, _ *uaa.Claims) {
		w.Header().Set("Content-Type", "text/html;charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("<h1>Not Found</h1>"))
	}))
	return m
}

func (s *Server) verify(r *http.Request) (*uaa.Claims, error) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "bearer") {
		return nil, errors.New("director: no bearer token")
	}
	return s.opts.Verifier.Verify(r.Context(), strings.TrimSpace(token))
}

type authedFunc func(w http.ResponseWriter, r *http.Request, c *uaa.Claims)

// authed answers 401 "Not authorized" as the director does when a request
// has no valid token.
func (s *Server) authed(h authedFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := s.verify(r)
		if err != nil {
			w.Header().Set("WWW-Authenticate", `Basic realm="BOSH Director"`)
			w.Header().Set("Content-Type", "text/html;charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = fmt.Fprintf(w, "Not authorized: '%s'\n", r.URL.Path)
			return
		}
		h(w, r, c)
	}
}

func userOf(c *uaa.Claims) string {
	if c.UserName != "" {
		return c.UserName
	}
	return c.ClientID
}

func (s *Server) handleInfo(w http.ResponseWriter, r *http.Request) {
	var user any
	if c, err := s.verify(r); err == nil {
		user = userOf(c)
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"name":             s.opts.Name,
		"uuid":             s.opts.UUID,
		"version":          s.opts.Version,
		"user":             user,
		"cpi":              s.opts.CPI,
		"stemcell_os":      "ubuntu-jammy",
		"stemcell_version": "1.500",
		"user_authentication": map[string]any{
			"type": "uaa",
			"options": map[string]any{
				"url":  s.opts.UAAURL,
				"urls": []string{s.opts.UAAURL},
			},
		},
		"features": map[string]any{
			"local_dns":              map[string]any{"status": true, "extras": map[string]string{"domain_name": "bosh"}},
			"power_dns":              map[string]any{"status": false, "extras": map[string]string{"domain_name": "bosh"}},
			"compiled_package_cache": map[string]any{"status": false, "extras": map[string]any{"provider": nil}},
			"snapshots":              map[string]any{"status": false},
			"config_server":          map[string]any{"status": true, "extras": map[string]any{"urls": []string{}}},
		},
	})
}

// Permissions, as the director's PermissionAuthorizer has them.

func (s *Server) adminScopes() []string {
	return []string{"bosh.admin", "bosh." + s.opts.UUID + ".admin"}
}

func (s *Server) readScopes() []string {
	return []string{"bosh.read", "bosh." + s.opts.UUID + ".read"}
}

func teamScopes(teams []string) []string {
	out := make([]string, 0, len(teams))
	for _, t := range teams {
		out = append(out, "bosh.teams."+t+".admin")
	}
	return out
}

var teamAdminScope = regexp.MustCompile(`^bosh\.teams\.[^.]*\.admin$`)

// expectedForDeployment lists the scopes granting read (or, with admin,
// admin) on a deployment or its tasks.
func (s *Server) expectedForDeployment(teams []string, admin bool) []string {
	exp := append(s.adminScopes(), teamScopes(teams)...)
	if !admin {
		exp = append(exp, s.readScopes()...)
	}
	return exp
}

func granted(c *uaa.Claims, expected []string) bool {
	for _, e := range expected {
		if c.HasScope(e) {
			return true
		}
	}
	return false
}

func denied(w http.ResponseWriter, expected []string) {
	writeError(w, http.StatusUnauthorized, 600000, "Require one of the scopes: "+strings.Join(expected, ", "))
}

func (s *Server) listDeployments(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	// list_deployments on the director: admin, read or any team admin.
	expected := append(s.adminScopes(), s.readScopes()...)
	for _, sc := range c.Scope {
		if teamAdminScope.MatchString(sc) {
			expected = append(expected, sc)
		}
	}
	if !granted(c, expected) {
		denied(w, expected)
		return
	}
	out := []any{}
	for _, d := range s.Deployments() {
		if !granted(c, s.expectedForDeployment(d.Teams, false)) {
			continue
		}
		releases, stemcells := []NameVersion{}, []NameVersion{}
		releases = append(releases, d.Releases...)
		stemcells = append(stemcells, d.Stemcells...)
		teams := append([]string{}, d.Teams...)
		entry := map[string]any{
			"name":      d.Name,
			"releases":  releases,
			"stemcells": stemcells,
			"teams":     teams,
		}
		if r.URL.Query().Get("exclude_configs") != "true" {
			entry["cloud_config"] = "none"
		}
		out = append(out, entry)
	}
	writeJSON(w, http.StatusOK, out)
}

// deployment looks up the path's deployment and checks read access,
// writing the director's error when either fails.
func (s *Server) deployment(w http.ResponseWriter, r *http.Request, c *uaa.Claims) (Deployment, bool) {
	name := r.PathValue("deployment")
	for _, d := range s.Deployments() {
		if d.Name != name {
			continue
		}
		if exp := s.expectedForDeployment(d.Teams, false); !granted(c, exp) {
			denied(w, exp)
			return Deployment{}, false
		}
		return d, true
	}
	writeError(w, http.StatusNotFound, 70000, fmt.Sprintf("Deployment '%s' doesn't exist", name))
	return Deployment{}, false
}

func (s *Server) getDeployment(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	if d, ok := s.deployment(w, r, c); ok {
		writeJSON(w, http.StatusOK, map[string]string{"manifest": d.Manifest})
	}
}

func nullable(v string) any {
	if v == "" {
		return nil
	}
	return v
}

func instanceJSON(in Instance) map[string]any {
	return map[string]any{
		"agent_id":      nullable(in.AgentID),
		"cid":           nullable(in.VMCID),
		"job":           in.Job,
		"index":         in.Index,
		"id":            in.ID,
		"az":            nullable(in.AZ),
		"ips":           in.IPs,
		"vm_created_at": nullable(in.VMCreatedAt),
		"expects_vm":    in.HasVM(),
	}
}

// detailsJSON is one line of the instance details task result.
func detailsJSON(d Deployment, in Instance) map[string]any {
	index := in.Index
	state := in.State
	if !in.HasVM() {
		state = "detached"
	}
	return map[string]any{
		"agent_id":            nullable(in.AgentID),
		"job_name":            in.Job,
		"index":               index,
		"id":                  in.ID,
		"bootstrap":           in.Bootstrap,
		"job_state":           in.ProcessState,
		"state":               state,
		"ips":                 in.IPs,
		"dns":                 []string{},
		"az":                  nullable(in.AZ),
		"vm_cid":              nullable(in.VMCID),
		"vm_type":             in.VMType,
		"vm_created_at":       nullable(in.VMCreatedAt),
		"disk_cid":            nil,
		"disk_cids":           []string{},
		"ignore":              false,
		"active":              in.HasVM(),
		"resurrection_paused": false,
		"processes":           processesOf(in),
		"cloud_properties":    map[string]any{},
		"stemcell":            stemcellOf(d),
	}
}

// processesOf reports one job process in the instance's process state
// (the CLI shows an instance as "running" only when it lists processes).
func processesOf(in Instance) []any {
	if !in.HasVM() {
		return []any{}
	}
	return []any{map[string]any{
		"name":   in.Job,
		"state":  in.ProcessState,
		"uptime": map[string]any{"secs": 3600},
		"mem":    map[string]any{"kb": 10240, "percent": 0.5},
		"cpu":    map[string]any{"total": 0.1},
	}}
}

func stemcellOf(d Deployment) map[string]any {
	if len(d.Stemcells) == 0 {
		return map[string]any{"name": "", "version": "", "api_version": 3}
	}
	return map[string]any{"name": d.Stemcells[0].Name, "version": d.Stemcells[0].Version, "api_version": 3}
}

func (s *Server) listInstances(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	d, ok := s.deployment(w, r, c)
	if !ok {
		return
	}
	if r.URL.Query().Get("format") == "full" {
		s.startTask(w, c, d, "retrieve vm-stats", true)
		return
	}
	out := []any{}
	for _, in := range d.Instances {
		out = append(out, instanceJSON(in))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	d, ok := s.deployment(w, r, c)
	if !ok {
		return
	}
	if r.URL.Query().Get("format") == "full" {
		s.startTask(w, c, d, "retrieve vm-stats", false)
		return
	}
	out := []any{}
	for _, in := range d.Instances {
		if in.HasVM() {
			e := instanceJSON(in)
			delete(e, "expects_vm")
			e["active"] = true
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// startTask records a finished task whose result is the instance details
// (all instances, or only those with VMs) and redirects to it.
func (s *Server) startTask(w http.ResponseWriter, c *uaa.Claims, d Deployment, desc string, all bool) {
	var b strings.Builder
	for _, in := range d.Instances {
		if !all && !in.HasVM() {
			continue
		}
		line, _ := json.Marshal(detailsJSON(d, in)) // plain maps always marshal
		b.Write(line)
		b.WriteByte('\n')
	}
	s.mu.Lock()
	t := &task{
		ID:          s.nextTask,
		State:       "done",
		Description: desc,
		Deployment:  d.Name,
		Teams:       append([]string(nil), d.Teams...),
		User:        userOf(c),
		Timestamp:   s.opts.Now().Unix(),
		Result:      b.String(),
	}
	s.tasks[t.ID] = t
	s.nextTask++
	s.mu.Unlock()
	w.Header().Set("Location", s.URL()+"/tasks/"+strconv.Itoa(t.ID))
	w.WriteHeader(http.StatusFound)
}

func (s *Server) task(w http.ResponseWriter, r *http.Request, c *uaa.Claims) (*task, bool) {
	id, err := strconv.Atoi(r.PathValue("id"))
	s.mu.Lock()
	t, ok := s.tasks[id]
	s.mu.Unlock()
	if err != nil || !ok {
		writeError(w, http.StatusNotFound, 10001, fmt.Sprintf("Task %s not found", r.PathValue("id")))
		return nil, false
	}
	if exp := s.expectedForDeployment(t.Teams, false); !granted(c, exp) {
		denied(w, exp)
		return nil, false
	}
	return t, true
}

func (s *Server) getTask(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	t, ok := s.task(w, r, c)
	if !ok {
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"id":          t.ID,
		"state":       t.State,
		"description": t.Description,
		"timestamp":   t.Timestamp,
		"started_at":  t.Timestamp,
		"result":      "",
		"user":        t.User,
		"deployment":  t.Deployment,
		"context_id":  "",
	})
}

// taskOutput serves a task log, honouring "Range: bytes=N-" as the CLI
// polls with it (416 when there is nothing past N).
func (s *Server) taskOutput(w http.ResponseWriter, r *http.Request, c *uaa.Claims) {
	t, ok := s.task(w, r, c)
	if !ok {
		return
	}
	var body string
	switch r.URL.Query().Get("type") {
	case "result":
		body = t.Result
	case "event":
		body = t.Events
	case "debug", "cpi", "":
		body = ""
	default:
		writeError(w, http.StatusBadRequest, 10000, "Invalid output type")
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	rng := r.Header.Get("Range")
	if rng == "" {
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write([]byte(body))
		return
	}
	start, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(rng, "bytes="), "-"))
	if err != nil || start < 0 {
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	if start >= len(body) {
		w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", len(body)))
		w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
		return
	}
	w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, len(body)-1, len(body)))
	w.WriteHeader(http.StatusPartialContent)
	_, _ = w.Write([]byte(body[start:]))
}
