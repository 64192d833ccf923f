package agent

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"

	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Locator finds the network namespace of a capture target. It returns the
// path of a network namespace file, or "" for the agent's own namespace. A
// target that does not exist is a [*tunnel.RejectError] with code
// [tunnel.CodeTargetNotFound].
//
// The path is opened again, checked again and entered by that same open
// file when the capture starts (see inNamespace), so what a Locator checks
// cannot be swapped before it is used.
type Locator interface {
	Locate(ctx context.Context, t agentproto.Target) (string, error)
}

// DefaultNetnsDir is where cf-networking publishes app containers' network
// namespaces on a Diego cell.
//
// What the cell does (cf-networking-release): the garden-cni job renders
// "bind_mount_dir": "/var/vcap/data/garden-cni/container-netns" into the
// garden-external-networker's adapter.json; on "up" the networker
// bind-mounts /proc/<container pid>/ns/net onto <bind_mount_dir>/<handle>
// (creating an empty file there first) and on "down" it unmounts it with
// MNT_DETACH and removes the file. The handle Diego's rep gives an app
// instance's container is the instance GUID (rep.LRPContainerGuid returns
// the instance GUID), the same GUID the Cloud Controller reports as the
// instance's instance_guid. Only root can mount there, so no tenant
// process can influence what the agent finds, unlike its environment.
const DefaultNetnsDir = "/var/vcap/data/garden-cni/container-netns"

// instanceGUIDRe is the shape of a Diego instance GUID: lowercase hex in
// groups of 8-4-4-4-4 (the rep cuts a version-4 UUID to 28 characters,
// auctioncellrep.GenerateGuid), or a whole 8-4-4-4-12 UUID (older Diego,
// and other runtimes that name containers by UUID). Nothing else can be a
// file name in the netns directory: no "/", no "..", no empty name.
var instanceGUIDRe = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-(?:[0-9a-f]{4}|[0-9a-f]{12})$`)

// ValidateInstanceGUID checks that guid has the shape of an instance GUID
// before it is used as a file name. It returns a [*tunnel.RejectError]
// with code [tunnel.CodeBadRequest].
func ValidateInstanceGUID(guid string) error {
	if !instanceGUIDRe.MatchString(guid) {
		return tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("instance guid %q is not an instance guid (lowercase hex, 8-4-4-4-4 or 8-4-4-4-12)", guid))
	}
	return nil
}

// CellLocator finds targets the way a Diego cell publishes them:
//   - host: the agent's own network namespace;
//   - cf-instance: the bind mount named by the instance GUID in NetnsDir;
//   - pid: /proc/PID/ns/net.
//
// Every target other than host must be a network namespace that is
// neither the agent's own nor the host's (PID 1's): a container or process
// target never captures on the host's interfaces (a pid target of a host
// process is refused too; the host target is what captures there, and it
// excludes the agent's own tunnel traffic).
type CellLocator struct {
	// NetnsDir holds the containers' network namespaces, one bind mount
	// per container named by its handle (default [DefaultNetnsDir]).
	NetnsDir string
}

func (l CellLocator) netnsDir() string {
	if l.NetnsDir == "" {
		return DefaultNetnsDir
	}
	return l.NetnsDir
}

// Locate implements [Locator].
func (l CellLocator) Locate(ctx context.Context, t agentproto.Target) (string, error) {
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("agent: locate: %w", err)
	}
	var path string
	var notFound string
	switch t.Kind {
	case agentproto.TargetHost:
		return "", nil
	case agentproto.TargetPID:
		if t.PID <= 0 {
			return "", tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("pid target needs a positive pid, got %d", t.PID))
		}
		path = filepath.Join("/proc", strconv.Itoa(t.PID), "ns", "net")
		notFound = fmt.Sprintf("no process with pid %d on this host", t.PID)
	case agentproto.TargetCFInstance:
		// Checked before the GUID comes near a file name.
		if err := ValidateInstanceGUID(t.InstanceGUID); err != nil {
			return "", err
		}
		path = filepath.Join(l.netnsDir(), t.InstanceGUID)
		notFound = fmt.Sprintf("no container with instance guid %s on this host", t.InstanceGUID)
	default:
		return "", tunnel.Reject(tunnel.CodeBadRequest, fmt.Sprintf("unknown target kind %q", t.Kind))
	}
	f, err := openNetns(path)
	if err != nil {
		return "", netnsReject(err, t.String(), notFound)
	}
	f.Close()
	return path, nil
}
