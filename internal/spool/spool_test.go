package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func open(t *testing.T, dir string, opts Options) *Spool {
	t.Helper()
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// appendArgs are Append's arguments for record i, without headroom.
func appendArgs(i int) (int, int64, func([]byte) []byte) {
	rec := record(i)
	return len(rec), 0, func(dst []byte) []byte { return append(dst, rec...) }
}

func record(i int) []byte {
	return fmt.Appendf(nil, "record %04d %s", i, bytes.Repeat([]byte{'x'}, i%37))
}

// readAll reads every record from offset to the end written so far.
func readAll(t *testing.T, s *Spool, from int64) [][]byte {
	t.Helper()
	r := s.NewReader(from)
	defer r.Close()
	var out [][]byte
	for {
		rec, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(rec))
	}
}

func check(t *testing.T, got [][]byte, from, to int) {
	t.Helper()
	if len(got) != to-from {
		t.Fatalf("read %d records, want %d", len(got), to-from)
	}
	for i, rec := range got {
		if want := record(from + i); !bytes.Equal(rec, want) {
			t.Fatalf("record %d = %q, want %q", from+i, rec, want)
		}
	}
}

// TestAppendReadAcrossSegments: records come back in order across segment
// files, from any record's offset, and survive a reopen.
func TestAppendReadAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{SegmentBytes: 256})
	if err != nil {
		t.Fatal(err)
	}
	offsets := []int64{s.Start()}
	for i := range 100 {
		off, err := s.Append(appendArgs(i))
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, off)
	}
	if segs, _ := filepath.Glob(filepath.Join(dir, "*"+suffix)); len(segs) < 10 {
		t.Fatalf("%d segments for 100 records of ~40 bytes in 256-byte segments", len(segs))
	}
	check(t, readAll(t, s, s.Start()), 0, 100)
	check(t, readAll(t, s, offsets[57]), 57, 100)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, dir, Options{SegmentBytes: 256})
	if s.End() != offsets[100] {
		t.Fatalf("reopened at %d, want %d", s.End(), offsets[100])
	}
	if _, err := s.Append(appendArgs(100)); err != nil {
		t.Fatal(err)
	}
	check(t, readAll(t, s, offsets[0]), 0, 101)
}

// TestOneProcessAtATime: a spool held by one process cannot be opened by
// another until it is closed.
func TestOneProcessAtATime(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{})
	if _, err := Open(dir, Options{}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, dir, Options{})
}

// TestTornTail: what a machine crash leaves at the end of the last segment
// (half a record, a record whose bytes do not match its checksum) is cut
// when the spool is opened; every complete record before it stays.
func TestTornTail(t *testing.T) {
	for name, damage := range map[string]func(path string, size int64) error{
		"half a record": func(path string, _ int64) error {
			f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			_, err = f.Write([]byte{40, 0, 0, 0, 1, 2, 3, 4, 'p', 'a'})
			return errors.Join(err, f.Close())
		},
		"a bad checksum": func(path string, size int64) error {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				return err
			}
			_, err = f.WriteAt([]byte{'#'}, size-1) // the last byte of the last record
			return errors.Join(err, f.Close())
		},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			s, err := Open(dir, Options{})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 10 {
				if _, err := s.Append(appendArgs(i)); err != nil {
					t.Fatal(err)
				}
			}
			size := s.End()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := damage(filepath.Join(dir, fmt.Sprintf("%020d%s", 0, suffix)), size); err != nil {
				t.Fatal(err)
			}
			s = open(t, dir, Options{})
			got := readAll(t, s, 0)
			want := 10
			if name == "a bad checksum" {
				want = 9
			}
			check(t, got, 0, want)
			if _, err := s.Append(appendArgs(want)); err != nil {
				t.Fatal(err)
			}
			check(t, readAll(t, s, 0), 0, want+1)
		})
	}
}

// TestBoundAndRelease: a full spool refuses records until shipped segments
// are released; a released offset cannot be read.
func TestBoundAndRelease(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 200, MaxBytes: 1000})
	var offsets []int64
	i := 0
	for {
		off, err := s.Append(appendArgs(i))
		if errors.Is(err, ErrFull) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		offsets = append(offsets, off)
		i++
	}
	if s.Size() > 1000 || s.Size() < 900 {
		t.Fatalf("full at %d bytes of 1000", s.Size())
	}
	if err := s.Release(offsets[len(offsets)/2]); err != nil {
		t.Fatal(err)
	}
	if s.Start() == 0 {
		t.Fatal("nothing released")
	}
	if _, err := s.Append(appendArgs(i)); err != nil {
		t.Fatalf("after release: %v", err)
	}
	if _, _, err := s.NewReader(0).Next(); err == nil {
		t.Fatal("read a released record")
	}
	got := readAll(t, s, s.Start())
	if !bytes.Equal(got[len(got)-1], record(i)) {
		t.Fatalf("last record %q", got[len(got)-1])
	}
	if _, err := s.Append(10, 0, func(dst []byte) []byte { return append(dst, make([]byte, MaxRecordBytes+1)...) }); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("a record over the limit: %v", err)
	}
}

