package spool

import (
	"syscall"
	"testing"
)

// BenchmarkAppend appends Check-sized records (420 bytes) to a spool with
// the server's defaults, reporting the page faults per append: a first
// write to a page of the mapped segment is a fault the appender pays.
func BenchmarkAppend(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	rec := make([]byte, 420)
	fill := func(dst []byte) []byte { return append(dst, rec...) }
	before := faults(b)
	for b.Loop() {
		if _, err := s.Append(len(rec), 0, fill); err != nil {
			b.Fatal(err)
		}
		_ = s.Release(s.End())
	}
	b.ReportMetric(float64(faults(b)-before)/float64(b.N), "faults/op")
}

func faults(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Minflt + ru.Majflt
}
