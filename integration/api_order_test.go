package integration

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestAPIStrictTimeOrder captures three VMs sending at different rates
// and sizes at once: the merged file is in strict timestamp order
// (capinfos says so), and the summary and every statistics block count 0
// packets out of order.
func TestAPIStrictTimeOrder(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c, cl, file := newLabCapture(t, 3)

	// VM 0 fast and large, VM 1 slower and small, VM 2 a trickle.
	load := []struct{ rate, count, size int }{{5000, 10000, 1400}, {1000, 2000, 100}, {100, 200, 300}}
	var wg sync.WaitGroup
	for i, l := range load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sendAt(t, c, i, 7000, l.rate, l.count, l.size)
		}()
	}
	wg.Wait()
	stopOK(t, cl, 30*time.Second)
	_, sum := summary(t, cl)
	if n, ok := sum["out_of_order"]; !ok || n != 0 {
		t.Errorf("summary out_of_order = %d (reported %v), want 0:\n%s", n, ok, cl.Output())
	}
	if sum["packets"] < 1000 {
		t.Errorf("only %d packets captured: the test proves nothing", sum["packets"])
	}
	info := capinfos(t, file)
	if !regexp.MustCompile(`(?m)^Strict time order:\s+True$`).MatchString(info) {
		t.Errorf("capinfos does not report strict time order:\n%s", info)
	}
	_, stats := statsBlocks(t, file)
	for _, name := range []string{"lab/0:eth0", "lab/1:eth0", "lab/2:eth0"} {
		if s := stats[name]; !strings.Contains(s.Comment, "out_of_order=0") {
			t.Errorf("statistics of %s: comment %q, want out_of_order=0", name, s.Comment)
		}
	}
	if lines := cl.Lines(regexp.MustCompile(`watermark-late`)); len(lines) > 0 {
		t.Errorf("a live agent was cut from the merge: %q", lines)
	}
}

// TestAPILiveDelayIsBounded sends one packet from one VM while the other
// two are idle: the client has it well before the watermark timeout
// (2 s), so idle agents' watermarks keep the merge moving.
func TestAPILiveDelayIsBounded(t *testing.T) {
	testenv.RequireRoot(t)
	t.Parallel()
	c := newCapLab(t, capLabOptions{VMs: 3})
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pr.Close(); pw.Close() })
	cl := c.capture(t, 0, pw, "-f", "'udp dst port 7000'", "lab")
	pw.Close()
	waitStarted(t, cl, "lab/0", "lab/1", "lab/2")

	got := make(chan time.Time, 1)
	go func() {
		r, err := pcapgo.NewNgReader(pr, pcapgo.NgReaderOptions{WantMixedLinkType: true})
		if err != nil {
			t.Errorf("read the live stream: %v", err)
			return
		}
		if _, _, err := r.ReadPacketData(); err != nil {
			t.Errorf("read the live stream: %v", err)
			return
		}
		got <- time.Now()
		io.Copy(io.Discard, pr)
	}()
	sent := time.Now()
	c.send(t, 1, 7000, 1)
	const bound = 1500 * time.Millisecond
	select {
	case at := <-got:
		delay := at.Sub(sent)
		t.Logf("first packet at the client %v after its sender started", delay)
		if delay > bound {
			t.Errorf("first packet after %v, want under %v", delay, bound)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no packet within 30s:\n%s", cl.Output())
	}
	cl.Stdin.Close()
	if code := exitCode(t, cl, 30*time.Second); code != 0 {
		t.Errorf("ssh exit status %d:\n%s", code, cl.Output())
	}
	if lines := cl.Lines(regexp.MustCompile(`watermark-late`)); len(lines) > 0 {
		t.Errorf("an idle agent was cut from the merge: %q", lines)
	}
}

// sendAt sends count datagrams of size bytes at rate from VM i.
func sendAt(t *testing.T, c *capLab, i, port, rate, count, size int) {
	t.Helper()
	bin := filepath.Join(testenv.Binaries(t), "pcap-traffic")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", c.VMs[i].Name, bin,
		"-to", fmt.Sprintf("198.18.0.1:%d", port), "-count", strconv.Itoa(count),
		"-rate", strconv.Itoa(rate), "-size", strconv.Itoa(size), "-max-time", "50s").CombinedOutput()
	if err != nil {
		t.Errorf("pcap-traffic: %v\n%s", err, out)
	}
}
