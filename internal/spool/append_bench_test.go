package spool

import (
	"runtime"
	"syscall"
	"testing"
	"time"
)

// BenchmarkAppend appends Check-sized records (420 bytes) to a spool with
// the server's defaults as fast as it can, reporting the process's page
// faults per append (the appender's and the populator's, which this rate
// outruns; BenchmarkAppendPaced measures at a server's rate).
func BenchmarkAppend(b *testing.B) {
	s, appendOne := checkSizedAppends(b)
	before := faults(b)
	for b.Loop() {
		appendOne()
		_ = s.Release(s.End())
	}
	b.ReportMetric(float64(faults(b)-before)/float64(b.N), "faults/op")
}

// checkSizedAppends opens a spool with the server's defaults, closed when
// b ends, and returns it with a function appending one record of a Check's
// size (420 bytes) to it.
func checkSizedAppends(b *testing.B) (*Spool, func()) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	rec := make([]byte, 420)
	fill := func(dst []byte) []byte { return append(dst, rec...) }
	return s, func() {
		if _, err := s.Append(len(rec), 0, fill); err != nil {
			b.Fatal(err)
		}
	}
}

func faults(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Minflt + ru.Majflt
}

// BenchmarkAppendPaced appends Check-sized records at about the rate of a
// server under load (one every 50 µs, 20,000 a second), the syncs and
// releases of the server's defaults going on meanwhile, and reports the
// time an append takes, which the answer waits for: at such a rate the
// page-mapping work ahead of the last record happens in the background
// (populate.go), where a benchmark appending flat out outruns it.
func BenchmarkAppendPaced(b *testing.B) {
	s, appendOne := checkSizedAppends(b)
	var in time.Duration
	next := time.Now()
	for i := 0; b.Loop(); i++ {
		t := time.Now()
		appendOne()
		in += time.Since(t)
		if i%200 == 0 {
			_ = s.Release(s.End()) // shipped, as the decision log does every batch
		}
		next = next.Add(50 * time.Microsecond)
		for time.Now().Before(next) {
			runtime.Gosched()
		}
	}
	b.ReportMetric(float64(in.Nanoseconds())/float64(b.N), "append-ns")
}
