package uaa

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrRefused is wrapped by the claim checks' errors: the token verifies,
// but it is not one pcap accepts for that door.
var ErrRefused = errors.New("uaa: token refused")

// Claim values UAA and its resource servers use.
const (
	grantClientCredentials = "client_credentials"
	// AudienceCC is the Cloud Controller's resource id (its tokens' aud).
	AudienceCC = "cloud_controller"
	// ScopeCCRead, ScopeCCAdmin: the scopes a cf user needs one of.
	ScopeCCRead  = "cloud_controller.read"
	ScopeCCAdmin = "cloud_controller.admin"
)

// IsUser reports whether the token was issued to a user (it names one and
// did not come from the client_credentials grant).
func (c *Claims) IsUser() bool {
	return c.UserID != "" && c.GrantType != grantClientCredentials
}

// CheckCF accepts the tokens of Cloud Foundry users: a user token (or one
// of a client in allowedClients), for the Cloud Controller (aud has
// cloud_controller), that may read from it (cloud_controller.read or
// cloud_controller.admin). The Cloud Controller is still asked about every
// capture; this keeps tokens UAA issued for something else out of the
// front door. Errors wrap ErrRefused and never hold the token.
func CheckCF(c *Claims, allowedClients []string) error {
	if !c.IsUser() && !slices.Contains(allowedClients, c.ClientID) {
		return fmt.Errorf("%w: it is a token of client %q for itself (grant %s), not of a user; an operator may allow the client with cf.allowed_clients", ErrRefused, c.ClientID, grantOrNone(c.GrantType))
	}
	if !slices.Contains(c.Audience, AudienceCC) {
		return fmt.Errorf("%w: it is not for the Cloud Controller (audience %s)", ErrRefused, listOrNone(c.Audience))
	}
	if !c.HasScope(ScopeCCRead) && !c.HasScope(ScopeCCAdmin) {
		return fmt.Errorf("%w: it has neither %s nor %s scope (scopes %s)", ErrRefused, ScopeCCRead, ScopeCCAdmin, listOrNone(c.Scope))
	}
	return nil
}

// CheckBOSH accepts tokens for the BOSH director: aud holds one of
// audiences, or a resource below one ("bosh" covers "bosh.teams.x" and
// "bosh.<director-uuid>", the resources UAA names for the team and
// director admin scopes). E.g. "bosh_cli" is the client the director's
// UAA issues the bosh CLI's tokens to, "bosh" the resource of bosh.admin.
// Admin scopes are checked by the caller. Errors wrap ErrRefused and never
// hold the token.
func CheckBOSH(c *Claims, audiences []string) error {
	for _, a := range audiences {
		for _, x := range c.Audience {
			if x == a || strings.HasPrefix(x, a+".") {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: it is not for the BOSH director (audience %s, want one of %s)", ErrRefused, listOrNone(c.Audience), strings.Join(audiences, ", "))
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "none"
	}
	return strings.Join(l, " ")
}

func grantOrNone(g string) string {
	if g == "" {
		return "unknown"
	}
	return g
}
