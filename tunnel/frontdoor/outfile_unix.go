//go:build !windows

package frontdoor

import (
	"errors"

	"golang.org/x/sys/unix"
)

// nofollow makes open fail on a symbolic link.
const nofollow = unix.O_NOFOLLOW

// isLoop says whether err is open's refusal of a symbolic link.
func isLoop(err error) bool { return errors.Is(err, unix.ELOOP) }
