package integration

import (
	"context"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/agent"
	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel/frontdoor"
)

// TestScaleoutCFCodeAcrossInstances: three pcap-api instances with one
// config behind HAProxy (roundrobin). Three connections in a row land on
// three different instances, as each instance's log proves: the cf CLI's
// token on the first, a `cf ssh-code` one-time code (minted by UAA, not by
// any instance) exchanged by the second for a capture with exact counts,
// and the same code again refused by the third: the code's single use is
// kept by UAA, across instances. Then `cf pcap` works through the load
// balancer, pinning the instances' shared host key.
func TestScaleoutCFCodeAcrossInstances(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	e := startCFEnv(t)
	f := newAPIFarm(t, e.API, 3)
	e.API = f.LB
	cf := newCFCLI(t)
	cf.login(t, e, "developer")

	// 1: the token authenticates; the target does not exist.
	status, n, stderr, err := execAPI(t, e, cf.token(t), "capture", "--app", cfApp, "--instance", "7")
	if err != nil || status != 1 || n != 0 || !strings.HasPrefix(stderr, "pcap: error: target-not-found ") {
		t.Fatalf("token: status %d, err %v, %d bytes, stderr %q; want 1 target-not-found", status, err, n, stderr)
	}

	// 2: a one-time code, through the real OpenSSH client.
	code := strings.TrimSpace(cf.must(t, "ssh-code"))
	out := t.TempDir() + "/code.pcapng"
	file, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	s := runSSHPassword(t, f.LB, "cf", code, file, "capture", "--app", cfApp, "--instance", "1", "-f", "'udp dst port 9000'", "-c", "6", "--duration", "30s")
	s.WaitLine(t, regexp.MustCompile(`^pcap: web/1: started interfaces=eth0`), 30*time.Second)
	sendUDP(t, e.Containers[1].NS, "198.18.0.1:9000", 6)
	if err, ok := s.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("ssh with a one-time code: exited %v, %v\n%s", ok, err, s.Output())
	}
	file.Close()
	assertAccounting(t, s)
	capinfos(t, out)
	wantCounts(t, perInterface(t, out), map[string]int{"web/1:eth0": 6})

	// 3: the same code again, on the next instance.
	again := runSSHPassword(t, f.LB, "cf", code, nil, "capture", "--app", cfApp, "-c", "1")
	if err, ok := again.Wait(30 * time.Second); !ok || err == nil || !strings.Contains(again.Output(), "Permission denied") {
		t.Errorf("a used code on another instance: exited %v, %v:\n%s", ok, err, again.Output())
	}

	token := f.servedBy(`"msg":"capture-refused".*"user":"cf:developer".*"code":"target-not-found"`)
	capture := f.servedBy(`"msg":"capture-started".*"user":"cf:developer"`)
	refused := f.servedBy(`"msg":"auth-refused".*"user":"cf".*invalid_grant Invalid authorization code`)
	if len(refused) == 0 {
		// The refusal is logged as the connection ends: wait for it.
		waitUntil(t, 10*time.Second, "the used code's refusal in an instance's log", func() bool {
			refused = f.servedBy(`"msg":"auth-refused".*"user":"cf".*invalid_grant Invalid authorization code`)
			return len(refused) > 0
		})
	}
	t.Logf("token served by api%v, code exchanged by api%v, replay refused by api%v", token, capture, refused)
	if len(token) != 1 || len(capture) != 1 || len(refused) != 1 {
		t.Fatalf("each connection must be served by exactly one instance: token %v, code %v, replay %v", token, capture, refused)
	}
	if token[0] == capture[0] || capture[0] == refused[0] || token[0] == refused[0] {
		t.Errorf("roundrobin put two of the three connections on one instance: token api%d, code api%d, replay api%d", token[0], capture[0], refused[0])
	}

	// 4: the cf plugin through the load balancer, pinning the one host
	// key fingerprint every instance presents.
	plugged := t.TempDir() + "/plugin.pcapng"
	p := cf.start(t, e, nil, "myapp", "-i", "2", "-f", "udp dst port 9002", "-c", "4", "-o", plugged)
	p.WaitLine(t, regexp.MustCompile(`^pcap: web/2: started`), 30*time.Second)
	sendUDP(t, e.Containers[2].NS, "198.18.0.1:9002", 4)
	if err, ok := p.Wait(30 * time.Second); !ok || err != nil {
		t.Fatalf("cf pcap through the load balancer: exited %v, %v\n%s", ok, err, p.Output())
	}
	capinfos(t, plugged)
	wantCounts(t, perInterface(t, plugged), map[string]int{"web/2:eth0": 4})
	if by := f.servedBy(`"msg":"capture-started".*"user":"cf:developer".*"filter":"udp dst port 9002"`); len(by) != 1 {
		t.Errorf("the plugin's capture was started by instances %v, want one", by)
	}
}

