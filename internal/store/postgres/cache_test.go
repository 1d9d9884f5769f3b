package postgres_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	"github.com/crmauthz/crmauthz/internal/store/storetest"
)

// TestKeptStates writes a large tenant from two stores on one database, as
// two replicas do, in random order: each write must leave the tables as
// the state it reports, whether its store used the state it kept, caught
// up from the other store's rows in the change log, or had to read the
// tenant. A write that replaces everything leaves no rows, and rows edited
// in the database fail their seal: both make the other store read the
// tenant instead.
func TestKeptStates(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool := pgtest.Open(t, url)
	a, b := postgres.New(pool, nil), postgres.New(pool, nil)
	now := time.Now()
	const users = 2100
	big := model.NewTenantState("big", "Big")
	for _, r := range []string{"rep", "manager"} {
		mustDo(t)(big.CreateRole(model.Role{ID: r, Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "lead", Verbs: []string{"read"}}}}}))
	}
	mustDo(t)(big.CreateDepartment(model.Department{ID: "sales", Name: "Sales"}))
	for i := range users {
		mustDo(t)(big.UpsertUser(model.User{ID: fmt.Sprintf("u%d", i)}))
	}
	if _, err := a.CreateTenant(t.Context(), store.Write{Tenant: "big", Actor: "admin"}, big); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	user := func() string { return fmt.Sprintf("u%d", r.IntN(users)) }
	mutation := func() store.Mutation {
		switch r.IntN(5) {
		case 0:
			u := user()
			return func(st *model.TenantState) (model.Change, error) {
				if _, ok := st.Grants[model.GrantKey{UserID: u, RoleID: "rep"}]; ok {
					return st.RevokeRole(u, "rep")
				}
				return st.GrantRole(model.Grant{UserID: u, RoleID: "rep", ExpiresAt: now.Add(time.Hour)}, now)
			}
		case 1:
			u, m := user(), user()
			return func(st *model.TenantState) (model.Change, error) {
				return st.UpsertUserRecord(model.User{ID: u, Name: "N" + m}, &model.Membership{UserID: u, Primary: "sales"})
			}
		case 2:
			rec := fmt.Sprintf("L-%d", r.IntN(50))
			u := user()
			return func(st *model.TenantState) (model.Change, error) {
				return st.ShareRecord(model.RecordShare{Module: "lead", RecordID: rec, Principal: model.Principal{Kind: model.PrincipalUser, ID: u}, Access: model.AccessRead}, now)
			}
		case 3:
			n := r.IntN(4)
			return func(st *model.TenantState) (model.Change, error) { return st.SetManagerDepth(n) }
		}
		u := user()
		return func(st *model.TenantState) (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: u, RoleID: "manager"}, now)
		}
	}
	write := func(s *postgres.Store, fn store.Mutation) {
		t.Helper()
		var got *model.TenantState
		w := store.Write{Tenant: "big", Actor: "admin", Applied: func(st *model.TenantState, _ model.Delta) error {
			got = st.Clone()
			return nil
		}}
		if _, err := s.Update(t.Context(), w, fn); err != nil {
			t.Fatal(err)
		}
		storetest.AssertState(t, got, tenant(t, s, "big"))
	}

	// One store alone reads the tenant once, then keeps it.
	for range 5 {
		write(a, mutation())
	}
	if n := a.Reads(); n != 1 {
		t.Fatalf("five writes from one store read the tenant %d times, want 1", n)
	}
	// Two stores in turn catch up from each other's rows.
	for range 60 {
		s := a
		if r.IntN(2) == 0 {
			s = b
		}
		write(s, mutation())
	}
	if n := a.Reads() + b.Reads(); n != 2 {
		t.Fatalf("65 writes from two stores read the tenant %d times, want 2", n)
	}

	// A write that replaces the maps leaves no rows: the other store reads.
	write(a, func(st *model.TenantState) (model.Change, error) {
		grants := map[model.GrantKey]model.Grant{}
		for k, g := range st.Grants {
			if k.RoleID == "manager" {
				grants[k] = g
			}
		}
		st.Grants = grants
		return model.Change{Action: "tenant.import", Target: "tenant/big"}, nil
	})
	write(b, mutation())
	if n := b.Reads(); n != 2 {
		t.Fatalf("after a whole-state write the other store read the tenant %d times in all, want 2", n)
	}

	// Rows edited in the database are refused, not applied.
	write(a, func(st *model.TenantState) (model.Change, error) {
		return st.GrantRole(model.Grant{UserID: "u1", RoleID: "rep"}, now)
	})
	if _, err := pool.Exec(t.Context(), `UPDATE change_log SET rows = jsonb_set(rows::jsonb, '{grants,0,key,UserID}', '"u2"')::json
		WHERE tenant_id = 'big' AND revision = (SELECT revision FROM tenants WHERE id = 'big')`); err != nil {
		t.Fatal(err)
	}
	write(b, mutation())
	if n := b.Reads(); n != 3 {
		t.Fatalf("after edited rows the other store read the tenant %d times in all, want 3", n)
	}
}

func mustDo(t *testing.T) func(model.Change, error) {
	return func(_ model.Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}
