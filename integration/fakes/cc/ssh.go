package cc

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"code.cloudfoundry.org/pcap/integration/fakes/internal/fakeid"
	"code.cloudfoundry.org/pcap/integration/fakes/uaa"
)

// audienceCC is the CC's UAA resource id: tokens must name it in aud.
const audienceCC = "cloud_controller"

// Audit event types the CC records for Diego's ssh-proxy.
const (
	EventSSHAuthorized   = "audit.app.ssh-authorized"
	EventSSHUnauthorized = "audit.app.ssh-unauthorized"
)

// maxEvents bounds the audit events kept (oldest dropped first).
const maxEvents = 10000

// AuditEvent is one CC audit event, as /v3/audit_events presents it.
type AuditEvent struct {
	GUID      string
	CreatedAt time.Time
	Type      string
	// Actor is the user: GUID is the token's user_id (client_id for a
	// client), Name the token's email (as the CC's actor_name), Username
	// its user_name.
	Actor struct{ GUID, Type, Name, Username string }
	// Target is the process (for ssh events; the web process's GUID is the
	// app's) with type "app" and the app's name.
	Target struct{ GUID, Type, Name string }
	// Data is the event's metadata; {"index": "2"} for ssh events (the
	// index as the URL gave it).
	Data      map[string]any
	SpaceGUID string
	OrgGUID   string
}

// SetAllowAppSSHAccess sets the CC's global allow_app_ssh_access.
func (s *Server) SetAllowAppSSHAccess(allowed bool) { s.sshAllowed.Store(allowed) }

// SetSSH sets the three SSH switches of an app, as an operator and `cf
// allow-space-ssh` / `cf enable-ssh` (or their opposites) would: the
// global allow_app_ssh_access, the app's space's allow_ssh and the app's
// enable_ssh.
func (s *Server) SetSSH(appGUID string, global, space, app bool) error {
	s.SetAllowAppSSHAccess(global)
	found := false
	err := s.Update(func(w *World) {
		for oi := range w.Organizations {
			for si := range w.Organizations[oi].Spaces {
				sp := &w.Organizations[oi].Spaces[si]
				for ai := range sp.Apps {
					if sp.Apps[ai].GUID == appGUID {
						found = true
						sp.AllowSSH, sp.Apps[ai].EnableSSH = &space, &app
					}
				}
			}
		}
	})
	if err == nil && !found {
		err = fmt.Errorf("cc: no app %s", appGUID)
	}
	return err
}

// AuditEvents returns a copy of the audit events recorded so far, oldest
// first.
func (s *Server) AuditEvents() []AuditEvent {
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	return slices.Clone(s.events)
}

// sshStatus is the CC's AppSshEnabled and AppSshStatusPresenter: the
// global switch, then the space's allow_ssh, then the app's enable_ssh.
func (s *Server) sshStatus(a *appRef) (bool, string) {
	switch {
	case !s.sshAllowed.Load():
		return false, "ssh is disabled globally"
	case a.space.AllowSSH != nil && !*a.space.AllowSSH:
		return false, fmt.Sprintf("ssh is disabled for space '%s'", a.space.Name)
	case a.EnableSSH != nil && !*a.EnableSSH:
		return false, "ssh is disabled for app"
	}
	return true, ""
}

// v2Error is the body of an error of the CC's v2-style controllers (the
// /internal ssh_access endpoint is one).
type v2Error struct {
	Code        int    `json:"code"`
	Description string `json:"description"`
	ErrorCode   string `json:"error_code"`
}

// sshAccess is GET /internal/apps/:guid/ssh_access/:index, which Diego's
// ssh-proxy asks with the user's token before letting them in. As the
// CC's AppsSSHController: :guid is a process GUID; 401 without a valid
// token, 404 for an unknown process, 403 without cloud_controller.write
// (admins excepted) or without the space developer role (admins
// excepted), 400 when SSH is off globally, for the space or for the app,
// else 200 with the Diego process guid. Each answer about an existing
// process records audit.app.ssh-authorized or audit.app.ssh-unauthorized.
func (s *Server) sshAccess(w http.ResponseWriter, r *http.Request) {
	ix := s.index()
	p := ix.procByGUID[r.PathValue("guid")]
	index := r.PathValue("index")
	claims, e, status := s.authenticate(r)
	refuse := func(status int, e v2Error) {
		if p != nil {
			s.recordSSH(EventSSHUnauthorized, p, claims, index)
		}
		writeJSON(w, status, e)
	}
	if claims == nil {
		refuse(status, v2Error{Code: e.Code, Description: e.Detail, ErrorCode: e.Title})
		return
	}
	if p == nil {
		writeJSON(w, http.StatusNotFound, v2Error{100004, "The app could not be found: " + r.PathValue("guid"), "CF-AppNotFound"})
		return
	}
	v := newViewer(claims, ix)
	if !v.admin && !claims.HasScope(scopeCloudControllerWr) {
		refuse(http.StatusForbidden, v2Error{10007, "Your token lacks the necessary scopes to access this resource.", "CF-InsufficientScope"})
		return
	}
	if !v.admin && !v.spaceRoles[p.app.space.GUID][RoleSpaceDeveloper] {
		refuse(http.StatusForbidden, v2Error{10003, "You are not authorized to perform the requested action", "CF-NotAuthorized"})
		return
	}
	if ok, _ := s.sshStatus(p.app); !ok {
		refuse(http.StatusBadRequest, v2Error{10004, "The request is invalid", "CF-InvalidRequest"})
		return
	}
	s.recordSSH(EventSSHAuthorized, p, claims, index)
	writeJSON(w, http.StatusOK, map[string]string{"process_guid": p.GUID + "-" + fakeid.GUID("version/"+p.GUID)})
}