// TestScaleoutHAProxy: three pcap-api instances with one config behind
// HAProxy, over three agents shared by all of them (same client key).
// 30 captures spread evenly with exact counts; one agent's max_captures
// counts captures from every instance; a SIGKILLed instance ends only its
// own captures (a clear client error, a file valid up to the kill) and the
// agents free its slots at once; a frozen one (a VM gone silently) has its
// slots freed by the agents' keepalive and its client told by its own; a
// rolling restart (SIGTERM,
// drain_delay, start again) of all three refuses no capture.
func TestScaleoutHAProxy(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const (
		vms       = 3
		instances = 3
		operators = 12
	)
	start := time.Now()
	c := newRelLab(t, relLabOptions{
		VMs: vms, Operators: operators,
		AgentConfig: func(c *agent.Config) { c.KeepaliveInterval = time.Second },
		APIConfig:   func(c *api.Config) { c.DrainDelay, c.StopTimeout = time.Second, 2*time.Second },
	})
	f := newAPIFarm(t, c.API, instances)
	t.Logf("lab and %d instances behind HAProxy up in %v", instances, time.Since(start))
	all := []string{"lab/0", "lab/1", "lab/2"}
	wantAll := func(n int) map[string]int {
		return map[string]int{"lab/0:eth0": n, "lab/1:eth0": n, "lab/2:eth0": n}
	}

	t.Run("30 captures spread", func(t *testing.T) {
		const captures, workers = 30, 6
		lbBefore, err := f.lbStats()
		if err != nil {
			t.Fatal(err)
		}
		type result struct {
			k      int
			c      *lbCapture
			counts map[string]int
			err    error
		}
		results := make([]result, captures)
		jobs := make(chan int)
		var wg sync.WaitGroup
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range jobs {
					// Worker w is user w: one capture per user at a time.
					r := result{k: k}
					port, per := 7000+k, 1+k%5
					r.c = f.startCapture(t, c.Operators[w], "-f", fmt.Sprintf("udp dst port %d", port), "-c", fmt.Sprint(per), "--duration", "60s", "lab")
					if r.err = r.c.waitStarted(30*time.Second, all...); r.err == nil {
						for vm := range vms {
							if r.err = relTrySendUDP(c.VMs[vm], fmt.Sprintf("198.18.0.1:%d", port), per, 100); r.err != nil {
								break
							}
						}
					}
					if r.err == nil {
						var status int
						if status, r.err = r.c.wait(30 * time.Second); r.err == nil && status != 0 {
							r.err = fmt.Errorf("exit status %d", status)
						}
					}
					if r.err == nil {
						r.counts, r.err = pcapngCounts(r.c.File)
					}
					results[k] = r
				}
			}()
		}
		for k := range captures {
			jobs <- k
		}
		close(jobs)
		wg.Wait()
		perInstance := make([]int, instances)
		for _, r := range results {
			if r.err != nil {
				t.Errorf("capture %d: %v\n%s", r.k, r.err, r.c.Stderr.Output())
				continue
			}
			wantCounts(t, r.counts, wantAll(1+r.k%5))
			assertAccounting(t, r.c.Stderr)
			wantLine(t, r.c.Stderr, fmt.Sprintf(`^pcap: summary: limit-reached sources=3 packets=%d `, 3*(1+r.k%5)))
			by := f.servedBy(fmt.Sprintf(`"msg":"capture-started".*"filter":"udp dst port %d"`, 7000+r.k))
			if len(by) != 1 {
				t.Errorf("capture %d was started by instances %v, want exactly one", r.k, by)
				continue
			}
			perInstance[by[0]]++
		}
		// tshark agrees with pcapgo on one of them.
		wantCounts(t, perInterface(t, results[captures-1].c.File), wantAll(1+(captures-1)%5))
		t.Logf("captures per instance: %v", perInstance)
		lbAfter, err := f.lbStats()
		if err != nil {
			t.Fatal(err)
		}
		// HAProxy's roundrobin hands new connections out in turn, as long
		// as no health check took an instance out meanwhile.
		downs := 0
		for name, st := range lbAfter {
			downs += st.Downs - lbBefore[name].Downs
		}
		for i, n := range perInstance {
			switch {
			case downs > 0 && n == 0:
				t.Errorf("api%d served no capture (all: %v)", i, perInstance)
			case downs == 0 && n != captures/instances:
				t.Errorf("api%d served %d captures, want %d (all: %v)", i, n, captures/instances, perInstance)
			}
		}
		if downs > 0 {
			t.Logf("HAProxy took instances out %d times (health checks failed on a loaded machine): counts need not be even", downs)
		}
	})

	t.Run("agent limit across instances", func(t *testing.T) {
		// Agents run max_captures 8 (newRelLab), counted over every API
		// connected to them: 8 captures of lab/0 spread over the three
		// instances fill agent 0, and the ninth is refused by the agent.
		var caps []*lbCapture
		for k := range 8 {
			cp := f.startCapture(t, c.Operators[k], "-f", fmt.Sprintf("udp dst port %d", 7100+k), "--duration", "60s", "lab/0")
			if err := cp.waitStarted(30*time.Second, "lab/0"); err != nil {
				t.Fatal(err)
			}
			caps = append(caps, cp)
		}
		var on []int
		for k := range 8 {
			on = append(on, f.servedBy(fmt.Sprintf(`"msg":"capture-started".*"filter":"udp dst port %d"`, 7100+k))...)
		}
		slices.Sort(on)
		if len(slices.Compact(on)) != instances {
			t.Errorf("the 8 captures ran on instances %v, want all %d", on, instances)
		}
		ninth := f.startCapture(t, c.Operators[8], "--duration", "60s", "lab/0")
		if status, err := ninth.wait(30 * time.Second); status != 1 || err != nil {
			t.Errorf("ninth capture: status %d, %v; want 1:\n%s", status, err, ninth.Stderr.Output())
		}
		wantLine(t, ninth.Stderr, `^pcap: lab/0: failed .*agent is running its maximum of 8 captures`)
		for _, cp := range caps {
			cp.stop()
		}
		for k, cp := range caps {
			if status, err := cp.wait(30 * time.Second); status != 0 || err != nil {
				t.Errorf("capture %d: status %d, %v:\n%s", k, status, err, cp.Stderr.Output())
			}
			assertAccounting(t, cp.Stderr)
		}
	})

	t.Run("instance killed", func(t *testing.T) {
		// One long capture per instance (three connections in a row:
		// roundrobin puts them on three instances).
		var caps []*lbCapture
		for k := range instances {
			cp := f.startCapture(t, c.Operators[k], "-f", fmt.Sprintf("udp dst port %d", 7200+k), "--duration", "60s", "lab")
			if err := cp.waitStarted(30*time.Second, all...); err != nil {
				t.Fatal(err)
			}
			caps = append(caps, cp)
		}
		on := make([]int, instances)
		for k := range instances {
			by := f.servedBy(fmt.Sprintf(`"msg":"capture-started".*"filter":"udp dst port %d"`, 7200+k))
			if len(by) != 1 {
				t.Fatalf("capture %d started on instances %v, want one", k, by)
			}
			on[k] = by[0]
		}
		victim := on[0]
		for k := 1; k < instances; k++ {
			if on[k] == victim {
				t.Fatalf("captures on instances %v: roundrobin did not spread them", on)
			}
		}
		// The agents' connections (sessions) from the victim.
		victimSessions := agentSessions(t, c.Agents, "udp dst port 7200")

		const before, after = 5, 7
		for k := range instances {
			for vm := range vms {
				relSendUDP(t, c.VMs[vm], fmt.Sprintf("198.18.0.1:%d", 7200+k), before, 100)
			}
		}
		// Wait until the victim's client holds what was sent: the file is
		// then valid up to the kill.
		waitUntil(t, 20*time.Second, "the victim's packets in its client's file", func() bool {
			got, _ := pcapngCounts(caps[0].File)
			return got["lab/0:eth0"] == before && got["lab/1:eth0"] == before && got["lab/2:eth0"] == before
		})
		killed := time.Now()
		if err := f.APIs[victim].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.APIs[victim].Wait(10 * time.Second); !ok {
			t.Fatal("the victim did not die")
		}

		// Its client: a clear error, and the file it had.
		status, err := caps[0].wait(20 * time.Second)
		if status != -1 || !errors.Is(err, frontdoor.ErrSessionLost) {
			t.Errorf("the victim's client: status %d, %v; want the session lost", status, err)
		} else {
			t.Logf("the victim's client got: %v", err)
		}
		capinfos(t, caps[0].File)
		got, err := pcapngCounts(caps[0].File)
		if err != nil {
			t.Errorf("the victim's file: %v", err)
		}
		wantCounts(t, got, wantAll(before))

		// The agents ended the victim's captures at once: its connections
		// closed with the process (see "instance frozen" for a silent end).
		for vm, a := range c.Agents {
			waitSessionEnded(t, a, victimSessions[vm], 10*time.Second)
		}
		t.Logf("the agents freed the victim's slots %v after the kill", time.Since(killed).Round(time.Millisecond))

		// The other instances' captures go on, exactly.
		for k := 1; k < instances; k++ {
			for vm := range vms {
				relSendUDP(t, c.VMs[vm], fmt.Sprintf("198.18.0.1:%d", 7200+k), after, 100)
			}
		}
		for k := 1; k < instances; k++ {
			caps[k].stop()
			if status, err := caps[k].wait(30 * time.Second); status != 0 || err != nil {
				t.Errorf("capture on api%d: status %d, %v:\n%s", on[k], status, err, caps[k].Stderr.Output())
				continue
			}
			got, err := pcapngCounts(caps[k].File)
			if err != nil {
				t.Errorf("capture on api%d: %v", on[k], err)
			}
			wantCounts(t, got, wantAll(before+after))
			assertAccounting(t, caps[k].Stderr)
		}

		// New captures go to the others, even before HAProxy's health
		// check took the dead one out (its connection is refused and
		// redispatched).
		for k := range 4 {
			cp := f.startCapture(t, c.Operators[k], "-f", fmt.Sprintf("udp dst port %d", 7300+k), "--duration", "300ms", "lab/0")
			if status, err := cp.wait(30 * time.Second); status != 0 || err != nil {
				t.Errorf("new capture %d after the kill: status %d, %v:\n%s", k, status, err, cp.Stderr.Output())
			}
		}
		f.waitServer(t, victim, "DOWN", 10*time.Second)

		// Back to three for the rolling restart.
		f.start(t, victim, f.APIs[victim])
		f.waitServer(t, victim, "UP", 30*time.Second)
	})

	t.Run("instance frozen", func(t *testing.T) {
		// A VM that vanishes closes nothing: SIGSTOP the instance that
		// serves a capture, and the agents' keepalive (1 s here) must end
		// its captures within 4 intervals (one to the next check, three
		// for its reply).
		const keepalive = time.Second
		cp := f.startCapture(t, c.Operators[0], "-f", "udp dst port 7400", "--duration", "60s", "lab")
		if err := cp.waitStarted(30*time.Second, all...); err != nil {
			t.Fatal(err)
		}
		by := f.servedBy(`"msg":"capture-started".*"filter":"udp dst port 7400"`)
		if len(by) != 1 {
			t.Fatalf("capture started on instances %v, want one", by)
		}
		frozen := by[0]
		sessions := agentSessions(t, c.Agents, "udp dst port 7400")
		stopped := time.Now()
		if err := f.APIs[frozen].Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		for vm, a := range c.Agents {
			// 4 intervals, and generous slack for a loaded machine.
			waitSessionEnded(t, a, sessions[vm], 4*keepalive+10*time.Second)
		}
		took := time.Since(stopped)
		t.Logf("the agents freed a frozen instance's slots %v after it stopped answering (bound 4 × %v)", took.Round(time.Millisecond), keepalive)
		if took < keepalive {
			t.Errorf("the agents ended the captures %v after the freeze: not their keepalive, which needs more than one interval", took)
		}
		// Its client, whose connection HAProxy keeps open, is told by its
		// own keepalive (1 s here), and keeps what it received.
		if status, err := cp.wait(4*keepalive + 10*time.Second); status != -1 || !errors.Is(err, frontdoor.ErrSessionLost) {
			t.Errorf("the frozen instance's client: status %d, %v; want the session lost", status, err)
		}
		t.Logf("its client gave up %v after the freeze", time.Since(stopped).Round(time.Millisecond))
		capinfos(t, cp.File)
		if err := f.APIs[frozen].Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, ok := f.APIs[frozen].Wait(10 * time.Second); !ok {
			t.Fatal("the frozen instance did not die")
		}
		f.start(t, frozen, f.APIs[frozen])
		f.waitServer(t, frozen, "UP", 30*time.Second)
	})

	t.Run("rolling restart", func(t *testing.T) {
		before, err := f.lbStats()
		if err != nil {
			t.Fatal(err)
		}
		type attempt struct {
			at time.Time
			ok bool
		}
		var (
			mu       sync.Mutex
			attempts []attempt
			stop     = make(chan struct{})
			wg       sync.WaitGroup
		)
		stopWorkers := sync.OnceFunc(func() {
			close(stop)
			wg.Wait()
		})
		defer stopWorkers()
		for w := range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					cp := f.startCapture(t, c.Operators[w], "--duration", "300ms", "lab/0")
					status, err := cp.wait(30 * time.Second)
					ok := status == 0 && err == nil && len(cp.Stderr.Lines(regexp.MustCompile(`^pcap: lab/0: started `))) == 1
					if !ok {
						t.Logf("capture refused: status %d, %v: %s", status, err, cp.Stderr.Output())
					}
					mu.Lock()
					attempts = append(attempts, attempt{cp.Started, ok})
					mu.Unlock()
				}
			}()
		}
		var restarts []time.Duration
		for i := range instances {
			restarts = append(restarts, f.restart(t, i, syscall.SIGTERM))
			f.waitServer(t, i, "UP", 30*time.Second)
		}
		stopWorkers()
		after, err := f.lbStats()
		if err != nil {
			t.Fatal(err)
		}

		slices.SortFunc(attempts, func(a, b attempt) int { return a.at.Compare(b.at) })
		refused := 0
		var longestGap, longestRefusal time.Duration
		var lastOK, firstRefused time.Time
		for _, a := range attempts {
			if !a.ok {
				refused++
				if firstRefused.IsZero() {
					firstRefused = a.at
				}
				continue
			}
			if !lastOK.IsZero() {
				longestGap = max(longestGap, a.at.Sub(lastOK))
			}
			if !firstRefused.IsZero() {
				longestRefusal = max(longestRefusal, a.at.Sub(firstRefused))
				firstRefused = time.Time{}
			}
			lastOK = a.at
		}
		redispatched := 0
		for name, s := range after {
			redispatched += s.Redispatches - before[name].Redispatches
		}
		t.Logf("rolling restart: %d captures started, %d refused, longest gap between accepted captures %v, longest refusal %v; instances away %v each; HAProxy redispatched %d connections",
			len(attempts), refused, longestGap.Round(time.Millisecond), longestRefusal.Round(time.Millisecond), restarts, redispatched)
		if len(attempts) < 3*instances {
			t.Errorf("only %d captures were tried during the restart", len(attempts))
		}
		shortest := slices.Min(restarts)
		if !firstRefused.IsZero() || longestRefusal > shortest {
			t.Errorf("captures were refused for %v (still refused at the end: %v), longer than one instance's restart (%v)", longestRefusal, !firstRefused.IsZero(), shortest)
		}
		for i, a := range f.APIs {
			if len(a.Lines(regexp.MustCompile(`"msg":"api-listening"`))) != 1 {
				t.Errorf("api%d: not restarted", i)
			}
		}
	})
}

