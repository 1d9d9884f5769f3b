// Package gcpace paces the garbage collector of a server whose live heap
// is small beside what its calls allocate.
//
// Go collects when the heap has grown by GOGC percent of what the last
// collection left live. A replica with few tenants keeps a live heap of
// about 13 MiB while its calls allocate some 160 MB a second (gRPC's
// frames and headers, mostly), so at the default of 100 it collected
// twelve times a second, and the collector took about a tenth of the
// process's CPU (a profile of authzd under check-8 load at 10 tenants).
// The cost of a cycle grows with the live heap, its frequency with the
// allocation rate over the room left to grow into; giving a small heap
// a fixed room rather than a fixed fraction makes the collector's share
// fall without touching a large heap, whose own size is room enough.
//
// Start keeps that room: after every collection it sets GOGC so that the
// heap may grow by at least the headroom above what is live, and never
// below the GOGC the process started with. A memory limit (GOMEMLIMIT)
// still applies on top: the collector runs earlier when the limit nears.
package gcpace

import (
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// maxPercent bounds the GOGC the pacer sets: a heap almost empty would
// otherwise ask for an absurd percentage.
const maxPercent = 10000

// startPercent is the GOGC the process started with: the floor of every
// pacer, and what Stop restores (pacers of one process, as in tests that
// run several servers, then never take each other's setting for it).
var startPercent = func() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return -1
	}
	return int(s[0].Value.Uint64())
}()

// Pacer keeps the collector's headroom; Stop ends it.
type Pacer struct {
	headroom uint64
	base     int
	stopped  atomic.Bool
	samples  []metrics.Sample
	mu       sync.Mutex // one adjustment at a time: cleanups may overlap Stop
	percent  int
}

// Start paces the collector to leave at least headroom bytes above the live
// heap. Start it once the process has loaded what it serves: what a
// collection finds live then is what the room is added to. It returns nil,
// changing nothing, when headroom is 0 or the collector is off (GOGC=off).
func Start(headroom uint64) *Pacer {
	if headroom == 0 {
		return nil
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || startPercent <= 0 {
		return nil // a runtime without the metric, or GOGC=off: leave it be
	}
	p := &Pacer{headroom: headroom, base: startPercent, percent: startPercent, samples: s}
	p.adjust()
	p.arm()
	return p
}

// Percent is the GOGC the pacer set last.
func (p *Pacer) Percent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.percent
}

// Stop ends the pacing and gives the collector back the GOGC it started
// with.
func (p *Pacer) Stop() {
	if p == nil || p.stopped.Swap(true) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	debug.SetGCPercent(p.base)
	p.percent = p.base
}

// sentinel is garbage as soon as it is made; its cleanup runs after the
// collection that found it, and arms the next one.
type sentinel struct{ _ [64]byte }

func (p *Pacer) arm() {
	runtime.AddCleanup(new(sentinel), func(p *Pacer) {
		if p.stopped.Load() {
			return
		}
		p.adjust()
		p.arm()
	}, p)
}

// adjust sets GOGC for the live heap the last collection left.
func (p *Pacer) adjust() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped.Load() {
		return
	}
	metrics.Read(p.samples)
	percent := percentFor(p.base, p.headroom, p.samples[0].Value.Uint64())
	if percent != p.percent {
		debug.SetGCPercent(percent)
		p.percent = percent
	}
}

// percentFor is the GOGC that leaves headroom bytes above a live heap of
// live bytes, never below base; rounded up to a multiple of 10 so that a
// heap that breathes a little does not change it at every collection.
// Before the first collection nothing is known live, and base stays.
func percentFor(base int, headroom, live uint64) int {
	if live == 0 {
		return base
	}
	need := math.Ceil(float64(headroom)*100/float64(live)/10) * 10
	return int(max(float64(base), min(need, maxPercent)))
}
