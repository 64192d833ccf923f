package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// AuthMethod is how a user proved who they are.
type AuthMethod string

// The ways into the front door. They appear as "method" in the audit log.
const (
	// MethodToken: a UAA access token as the SSH password.
	MethodToken AuthMethod = "token"
	// MethodCode: a one-time code (cf ssh-code, pcap-bosh ssh-code),
	// exchanged for the user's token.
	MethodCode AuthMethod = "one-time-code"
	// MethodKey: an operator's SSH key.
	MethodKey AuthMethod = "key"
)

// Identity is an authenticated user of the front door.
type Identity struct {
	// Name is who the user is, for the audit log (a UAA user name, or
	// "key:SHA256:…" for an operator key), whatever the method.
	Name string
	// Method is how the user logged in.
	Method AuthMethod
	// Resolver is the name of the resolver that authenticated the user.
	Resolver string
	// Token is the user's access token, when the user logged in with one.
	// It never appears in logs or errors.
	Token string
	// Scopes of the token, when known.
	Scopes []string
	// Subject is who the user is, stably, across login methods: a UAA
	// user id ("user:<guid>"), a client ("client:<id>") or a key
	// fingerprint. Empty means Name is.
	Subject string
}

// String is safe to log: it never includes the token.
func (id *Identity) String() string { return id.Resolver + ":" + id.Name }

// Key is what per-user limits count by: the resolver (which names the
// issuer) and the stable subject, so that a token login and a one-time
// code login of one user share one quota.
func (id *Identity) Key() string {
	if id.Subject != "" {
		return id.Resolver + ":" + id.Subject
	}
	return id.Resolver + ":" + id.Name
}

// Target is one capture the API opens on one agent.
type Target struct {
	// Name labels the source in interface names and status lines, like
	// "web/2" or "router/3f2a…".
	Name string
	// Agent is the agent's host:port.
	Agent string
	// Capture says what the agent captures.
	Capture agentproto.Target
	// Description goes into the interface description (host address…).
	Description string
	// Address is the IP the source's own traffic carries (the container's
	// or the VM's), named in the output's Name Resolution Block; the zero
	// value when unknown.
	Address netip.Addr
}

// Skipped is a selected target that cannot be captured, reported to the
// user without failing the others (e.g. a crashed instance).
type Skipped struct {
	Name   string
	Reason string
}

// Resolver authenticates users and turns their capture requests into
// targets. The ssh user name picks the resolver ("static", "cf", "bosh").
type Resolver interface {
	// Name is the ssh user name this resolver answers to.
	Name() string
	// AuthPassword checks a password (a token, or a one-time code).
	AuthPassword(ctx context.Context, password string) (*Identity, error)
	// AuthKey checks a public key.
	AuthKey(ctx context.Context, key ssh.PublicKey) (*Identity, error)
	// Resolve authorises id for req and returns the targets to capture
	// and those skipped. A refusal is a *tunnel.RejectError whose message
	// the user reads.
	Resolve(ctx context.Context, id *Identity, req capturecmd.Request) ([]Target, []Skipped, error)
}

// Follower is a resolver whose answer changes while a capture runs
// (instances start, stop and move). Follows says whether a capture of req
// follows it: whether pcap-api asks Resolve again every FollowInterval, to
// take in new targets and let go of those no longer in the answer.
type Follower interface {
	Follows(req capturecmd.Request) bool
}

// ErrNoAuth is returned by resolvers for an authentication method they do
// not offer.
var ErrNoAuth = errors.New("api: authentication method not offered")

// StaticResolver serves named groups of agents from the config to
// operators whose keys are listed.
type StaticResolver struct {
	// Groups maps a group name to its agents' addresses.
	Groups map[string][]string
	// Operators are the keys allowed to capture.
	Operators tunnel.KeySet
}

// Name implements [Resolver].
func (s *StaticResolver) Name() string { return "static" }

// AuthPassword implements [Resolver]: static operators use keys only.
func (s *StaticResolver) AuthPassword(context.Context, string) (*Identity, error) {
	return nil, ErrNoAuth
}

// CheckKey implements [KeyChecker].
func (s *StaticResolver) CheckKey(key ssh.PublicKey) error { return s.Operators.Check(key) }

// AuthKey implements [Resolver].
func (s *StaticResolver) AuthKey(_ context.Context, key ssh.PublicKey) (*Identity, error) {
	if err := s.Operators.Check(key); err != nil {
		return nil, err
	}
	return &Identity{Name: "key:" + tunnel.Fingerprint(key), Method: MethodKey, Resolver: s.Name()}, nil
}

// Resolve implements [Resolver]: each target is GROUP (all its agents),
// GROUP/INDEX or GROUP/ADDRESS. Agents are captured on their host.
func (s *StaticResolver) Resolve(_ context.Context, _ *Identity, req capturecmd.Request) ([]Target, []Skipped, error) {
	if req.App != "" || req.Deployment != "" || req.Instances != nil {
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "--app, --instance and -d are not used by static groups; name groups as GROUP or GROUP/INDEX")
	}
	if len(req.Targets) == 0 {
		return nil, nil, tunnel.Reject(tunnel.CodeBadRequest, "no target given; groups are: "+strings.Join(s.groupNames(), ", "))
	}
	var out []Target
	seen := map[string]bool{}
	var unknown []string
	add := func(group string, i int, addr string) {
		if seen[addr] {
			return
		}
		seen[addr] = true
		out = append(out, Target{
			Name:        group + "/" + strconv.Itoa(i),
			Agent:       addr,
			Capture:     agentproto.Target{Kind: agentproto.TargetHost},
			Description: "agent " + addr,
			Address:     HostAddr(addr),
		})
	}
	for _, sel := range req.Targets {
		group, id, hasID := strings.Cut(sel, "/")
		agents, ok := s.Groups[group]
		if !ok {
			unknown = append(unknown, sel)
			continue
		}
		if !hasID {
			for i, a := range agents {
				add(group, i, a)
			}
			continue
		}
		found := false
		for i, a := range agents {
			if id == strconv.Itoa(i) || id == a {
				add(group, i, a)
				found = true
			}
		}
		if !found {
			unknown = append(unknown, sel)
		}
	}
	if len(unknown) > 0 {
		return nil, nil, tunnel.Reject(tunnel.CodeTargetNotFound, fmt.Sprintf("unknown target(s): %s; groups are: %s", strings.Join(unknown, ", "), strings.Join(s.groupNames(), ", ")))
	}
	return out, nil, nil
}

func (s *StaticResolver) groupNames() []string {
	names := make([]string, 0, len(s.Groups))
	for g := range s.Groups {
		names = append(names, g)
	}
	sort.Strings(names)
	return names
}

// HostAddr is the IP of a host:port or a bare host; the zero value when it
// is a name or malformed.
func HostAddr(hostport string) netip.Addr {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	a, _ := netip.ParseAddr(host)
	return a
}
