package boshresolver_test

import (
	"testing"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/api/boshresolver"
	"code.cloudfoundry.org/pcap/tunnel/capturecmd"
)

// TestFollows: a capture of a whole deployment or naming a whole instance
// group is followed; one naming only instances (GROUP/ID) is not.
func TestFollows(t *testing.T) {
	var f api.Follower = &boshresolver.Resolver{}
	if !f.Follows(capturecmd.Request{Deployment: "cf", Targets: []string{"router/0", "diego-cell"}}) {
		t.Error("a capture of a whole group is not followed")
	}
	if !f.Follows(capturecmd.Request{Deployment: "cf"}) {
		t.Error("a capture of a whole deployment is not followed")
	}
	if f.Follows(capturecmd.Request{Deployment: "cf", Targets: []string{"router/0", "router/3f2a"}}) {
		t.Error("a capture of named instances is followed")
	}
}
