package cc

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/fakeid"
)

// World is everything the fake Cloud Controller knows: users, orgs with
// their spaces, apps, processes and instances, and the users' roles. It
// can be written as a Go literal or loaded from JSON (LoadWorld); the JSON
// names are the lower_snake_case field tags.
type World struct {
	Users         []User `json:"users"`
	Organizations []Org  `json:"organizations"`
	Roles         []Role `json:"roles"`
}

// User is a CC user. GUID must equal the UAA user id (the token's user_id);
// Username is informational.
type User struct {
	GUID     string `json:"guid"`
	Username string `json:"username"`
	Origin   string `json:"origin,omitempty"`
}

// Org is an organization.
type Org struct {
	GUID   string  `json:"guid,omitempty"`
	Name   string  `json:"name"`
	Spaces []Space `json:"spaces"`
}

// Space is a space. AllowSSH is the space's allow_ssh (`cf
// allow-space-ssh` / `cf disallow-space-ssh`); true when nil, as the CC
// creates spaces.
type Space struct {
	GUID     string `json:"guid,omitempty"`
	Name     string `json:"name"`
	AllowSSH *bool  `json:"allow_ssh,omitempty"`
	Apps     []App  `json:"apps"`
}

// App is an app. State is "STARTED" (default) or "STOPPED". EnableSSH is
// the app's enable_ssh (`cf enable-ssh` / `cf disable-ssh`); true when
// nil, as the CC's default_app_ssh_access makes new apps.
type App struct {
	GUID      string    `json:"guid,omitempty"`
	Name      string    `json:"name"`
	State     string    `json:"state,omitempty"`
	EnableSSH *bool     `json:"enable_ssh,omitempty"`
	Processes []Process `json:"processes"`
}

// Process is an app process. Its GUID defaults to the app GUID for type
// "web" (as in the real CC) and is derived otherwise.
type Process struct {
	GUID       string     `json:"guid,omitempty"`
	Type       string     `json:"type"`
	Command    string     `json:"command,omitempty"`
	MemoryInMB int        `json:"memory_in_mb,omitempty"`
	DiskInMB   int        `json:"disk_in_mb,omitempty"`
	Instances  []Instance `json:"instances"`
}

// Instance is one process instance as /v3/processes/:guid/stats reports it.
// State is RUNNING (default), STARTING, CRASHED or DOWN. InstanceGUID is
// what the container sees as CF_INSTANCE_GUID; Host is the cell's IP.
type Instance struct {
	Index        int    `json:"index"`
	State        string `json:"state,omitempty"`
	Host         string `json:"host,omitempty"`
	InstanceGUID string `json:"instance_guid,omitempty"`
	InternalIP   string `json:"instance_internal_ip,omitempty"`
	Ports        []Port `json:"instance_ports,omitempty"`
	Uptime       int64  `json:"uptime,omitempty"`
	Details      string `json:"details,omitempty"`
}

// Port is one entry of instance_ports.
type Port struct {
	External             int `json:"external"`
	Internal             int `json:"internal"`
	ExternalTLSProxyPort int `json:"external_tls_proxy_port"`
	InternalTLSProxyPort int `json:"internal_tls_proxy_port"`
}

// Role types, as in the v3 roles API.
const (
	RoleOrgUser            = "organization_user"
	RoleOrgAuditor         = "organization_auditor"
	RoleOrgManager         = "organization_manager"
	RoleOrgBillingManager  = "organization_billing_manager"
	RoleSpaceAuditor       = "space_auditor"
	RoleSpaceDeveloper     = "space_developer"
	RoleSpaceManager       = "space_manager"
	RoleSpaceSupporter     = "space_supporter"
	scopeAdmin             = "cloud_controller.admin"
	scopeAdminReadOnly     = "cloud_controller.admin_read_only"
	scopeGlobalAuditor     = "cloud_controller.global_auditor"
	scopeCloudControllerRd = "cloud_controller.read"
	scopeCloudControllerWr = "cloud_controller.write"
)

// Role gives User (a user GUID or username) a role in Organization (org
// roles) or Space (space roles), each named by GUID.
type Role struct {
	GUID         string `json:"guid,omitempty"`
	Type         string `json:"type"`
	User         string `json:"user"`
	Organization string `json:"organization,omitempty"`
	Space        string `json:"space,omitempty"`
}

// ParseWorld decodes a World from JSON, rejecting unknown fields.
func ParseWorld(r io.Reader) (World, error) {
	var w World
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return World{}, fmt.Errorf("cc: decode world: %w", err)
	}
	return w, nil
}

// LoadWorld reads a World from a JSON file.
func LoadWorld(path string) (World, error) {
	f, err := os.Open(path)
	if err != nil {
		return World{}, fmt.Errorf("cc: load world: %w", err)
	}
	defer f.Close()
	return ParseWorld(f)
}

