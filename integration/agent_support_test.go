package integration

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopacket/gopacket/pcapgo"
	"golang.org/x/crypto/ssh"

	"code.cloudfoundry.org/pcap/integration/testenv"
	"code.cloudfoundry.org/pcap/tunnel"
	"code.cloudfoundry.org/pcap/tunnel/agentproto"
)

// Helpers of the agent tests (agent_*_test.go).

// agGUID returns a random instance GUID (a whole UUID, lowercase), so no
// two containers of a test run share one.
func agGUID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	rand.Read(b)
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// agSetup is one agent with one authorized client.
type agSetup struct {
	Agent  *agentProc
	Key    keyPair // the authorized client key
	Client *tunnel.Client
}

func agStart(t *testing.T, o agentOptions) *agSetup {
	t.Helper()
	key := newKeyPair(t, t.TempDir(), "api")
	o.ClientKeys = append(o.ClientKeys, key)
	ag := startAgent(t, o)
	return &agSetup{Agent: ag, Key: key, Client: dialAgent(t, ag, key)}
}

// agStartContainer is agStart with one container on the agent's cell.
func agStartContainer(t *testing.T, o agentOptions) (*agSetup, *container) {
	t.Helper()
	s := agStart(t, o)
	return s, newContainer(t, s.Agent.NetnsDir, agGUID(t))
}

