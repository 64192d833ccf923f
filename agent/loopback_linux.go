package agent

import (
	"os"
	"strconv"
	"sync"

	"golang.org/x/sys/unix"
)

// activateMu serialises libpcap activations, so the packet socket a new
// handle opened can be told apart from every other descriptor.
var activateMu sync.Mutex

// withNewPacketSocket runs activate and returns the packet socket it
// opened, or -1 when there is not exactly one. libpcap does not export
// it, and gopacket does not export the pcap_t it would be asked with.
func withNewPacketSocket(activate func() error) (int, error) {
	activateMu.Lock()
	defer activateMu.Unlock()
	before := packetSockets()
	if err := activate(); err != nil {
		return -1, err
	}
	fd := -1
	for s := range packetSockets() {
		if !before[s] {
			if fd >= 0 {
				return -1, nil
			}
			fd = s
		}
	}
	return fd, nil
}

// packetSockets returns the process's AF_PACKET socket descriptors.
func packetSockets() map[int]bool {
	m := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return m
	}
	for _, e := range ents {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if d, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_DOMAIN); err == nil && d == unix.AF_PACKET {
			m[fd] = true
		}
	}
	return m
}

// ignoreOutgoing asks the kernel not to hand the socket the packets its
// host sends (Linux 4.20 and later).
func ignoreOutgoing(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
}
