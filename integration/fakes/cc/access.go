package cc

import (
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// index is an immutable view of a normalized World.
type index struct {
	world  World
	orgs   []*Org
	spaces []*spaceRef
	apps   []*appRef
	procs  []*procRef
	users  map[string]User

	orgByGUID   map[string]*Org
	spaceByGUID map[string]*spaceRef
	appByGUID   map[string]*appRef
	procByGUID  map[string]*procRef
}

type spaceRef struct {
	*Space
	org *Org
}

type appRef struct {
	*App
	space *spaceRef
}

type procRef struct {
	*Process
	app *appRef
}

func newIndex(w World) *index {
	ix := &index{
		world:       w,
		users:       map[string]User{},
		orgByGUID:   map[string]*Org{},
		spaceByGUID: map[string]*spaceRef{},
		appByGUID:   map[string]*appRef{},
		procByGUID:  map[string]*procRef{},
	}
	for _, u := range ix.world.Users {
		ix.users[u.GUID] = u
	}
	for oi := range ix.world.Organizations {
		o := &ix.world.Organizations[oi]
		ix.orgs = append(ix.orgs, o)
		ix.orgByGUID[o.GUID] = o
		for si := range o.Spaces {
			sr := &spaceRef{Space: &o.Spaces[si], org: o}
			ix.spaces = append(ix.spaces, sr)
			ix.spaceByGUID[sr.GUID] = sr
			for ai := range sr.Apps {
				ar := &appRef{App: &sr.Apps[ai], space: sr}
				ix.apps = append(ix.apps, ar)
				ix.appByGUID[ar.GUID] = ar
				for pi := range ar.Processes {
					pr := &procRef{Process: &ar.Processes[pi], app: ar}
					ix.procs = append(ix.procs, pr)
					ix.procByGUID[pr.GUID] = pr
				}
			}
		}
	}
	return ix
}

// viewer is what one token may see, following the CC's permission rules.
type viewer struct {
	userGUID      string
	admin         bool // cloud_controller.admin
	adminReadOnly bool // cloud_controller.admin_read_only
	globalAuditor bool // cloud_controller.global_auditor
	orgRoles      map[string]map[string]bool
	spaceRoles    map[string]map[string]bool
}

func newViewer(c *uaa.Claims, ix *index) *viewer {
	v := &viewer{
		userGUID:      c.Subject,
		admin:         c.HasScope(scopeAdmin),
		adminReadOnly: c.HasScope(scopeAdminReadOnly),
		globalAuditor: c.HasScope(scopeGlobalAuditor),
		orgRoles:      map[string]map[string]bool{},
		spaceRoles:    map[string]map[string]bool{},
	}
	if c.UserID != "" {
		v.userGUID = c.UserID
	}
	for _, r := range ix.world.Roles {
		if r.User != v.userGUID {
			continue
		}
		if r.Organization != "" {
			add(v.orgRoles, r.Organization, r.Type)
		}
		if r.Space != "" {
			add(v.spaceRoles, r.Space, r.Type)
		}
	}
	return v
}

func add(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

// readsEverything: admins, read-only admins and global auditors see all.
func (v *viewer) readsEverything() bool {
	return v.admin || v.adminReadOnly || v.globalAuditor
}

// canRead reports whether the token may make read requests at all.
func canRead(c *uaa.Claims) bool {
	return c.HasScope(scopeCloudControllerRd) || c.HasScope(scopeAdmin) ||
		c.HasScope(scopeAdminReadOnly) || c.HasScope(scopeGlobalAuditor)
}

// seesOrg: any org role, or any role in one of the org's spaces.
func (v *viewer) seesOrg(o *Org) bool {
	if v.readsEverything() || len(v.orgRoles[o.GUID]) > 0 {
		return true
	}
	for _, sp := range o.Spaces {
		if len(v.spaceRoles[sp.GUID]) > 0 {
			return true
		}
	}
	return false
}

// seesSpace: any space role in it, or org manager of its org. Org users,
// auditors and billing managers do not see the org's spaces.
func (v *viewer) seesSpace(sp *spaceRef) bool {
	return v.readsEverything() || len(v.spaceRoles[sp.GUID]) > 0 || v.orgRoles[sp.org.GUID][RoleOrgManager]
}

// seesApp: apps are visible to whoever sees their space (space developers,
// managers, auditors, supporters and org managers).
func (v *viewer) seesApp(a *appRef) bool { return v.seesSpace(a.space) }

// readsSensitive: only admins, read-only admins and space developers may
// read an app's sensitive data (env, process commands, ssh).
func (v *viewer) readsSensitive(a *appRef) bool {
	return v.admin || v.adminReadOnly || v.spaceRoles[a.space.GUID][RoleSpaceDeveloper]
}

// seesRole: admins see all roles; others see the roles of orgs and spaces
// they see.
func (v *viewer) seesRole(r Role, ix *index) bool {
	if v.readsEverything() || r.User == v.userGUID {
		return true
	}
	if r.Organization != "" {
		if o, ok := ix.orgByGUID[r.Organization]; ok {
			return v.seesOrg(o)
		}
		return false
	}
	if sp, ok := ix.spaceByGUID[r.Space]; ok {
		return v.seesSpace(sp)
	}
	return false
}

// seesUser: oneself, everyone for admins, and users holding a role the
// viewer sees.
func (v *viewer) seesUser(guid string, ix *index) bool {
	if v.readsEverything() || guid == v.userGUID {
		return true
	}
	for _, r := range ix.world.Roles {
		if r.User == guid && v.seesRole(r, ix) {
			return true
		}
	}
	return false
}
