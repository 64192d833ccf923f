package cfresolver_test

import (
	"testing"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/cfresolver"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// TestFollows: all of a process's instances are followed; named
// instances are not (the user chose them).
func TestFollows(t *testing.T) {
	var f api.Follower = &cfresolver.Resolver{}
	if !f.Follows(capturecmd.Request{App: "g", Process: "web"}) {
		t.Error("a capture of all instances is not followed")
	}
	if f.Follows(capturecmd.Request{App: "g", Process: "web", Instances: []int{0}}) {
		t.Error("a capture of named instances is followed")
	}
}
