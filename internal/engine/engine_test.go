package engine

import (
	"context"
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

// TestWaitRevision: a wait returns once the tenant is loaded at the
// revision asked for (or a later one), gives up with the context, and
// ends as not found when the tenant is deleted at or after it.
func TestWaitRevision(t *testing.T) {
	eng, _ := newTestEngine(t)
	st := model.NewTenantState("t", "t")
	st.Revision = 1
	if err := eng.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	if rev, err := eng.WaitRevision(t.Context(), "t", 1); err != nil || rev != 1 {
		t.Fatalf("already there: %d, %v", rev, err)
	}

	type result struct {
		rev int64
		err error
	}
	done := make(chan result, 1)
	go func() {
		rev, err := eng.WaitRevision(t.Context(), "t", 3)
		done <- result{rev, err}
	}()
	st.Revision = 2
	if err := eng.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-done:
		t.Fatalf("returned at revision 2: %+v", r)
	case <-time.After(20 * time.Millisecond):
	}
	st.Revision = 5
	if err := eng.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	if r := <-done; r.err != nil || r.rev != 5 {
		t.Fatalf("after loading revision 5: %+v", r)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Millisecond)
	defer cancel()
	if rev, err := eng.WaitRevision(ctx, "t", 6); !errors.Is(err, context.DeadlineExceeded) || rev != 5 {
		t.Fatalf("never reached: %d, %v", rev, err)
	}
	if rev, err := eng.WaitRevision(ctx, "new", 1); !errors.Is(err, context.DeadlineExceeded) || rev != 0 {
		t.Fatalf("a tenant never loaded: %d, %v", rev, err)
	}

	go func() {
		_, err := eng.WaitRevision(t.Context(), "t", 6)
		done <- result{err: err}
	}()
	eng.Unload("t", 6)
	if r := <-done; !errors.Is(r.err, model.ErrTenantNotFound) {
		t.Fatalf("deleted at the revision waited for: %+v", r)
	}
	// A tenant deleted elsewhere and never loaded here ends a wait too.
	go func() {
		_, err := eng.WaitRevision(t.Context(), "elsewhere", 2)
		done <- result{err: err}
	}()
	eng.Unload("elsewhere", 2)
	if r := <-done; !errors.Is(r.err, model.ErrTenantNotFound) {
		t.Fatalf("deleted before it was ever loaded: %+v", r)
	}
}
