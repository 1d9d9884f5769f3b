package engine

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// concRequest is one read a reader repeats: a check (with or without a
// record), field states, effective permissions or a record filter.
type concRequest struct {
	user   string
	perm   model.Permission
	module string
	verb   string
	op     int // 0 check, 1 field access, 2 effective permissions, 3 filter
}

// concAnswer is what an engine answered to a concRequest; answers compare
// with reflect.DeepEqual.
type concAnswer struct {
	allowed bool
	fields  []model.FieldState
	eff     Effective
	filter  Filter
}

func concAsk(eng *Engine, tenant string, q concRequest, explain bool) (concAnswer, int64, error) {
	switch q.op {
	case 0:
		d, err := eng.Check(tenant, q.user, q.perm, explain)
		return concAnswer{allowed: d.Allowed}, d.Revision, err
	case 1:
		var rec *model.Record
		if explain {
			rec = &model.Record{ID: "r1", Owner: q.user}
		}
		fs, rev, err := eng.FieldAccess(tenant, q.user, q.module, rec)
		return concAnswer{fields: fs}, rev, err
	case 2:
		eff, err := eng.EffectivePermissions(tenant, q.user)
		rev := eff.Revision
		eff.Revision = 0
		return concAnswer{eff: eff}, rev, err
	}
	f, err := eng.PlanFilter(tenant, q.user, q.module, q.verb)
	rev := f.Revision
	f.Revision = 0
	return concAnswer{filter: f}, rev, err
}

// TestConcurrentReadsAndLoads runs readers of every kind against writers
// loading tenants of very different sizes (so loads cross the packing
// threshold both ways, deciding from packed and loose tables) one at a time
// and several at once, in any revision order. Every answer must be the one
// a quiet engine gives at the revision the answer names, and no reader may
// see a tenant's revision go back. Run with -race.
func TestConcurrentReadsAndLoads(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	clock := WithClock(func() time.Time { return now })
	g := &gen{r: rand.New(rand.NewPCG(7, 7)), cat: b.Catalog, now: now.Add(-time.Hour)}
	const tenants, versions, users = 4, 6, 24
	roleCounts := []int{3, 9, 20, 40, 70}
	userCounts := []int{2, users, 200}
	states := make([][]*model.TenantState, tenants)
	for ti := range tenants {
		for v := range versions {
			st := g.tenant(fmt.Sprintf("t%d", ti), roleCounts[g.pick(len(roleCounts))], userCounts[(ti+v)%len(userCounts)])
			st.Revision = int64(v + 1)
			states[ti] = append(states[ti], st)
		}
	}
	var reqs []concRequest
	for i := range 120 {
		m := b.Catalog.Modules[g.pick(len(b.Catalog.Modules))]
		q := concRequest{user: userID(g.pick(users + 1)), perm: g.permission(), module: m.ID, verb: b.Catalog.Verbs[g.pick(len(b.Catalog.Verbs))], op: i % 4}
		if q.op == 0 && g.pick(3) == 0 {
			q.perm = model.Permission{Kind: model.KindModule, Module: m.ID, Verb: q.verb, Record: &model.Record{ID: "r1", Owner: userID(g.pick(users))}}
		}
		reqs = append(reqs, q)
	}
	// want[tenant][revision-1][request][explain]
	want := make([][][][2]concAnswer, tenants)
	ref, err := New(b.Catalog, b.ModelText, clock)
	if err != nil {
		t.Fatal(err)
	}
	for ti := range tenants {
		want[ti] = make([][][2]concAnswer, versions)
		for v := range versions {
			if err := ref.Load(states[ti][v]); err != nil {
				t.Fatal(err)
			}
			want[ti][v] = make([][2]concAnswer, len(reqs))
			for qi, q := range reqs {
				for x, explain := range []bool{false, true} {
					a, rev, err := concAsk(ref, states[ti][v].ID, q, explain)
					if err != nil || rev != int64(v+1) {
						t.Fatalf("reference: revision %d, %v", rev, err)
					}
					want[ti][v][qi][x] = a
				}
			}
		}
	}

	eng, err := New(b.Catalog, b.ModelText, clock)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]*model.TenantState, tenants)
	for ti := range tenants {
		first[ti] = states[ti][0]
	}
	if err := eng.LoadAll(first); err != nil {
		t.Fatal(err)
	}

	// maxRev[tenant] is the newest revision any writer loaded: no load may
	// be lost to a concurrent one.
	var maxRev [tenants]atomic.Int64
	loaded := func(st *model.TenantState) {
		ti := slices.IndexFunc(first, func(f *model.TenantState) bool { return f.ID == st.ID })
		for {
			cur := maxRev[ti].Load()
			if st.Revision <= cur || maxRev[ti].CompareAndSwap(cur, st.Revision) {
				return
			}
		}
	}
	for ti := range tenants {
		maxRev[ti].Store(1)
	}
	var done atomic.Bool
	var packs, looses, reads atomic.Int64
	var wg, writers sync.WaitGroup
	fail := make(chan string, 16)
	report := func(format string, args ...any) {
		select {
		case fail <- fmt.Sprintf(format, args...):
		default:
		}
		done.Store(true)
	}
	for w := range 3 {
		writers.Add(1)
		go func() {
			defer writers.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range 25 {
				if done.Load() {
					return
				}
				var err error
				if r.IntN(4) == 0 {
					var batch []*model.TenantState
					for range 1 + r.IntN(tenants) {
						batch = append(batch, states[r.IntN(tenants)][r.IntN(versions)])
					}
					err = eng.LoadAll(batch)
					for _, st := range batch {
						loaded(st)
					}
				} else {
					st := states[r.IntN(tenants)][r.IntN(versions)]
					err = eng.Load(st)
					loaded(st)
				}
				if err != nil {
					report("load: %v", err)
					return
				}
				eng.mu.Lock()
				if eng.loose == 0 {
					packs.Add(1)
				} else {
					looses.Add(1)
				}
				eng.mu.Unlock()
			}
		}()
	}
	for rd := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(rd), 2))
			var seen [tenants]int64
			for !done.Load() {
				ti, qi, x := r.IntN(tenants), r.IntN(len(reqs)), r.IntN(2)
				got, rev, err := concAsk(eng, states[ti][0].ID, reqs[qi], x == 1)
				if err != nil {
					report("read: %v", err)
					return
				}
				if rev < seen[ti] || rev < 1 || rev > versions {
					report("tenant %d: revision %d after %d", ti, rev, seen[ti])
					return
				}
				seen[ti] = rev
				if w := want[ti][rev-1][qi][x]; !reflect.DeepEqual(got, w) {
					report("tenant %d revision %d request %+v explain=%v: %+v, want %+v", ti, rev, reqs[qi], x == 1, got, w)
					return
				}
				reads.Add(1)
			}
		}()
	}
	writers.Wait()
	done.Store(true)
	wg.Wait()
	close(fail)
	for msg := range fail {
		t.Error(msg)
	}
	for ti := range tenants {
		if ix, _ := eng.index(first[ti].ID); ix.revision != maxRev[ti].Load() {
			t.Errorf("tenant %d at revision %d; revision %d was loaded", ti, ix.revision, maxRev[ti].Load())
		}
	}
	if packs.Load() == 0 || looses.Load() == 0 {
		t.Errorf("%d loads left the engine packed and %d loose; both must occur", packs.Load(), looses.Load())
	}
	t.Logf("%d reads, %d loads ending packed, %d loose", reads.Load(), packs.Load(), looses.Load())
}