// recordSSH records an ssh audit event about p by the token's user
// (claims nil: the CC's placeholders for an unknown user).
func (s *Server) recordSSH(typ string, p *procRef, claims *uaa.Claims, index string) {
	ev := AuditEvent{GUID: randomGUID(), CreatedAt: s.opts.Now().UTC(), Type: typ,
		Data: map[string]any{"index": index}, SpaceGUID: p.app.space.GUID, OrgGUID: p.app.space.org.GUID}
	ev.Actor.Type = "user"
	ev.Actor.GUID, ev.Actor.Name = "unknown-user-guid", "unknown-user-email"
	if claims != nil {
		ev.Actor.GUID = claims.UserID
		if ev.Actor.GUID == "" {
			ev.Actor.GUID = claims.ClientID
		}
		ev.Actor.Name, ev.Actor.Username = claims.Email, claims.UserName
	}
	ev.Target.GUID, ev.Target.Type, ev.Target.Name = p.GUID, "app", p.app.Name
	s.eventsMu.Lock()
	defer s.eventsMu.Unlock()
	if len(s.events) >= maxEvents {
		s.events = slices.Delete(s.events, 0, 1)
	}
	s.events = append(s.events, ev)
}

func randomGUID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return fakeid.GUID(string(b))
}

// seesEvent is the CC's readable_event_dataset: global readers see all;
// others the events of spaces where they are auditor, developer or
// supporter, and of orgs where they are auditor.
func (v *viewer) seesEvent(e AuditEvent) bool {
	if v.readsEverything() {
		return true
	}
	sr := v.spaceRoles[e.SpaceGUID]
	return sr[RoleSpaceAuditor] || sr[RoleSpaceDeveloper] || sr[RoleSpaceSupporter] || v.orgRoles[e.OrgGUID][RoleOrgAuditor]
}

func (s *Server) presentEvent(e AuditEvent) map[string]any {
	ts := e.CreatedAt.Format(time.RFC3339)
	return map[string]any{
		"guid": e.GUID, "created_at": ts, "updated_at": ts, "type": e.Type,
		"actor":        map[string]string{"guid": e.Actor.GUID, "type": e.Actor.Type, "name": e.Actor.Name},
		"target":       map[string]string{"guid": e.Target.GUID, "type": e.Target.Type, "name": e.Target.Name},
		"data":         e.Data,
		"space":        map[string]string{"guid": e.SpaceGUID},
		"organization": map[string]string{"guid": e.OrgGUID},
		"links":        map[string]any{"self": s.href("/v3/audit_events/" + e.GUID)},
	}
}

// eventParams are the query parameters /v3/audit_events knows.
var eventParams = []string{"types", "target_guids", "space_guids", "organization_guids", "order_by", "page", "per_page", "created_ats"}

// listAuditEvents is GET /v3/audit_events with the CC's filters (types,
// target_guids, space_guids, organization_guids) and order_by
// [-]created_at or [-]updated_at (default: oldest first).
func (s *Server) listAuditEvents(w http.ResponseWriter, r *http.Request, v *viewer, _ *index) {
	q := r.URL.Query()
	var unknown []string
	for k := range q {
		if !slices.Contains(eventParams, k) {
			unknown = append(unknown, "'"+k+"'")
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		writeError(w, http.StatusBadRequest, badQuery("Unknown query parameter(s): "+strings.Join(unknown, ", ")+". Valid parameters are: '"+strings.Join(eventParams, "', '")+"'"))
		return
	}
	if len(q["created_ats"]) > 0 {
		writeError(w, http.StatusBadRequest, badQuery("created_ats filters are not supported by this fake"))
		return
	}
	desc := false
	switch q.Get("order_by") {
	case "", "created_at", "updated_at":
	case "-created_at", "-updated_at":
		desc = true
	default:
		writeError(w, http.StatusBadRequest, badQuery("Order by can only be: 'created_at', 'updated_at'"))
		return
	}
	events := s.AuditEvents()
	if desc {
		slices.Reverse(events)
	}
	items := []any{}
	for _, e := range events {
		if v.seesEvent(e) && match(q, "types", e.Type) && match(q, "target_guids", e.Target.GUID) &&
			match(q, "space_guids", e.SpaceGUID) && match(q, "organization_guids", e.OrgGUID) {
			items = append(items, s.presentEvent(e))
		}
	}
	s.paginate(w, r, items, nil)
}

func (s *Server) getAuditEvent(w http.ResponseWriter, r *http.Request, v *viewer, _ *index) {
	for _, e := range s.AuditEvents() {
		if e.GUID == r.PathValue("guid") && v.seesEvent(e) {
			writeJSON(w, http.StatusOK, s.presentEvent(e))
			return
		}
	}
	writeError(w, http.StatusNotFound, notFound("Event"))
}
