package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"code.cloudfoundry.org/pcap/integration/testenv"
)

// Captures open and close side by side in one agent (a capture of 50
// instances on one cell opens 50 handles at once). Each must find its own
// libpcap socket: on lo it sets PACKET_IGNORE_OUTGOING on it. Found by
// comparing the process's packet sockets before and after activation, it
// was misjudged when another capture closed a socket meanwhile and the
// new one reused its number ("cannot find libpcap's socket": this test
// failed 1 run in 3).
func TestOpenSourcesSideBySide(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	const workers, rounds = 16, 8
	errs := make(chan error, workers*rounds)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				iface := []string{"lo"}
				if (w+i)%2 == 1 {
					iface = []string{"any"}
				}
				srcs, err := openSources(openOptions{nsPath: ns.Path(), interfaces: iface, filter: "udp port 9", snaplen: 65535, bufferSize: 1 << 20})
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d on %s: %w", w, i, iface[0], err)
					continue
				}
				for _, s := range srcs {
					s.close()
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	var msgs []string
	for err := range errs {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) > 0 {
		t.Fatalf("%d of %d opens failed:\n%s", len(msgs), workers*rounds, strings.Join(msgs, "\n"))
	}
	// Every handle and its poller descriptor were closed: no packet
	// socket is left open in this process.
	if n := packetSocketCount(t); n != 0 {
		t.Errorf("%d packet sockets left open", n)
	}
}

// packetSocketCount counts this process's open AF_PACKET sockets.
func packetSocketCount(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && d == unix.AF_PACKET {
			n++
		}
	}
	return n
}
