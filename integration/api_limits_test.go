package integration

import (
	"regexp"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/api"
	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPILimits runs one API with tight limits; each case is its own
// operator (a user of its own), so the cases run side by side.
func TestAPILimits(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{
		VMs:       3,
		Operators: 6,
		Groups:    map[string][]int{"lab": {0, 1}, "three": {0, 1, 2}},
		APIConfig: func(c *api.Config) {
			c.Limits.MaxCapturesPerUser, c.Limits.MaxTargets, c.Limits.MaxDuration = 1, 2, 4*time.Second
		},
	})
	refused := func(t *testing.T, cl *sshClient, msg string) {
		t.Helper()
		if code := exitCode(t, cl, 15*time.Second); code != 1 {
			t.Errorf("ssh exit status %d, want 1:\n%s", code, cl.Output())
		}
		wantLine(t, cl, `^pcap: error: limit-reached reason="`+regexp.QuoteMeta(msg)+`"$`)
	}

	t.Run("second capture of one user", func(t *testing.T) {
		t.Parallel()
		first, _ := c.captureFile(t, 0, "lab/0")
		waitStarted(t, first, "lab/0")
		second, _ := c.captureFile(t, 0, "lab/1")
		refused(t, second, "you are running your maximum of 1 captures")
		first.Stdin.Close()
		if code := exitCode(t, first, 15*time.Second); code != 0 {
			t.Errorf("first capture exit status %d:\n%s", code, first.Output())
		}
		// The slot is free again.
		third, _ := c.captureFile(t, 0, "--duration", "1s", "lab/1")
		if code := exitCode(t, third, 15*time.Second); code != 0 {
			t.Errorf("capture after the first ended: exit status %d:\n%s", code, third.Output())
		}
	})

	t.Run("too many targets", func(t *testing.T) {
		t.Parallel()
		cl, _ := c.captureFile(t, 1, "three")
		refused(t, cl, "3 targets selected, at most 2 are allowed per capture")
	})

	t.Run("duration over the maximum", func(t *testing.T) {
		t.Parallel()
		cl, _ := c.captureFile(t, 2, "--duration", "5s", "lab")
		refused(t, cl, "duration 5s is longer than the allowed 4s")
	})

	t.Run("no duration gets the maximum", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		cl, file := c.captureFile(t, 3, "lab/1")
		waitStarted(t, cl, "lab/1")
		// stdin stays open: the capture ends by itself.
		if code := exitCode(t, cl, 20*time.Second); code != 0 {
			t.Errorf("ssh exit status %d, want 0:\n%s", code, cl.Output())
		}
		if d := time.Since(start); d < 4*time.Second || d > 15*time.Second {
			t.Errorf("capture took %v, want the 4s maximum (+ start and stop)", d)
		}
		if outcome, _ := summary(t, cl); outcome != "limit-reached" {
			t.Errorf("outcome %s, want limit-reached", outcome)
		}
		capinfos(t, file)
	})

	t.Run("duration ends the capture", func(t *testing.T) {
		t.Parallel()
		start := time.Now()
		cl, file := c.captureFile(t, 4, "--duration", "2s", "lab")
		waitStarted(t, cl, "lab/0", "lab/1")
		if code := exitCode(t, cl, 20*time.Second); code != 0 {
			t.Errorf("ssh exit status %d, want 0:\n%s", code, cl.Output())
		}
		if d := time.Since(start); d < 2*time.Second || d > 12*time.Second {
			t.Errorf("capture took %v, want about 2s", d)
		}
		if outcome, sum := summary(t, cl); outcome != "limit-reached" || sum["sources"] != 2 {
			t.Errorf("summary %s %v, want limit-reached with 2 sources", outcome, sum)
		}
		wantLine(t, cl, `^pcap: summary: limit-reached .* limit=duration$`)
		if names, stats := statsBlocks(t, file); len(names) != 2 || len(stats) != 2 {
			t.Errorf("interfaces %v with %d statistics blocks", names, len(stats))
		}
	})

	t.Run("count ends each source", func(t *testing.T) {
		t.Parallel()
		cl, file := c.captureFile(t, 5, "-c", "5", "-f", "'udp dst port 7005'", "lab")
		waitStarted(t, cl, "lab/0", "lab/1")
		c.send(t, 0, 7005, 20)
		c.send(t, 1, 7005, 20)
		if code := exitCode(t, cl, 20*time.Second); code != 0 {
			t.Errorf("ssh exit status %d, want 0:\n%s", code, cl.Output())
		}
		wantLine(t, cl, `^pcap: lab/0: ended end=limit-reached limit=packets packets=5 `)
		wantLine(t, cl, `^pcap: lab/1: ended end=limit-reached limit=packets packets=5 `)
		if outcome, sum := summary(t, cl); outcome != "limit-reached" || sum["packets"] != 10 {
			t.Errorf("summary %s %v, want limit-reached with 10 packets", outcome, sum)
		}
		wantLine(t, cl, `^pcap: summary: limit-reached .* limit=packets$`)
		wantCounts(t, perInterface(t, file), map[string]int{"lab/0:eth0": 5, "lab/1:eth0": 5})
	})
}
