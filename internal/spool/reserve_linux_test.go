package spool

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// fallocates reports whether the filesystem of dir reserves blocks.
func fallocates(t *testing.T, dir string) bool {
	t.Helper()
	f, err := os.CreateTemp(dir, "probe")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	return !errors.Is(syscall.Fallocate(int(f.Fd()), 0, 0, 4096), syscall.EOPNOTSUPP)
}

// TestSegmentsReserveTheirSpace: a segment's disk blocks are allocated
// when it is made, so that writing through its mapping cannot find the
// disk full (SIGBUS, which ends the process).
func TestSegmentsReserveTheirSpace(t *testing.T) {
	dir := t.TempDir()
	if !fallocates(t, dir) {
		t.Skip("the filesystem of the test's directory does not reserve blocks")
	}
	const size = 1 << 20
	s := open(t, dir, Options{SegmentBytes: size})
	n, headroom, fill := appendArgs(1)
	if _, err := s.Append(n, headroom, fill); err != nil {
		t.Fatal(err)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "*"+suffix))
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	fi, err := os.Stat(segs[0])
	if err != nil {
		t.Fatal(err)
	}
	if blocks := fi.Sys().(*syscall.Stat_t).Blocks * 512; blocks < size {
		t.Errorf("a %d-byte segment holds %d bytes of disk: it is sparse", size, blocks)
	}
}
