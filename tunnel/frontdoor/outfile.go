package frontdoor

import (
	"errors"
	"fmt"
	"os"
)

// ErrNotRegular is returned for an output path that exists and is a
// symbolic link or a directory: --force never writes through those.
var ErrNotRegular = errors.New("output exists and is a symbolic link or a directory; --force only replaces regular files (or writes into a named pipe or device)")

// outFile is the capture's output file. A new file is created exclusively
// with mode 0600. With force, an existing regular file (never a symbolic
// link) is opened as it is and truncated only by the first write, that is
// once the capture has started: a refused login or request leaves it
// untouched. A named pipe or a device is written into as it is.
type outFile struct {
	f        *os.File
	created  bool // ours to remove if nothing is written
	truncate bool // truncate before the first write
}

func openOutput(path string, force bool) (*outFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|nofollow, 0o600)
	if err == nil {
		return &outFile{f: f, created: true}, nil
	}
	if !errors.Is(err, os.ErrExist) {
		return nil, err
	}
	if !force {
		return nil, fmt.Errorf("%s: %w", path, ErrExists)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, err
	}
	if fi.Mode()&os.ModeSymlink != 0 || fi.IsDir() {
		return nil, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	// O_NOFOLLOW: the path may have become a link since Lstat.
	f, err = os.OpenFile(path, os.O_WRONLY|nofollow, 0)
	if isLoop(err) {
		return nil, fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	if err != nil {
		return nil, err
	}
	if fi2, err := f.Stat(); err != nil || !os.SameFile(fi, fi2) {
		f.Close()
		return nil, fmt.Errorf("%s: changed while opened: %w", path, ErrNotRegular)
	}
	return &outFile{f: f, truncate: fi.Mode().IsRegular()}, nil
}

// Write truncates the file (and makes it 0600) before the first write.
func (o *outFile) Write(p []byte) (int, error) {
	if o.truncate {
		o.truncate = false
		if err := o.f.Truncate(0); err != nil {
			return 0, err
		}
		if err := o.f.Chmod(0o600); err != nil {
			return 0, err
		}
	}
	return o.f.Write(p)
}
