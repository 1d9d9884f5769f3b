package replica_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/replica"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestFollowerCatchesUp: a replica whose engine holds an old state, and
// which heard none of the writes since, compares with the database when
// it starts following and catches up (a tenant behind is read, one created
// is loaded, one deleted is unloaded); from then on each write is applied
// as it is notified; a poke for a revision nobody wrote loads nothing; a
// listening connection lost is made again and shows in the status.
func TestFollowerCatchesUp(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	writer := postgres.New(pgtest.Open(t, url), time.Now)
	for _, id := range []string{"acme", "globex"} {
		create(t, writer, id)
	}
	st := postgres.New(pgtest.Open(t, url), time.Now)
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(b.Catalog, b.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "globex"} {
		s, err := st.Tenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(s); err != nil {
			t.Fatal(err)
		}
	}
	// Written before the replica listens: no notification will tell it.
	setDepth(t, writer, "acme", 3) // revision 2
	if _, err := writer.DeleteTenant(ctx, store.Write{Tenant: "globex", Actor: "test", Reason: "offboard"}); err != nil {
		t.Fatal(err)
	}
	create(t, writer, "initech")

	authn := auth.NewAuthenticator(auth.Options{Enabled: true, Store: st})
	f := replica.New(st, eng, authn, replica.Options{URL: url})
	if err := f.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	f.Follow(ctx)
	defer f.Close()

	wait(t, eng, "acme", 2)
	wait(t, eng, "initech", 1)
	waitFor(t, "globex unloaded", func() bool {
		_, err := eng.Revision("globex")
		return errors.Is(err, model.ErrTenantNotFound)
	})
	if s := f.Status(); !s.Following || s.ConnectedSince.IsZero() || s.Applied < 2 || s.Reconnects != 0 {
		t.Errorf("status after catching up: %+v", s)
	}

	setDepth(t, writer, "acme", 4) // revision 3, notified
	wait(t, eng, "acme", 3)
	applied := f.Status().Applied
	f.Poke("acme")
	setDepth(t, writer, "initech", 2) // a later write shows the poke was handled
	wait(t, eng, "initech", 2)
	if got := f.Status().Applied; got != applied+1 {
		t.Errorf("a poke at the current revision applied %d tenant states; want none", got-applied-1)
	}

	// The listening connection dies: the follower connects again.
	db := pgtest.Open(t, url)
	if _, err := db.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'authzd listener' AND datname = current_database()"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a new listening connection", func() bool { s := f.Status(); return s.Following && s.Reconnects == 1 })
	setDepth(t, writer, "acme", 5)
	wait(t, eng, "acme", 4)
}

func create(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.CreateTenant(t.Context(), store.Write{Tenant: id, Actor: "test", Reason: "onboard"}, model.NewTenantState(id, id)); err != nil {
		t.Fatal(err)
	}
}

func setDepth(t *testing.T, s store.Store, tenant string, depth int) {
	t.Helper()
	_, err := s.Update(t.Context(), store.Write{Tenant: tenant, Actor: "test", Reason: "depth"}, func(st *model.TenantState) (model.Change, error) {
		return st.SetManagerDepth(depth)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func wait(t *testing.T, eng *engine.Engine, tenant string, rev int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if got, err := eng.WaitRevision(ctx, tenant, rev); err != nil {
		t.Fatalf("%s at revision %d, want %d: %v", tenant, got, rev, err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("waited 10s for %s", what)
		}
	}
}

// TestFollowerSkipsOwnWrites: a write of this process (its store names it
// as the follower's origin) is not read back and applied a second time;
// the writer applies it. A write of another process still is.
// Notifications arrive in commit order, so once the other's write is
// applied, the own write's notification has been handled.
func TestFollowerSkipsOwnWrites(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewDatabase(t)
	own := postgres.New(pgtest.Open(t, url), time.Now).WithOrigin("this-process")
	other := postgres.New(pgtest.Open(t, url), time.Now).WithOrigin("another-process")
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := engine.New(b.Catalog, b.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"acme", "initech"} {
		create(t, own, id)
		s, err := own.Tenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(s); err != nil {
			t.Fatal(err)
		}
	}
	authn := auth.NewAuthenticator(auth.Options{Store: own})
	f := replica.New(own, eng, authn, replica.Options{URL: url, Origin: "this-process"})
	if err := f.Listen(ctx); err != nil {
		t.Fatal(err)
	}
	f.Follow(ctx)
	defer f.Close()
	waitFor(t, "the first comparison", func() bool { return !f.Status().LastSync.IsZero() })

	before := f.Status().Applied
	setDepth(t, own, "acme", 4)      // revision 2, this process's: left to its writer, which this test is not
	setDepth(t, other, "initech", 5) // revision 2, another's
	wait(t, eng, "initech", 2)
	if rev, _ := eng.Revision("acme"); rev != 1 {
		t.Errorf("the follower applied this process's own write: acme at revision %d", rev)
	}
	if got := f.Status().Applied - before; got != 1 {
		t.Errorf("applied %d tenant states; want 1, the other process's write alone", got)
	}
}
