package integration

import (
	"testing"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestPcapBoshCapturesThreeVMs logs in with the real bosh CLI and
// captures on three VMs with pcap-bosh reading its ~/.bosh/config:
// exact per-VM counts (captureRouters).
func TestPcapBoshCapturesThreeVMs(t *testing.T) {
	testenv.RequireRoot(t)
	e := startBOSHEnv(t, 3)
	home := e.boshLogin(t, "admin")

	captureRouters(t, e, e.Lab.LAN, []string{"HOME=" + home}, "-d", "cf", "router")
}
