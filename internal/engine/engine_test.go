package engine

import (
	"errors"
	"testing"

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
