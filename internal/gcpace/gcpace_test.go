package gcpace

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		base           int
		headroom, live uint64
		want           int
	}{
		{100, 64 * mib, 13 * mib, 500},  // a few tenants: 64 MiB of room is 4.9x the live heap
		{100, 64 * mib, 200 * mib, 100}, // 10,000 tenants: the heap's own size is room enough
		{100, 64 * mib, 64 * mib, 100},  // exactly: unchanged
		{200, 64 * mib, 40 * mib, 200},  // never below what the process started with
		{100, 64 * mib, 1, maxPercent},  // an empty heap: bounded
		{100, 64 * mib, 0, 100},         // nothing known live yet
		{100, 64 * mib, 63 * mib, 110},  // rounded up to tens: 101.6 -> 110
		{100, 64 * mib, 30 * mib, 220},  // 213 -> 220
	} {
		if got := percentFor(c.base, c.headroom, c.live); got != c.want {
			t.Errorf("percentFor(%d, %d MiB, %d) = %d, want %d", c.base, c.headroom/mib, c.live, got, c.want)
		}
	}
}

func gogc() uint64 {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// waitPercent collects until the pacer has set want, or fails after 10 s.
func waitPercent(t *testing.T, p *Pacer, ok func(int) bool) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		runtime.GC()
		got := p.Percent()
		if ok(got) && uint64(got) == gogc() {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pacer's GOGC stayed %d (the runtime's %d)", got, gogc())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

var kept []byte

// TestPacerFollowsTheLiveHeap: with a small live heap the pacer raises
// GOGC to leave its headroom; with a live heap larger than the headroom it
// goes back to the base; Stop restores the base.
func TestPacerFollowsTheLiveHeap(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	p := Start(256 << 20)
	if p == nil {
		t.Fatal("no pacer")
	}
	defer p.Stop()
	got := waitPercent(t, p, func(v int) bool { return v > 100 })
	t.Logf("small heap: GOGC %d", got)

	kept = make([]byte, 300<<20) // live now, pointer-free: cheap to keep
	for i := range kept {
		if i%4096 == 0 {
			kept[i] = 1
		}
	}
	waitPercent(t, p, func(v int) bool { return v == 100 })
	kept = nil
	waitPercent(t, p, func(v int) bool { return v > 100 })

	p.Stop()
	if gogc() != 100 || p.Percent() != 100 {
		t.Fatalf("after Stop GOGC is %d (pacer %d), want 100", gogc(), p.Percent())
	}
	runtime.GC()
	runtime.GC()
	time.Sleep(20 * time.Millisecond)
	if gogc() != 100 {
		t.Fatalf("a stopped pacer changed GOGC to %d", gogc())
	}
}

func TestPacerOff(t *testing.T) {
	if Start(0) != nil {
		t.Fatal("a headroom of 0 paced the collector")
	}
	defer func(v int) { startPercent = v }(startPercent)
	startPercent = -1 // as with GOGC=off
	if Start(64<<20) != nil {
		t.Fatal("GOGC=off was paced")
	}
	var p *Pacer
	p.Stop() // a nil pacer stops
}