// Normalize fills in defaults (GUIDs, states, user GUIDs of roles given by
// username) and returns every problem found, joined.
func (w *World) Normalize() error {
	var errs []error
	seen := map[string]string{}
	claim := func(guid, what string) {
		if prev, ok := seen[guid]; ok {
			errs = append(errs, fmt.Errorf("cc: world: %s reuses the guid of %s (%s)", what, prev, guid))
			return
		}
		seen[guid] = what
	}
	users := map[string]string{}
	for i := range w.Users {
		u := &w.Users[i]
		if u.GUID == "" {
			errs = append(errs, fmt.Errorf("cc: world: user %d (%q) has no guid", i, u.Username))
			continue
		}
		if u.Origin == "" {
			u.Origin = "uaa"
		}
		users[u.GUID] = u.GUID
		if u.Username != "" {
			users[u.Username] = u.GUID
		}
	}
	orgs := map[string]bool{}
	spaces := map[string]bool{}
	for oi := range w.Organizations {
		o := &w.Organizations[oi]
		if o.Name == "" {
			errs = append(errs, fmt.Errorf("cc: world: organization %d has no name", oi))
		}
		if o.GUID == "" {
			o.GUID = fakeid.GUID("org/" + o.Name)
		}
		claim(o.GUID, "organization "+o.Name)
		orgs[o.GUID] = true
		for si := range o.Spaces {
			sp := &o.Spaces[si]
			if sp.Name == "" {
				errs = append(errs, fmt.Errorf("cc: world: org %q: space %d has no name", o.Name, si))
			}
			if sp.GUID == "" {
				sp.GUID = fakeid.GUID("space/" + o.Name + "/" + sp.Name)
			}
			claim(sp.GUID, "space "+o.Name+"/"+sp.Name)
			if sp.AllowSSH == nil {
				sp.AllowSSH = ptrTrue()
			}
			spaces[sp.GUID] = true
			for ai := range sp.Apps {
				a := &sp.Apps[ai]
				path := o.Name + "/" + sp.Name + "/" + a.Name
				if a.Name == "" {
					errs = append(errs, fmt.Errorf("cc: world: space %s/%s: app %d has no name", o.Name, sp.Name, ai))
				}
				if a.GUID == "" {
					a.GUID = fakeid.GUID("app/" + path)
				}
				claim(a.GUID, "app "+path)
				if a.EnableSSH == nil {
					a.EnableSSH = ptrTrue()
				}
				switch a.State {
				case "":
					a.State = "STARTED"
				case "STARTED", "STOPPED":
				default:
					errs = append(errs, fmt.Errorf("cc: world: app %s: bad state %q", path, a.State))
				}
				types := map[string]bool{}
				for pi := range a.Processes {
					p := &a.Processes[pi]
					if p.Type == "" {
						p.Type = "web"
					}
					if types[p.Type] {
						errs = append(errs, fmt.Errorf("cc: world: app %s: two processes of type %q", path, p.Type))
					}
					types[p.Type] = true
					if p.GUID == "" {
						if p.Type == "web" {
							p.GUID = a.GUID
						} else {
							p.GUID = fakeid.GUID("process/" + path + "/" + p.Type)
						}
					}
					if p.GUID != a.GUID {
						claim(p.GUID, "process "+path+"/"+p.Type)
					}
					if p.MemoryInMB == 0 {
						p.MemoryInMB = 256
					}
					if p.DiskInMB == 0 {
						p.DiskInMB = 1024
					}
					idx := map[int]bool{}
					for ii := range p.Instances {
						in := &p.Instances[ii]
						if idx[in.Index] {
							errs = append(errs, fmt.Errorf("cc: world: process %s/%s: index %d twice", path, p.Type, in.Index))
						}
						idx[in.Index] = true
						switch in.State {
						case "":
							in.State = "RUNNING"
						case "RUNNING", "STARTING", "CRASHED", "DOWN":
						default:
							errs = append(errs, fmt.Errorf("cc: world: process %s/%s/%d: bad state %q", path, p.Type, in.Index, in.State))
						}
						if in.InstanceGUID == "" && in.State != "DOWN" {
							in.InstanceGUID = fakeid.GUID(fmt.Sprintf("instance/%s/%s/%d", path, p.Type, in.Index))
						}
					}
				}
			}
		}
	}
	for i := range w.Roles {
		r := &w.Roles[i]
		guid, ok := users[r.User]
		if !ok {
			errs = append(errs, fmt.Errorf("cc: world: role %d: unknown user %q", i, r.User))
		} else {
			r.User = guid
		}
		switch r.Type {
		case RoleOrgUser, RoleOrgAuditor, RoleOrgManager, RoleOrgBillingManager:
			if !orgs[r.Organization] || r.Space != "" {
				errs = append(errs, fmt.Errorf("cc: world: role %d (%s): needs a known organization guid and no space", i, r.Type))
			}
		case RoleSpaceAuditor, RoleSpaceDeveloper, RoleSpaceManager, RoleSpaceSupporter:
			if !spaces[r.Space] || r.Organization != "" {
				errs = append(errs, fmt.Errorf("cc: world: role %d (%s): needs a known space guid and no organization", i, r.Type))
			}
		default:
			errs = append(errs, fmt.Errorf("cc: world: role %d: unknown type %q", i, r.Type))
		}
		if r.GUID == "" {
			r.GUID = fakeid.GUID(fmt.Sprintf("role/%s/%s/%s%s", r.Type, r.User, r.Organization, r.Space))
		}
	}
	return errors.Join(errs...)
}

func ptrTrue() *bool { t := true; return &t }