// agRawDial connects to s's agent with plain x/crypto/ssh, to send
// payloads the tunnel client would refuse to build.
func agRawDial(t *testing.T, s *agSetup) *ssh.Client {
	t.Helper()
	raw, err := ssh.Dial("tcp", s.Agent.Addr, &ssh.ClientConfig{
		User:            "pcap-api",
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(s.Key.Signer)},
		HostKeyCallback: tunnel.PinnedHostKey([]ssh.PublicKey{s.Agent.HostKey.Signer.PublicKey()}),
		Timeout:         10 * time.Second,
	})
	if err != nil {
		t.Fatalf("raw ssh dial: %v", err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

// agContainerReq asks for a capture in c by its instance GUID.
func agContainerReq(c *container, filter string, ifaces ...string) agentproto.CaptureRequest {
	return agentproto.CaptureRequest{
		Version:    agentproto.ProtocolVersion,
		Target:     agentproto.Target{Kind: agentproto.TargetCFInstance, InstanceGUID: c.GUID},
		Interfaces: ifaces,
		Filter:     filter,
	}
}

// agOpen opens a capture, failing t on a refusal.
func agOpen(t *testing.T, c *tunnel.Client, req agentproto.CaptureRequest) *agentproto.Capture {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	capt, err := agentproto.OpenCapture(ctx, c, req)
	if err != nil {
		t.Fatalf("open capture %+v: %v", req, err)
	}
	t.Cleanup(func() { capt.Close() })
	return capt
}

// agStop stops a capture whose stream wait drains, and returns the file
// and the final stats. It checks that EOF and final stats came within
// bound of the stop.
func agStop(t *testing.T, capt *agentproto.Capture, wait func() string, bound time.Duration) (string, agentproto.Stats) {
	t.Helper()
	stopAt := time.Now()
	if err := capt.Stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	file := wait()
	st := agFinal(t, capt)
	if d := time.Since(stopAt); d > bound {
		t.Errorf("stop → EOF and final stats took %v, want under %v", d, bound)
	}
	return file, st
}

// agCaptureSent opens req on s's client, sends count datagrams of 100
// bytes from ns to 198.18.0.1:9000, stops the capture and returns the
// file and the final stats (agStop, within a second).
func agCaptureSent(t *testing.T, s *agSetup, req agentproto.CaptureRequest, ns *testenv.Netns, count int) (string, agentproto.Stats) {
	t.Helper()
	capt := agOpen(t, s.Client, req)
	wait := drain(t, capt)
	agSend(t, ns, "198.18.0.1:9000", count, 100, 2000)
	return agStop(t, capt, wait, time.Second)
}

// agFinal waits (bounded) for a capture's final stats.
func agFinal(t *testing.T, capt *agentproto.Capture) agentproto.Stats {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := capt.Wait(ctx)
	if err != nil {
		t.Fatalf("wait for final stats: %v", err)
	}
	if !st.Final {
		t.Fatalf("last stats %+v are not final", st)
	}
	for _, i := range st.Interfaces {
		if i.Unaccounted != 0 || i.Received != i.Packets+i.KernelDropped+i.AgentDropped {
			t.Errorf("accounting of %s does not add up: %+v", i.Name, i)
		}
	}
	return st
}

// agWantReject checks err is the rejection code: msg.
func agWantReject(t *testing.T, err error, code, msg string) {
	t.Helper()
	var re *tunnel.RejectError
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want rejection %s: %q", err, code, msg)
	}
	if re.Code != code || re.Message != msg {
		t.Errorf("rejection = %s: %q\n                   want %s: %q", re.Code, re.Message, code, msg)
	}
}

// agSend runs pcap-traffic (inside ns, or in the root namespace when ns
// is nil, which the tests only do towards 127.0.0.1) and waits for it.
func agSend(t *testing.T, ns *testenv.Netns, to string, count, size, rate int) {
	t.Helper()
	bin := testenv.Binaries(t)
	name := filepath.Join(bin, "pcap-traffic")
	args := []string{"-to", to, "-count", strconv.Itoa(count), "-size", strconv.Itoa(size), "-rate", strconv.Itoa(rate), "-max-time", "30s"}
	if ns != nil {
		name, args = "ip", append([]string{"netns", "exec", ns.Name, name}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("pcap-traffic: %v\n%s", err, out)
	}
}

// agFields returns one tshark field of every packet matching a display
// filter.
func agFields(t *testing.T, file, field, displayFilter string) []string {
	t.Helper()
	args := []string{"-r", file, "-T", "fields", "-e", field}
	if displayFilter != "" {
		args = append(args, "-Y", displayFilter)
	}
	out := strings.TrimSpace(tshark(t, args...))
	if out == "" {
		return nil
	}
	return strings.Split(out, "\n")
}

// agCountBy counts values.
func agCountBy(vals []string) map[string]int {
	m := map[string]int{}
	for _, v := range vals {
		m[v]++
	}
	return m
}

// agInterfaces reads a pcapng file's interface description blocks.
func agInterfaces(t *testing.T, file string) []pcapgo.NgInterface {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewNgReader(f, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatalf("read pcapng %s: %v", file, err)
	}
	// Interfaces are known once the first packet (or the end) is read.
	for {
		if _, _, err := r.ReadPacketData(); err != nil {
			break
		}
	}
	var ifs []pcapgo.NgInterface
	for i := range r.NInterfaces() {
		ifc, err := r.Interface(i)
		if err != nil {
			t.Fatal(err)
		}
		ifs = append(ifs, ifc)
	}
	return ifs
}

// agUDPSink binds a UDP socket on 127.0.0.1 for the test's traffic, so its
// port is the test's own while it runs. received(n) waits (bounded) until
// n datagrams have arrived: by then every capture on lo has them in its
// ring, since packet taps come before IP delivery.
func agUDPSink(t *testing.T) (port int, received func(n int)) {
	t.Helper()
	c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.SetReadBuffer(4 << 20); err != nil {
		t.Fatal(err)
	}
	return c.LocalAddr().(*net.UDPAddr).Port, func(n int) {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64<<10)
		for i := range n {
			if _, err := c.Read(buf); err != nil {
				t.Fatalf("sink got %d of %d datagrams: %v", i, n, err)
			}
		}
	}
}

var tcpdumpReceivedRe = regexp.MustCompile(`^(\d+) packets? received by filter`)

// agTcpdump runs tcpdump as ground truth, ready when it says it listens;
// stop ends it and returns the file it wrote and its "received by filter"
// count.
func agTcpdump(t *testing.T, ns *testenv.Netns, iface, filter string) (stop func() (string, int)) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tcpdump.pcap")
	p := testenv.Start(t, testenv.StartOptions{Netns: ns}, "tcpdump", "-i", iface, "-n", "-U", "-Z", "root", "-w", file, filter)
	p.WaitLine(t, regexp.MustCompile(`listening on `+regexp.QuoteMeta(iface)), 20*time.Second)
	return func() (string, int) {
		t.Helper()
		if err := p.Signal(syscall.SIGINT); err != nil {
			t.Fatalf("signal tcpdump: %v", err)
		}
		err, exited := p.Wait(10 * time.Second)
		if !exited {
			t.Fatal("tcpdump did not exit within 10s of SIGINT")
		}
		if err != nil {
			t.Fatalf("tcpdump: %v\n%s", err, p.Output())
		}
		m := p.WaitLine(t, tcpdumpReceivedRe, time.Second) // already collected
		received, _ := strconv.Atoi(m[1])
		return file, received
	}
}

// agLog waits for an agent log event whose line also matches more.
func agLog(t *testing.T, ag *agentProc, event, more string, timeout time.Duration) string {
	t.Helper()
	re := regexp.MustCompile(`"msg":"` + regexp.QuoteMeta(event) + `".*` + more)
	return ag.WaitLine(t, re, timeout)[0]
}
