package spool

import (
	"errors"

	"golang.org/x/sys/unix"
)

// populate maps b's pages writable (MADV_POPULATE_WRITE, Linux 5.14 and
// later), as writing them would, without changing what they hold.
func populate(b []byte) error {
	err := unix.Madvise(b, unix.MADV_POPULATE_WRITE)
	if errors.Is(err, unix.EINVAL) {
		return errors.ErrUnsupported // a kernel that does not know it
	}
	return err
}