// TestAPIDrainAfterSIGTERM: with drain_delay, SIGTERM turns /health to
// 503 "draining" at once while the instance still serves new captures
// for the delay; then it closes its port and exits.
func TestAPIDrainAfterSIGTERM(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	const drain = 5 * time.Second
	c := newRelLab(t, relLabOptions{VMs: 1, APIConfig: func(c *api.Config) { c.DrainDelay = drain }})
	if code, body := c.httpGet(t, "/health"); code != 200 || body != "ok\n" {
		t.Fatalf("/health = %d %q before SIGTERM, want 200 ok", code, body)
	}
	term := time.Now()
	if err := c.API.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	c.API.WaitLine(t, regexp.MustCompile(`"msg":"api-draining".*"drain_delay":"5s"`), 10*time.Second)
	if code, body := c.httpGet(t, "/health"); code != 503 || body != "draining\n" {
		t.Errorf("/health = %d %q while draining, want 503 draining", code, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := relExec(ctx, c.API, "static", relKeyAuth(c.Operators[0]), "capture --duration 200ms lab/0")
	if r.Status != 0 || r.Err != nil || !strings.Contains(r.Stderr, "pcap: lab/0: started ") {
		t.Errorf("a capture while draining: status %d, %v:\n%s", r.Status, r.Err, r.Stderr)
	}
	if took := time.Since(term); took >= drain {
		t.Fatalf("the capture while draining took until %v after SIGTERM, past the drain (a loaded machine?)", took)
	}
	c.API.WaitLine(t, regexp.MustCompile(`"msg":"api-stopping"`), drain+10*time.Second)
	if took := time.Since(term); took < drain {
		t.Errorf("the API stopped serving %v after SIGTERM, before drain_delay %v", took, drain)
	}
	if _, ok := c.API.Wait(20 * time.Second); !ok {
		t.Fatal("the API did not exit after the drain")
	}
	r = relExec(ctx, c.API, "static", relKeyAuth(c.Operators[0]), "capture --duration 200ms lab/0")
	if r.Err == nil {
		t.Errorf("a capture after the drain: status %d, want a refused connection", r.Status)
	}
}
