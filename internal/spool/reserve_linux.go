package spool

import (
	"errors"
	"os"
	"syscall"
)

// reserve allocates the disk blocks of the first size bytes of f, so that
// writing them through a mapping cannot fail later: a write to a page of a
// sparse file the disk has no room for is SIGBUS, which ends the process.
// Out of room, it fails now, and the append that needed the segment gets
// an error the decision log handles. A filesystem that cannot reserve
// (EOPNOTSUPP) leaves the file sparse.
func reserve(f *os.File, size int64) error {
	err := syscall.Fallocate(int(f.Fd()), 0, 0, size)
	if errors.Is(err, syscall.EOPNOTSUPP) {
		return nil
	}
	return err
}
