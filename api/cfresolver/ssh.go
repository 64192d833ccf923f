package cfresolver

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// resolveSSH allows what the platform's SSH policy allows, instance by
// instance (cf.policy ssh): before an instance is captured, the Cloud
// Controller is asked GET /internal/apps/:process_guid/ssh_access/:index
// with the user's token, as Diego's ssh-proxy asks it before `cf ssh`.
// It checks space developer or admin and that SSH is allowed globally, in
// the space and for the app, and records audit.app.ssh-authorized or
// audit.app.ssh-unauthorized (`cf events APP` shows them).
func (r *Resolver) resolveSSH(ctx context.Context, id *api.Identity, req capturecmd.Request, ptype string, fail func(string, error) error) ([]api.Target, []api.Skipped, error) {
	// The web process shares the app's GUID (as `cf ssh` relies on), and
	// its first instance asked is checked before anything else is read, so
	// a refusal is the SSH check's alone: the same for a token of the cf
	// CLI and for one of a `cf ssh-code` code, whose client carries fewer
	// scopes (no admin_read_only or global_auditor, with which a token sees
	// the app but may not SSH to it). Other process types are looked up
	// first.
	a := app{GUID: req.App}
	pguid := req.App
	if ptype != "web" {
		if err := r.get(ctx, id.Token, "/v3/apps/"+req.App, &a); err != nil {
			return nil, nil, fail("look up app", err)
		}
		p, err := r.process(ctx, id, a, ptype, fail)
		if err != nil {
			return nil, nil, err
		}
		pguid = p.GUID
	}
	first := 0
	if len(req.Instances) > 0 {
		first = slices.Min(req.Instances)
	}
	if err := r.sshAccess(ctx, id, pguid, first); err != nil {
		return nil, nil, r.sshRefusal(ctx, id, req.App, err, fail)
	}
	if a.Name == "" {
		if err := r.get(ctx, id.Token, "/v3/apps/"+req.App, &a); err != nil {
			return nil, nil, fail("look up app", err)
		}
	}
	all, err := r.instances(ctx, id, process{GUID: pguid, Type: ptype}, fail)
	if err != nil {
		return nil, nil, err
	}
	targets, skipped, err := r.pick(a, ptype, all, req.Instances)
	if err != nil {
		return nil, nil, err
	}
	// Every other instance is asked about too (each leaves its event); a
	// refused one is reported and the others go on.
	var allowed []api.Target
	var refusal error
	for _, t := range targets {
		i, _ := strconv.Atoi(t.Name[strings.LastIndexByte(t.Name, '/')+1:])
		if i != first {
			if err := r.sshAccess(ctx, id, pguid, i); err != nil {
				rej := r.sshRefusal(ctx, id, req.App, err, fail)
				var re *tunnel.RejectError
				reason := rej.Error()
				if errors.As(rej, &re) {
					reason = re.Message
				}
				skipped = append(skipped, api.Skipped{Name: t.Name, Reason: reason})
				if refusal == nil {
					refusal = rej
				}
				continue
			}
		}
		allowed = append(allowed, t)
	}
	if len(allowed) == 0 && refusal != nil {
		return nil, nil, refusal
	}
	return allowed, skipped, nil
}

// sshAccess asks the Cloud Controller whether the user may SSH to
// instance index of process pguid; nil means yes.
func (r *Resolver) sshAccess(ctx context.Context, id *api.Identity, pguid string, index int) error {
	var ok struct {
		ProcessGUID string `json:"process_guid"`
	}
	return r.get(ctx, id.Token, "/internal/apps/"+pguid+"/ssh_access/"+strconv.Itoa(index), &ok)
}

// sshRefusal turns a refused SSH access check into what the user reads.
// The check does not say which switch is off; the documented
// /v3/apps/:guid/ssh_enabled does, and the refusal names it.
func (r *Resolver) sshRefusal(ctx context.Context, id *api.Identity, appGUID string, err error, fail func(string, error) error) error {
	var ce *ccError
	if !errors.As(err, &ce) {
		return fail("check SSH access", err)
	}
	switch {
	case ce.Status == http.StatusBadRequest:
		return tunnel.Reject(tunnel.CodeNotAllowed, r.sshDisabled(ctx, id, appGUID))
	case ce.Status == http.StatusForbidden && ce.title() == "CF-InsufficientScope":
		return tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("you may not capture app %s: app captures follow SSH access, which takes the cloud_controller.write scope (or cloud_controller.admin), and your token has neither", appGUID))
	case ce.Status == http.StatusForbidden:
		return tunnel.Reject(tunnel.CodeNotAllowed, fmt.Sprintf("you may not capture app %s: app captures follow SSH access, which takes the space developer role in the app's space (or admin)", appGUID))
	}
	return fail("check SSH access", err)
}

// sshDisabled says which SSH switch is off for the app, and how to turn it
// on, from GET /v3/apps/:guid/ssh_enabled.
func (r *Resolver) sshDisabled(ctx context.Context, id *api.Identity, appGUID string) string {
	var st struct {
		Enabled bool   `json:"enabled"`
		Reason  string `json:"reason"`
	}
	a := app{GUID: appGUID, Name: appGUID}
	_ = r.get(ctx, id.Token, "/v3/apps/"+appGUID, &a) // the name, when visible
	const follow = "and app captures follow SSH access"
	if err := r.get(ctx, id.Token, "/v3/apps/"+appGUID+"/ssh_enabled", &st); err != nil || st.Enabled {
		return fmt.Sprintf("the Cloud Controller refused SSH access to app %s (SSH off for it), %s", a.Name, follow)
	}
	switch {
	case st.Reason == "ssh is disabled globally":
		return "SSH to apps is disabled on this platform (the operator's cc.allow_app_ssh_access), " + follow
	case strings.HasPrefix(st.Reason, "ssh is disabled for space"):
		space := strings.Trim(strings.TrimPrefix(st.Reason, "ssh is disabled for space"), " '")
		return fmt.Sprintf("SSH is disabled in space %s, %s; a space manager can allow it with: cf allow-space-ssh %s", space, follow, space)
	case st.Reason == "ssh is disabled for app":
		return fmt.Sprintf("SSH is disabled for app %s, %s; a space developer can enable it with: cf enable-ssh %s", a.Name, follow, a.Name)
	}
	return fmt.Sprintf("SSH is off for app %s (%s), %s", a.Name, st.Reason, follow)
}
