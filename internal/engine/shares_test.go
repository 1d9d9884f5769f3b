package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestSharesFollowWrites shares records, changes and removes the shares one
// write at a time, and checks after each that the patched index decides
// what the state says: a removed or replaced share must not linger.
func TestSharesFollowWrites(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	eng, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	st := model.NewTenantState("t", "t")
	mustChange(st.CreateRole(model.Role{ID: "reader", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"list", "read", "update"}, Scope: model.ScopeSelf}}}}))
	mustChange(st.CreateDepartment(model.Department{ID: "sales", Name: "Sales"}))
	mustChange(st.CreateDepartment(model.Department{ID: "east", Name: "East", Parent: "sales"}))
	for _, u := range []string{"ann", "bob"} {
		mustChange(st.UpsertUser(model.User{ID: u}))
		mustChange(st.GrantRole(model.Grant{UserID: u, RoleID: "reader"}, now))
	}
	mustChange(st.SetMembership(model.Membership{UserID: "bob", Primary: "east"}))
	st.Revision = 1
	if err := eng.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	write := func(fn func() (model.Change, error)) { t.Helper(); applyWrite(t, eng, st, fn) }
	expect := func(user, verb string, want ...string) {
		t.Helper()
		f, err := eng.PlanFilter("t", user, "account", verb)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(f.Records, want) {
			t.Fatalf("revision %d: %s may %s records %v, want %v", st.Revision, user, verb, f.Records, want)
		}
		for _, id := range []string{"r1", "r2", "r3"} {
			d, err := eng.Check("t", user, model.Permission{Kind: model.KindModule, Module: "account", Verb: verb, Record: &model.Record{ID: id, Owner: "carl"}}, true)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != slices.Contains(want, id) {
				t.Fatalf("revision %d: %s %s %s: allowed %v, want %v", st.Revision, user, verb, id, d.Allowed, !d.Allowed)
			}
		}
	}
	ann := model.Principal{Kind: model.PrincipalUser, ID: "ann"}
	sales := model.Principal{Kind: model.PrincipalDepartment, ID: "sales", IncludeSubs: true}
	share := func(rec string, p model.Principal, a model.Access, exp time.Time) func() (model.Change, error) {
		return func() (model.Change, error) {
			return st.ShareRecord(model.RecordShare{Module: "account", RecordID: rec, Principal: p, Access: a, ExpiresAt: exp}, now)
		}
	}
	unshare := func(rec string, p model.Principal) func() (model.Change, error) {
		return func() (model.Change, error) {
			return st.UnshareRecord(model.ShareKey{Module: "account", RecordID: rec, Principal: p})
		}
	}
	write(share("r1", ann, model.AccessReadWrite, time.Time{}))
	write(share("r2", sales, model.AccessRead, time.Time{}))
	expect("ann", "update", "r1")
	expect("bob", "read", "r2")
	write(share("r1", ann, model.AccessRead, time.Time{})) // replaced: read only now
	expect("ann", "update")
	expect("ann", "read", "r1")
	write(share("r3", ann, model.AccessRead, now.Add(time.Hour)))
	expect("ann", "read", "r1", "r3")
	now = now.Add(2 * time.Hour) // r3's share has expired
	expect("ann", "read", "r1")
	write(unshare("r1", ann))
	write(unshare("r2", sales))
	expect("ann", "read")
	expect("bob", "read")
	// Many writes: the dead entries are dropped by a rebuild on the way.
	for range 100 {
		write(share("r1", ann, model.AccessRead, time.Time{}))
		write(unshare("r1", ann))
	}
	write(share("r2", ann, model.AccessRead, time.Time{}))
	expect("ann", "read", "r2")
	expect("bob", "read")
}

// TestApplyRenumbersUsers grants and revokes a role to ever new users: the
// users keep their numbers while the index is patched, so the numbers
// grow, until there are twice as many as the tenant names and the
// organisation is numbered anew; decisions stay right throughout.
func TestApplyRenumbersUsers(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(b.Catalog, b.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	st := model.NewTenantState("t", "t")
	mustChange(st.CreateRole(model.Role{ID: "reader", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}, Scope: model.ScopeOrg}}}}))
	// The boss reads her own records, and her reports' as their manager.
	mustChange(st.CreateRole(model.Role{ID: "own", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}, Scope: model.ScopeSelf}}}}))
	mustChange(st.CreateDepartment(model.Department{ID: "d", Name: "D"}))
	mustChange(st.UpsertUser(model.User{ID: "boss"}))
	mustChange(st.GrantRole(model.Grant{UserID: "boss", RoleID: "own"}, time.Now()))
	mustChange(st.SetMembership(model.Membership{UserID: "boss", Primary: "d"}))
	st.Revision = 1
	if err := eng.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	bossReads := func(owner string) bool {
		t.Helper()
		d, err := eng.Check("t", "boss", model.Permission{Kind: model.KindModule, Module: "account", Verb: "read", Record: &model.Record{ID: "r", Owner: owner}}, false)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	write := func(fn func() (model.Change, error)) { t.Helper(); applyWrite(t, eng, st, fn) }
	read := model.Permission{Kind: model.KindModule, Module: "account", Verb: "read", Record: &model.Record{ID: "r1", Owner: "x"}}
	most := 0
	for i := range 1500 {
		u := fmt.Sprint("temp-", i)
		write(func() (model.Change, error) { return st.UpsertUser(model.User{ID: u}) })
		write(func() (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: u, Primary: "d", Manager: "boss"})
		})
		if !bossReads(u) {
			t.Fatalf("the boss may not read %s's record though she manages %s", u, u)
		}
		write(func() (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: u, RoleID: "reader"}, time.Now())
		})
		if d, err := eng.Check("t", u, read, false); err != nil || !d.Allowed {
			t.Fatalf("%s after its grant: %v, %v", u, d.Allowed, err)
		}
		write(func() (model.Change, error) { return st.RevokeRole(u, "reader") })
		write(func() (model.Change, error) { return st.DeleteMembership(u) })
		if bossReads(u) {
			t.Fatalf("the boss still reads %s's record after %s left", u, u)
		}
		if d, err := eng.Check("t", u, read, false); err != nil || d.Allowed {
			t.Fatalf("%s after its revocation: %v, %v", u, d.Allowed, err)
		}
		ix, _ := eng.index("t")
		most = max(most, ix.org.users.len())
	}
	ix, _ := eng.index("t")
	if most < 1024 || ix.org.users.len() >= most {
		t.Errorf("users numbered: at most %d, now %d; want them numbered anew past 1,024", most, ix.org.users.len())
	}
}

// applyWrite makes the write fn on st, a revision later, and applies its
// delta to eng.
func applyWrite(t *testing.T, eng *Engine, st *model.TenantState, fn func() (model.Change, error)) {
	t.Helper()
	st.Begin()
	mustChange(fn())
	d, _ := st.Delta()
	st.Commit()
	st.Revision++
	if err := eng.Apply(st, d); err != nil {
		t.Fatal(err)
	}
}
