package engine

import (
	"fmt"
	"maps"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestIndexesCompact holds a loaded tenant of 100 users to a few heap
// objects, where built table by table it was some thirty: the collector
// marks every one in every cycle (slab.go). A write's patched index is
// loose until the engine packs, which compacts it again without changing
// a decision.
func TestIndexesCompact(t *testing.T) {
	const tenants = 1000
	before := heapObjects()
	eng := loadGenerated(t, tenants, WithClock(func() time.Time { return generatedAt }))
	perTenant := float64(heapObjects()-before) / tenants
	t.Logf("%.1f heap objects per tenant", perTenant)
	if perTenant > 6 {
		t.Errorf("a loaded tenant is %.1f heap objects; want at most 6", perTenant)
	}

	bun, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	last := generated(t, bun, tenants-1)
	// A grant patches the index; its new tables are loose.
	last.Begin()
	user := slices.Sorted(maps.Keys(last.Users))[0]
	granted := false
	for _, r := range last.SortedRoles() {
		if _, err := last.GrantRole(model.Grant{UserID: user, RoleID: r.ID}, generatedAt); err == nil {
			granted = true
			break
		}
	}
	if !granted {
		t.Fatalf("no role to grant %s", user)
	}
	d, _ := last.Delta()
	last.Commit()
	last.Revision++
	if err := eng.Apply(last, d); err != nil {
		t.Fatal(err)
	}
	ix, err := eng.index(last.ID)
	if err != nil {
		t.Fatal(err)
	}
	if ix.compact {
		t.Fatal("a patched index is compact before the engine packs")
	}
	want := decide(eng, last)
	packed, _ := pack(*eng.tenants.Load())
	for id, ix := range packed {
		if !ix.compact {
			t.Fatalf("tenant %s is not compact after packing", id)
		}
	}
	eng.tenants.Store(&packed)
	if got := decide(eng, last); got != want {
		t.Errorf("decisions after compacting: %q; before: %q", got, want)
	}
	if got := decide(eng, last); got == "" {
		t.Error("no decisions compared")
	}
}

// decide returns every decision of every user of st on every module
// verb, with its explanation.
func decide(eng *Engine, st *model.TenantState) string {
	var out []byte
	for _, u := range slices.Sorted(maps.Keys(st.Users)) {
		for _, m := range eng.cat.Modules {
			for _, v := range eng.cat.Verbs {
				d, err := eng.Check(st.ID, u, model.Permission{Kind: model.KindModule, Module: m.ID, Verb: v}, true)
				out = fmt.Appendf(out, "%v %v\n", d, err)
			}
		}
	}
	return string(out)
}

// heapObjects returns the live heap objects after a full collection.
func heapObjects() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapObjects)
}

// TestOwnSetsShared builds generated tenants, whose roles come from the
// bundle's templates, with the own bitsets of one load shared and each
// alone: the indexes are the same, and most roles' bitsets were copied
// (datagen gives a tenant a few roles of its own beside the templates').
func TestOwnSetsShared(t *testing.T) {
	bun, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(bun.Catalog, bun.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	sets := ownSets{}
	roles := 0
	for i := range 20 {
		st := generated(t, bun, i)
		shared, err := buildIndex(eng.space, eng.cat, st, sets)
		if err != nil {
			t.Fatal(err)
		}
		alone, err := buildIndex(eng.space, eng.cat, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(shared.own, alone.own) || !slices.Equal(shared.bits, alone.bits) || !slices.Equal(shared.masks.b, alone.masks.b) {
			t.Fatalf("tenant %s: its bitsets built with another tenant's roles differ from those built alone", st.ID)
		}
		roles += len(st.Roles)
	}
	t.Logf("%d roles, %d bitsets built", roles, len(sets))
	if len(sets) > roles/2 {
		t.Errorf("%d roles built %d bitsets; the templates' roles were not shared", roles, len(sets))
	}
}
