package spool

import (
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestPagesAheadArePopulated: the pages up to lookahead past the last
// record are mapped writable in the background, so the appends that follow
// take no page faults of their own; they hold zeros, which recovery takes
// as never written.
func TestPagesAheadArePopulated(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir, Options{SegmentBytes: 4 << 20})
	if _, err := s.Append(appendArgs(0)); err != nil {
		t.Fatal(err)
	}
	// Faults are counted for this thread only: populating runs on
	// another.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	const records = 2000 // about 21 pages, inside lookahead
	var faults int64
	for attempt := 0; attempt < 50; attempt++ {
		time.Sleep(20 * time.Millisecond) // populateLoop's turn
		before := threadFaults(t)
		for i := range records {
			if _, err := s.Append(appendArgs(i)); err != nil {
				t.Fatal(err)
			}
		}
		if faults = threadFaults(t) - before; faults == 0 {
			break
		}
	}
	s.mu.Lock()
	gaveUp := s.noPopulate
	s.mu.Unlock()
	if gaveUp {
		t.Skip("this kernel cannot populate pages ahead (MADV_POPULATE_WRITE came in Linux 5.14)")
	}
	if faults != 0 {
		t.Fatalf("appending %d records faulted %d times, though their pages were populated ahead", records, faults)
	}

	// What a process that dies now leaves: the records, then zeros.
	s.mu.Lock()
	g, end := s.cur, s.cur.size
	s.mu.Unlock()
	f, err := os.Open(g.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = f.Close() }()
	if n, err := validLength(f); err != nil || n != end {
		t.Fatalf("recovery finds %d bytes of records (%v), want %d", n, err, end)
	}
	b, err := os.ReadFile(g.f.Name())
	if err != nil {
		t.Fatal(err)
	}
	if i := lastNonZero(b); i >= int(end) {
		t.Fatalf("byte %d past the %d bytes of records is not zero", i, end)
	}
}

// threadFaults is the page faults of the calling thread so far.
func threadFaults(t *testing.T) int64 {
	t.Helper()
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		t.Fatal(err)
	}
	return ru.Minflt + ru.Majflt
}
