package engine

import (
	"flag"
	"fmt"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
)

var collectTenants = flag.Int("collect-tenants", 10000, "tenants of 100 users BenchmarkCollect loads")

// BenchmarkCollect measures what the engine's memory costs the collector
// in every cycle: one forced collection with -collect-tenants tenants of
// 100 users loaded (the tenants of make load), reporting the CPU the
// collection took, the heap objects and the live heap. The collector marks
// every object in every cycle, so under load its CPU per call grows with
// them.
func BenchmarkCollect(b *testing.B) {
	eng := loadGenerated(b, *collectTenants)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ResetTimer()
	var cpu time.Duration
	for b.Loop() {
		before := processCPU(b)
		runtime.GC()
		cpu += processCPU(b) - before
	}
	b.StopTimer()
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/collection")
	b.ReportMetric(float64(ms.HeapObjects), "heap-objects")
	b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
	runtime.KeepAlive(eng)
}

// loadGenerated returns an engine holding n generated tenants of 100
// users (generated); their states are garbage once it returns.
func loadGenerated(tb testing.TB, n int, opts ...Option) *Engine {
	bun, err := bundle.Default()
	if err != nil {
		tb.Fatal(err)
	}
	states := make([]*model.TenantState, n)
	for i := range states {
		states[i] = generated(tb, bun, i)
	}
	eng, err := New(bun.Catalog, bun.ModelText, opts...)
	if err != nil {
		tb.Fatal(err)
	}
	if err := eng.LoadAll(states); err != nil {
		tb.Fatal(err)
	}
	return eng
}

// generatedAt is when generated tenants are made.
var generatedAt = time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)

// generated returns generated tenant i of 100 users (a tenant of make
// load), the same every time.
func generated(tb testing.TB, bun *bundle.Bundle, i int) *model.TenantState {
	opts := datagen.Small()
	opts.Users = 100
	st, err := datagen.Tenant(fmt.Sprintf("load-%05d", i), bun, opts, uint64(i+1), generatedAt)
	if err != nil {
		tb.Fatal(err)
	}
	return st
}

// processCPU returns the CPU time the process has used.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
