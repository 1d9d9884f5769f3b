package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// TestRevision: the engine tells loaded tenants, with the revision loaded
// last, from tenants it does not know.
func TestRevision(t *testing.T) {
	eng, _ := newTestEngine(t)
	if _, err := eng.Revision("t"); !errors.Is(err, model.ErrTenantNotFound) {
		t.Fatalf("before loading: %v, want tenant not found", err)
	}
	st := model.NewTenantState("t", "t")
	for _, rev := range []int64{3, 2, 4} { // an older state loaded late is ignored
		st.Revision = rev
		if err := eng.Load(st.Clone()); err != nil {
			t.Fatal(err)
		}
	}
	if rev, err := eng.Revision("t"); err != nil || rev != 4 {
		t.Fatalf("revision %d, %v; want 4", rev, err)
	}
	if _, err := eng.Revision("other"); !errors.Is(err, model.ErrTenantNotFound) {
		t.Fatalf("unknown tenant: %v", err)
	}
}

// TestUnload: an unloaded tenant is NOT_FOUND, and a state of it from
// before its deletion that arrives late is not loaded again.
func TestUnload(t *testing.T) {
	eng, b := newTestEngine(t)
	st, err := b.TenantState(b.Demo, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Revision = 3
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	eng.Unload("demo", 4)
	if _, err := eng.Revision("demo"); !errors.Is(err, model.ErrTenantNotFound) {
		t.Fatalf("after Unload: %v", err)
	}
	late := st.Clone()
	late.Revision = 4
	if err := eng.Load(late); err != nil {
		t.Fatal(err)
	}
	if _, err := eng.Check("demo", "bob", model.ModulePerm("account", "read"), false); !errors.Is(err, model.ErrTenantNotFound) {
		t.Fatalf("a late state came back: %v", err)
	}
}
