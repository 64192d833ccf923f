package integration

import (
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// TestPcapBoshRotatesBySize: the real pcap-bosh against the real pcap-api
// with --rotate-size small and --rotate-files 3 leaves three files, each a
// complete pcapng file capinfos reads on its own, with consecutive
// sequence numbers; together they hold exactly the newest packets sent,
// the older ones being in the files rotated away.
func TestPcapBoshRotatesBySize(t *testing.T) {
	t.Parallel()
	// pcap-traffic numbers its datagrams in the first payload byte: fewer
	// than 256 keeps them unique. About 180 bytes a packet block: some 20
	// packets a file, 10 files.
	rotatedCapture(t, 200, 2000, "--rotate-size", "4kB", "--rotate-files", "3")
}

// TestPcapBoshRotatesByTime: the same with --rotate-every, packets sent
// over about 5s and a new file every 400ms.
func TestPcapBoshRotatesByTime(t *testing.T) {
	t.Parallel()
	rotatedCapture(t, 200, 40, "--rotate-every", "400ms", "--rotate-files", "3")
}

// rotatedCapture captures sent datagrams sent at rate a second on one VM
// with pcap-bosh and the rotation flags, and checks the files left.
func rotatedCapture(t *testing.T, sent, rate int, flags ...string) {
	testenv.RequireRoot(t)
	e, home := startBOSHAdmin(t, 1)

	dir := t.TempDir()
	out := filepath.Join(dir, "edge.pcapng")
	args := append([]string{"-e", "fake", "-d", "cf", "router",
		"-f", "udp dst port 7000", "-o", out, "--duration", "60s",
		"--pcap-api", e.API.Addr, "--pcap-api-host-key-fingerprint", fingerprintOf(e.API.HostKey)}, flags...)
	p := testenv.Start(t, testenv.StartOptions{Netns: e.Lab.LAN, Env: []string{"HOME=" + home}},
		filepath.Join(testenv.Binaries(t), "pcap-bosh"), args...)
	p.WaitLine(t, regexp.MustCompile(`^pcap: router/3f2a0000-0000-4000-8000-000000000000: started`), 30*time.Second)
	sendUDPAt(t, e.Lab.VMs[0], "198.18.0.1:7000", sent, rate)
	if err := p.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	if err, ok := p.Wait(15 * time.Second); !ok || err != nil {
		t.Fatalf("pcap-bosh: exited=%v err=%v\n%s", ok, err, p.Output())
	}

	files, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	if len(files) != 3 {
		t.Fatalf("files %v, want the newest 3", files)
	}
	name := regexp.MustCompile(`^edge_(\d{5})_\d{8}T\d{6}Z\.pcapng$`)
	var seqs []int
	var kept []int
	for i, f := range files {
		m := name.FindStringSubmatch(filepath.Base(f))
		if m == nil {
			t.Fatalf("%s is not named edge_NNNNN_TIMESTAMP.pcapng", f)
		}
		seq, _ := strconv.Atoi(m[1])
		seqs = append(seqs, seq)
		if info := capinfos(t, f); !strings.Contains(info, "pcapng") {
			t.Errorf("capinfos %s:\n%s", f, info)
		}
		n := 0
		for _, h := range strings.Fields(tshark(t, "-r", f, "-T", "fields", "-e", "udp.payload")) {
			v, err := strconv.ParseUint(h[:2], 16, 8)
			if err != nil {
				t.Fatalf("%s: payload %q", f, h)
			}
			kept = append(kept, int(v))
			n++
		}
		if n == 0 {
			t.Errorf("%s holds no packets", f)
		}
		if last, isbs := i == len(files)-1, countISBs(t, f); (isbs > 0) != last {
			t.Errorf("%s: %d statistics blocks; want them in the last file only", f, isbs)
		}
	}
	if seqs[0] < 2 || seqs[1] != seqs[0]+1 || seqs[2] != seqs[0]+2 {
		t.Errorf("sequence numbers %v: want three consecutive, older ones rotated away", seqs)
	}
	// The kept packets are the last len(kept) sent, each once, in order:
	// sent minus what was rotated away.
	if len(kept) == 0 || len(kept) >= sent {
		t.Fatalf("%d packets kept of %d sent", len(kept), sent)
	}
	for i, v := range kept {
		if want := sent - len(kept) + i; v != want {
			t.Fatalf("kept packets %v: want %d..%d", kept, sent-len(kept), sent-1)
		}
	}
	t.Logf("%d files made, %d packets kept of %d sent", seqs[2], len(kept), sent)
}