// TestConcurrentAppends: records appended by many goroutines while a
// reader follows are each read once, each intact.
func TestConcurrentAppends(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 4096, SyncEvery: time.Millisecond})
	const writers, each = 8, 500
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := s.Append(appendArgs(w*each + i)); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	seen := map[string]bool{}
	r := s.NewReader(s.Start())
	defer r.Close()
	deadline := time.After(10 * time.Second)
	for len(seen) < writers*each {
		rec, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			select {
			case <-time.After(time.Millisecond):
			case <-deadline:
				t.Fatalf("read %d of %d records", len(seen), writers*each)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if seen[string(rec)] {
			t.Fatalf("read %q twice", rec)
		}
		seen[string(rec)] = true
	}
	wg.Wait()
	for i := range writers * each {
		if !seen[string(record(i))] {
			t.Fatalf("record %d missing", i)
		}
	}
}

// TestHeadroomAndStamp: a record given headroom goes past a full spool's
// bound; records numbered as they are filled are written in that order,
// whichever goroutine appends them.
func TestHeadroomAndStamp(t *testing.T) {
	s := open(t, t.TempDir(), Options{MaxBytes: 100})
	for {
		if _, err := s.Append(appendArgs(1)); errors.Is(err, ErrFull) {
			break
		}
	}
	if _, err := s.Append(40, 100, func(dst []byte) []byte { return append(dst, record(2)...) }); err != nil {
		t.Fatalf("with headroom: %v", err)
	}

	s = open(t, t.TempDir(), Options{})
	var n uint64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 200 {
				if _, err := s.Append(8, 0, func(dst []byte) []byte { n++; return binary.BigEndian.AppendUint64(dst, n) }); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	for i, rec := range readAll(t, s, 0) {
		if got := binary.BigEndian.Uint64(rec); got != uint64(i+1) {
			t.Fatalf("record %d stamped %d", i, got)
		}
	}
}

// TestLargeRecord: a record larger than a segment gets one of its own, the
// first record of a spool too.
func TestLargeRecord(t *testing.T) {
	s := open(t, t.TempDir(), Options{SegmentBytes: 4096})
	big := bytes.Repeat([]byte{'b'}, 10000)
	for range 2 {
		if _, err := s.Append(len(big), 0, func(dst []byte) []byte { return append(dst, big...) }); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Append(appendArgs(1)); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(t, s, 0)
	if len(got) != 4 || !bytes.Equal(got[0], big) || !bytes.Equal(got[1], record(1)) || !bytes.Equal(got[2], big) {
		t.Fatalf("read %d records", len(got))
	}
}

// TestDiskFull: with no disk room for a segment (the reservation
// failing), Open and the Append that needs a new segment fail with an
// error, the records written stay readable, and the spool takes records
// again once there is room.
func TestDiskFull(t *testing.T) {
	full := func(*os.File, int64) error { return syscall.ENOSPC }
	t.Cleanup(func() { reserveSpace = reserve })

	reserveSpace = full
	if _, err := Open(t.TempDir(), Options{}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Open on a full disk: %v", err)
	}
	reserveSpace = reserve
	s := open(t, t.TempDir(), Options{SegmentBytes: 256})
	i := 0
	for ; s.End() < 200; i++ {
		if _, err := s.Append(appendArgs(i)); err != nil {
			t.Fatal(err)
		}
	}
	reserveSpace = full
	failed := false
	for k := 0; k < 20; k++ { // past the segment's end
		if _, err := s.Append(appendArgs(i)); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("append on a full disk: %v", err)
			}
			failed = true
			break
		}
		i++
	}
	if !failed {
		t.Fatal("appends past the segment's end never needed a new one")
	}
	check(t, readAll(t, s, 0), 0, i)
	reserveSpace = reserve
	if _, err := s.Append(appendArgs(i)); err != nil {
		t.Fatalf("append once there is room: %v", err)
	}
	check(t, readAll(t, s, 0), 0, i+1)
}
