package postgres_test

import (
	"errors"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

// TestSnapshotsBoundReplay: a snapshot is written every snapshotEvery
// revisions (4 here), StateAt gives every revision's state, and it starts
// from the latest snapshot at or before the revision asked: an altered
// change before that snapshot leaves later revisions readable, and only
// those replayed through it refuse.
func TestSnapshotsBoundReplay(t *testing.T) {
	t.Parallel()
	pool := pgtest.NewPool(t)
	s := postgres.New(pool, nil)
	s.SetSnapshotEvery(4)
	createTenant(t, s, "acme")
	states := map[int64]*model.TenantState{}
	states[tenant(t, s, "acme").Revision] = tenant(t, s, "acme")
	for i := range 9 {
		rev, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin", Reason: "history"}, func(st *model.TenantState) (model.Change, error) {
			if i%2 == 0 {
				return st.GrantRole(model.Grant{UserID: "dave", RoleID: "viewer"}, time.Now())
			}
			return st.RevokeRole("dave", "viewer")
		})
		if err != nil {
			t.Fatal(err)
		}
		states[rev] = tenant(t, s, "acme")
	}
	rows, _ := pool.Query(t.Context(), "SELECT revision FROM tenant_snapshots WHERE tenant_id = 'acme' ORDER BY revision")
	snaps, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		t.Fatal(err)
	}
	if want := []int64{1, 4, 8}; !slices.Equal(snaps, want) {
		t.Fatalf("snapshots at revisions %v, want %v", snaps, want)
	}
	for rev, want := range states {
		got, err := s.StateAt(t.Context(), "acme", rev)
		if err != nil {
			t.Fatalf("StateAt(%d): %v", rev, err)
		}
		if !reflect.DeepEqual(got.Grants, want.Grants) || got.Revision != want.Revision {
			t.Errorf("StateAt(%d): grants %v at %d, want %v at %d", rev, got.Grants, got.Revision, want.Grants, want.Revision)
		}
	}
	// Revision 3's change altered: revisions 4 on start from a snapshot
	// after it; 3 is replayed through it.
	if _, err := pool.Exec(t.Context(), "UPDATE change_log SET rows = replace(rows::text, 'dave', 'carol')::json WHERE tenant_id = 'acme' AND revision = 3"); err != nil {
		t.Fatal(err)
	}
	for _, rev := range []int64{4, 7, 10} {
		if _, err := s.StateAt(t.Context(), "acme", rev); err != nil {
			t.Errorf("StateAt(%d) after revision 3 was altered: %v", rev, err)
		}
	}
	var c *model.ConflictError
	if _, err := s.StateAt(t.Context(), "acme", 3); !errors.As(err, &c) || c.Reason != model.ReasonHistoryAltered {
		t.Errorf("StateAt(3) after revision 3 was altered: %v, want %s", err, model.ReasonHistoryAltered)
	}
}
