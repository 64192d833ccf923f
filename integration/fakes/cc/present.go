package cc

import (
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/fakeid"
)

// created is the fixed creation time of every fake resource.
const created = "2024-01-01T00:00:00Z"

func emptyMetadata() map[string]any {
	return map[string]any{"labels": map[string]string{}, "annotations": map[string]string{}}
}

func toOne(guid string) map[string]any {
	if guid == "" {
		return map[string]any{"data": nil}
	}
	return map[string]any{"data": map[string]string{"guid": guid}}
}

func (s *Server) presentOrg(o *Org) map[string]any {
	self := "/v3/organizations/" + o.GUID
	return map[string]any{
		"guid":          o.GUID,
		"created_at":    created,
		"updated_at":    created,
		"name":          o.Name,
		"suspended":     false,
		"relationships": map[string]any{"quota": toOne(fakeid.GUID("quota/default"))},
		"metadata":      emptyMetadata(),
		"links": map[string]any{
			"self":           s.href(self),
			"domains":        s.href(self + "/domains"),
			"default_domain": s.href(self + "/domains/default"),
			"quota":          s.href("/v3/organization_quotas/" + fakeid.GUID("quota/default")),
		},
	}
}

func (s *Server) presentOrgs(m map[string]*Org) []any { return presentSorted(m, s.presentOrg) }

func (s *Server) presentSpace(sp *spaceRef) map[string]any {
	self := "/v3/spaces/" + sp.GUID
	return map[string]any{
		"guid":       sp.GUID,
		"created_at": created,
		"updated_at": created,
		"name":       sp.Name,
		"relationships": map[string]any{
			"organization": toOne(sp.org.GUID),
			"quota":        toOne(""),
		},
		"metadata": emptyMetadata(),
		"links": map[string]any{
			"self":           s.href(self),
			"features":       s.href(self + "/features"),
			"organization":   s.href("/v3/organizations/" + sp.org.GUID),
			"apply_manifest": map[string]string{"href": s.URL() + self + "/actions/apply_manifest", "method": "POST"},
		},
	}
}

func (s *Server) presentSpaces(m map[string]*spaceRef) []any {
	return presentSorted(m, s.presentSpace)
}

// presentSorted presents m's values in the order of their keys (GUIDs); an
// empty m is an empty (not null) list.
func presentSorted[V any](m map[string]V, present func(V) map[string]any) []any {
	out := []any{}
	for _, k := range sortedKeys(m) {
		out = append(out, present(m[k]))
	}
	return out
}

func (s *Server) presentApp(a *appRef) map[string]any {
	self := "/v3/apps/" + a.GUID
	post := func(p string) map[string]string {
		return map[string]string{"href": s.URL() + self + p, "method": "POST"}
	}
	return map[string]any{
		"guid":       a.GUID,
		"name":       a.Name,
		"state":      a.State,
		"created_at": created,
		"updated_at": created,
		"lifecycle": map[string]any{
			"type": "buildpack",
			"data": map[string]any{"buildpacks": []string{}, "stack": "cflinuxfs4"},
		},
		"relationships": map[string]any{
			"space":           toOne(a.space.GUID),
			"current_droplet": toOne(""),
		},
		"metadata": emptyMetadata(),
		"links": map[string]any{
			"self":                  s.href(self),
			"environment_variables": s.href(self + "/environment_variables"),
			"space":                 s.href("/v3/spaces/" + a.space.GUID),
			"processes":             s.href(self + "/processes"),
			"packages":              s.href(self + "/packages"),
			"current_droplet":       s.href(self + "/droplets/current"),
			"droplets":              s.href(self + "/droplets"),
			"tasks":                 s.href(self + "/tasks"),
			"start":                 post("/actions/start"),
			"stop":                  post("/actions/stop"),
			"revisions":             s.href(self + "/revisions"),
			"deployed_revisions":    s.href(self + "/revisions/deployed"),
			"features":              s.href(self + "/features"),
		},
	}
}

