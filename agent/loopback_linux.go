package agent

import "golang.org/x/sys/unix"

// ignoreOutgoing asks the kernel not to hand the socket the packets its
// host sends (Linux 4.20 and later).
func ignoreOutgoing(fd int) error {
	return unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_IGNORE_OUTGOING, 1)
}
