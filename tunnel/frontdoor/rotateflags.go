package frontdoor

import (
	"fmt"

	"github.com/urfave/cli/v2"
)

// RotationHelp ends both CLIs' help pages: how rotation names its files,
// what each file holds, and how to capture for longer than pcap-api
// allows.
const RotationHelp = `   Rotation (--rotate-size, --rotate-every) writes -o FILE.pcapng as
   FILE_00001_20261205T010203Z.pcapng, FILE_00002_…: a sequence number and
   the UTC time the file was started. Each file is a complete pcapng file
   (section header, every interface seen so far) that Wireshark opens on its
   own; interface statistics are written at the end, into the last file only.
   With --rotate-files N only the newest N files of the capture are kept, so
   a capture can run all night and keep the last hour. A capture still ends
   at pcap-api's maximum duration (its limits.max_duration): to run longer,
   ask the operators to raise it, or start the next capture when one ends.
`

// RotationFlags are the CLIs' rotation flags. Rotation is the client's
// alone: these flags are never sent to pcap-api.
func RotationFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "rotate-size", Usage: "start a new file once the current one holds `SIZE` (e.g. 100MB, 1GiB; needs -o FILE)"},
		&cli.DurationFlag{Name: "rotate-every", Usage: "start a new file every `DURATION` (e.g. 10m; needs -o FILE)"},
		&cli.IntFlag{Name: "rotate-files", Usage: "keep only the newest `N` files of the capture, removing older ones (a ring buffer)"},
	}
}

// RotationFromContext reads [RotationFlags].
func RotationFromContext(c *cli.Context) (Rotation, error) {
	r := Rotation{Every: c.Duration("rotate-every"), Files: c.Int("rotate-files")}
	if s := c.String("rotate-size"); s != "" {
		n, err := ParseSize(s)
		if err != nil {
			return r, fmt.Errorf("--rotate-size: %w", err)
		}
		if n == 0 {
			return r, fmt.Errorf("--rotate-size: %w: a size of 0 never rotates; leave the flag out", ErrRotation)
		}
		r.Size = n
	}
	return r, nil
}
