package integration

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/fakes/cc"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// setWebInstances sets myapp's web instances in the fake Cloud Controller,
// as /v3/processes/:guid/stats then reports them: one entry per index,
// a restarted instance with a new instance GUID at the same index.
func (e *cfEnv) setWebInstances(t *testing.T, ins []cc.Instance) {
	t.Helper()
	err := e.CC.Update(func(w *cc.World) {
		for oi := range w.Organizations {
			for si := range w.Organizations[oi].Spaces {
				apps := w.Organizations[oi].Spaces[si].Apps
				for ai := range apps {
					if apps[ai].GUID != cfApp {
						continue
					}
					for pi := range apps[ai].Processes {
						if apps[ai].Processes[pi].Type == "web" {
							apps[ai].Processes[pi].Instances = ins
						}
					}
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
}

// running is the CC's view of a running container.
func (e *cfEnv) running(c *cfContainer) cc.Instance {
	return cc.Instance{Index: c.Index, State: "RUNNING", Host: e.Cells[c.Cell].Host, InstanceGUID: c.GUID}
}

// TestCFFollowScaleAndRestart: `cf pcap myapp` (no -i) follows the app.
// Scaled from 2 to 3 instances and instance 1 restarted (same index, new
// instance GUID) during the capture: web/2 and web/1#2 join as new
// interfaces, the old web/1 ends as instance-gone, and the capture ends
// stopped with exit 0 and exact per-interface counts. A --no-follow
// capture running alongside sees no join.
// followed matches the status lines of a capture that followed its
// targets: one joining, one gone.
var followed = regexp.MustCompile(`(?m)^pcap: \S+: (joined|gone) `)

func TestCFFollowScaleAndRestart(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	e.API = e.startAPI(t, func(c *api.Config) { c.FollowInterval = 500 * time.Millisecond })
	c0, c1, c2 := e.Containers[0], e.Containers[1], e.Containers[2]
	e.setWebInstances(t, []cc.Instance{e.running(c0), e.running(c1)})

	cf, still := newCFCLI(t), newCFCLI(t)
	cf.login(t, e, "developer")
	still.login(t, e, "developer")
	dir := t.TempDir()
	out, stillOut := filepath.Join(dir, "follow.pcapng"), filepath.Join(dir, "still.pcapng")
	p := cf.start(t, e, nil, "myapp", "-f", "udp dst port 9000", "-o", out)
	q := still.start(t, e, nil, "myapp", "--no-follow", "-f", "udp dst port 9000", "-o", stillOut)
	for _, pr := range []*testenv.Proc{p, q} {
		for _, i := range []int{0, 1} {
			pr.WaitLine(t, regexp.MustCompile(fmt.Sprintf(`^pcap: web/%d: started`, i)), 30*time.Second)
		}
	}
	sendUDP(t, c0.NS, "198.18.0.1:9000", 5)
	sendUDP(t, c1.NS, "198.18.0.1:9000", 6)

	// Scale to 3 and restart instance 1 on the same cell: a new container
	// with a new instance GUID at index 1.
	c1b := &cfContainer{container: newContainer(t, e.Cells[c1.Cell].Agent.NetnsDir, strings.Replace(c1.GUID, "-0000-4000-", "-0001-4000-", 1)), Index: 1, Cell: c1.Cell}
	e.setWebInstances(t, []cc.Instance{e.running(c0), e.running(c1b), e.running(c2)})
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/2: joined interfaces=eth0 agent=`+regexp.QuoteMeta(e.Cells[c2.Cell].Host)), 30*time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/1#2: joined interfaces=eth0 `), 30*time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/1: gone `), 30*time.Second)

	sendUDP(t, c0.NS, "198.18.0.1:9000", 7)
	sendUDP(t, c2.NS, "198.18.0.1:9000", 8)
	sendUDP(t, c1b.NS, "198.18.0.1:9000", 9)

	for _, pr := range []*testenv.Proc{p, q} {
		if err := pr.SignalGroup(syscall.SIGINT); err != nil { // Ctrl-C
			t.Fatal(err)
		}
	}
	for _, pr := range []*testenv.Proc{p, q} {
		if _, ok := pr.Wait(20 * time.Second); !ok {
			t.Fatalf("cf pcap did not finish within 20s after Ctrl-C:\n%s", pr.Output())
		}
	}
	// The cf CLI itself dies of the Ctrl-C; pcap-api's outcome is in the
	// summary: "stopped" (exit 0), not partial: an instance going away is
	// no failure.
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/1: ended end=instance-gone packets=6 `), time.Second)
	p.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=4 packets=35 `), time.Second)

	capinfos(t, out)
	per := interfaceCounts(t, out)
	want := map[string]int{"web/0:eth0": 12, "web/1:eth0": 6, "web/1#2:eth0": 9, "web/2:eth0": 8}
	if fmt.Sprint(per) != fmt.Sprint(want) {
		t.Errorf("followed: packets per interface = %v, want %v\n%s", per, want, p.Output())
	}
	if n := countISBs(t, out); n != 4 {
		t.Errorf("followed: %d interface statistics blocks, want 4", n)
	}

	// The --no-follow capture kept its starting set: what web/1 and web/2
	// sent after the change never reached it, and nothing joined.
	// (Its own stop may say the cf CLI "has gone away": the cf CLI dies
	// of the Ctrl-C too, and either stop is one.)
	if followed.MatchString(q.Output()) {
		t.Errorf("--no-follow capture followed:\n%s", q.Output())
	}
	q.WaitLine(t, regexp.MustCompile(`^pcap: summary: stopped sources=2 packets=18 `), time.Second)
	per = interfaceCounts(t, stillOut)
	want = map[string]int{"web/0:eth0": 12, "web/1:eth0": 6}
	if fmt.Sprint(per) != fmt.Sprint(want) {
		t.Errorf("--no-follow: packets per interface = %v, want %v\n%s", per, want, q.Output())
	}
}

// TestFollowedMatchesOnlyFollowLines: the --no-follow check once failed
// on the client's own stop line, which says the cf CLI "has gone away".
func TestFollowedMatchesOnlyFollowLines(t *testing.T) {
	for line, want := range map[string]bool{
		`pcap: web/1: gone reason="no longer among the running instances"`:     true,
		`pcap: web/2: joined interfaces=eth0 agent=127.0.0.11:37175`:           true,
		`pcap: client: stopping reason="the cf CLI (pid 13355) has gone away"`: false,
		`pcap: web/0: started interfaces=eth0 agent=127.0.0.10:37175`:          false,
	} {
		if got := followed.MatchString("pcap: summary: x\n" + line + "\n"); got != want {
			t.Errorf("%q: followed %v, want %v", line, got, want)
		}
	}
}
