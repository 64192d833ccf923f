package bench

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"code.cloudfoundry.org/pcap/integration/netlab"
)

// traffic is what the generators did.
type traffic struct {
	sent uint64
	// took is the longest generator's sending time.
	took time.Duration
	cpu  time.Duration
}

var sentRe = regexp.MustCompile(`^sent (\d+) in (\S+)`)

// startTraffic starts pcap-traffic in every VM of vms, each sending count
// datagrams of size bytes at rate per second (0: as fast as it can) to
// the VM's sink; wait collects them.
func (l *lab) startTraffic(vms []*vm, count, size, rate int) ([]*netlab.Proc, error) {
	maxTime := 60 * time.Second
	if rate > 0 {
		maxTime = time.Duration(count/rate)*time.Second + 30*time.Second
	}
	var ps []*netlab.Proc
	for _, v := range vms {
		p, err := l.start(netlab.StartOptions{Netns: v.ns}, filepath.Join(l.bin, "pcap-traffic"),
			"-to", fmt.Sprintf("%s:%d", sinkAddr, dstPort), "-count", fmt.Sprint(count),
			"-size", fmt.Sprint(size), "-rate", fmt.Sprint(rate), "-max-time", maxTime.String())
		if err != nil {
			for _, p := range ps {
				p.Stop(time.Second)
			}
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// waitTraffic waits for the generators (bounded by their -max-time) and
// sums what they sent. A generator that sent less than asked is not an
// error: what it sent is what the captures are measured against.
func (l *lab) waitTraffic(ps []*netlab.Proc, timeout time.Duration) (traffic, error) {
	var t traffic
	deadline := time.Now().Add(timeout)
	for _, p := range ps {
		if _, ok := p.Wait(time.Until(deadline)); !ok {
			p.Stop(time.Second)
			return t, fmt.Errorf("bench: traffic generator did not end within %v", timeout)
		}
		l.forget(p)
		if st := p.Cmd.ProcessState; st != nil {
			t.cpu += st.UserTime() + st.SystemTime()
		}
		m, err := p.WaitLine(sentRe, 2*time.Second)
		if err != nil {
			return t, fmt.Errorf("bench: traffic generator: %s", p.Output())
		}
		n, _ := strconv.ParseUint(m[1], 10, 64)
		d, _ := time.ParseDuration(m[2])
		t.sent += n
		t.took = max(t.took, d)
	}
	return t, nil
}

// forget drops an exited process from the lab's list.
func (l *lab) forget(p *netlab.Proc) {
	for i, q := range l.procs {
		if q == p {
			l.procs = append(l.procs[:i], l.procs[i+1:]...)
			return
		}
	}
}
