package engine

import (
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestPackLargeBlock loads a tenant whose user slots exceed a large page:
// they get a block of their own, aligned to and advised to use 2 MiB
// pages, outside the shared block and its accounting, and every user's
// grant is decided from it.
func TestPackLargeBlock(t *testing.T) {
	eng, b := newTestEngine(t)
	fns := b.Catalog.Functions
	st := model.NewTenantState("big", "big")
	st.Revision = 1
	for i := range 3 {
		st.Roles[roleName(i)] = model.Role{ID: roleName(i), Permissions: model.Permissions{Functions: []string{fns[i].ID}}}
	}
	const users = 110_000 // 146,667 slots of 16 bytes: 2.2 MiB
	for u := range users {
		id := fmt.Sprintf("u%d", u)
		if u%3 == 0 {
			id = fmt.Sprintf("user-%d@example.com", u)
		}
		st.Grants[model.GrantKey{UserID: id, RoleID: roleName(u % 3)}] = model.Grant{UserID: id, RoleID: roleName(u % 3)}
	}
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	ix, _ := eng.index("big")
	if eng.packed >= hugePage || eng.loose != 0 || !ix.ownBlock {
		t.Fatalf("packed %d, loose %d, own block %v: the tenant's slots are not in a block of their own", eng.packed, eng.loose, ix.ownBlock)
	}
	if addr := uintptr(unsafe.Pointer(unsafe.SliceData(ix.users.slots))); addr%hugePage != 0 {
		t.Fatalf("block at %#x is not aligned to a large page", addr)
	}
	for u := range users {
		id := fmt.Sprintf("u%d", u)
		if u%3 == 0 {
			id = fmt.Sprintf("user-%d@example.com", u)
		}
		for i := range 3 {
			d, err := eng.Check("big", id, model.FunctionPerm(fns[i].ID), false)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != (i == u%3) {
				t.Fatalf("%s %s: %v", id, fns[i].ID, d.Allowed)
			}
		}
	}
}

// TestNewBlock checks sizes around a large page: the block has exactly the
// length asked for, and from a large page on starts at a large-page
// boundary.
func TestNewBlock(t *testing.T) {
	for _, n := range []int{0, slotSize, hugePage - slotSize, hugePage, hugePage + slotSize, 3 * hugePage} {
		b := newBlock(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("newBlock(%d): len %d cap %d", n, len(b), cap(b))
		}
		if n == 0 {
			continue
		}
		addr := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		if addr%8 != 0 || (n >= hugePage && addr%hugePage != 0) {
			t.Fatalf("newBlock(%d) at %#x", n, addr)
		}
		if s := slotsIn(b); len(s) != n/slotSize {
			t.Fatalf("newBlock(%d): %d slots", n, len(s))
		}
	}
}

// TestTenantKeysTogether holds the tenant map's keys to one string once the
// engine packs, in order, each index naming its tenant with its key: a
// lookup's comparison then reads few cache lines.
func TestTenantKeysTogether(t *testing.T) {
	keysTogether(t, loadGenerated(t, 50))
}

// keysTogether fails t unless the keys of eng's tenant map lie in one
// string, in order, and each index names its tenant with its key.
func keysTogether(t *testing.T, eng *Engine) {
	t.Helper()
	cur := *eng.tenants.Load()
	ids := slices.Sorted(maps.Keys(cur))
	for i, id := range ids {
		if unsafe.StringData(cur[id].tenant) != unsafe.StringData(id) {
			t.Errorf("tenant %s: the index's id is not the map's key", id)
		}
		if i == 0 {
			continue
		}
		prev := ids[i-1]
		if unsafe.StringData(id) != (*byte)(unsafe.Add(unsafe.Pointer(unsafe.StringData(prev)), len(prev))) {
			t.Fatalf("the key %s does not follow the key %s", id, prev)
		}
	}
}

// TestPreloadThenPack loads tenants batch by batch as a start-up does:
// nothing is packed until Pack, which packs every tenant once, and the
// decisions before and after are those of an engine that packed as it
// loaded.
func TestPreloadThenPack(t *testing.T) {
	bun, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	const tenants = 96
	eng, err := New(bun.Catalog, bun.ModelText, WithClock(func() time.Time { return generatedAt }))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < tenants; i += 32 {
		var batch []*model.TenantState
		for j := i; j < i+32; j++ {
			batch = append(batch, generated(t, bun, j))
		}
		if err := eng.Preload(batch); err != nil {
			t.Fatal(err)
		}
	}
	if eng.packed != 0 || eng.loose == 0 {
		t.Fatalf("after preloading: packed %d, loose %d; want nothing packed", eng.packed, eng.loose)
	}
	packed := loadGenerated(t, tenants, WithClock(func() time.Time { return generatedAt }))
	states := make([]*model.TenantState, tenants)
	for i := range states {
		states[i] = generated(t, bun, i)
	}
	same := func(when string) {
		t.Helper()
		for _, st := range states[:8] {
			if got, want := decide(eng, st), decide(packed, st); got != want {
				t.Fatalf("%s: tenant %s decides otherwise than when packed as it loads", when, st.ID)
			}
		}
	}
	same("before Pack")
	eng.Pack()
	if eng.packed == 0 || eng.loose != 0 {
		t.Fatalf("after Pack: packed %d, loose %d", eng.packed, eng.loose)
	}
	keysTogether(t, eng)
	same("after Pack")
}
