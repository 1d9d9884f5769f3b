package engine

import (
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestLatestExpiryAgreesWithCasbin: a grant expiring at the latest time the
// model accepts is active in the engine as in the exported Casbin policy,
// and expired in both once that time has passed.
func TestLatestExpiryAgreesWithCasbin(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	st := model.NewTenantState("acme", "")
	if _, err := st.CreateRole(model.Role{ID: "viewer", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}}}}}); err != nil {
		t.Fatal(err)
	}
	mustChange(st.UpsertUser(model.User{ID: "alice"}))
	if _, err := st.GrantRole(model.Grant{UserID: "alice", RoleID: "viewer", ExpiresAt: model.MaxExpiry}, now); err != nil {
		t.Fatal(err)
	}
	st.Revision = 1
	p := model.ModulePerm("account", "read")
	for _, at := range []time.Time{now, model.MaxExpiry.Add(-time.Nanosecond), model.MaxExpiry} {
		eng, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return at }))
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(st); err != nil {
			t.Fatal(err)
		}
		got, err := eng.Check(st.ID, "alice", p, true)
		if err != nil {
			t.Fatal(err)
		}
		want := plainDecision(t, plainEnforcer(t, b, st, at), st.ID, "alice", p)
		if got.Allowed != want || want != at.Before(model.MaxExpiry) {
			t.Fatalf("at %s: engine %v, casbin %v", at, got.Allowed, want)
		}
	}
}