// presentProcess hides the command from viewers without sensitive access,
// and in lists from everyone, as the CC does.
func (s *Server) presentProcess(p *procRef, v *viewer, inList bool) map[string]any {
	self := "/v3/processes/" + p.GUID
	command := any(nil)
	if p.Command != "" {
		command = p.Command
	}
	switch {
	case inList:
		command = "[PRIVATE DATA HIDDEN IN LISTS]"
	case !v.readsSensitive(p.app):
		command = "[PRIVATE DATA HIDDEN]"
	}
	return map[string]any{
		"guid":                               p.GUID,
		"type":                               p.Type,
		"command":                            command,
		"instances":                          len(p.Instances),
		"memory_in_mb":                       p.MemoryInMB,
		"disk_in_mb":                         p.DiskInMB,
		"log_rate_limit_in_bytes_per_second": -1,
		"health_check": map[string]any{
			"type": "port",
			"data": map[string]any{"timeout": nil, "invocation_timeout": nil, "interval": nil},
		},
		"readiness_health_check": map[string]any{
			"type": "process",
			"data": map[string]any{"invocation_timeout": nil, "interval": nil},
		},
		"relationships": map[string]any{
			"app":      toOne(p.app.GUID),
			"revision": nil,
		},
		"metadata":   emptyMetadata(),
		"version":    fakeid.GUID("version/" + p.GUID),
		"created_at": created,
		"updated_at": created,
		"links": map[string]any{
			"self":  s.href(self),
			"scale": map[string]string{"href": s.URL() + self + "/actions/scale", "method": "POST"},
			"app":   s.href("/v3/apps/" + p.app.GUID),
			"space": s.href("/v3/spaces/" + p.app.space.GUID),
			"stats": s.href(self + "/stats"),
		},
	}
}

// presentStats is the body of /v3/processes/:guid/stats. DOWN instances
// carry only type, index, state and uptime, as the CC reports instances
// Diego does not know about.
func (s *Server) presentStats(p *procRef) map[string]any {
	now := s.opts.Now().UTC().Format(time.RFC3339Nano)
	resources := []any{}
	for _, in := range p.Instances {
		if in.State == "DOWN" {
			r := map[string]any{"type": p.Type, "index": in.Index, "state": "DOWN", "uptime": 0}
			if in.Details != "" {
				r["details"] = in.Details
			}
			resources = append(resources, r)
			continue
		}
		ports := []Port{}
		if in.Ports != nil {
			ports = in.Ports
		}
		var details any
		if in.Details != "" {
			details = in.Details
		}
		resources = append(resources, map[string]any{
			"type":                 p.Type,
			"index":                in.Index,
			"state":                in.State,
			"routable":             in.State == "RUNNING",
			"host":                 in.Host,
			"instance_guid":        in.InstanceGUID,
			"instance_internal_ip": in.InternalIP,
			"instance_ports":       ports,
			"uptime":               in.Uptime,
			"mem_quota":            int64(p.MemoryInMB) << 20,
			"disk_quota":           int64(p.DiskInMB) << 20,
			"log_rate_limit":       -1,
			"fds_quota":            16384,
			"isolation_segment":    nil,
			"details":              details,
			"usage": map[string]any{
				"time":            now,
				"cpu":             0.001,
				"cpu_entitlement": 0.01,
				"mem":             32 << 20,
				"disk":            64 << 20,
				"log_rate":        0,
			},
		})
	}
	return map[string]any{"resources": resources}
}

func (s *Server) presentRole(r Role) map[string]any {
	rel := map[string]any{"user": toOne(r.User), "space": toOne(r.Space), "organization": toOne(r.Organization)}
	links := map[string]any{"self": s.href("/v3/roles/" + r.GUID), "user": s.href("/v3/users/" + r.User)}
	if r.Space != "" {
		links["space"] = s.href("/v3/spaces/" + r.Space)
	} else {
		links["organization"] = s.href("/v3/organizations/" + r.Organization)
	}
	return map[string]any{
		"guid":          r.GUID,
		"created_at":    created,
		"updated_at":    created,
		"type":          r.Type,
		"relationships": rel,
		"links":         links,
	}
}

func (s *Server) presentUser(u User) map[string]any {
	var username, presentation any = nil, u.GUID
	if u.Username != "" {
		username, presentation = u.Username, u.Username
	}
	return map[string]any{
		"guid":              u.GUID,
		"created_at":        created,
		"updated_at":        created,
		"username":          username,
		"presentation_name": presentation,
		"origin":            u.Origin,
		"metadata":          emptyMetadata(),
		"links":             map[string]any{"self": s.href("/v3/users/" + u.GUID)},
	}
}
