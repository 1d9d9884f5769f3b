package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
)

// orgGen makes random organisation writes: departments, memberships,
// sharing rules and record shares, over a tenant's users.
type orgGen struct {
	*gen
	depts []string
	late  []string // users added after the tenant was built
}

func (g *orgGen) principal(st *model.TenantState, users int) model.Principal {
	switch g.pick(3) {
	case 0:
		return model.Principal{Kind: model.PrincipalUser, ID: userID(g.pick(users))}
	case 1:
		return model.Principal{Kind: model.PrincipalDepartment, ID: g.depts[g.pick(len(g.depts))], IncludeSubs: g.pick(2) == 0}
	}
	roles := st.SortedRoles()
	return model.Principal{Kind: model.PrincipalRole, ID: roles[g.pick(len(roles))].ID}
}

func (g *orgGen) access() model.Access {
	return []model.Access{model.AccessRead, model.AccessReadWrite}[g.pick(2)]
}

// write applies one random write of any kind, roles rarely (they rebuild
// the index), and may be refused by the model, which then changes nothing.
func (g *orgGen) write(st *model.TenantState, users int) {
	modules := []string{"account", "lead"}
	switch g.pick(17) {
	case 0:
		if g.pick(4) == 0 {
			g.gen.write(st, users) // roles, grants, status
		}
	case 1, 2, 3:
		// Grants, often to users the table has not seen, often expiring
		// (which keeps them out of the slot).
		roles := st.SortedRoles()
		u := userID(g.pick(users))
		if g.pick(3) == 0 {
			u = fmt.Sprintf("late-%d", g.r.Uint32()%5000)
			if g.pick(2) == 0 {
				u += "@branch.example"
			}
			mustChange(st.UpsertUser(model.User{ID: u}))
			g.late = append(g.late, u)
		}
		_, _ = st.GrantRole(model.Grant{UserID: u, RoleID: roles[g.pick(len(roles))].ID, ExpiresAt: g.expiry()}, g.now)
	case 4, 5:
		if grants := st.SortedGrants(); len(grants) > 0 {
			gr := grants[g.pick(len(grants))]
			mustChange(st.RevokeRole(gr.UserID, gr.RoleID))
		}
	case 6:
		mustChange(st.SetUserStatus(userID(g.pick(users)), []model.UserStatus{model.UserActive, model.UserInactive}[g.pick(2)]))
	case 7, 8:
		m := model.Membership{UserID: userID(g.pick(users)), Primary: g.depts[g.pick(len(g.depts))]}
		if o := g.depts[g.pick(len(g.depts))]; g.pick(2) == 0 && o != m.Primary {
			m.Others = []string{o}
		}
		if g.pick(4) != 0 {
			m.Manager = userID(g.pick(users))
		}
		_, _ = st.SetMembership(m) // a manager cycle is refused
	case 9:
		_, _ = st.DeleteMembership(userID(g.pick(users)))
	case 10:
		id := fmt.Sprintf("d%d", g.pick(len(g.depts)+3))
		d := model.Department{ID: id, Name: id}
		if g.pick(3) != 0 {
			d.Parent = g.depts[g.pick(len(g.depts))]
		}
		if _, ok := st.Departments[id]; ok {
			_, _ = st.UpdateDepartment(d)
		} else if _, err := st.CreateDepartment(d); err == nil {
			g.depts = append(g.depts, id)
		}
	case 11:
		r := model.SharingRule{ID: fmt.Sprintf("rule%d", g.pick(12)), Module: modules[g.pick(2)],
			OwnedBy: g.principal(st, users), SharedWith: g.principal(st, users), Access: g.access()}
		if _, ok := st.SharingRules[r.ID]; ok {
			mustChange(st.DeleteSharingRule(r.ID))
		} else {
			mustChange(st.CreateSharingRule(r))
		}
	case 12:
		sh := model.RecordShare{Module: modules[g.pick(2)], RecordID: fmt.Sprintf("rec%d", g.pick(40)),
			Principal: g.principal(st, users), Access: g.access(), ExpiresAt: g.expiry()}
		if _, ok := st.RecordShares[sh.Key()]; ok && g.pick(2) == 0 {
			mustChange(st.UnshareRecord(sh.Key()))
		} else {
			mustChange(st.ShareRecord(sh, g.now))
		}
	case 13:
		mustChange(st.SetManagerDepth(g.pick(4)))
	case 14, 15, 16:
		// A role's permissions, or what it inherits (refused when that
		// would close a cycle or go too deep).
		roles := st.SortedRoles()
		r := roles[g.pick(len(roles))]
		if g.pick(2) == 0 {
			r.Permissions = g.permissions()
		} else {
			r.Inherits = nil
			for range g.pick(3) {
				if p := roles[g.pick(len(roles))].ID; p != r.ID && !slices.Contains(r.Inherits, p) {
					r.Inherits = append(r.Inherits, p)
				}
			}
		}
		_, _ = st.ReplaceRole(r)
	}
}

// TestApplyMatchesRebuild applies thousands of random writes to an engine
// one delta at a time and checks, after every few, that it decides exactly
// as an engine that built the tenant from scratch, and, for the
// permissions Casbin knows, as plain Casbin: checks with and without a
// record and an explanation, record filters, field states and effective
// permissions.
func TestApplyMatchesRebuild(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(4) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			g := &orgGen{gen: &gen{r: rand.New(rand.NewPCG(seed, 99)), cat: b.Catalog, now: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}}
			clock := func() time.Time { return g.now }
			inc, err := New(b.Catalog, b.ModelText, WithClock(clock))
			if err != nil {
				t.Fatal(err)
			}
			const users = 60
			roles := []int{6, 20, 70, 9}[seed] // 70: no role masks
			st := g.tenant("t", roles, users)
			for i := range 10 {
				d := model.Department{ID: fmt.Sprintf("d%d", i), Name: "D"}
				if i > 0 {
					d.Parent = g.depts[g.pick(len(g.depts))]
				}
				mustChange(st.CreateDepartment(d))
				g.depts = append(g.depts, d.ID)
			}
			if err := inc.Load(st.Clone()); err != nil {
				t.Fatal(err)
			}
			patched := 0
			for step := range 1500 {
				st.Begin()
				g.write(st, users)
				d, _ := st.Delta()
				st.Commit()
				st.Revision++
				if d.Empty() {
					d = model.Delta{}
				}
				if cur, _ := inc.index("t"); !d.Whole && cur.roles.len() == len(st.Roles) && cur.revision == st.Revision-1 {
					patched++
				}
				if err := inc.Apply(st, d); err != nil {
					t.Fatal(err)
				}
				if step%25 == 0 {
					g.now = g.now.Add(7 * time.Minute)
				}
				if step%10 == 9 {
					compareEngines(t, g, b, inc, st, users, step%100 == 99)
				}
			}
			if patched < 1000 {
				t.Fatalf("only %d of 1500 writes were applied as deltas", patched)
			}
		})
	}
}

// compareEngines checks inc against an engine built from st alone, and
// with casbin against plain Casbin too.
func compareEngines(t *testing.T, g *orgGen, b *bundle.Bundle, inc *Engine, st *model.TenantState, users int, casbin bool) {
	t.Helper()
	full, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return g.now }))
	if err != nil {
		t.Fatal(err)
	}
	if err := full.Load(st.Clone()); err != nil {
		t.Fatal(err)
	}
	plain := plainEnforcer(t, b, st, g.now)
	// Every user's filters: they name every record shared with the user,
	// so a share a write removed or replaced shows here.
	for u := range users + 1 {
		for _, mod := range []string{"account", "lead"} {
			wf, _ := full.PlanFilter("t", userID(u), mod, "read")
			gf, _ := inc.PlanFilter("t", userID(u), mod, "read")
			if wf.Kind != gf.Kind || !slices.Equal(wf.Owners, gf.Owners) || !slices.Equal(wf.Departments, gf.Departments) || !slices.Equal(wf.Records, gf.Records) {
				t.Fatalf("revision %d: %s %s read: patched filter %+v, rebuilt %+v", st.Revision, userID(u), mod, gf, wf)
			}
		}
	}
	for range 40 {
		user := userID(g.pick(users + 1))
		if len(g.late) > 0 && g.pick(3) == 0 {
			user = g.late[g.pick(len(g.late))]
		}
		p := g.permission()
		want, _ := full.Check("t", user, p, false)
		got, err := inc.Check("t", user, p, g.pick(2) == 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Allowed != want.Allowed || got.Revision != st.Revision {
			t.Fatalf("revision %d: %s %v: patched %v at %d, rebuilt %v", st.Revision, user, p, got.Allowed, got.Revision, want.Allowed)
		}
		if casbin && got.Allowed != plainDecision(t, plain, "t", user, p) {
			t.Fatalf("revision %d: %s %v: patched %v, casbin disagrees", st.Revision, user, p, got.Allowed)
		}
		// Records, by owner, department and id, and the filter that
		// selects them.
		mod, verb := []string{"account", "lead"}[g.pick(2)], []string{"list", "read", "update"}[g.pick(3)]
		rec := &model.Record{ID: fmt.Sprintf("rec%d", g.pick(40)), Owner: userID(g.pick(users)), Department: fmt.Sprintf("d%d", g.pick(12))}
		rp := model.Permission{Kind: model.KindModule, Module: mod, Verb: verb, Record: rec}
		want, _ = full.Check("t", user, rp, false)
		got, _ = inc.Check("t", user, rp, true)
		if got.Allowed != want.Allowed {
			t.Fatalf("revision %d: %s %s %s %+v: patched %v, rebuilt %v", st.Revision, user, mod, verb, *rec, got.Allowed, want.Allowed)
		}
		wf, _ := full.PlanFilter("t", user, mod, verb)
		gf, _ := inc.PlanFilter("t", user, mod, verb)
		if wf.Kind != gf.Kind || !slices.Equal(wf.Owners, gf.Owners) || !slices.Equal(wf.Departments, gf.Departments) || !slices.Equal(wf.Records, gf.Records) {
			t.Fatalf("revision %d: %s %s %s: patched filter %+v, rebuilt %+v", st.Revision, user, mod, verb, gf, wf)
		}
		// A page of such questions answers each as Check does.
		page := []model.Permission{p, rp, g.permission(), g.permission()}
		for range g.pick(6) {
			page = append(page, model.Permission{Kind: model.KindModule, Module: mod, Verb: verb,
				Record: &model.Record{ID: fmt.Sprintf("rec%d", g.pick(40)), Owner: userID(g.pick(users)), Department: fmt.Sprintf("d%d", g.pick(12))}})
		}
		answers := make([]bool, len(page))
		rev, err := inc.CheckPage("t", user, page, answers)
		if err != nil || rev != st.Revision {
			t.Fatalf("revision %d: page at %d: %v", st.Revision, rev, err)
		}
		for i, q := range page {
			if want, _ := full.Check("t", user, q, false); answers[i] != want.Allowed {
				t.Fatalf("revision %d: %s page item %d %+v: %v, Check %v", st.Revision, user, i, q, answers[i], want.Allowed)
			}
		}
		m := b.Catalog.Modules[g.pick(len(b.Catalog.Modules))]
		wa, _, _ := full.FieldAccess("t", user, m.ID, rec)
		ga, _, _ := inc.FieldAccess("t", user, m.ID, rec)
		if !slices.Equal(wa, ga) {
			t.Fatalf("revision %d: %s fields of %s: patched %v, rebuilt %v", st.Revision, user, m.ID, ga, wa)
		}
		we, _ := full.EffectivePermissions("t", user)
		ge, _ := inc.EffectivePermissions("t", user)
		if fmt.Sprint(we) != fmt.Sprint(ge) {
			t.Fatalf("revision %d: %s effective: patched %+v, rebuilt %+v", st.Revision, user, ge, we)
		}
	}
}

// BenchmarkApply applies one write to the 50,000-user tenant of
// datagen's large preset as the store hands it over: a grant or revoke
// (a delta), and a change to a role's permissions (which rebuilds the
// tenant's index), against building the index whole:
//
//	go test -run '^$' -bench Apply ./internal/engine/
func BenchmarkApply(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	st, err := datagen.Tenant("large", bun, datagen.Large(), 1, now)
	if err != nil {
		b.Fatal(err)
	}
	st.Revision = 1
	eng, err := New(bun.Catalog, bun.ModelText)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.Load(st); err != nil {
		b.Fatal(err)
	}
	users := st.SortedUsers()
	write := func(b *testing.B, fn func(i int) (model.Change, error)) {
		for i := range b.N {
			st.Begin()
			if _, err := fn(i); err != nil {
				b.Fatal(err)
			}
			d, _ := st.Delta()
			st.Commit()
			st.Revision++
			if err := eng.Apply(st, d); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("grant", func(b *testing.B) {
		write(b, func(i int) (model.Change, error) {
			u := users[i%len(users)].ID
			if _, ok := st.Grants[model.GrantKey{UserID: u, RoleID: "sales_rep"}]; ok {
				return st.RevokeRole(u, "sales_rep")
			}
			return st.GrantRole(model.Grant{UserID: u, RoleID: "sales_rep"}, now)
		})
	})
	b.Run("share", func(b *testing.B) {
		write(b, func(i int) (model.Change, error) {
			k := model.ShareKey{Module: "account", RecordID: fmt.Sprint("bench-", i%100), Principal: model.Principal{Kind: model.PrincipalUser, ID: users[i%len(users)].ID}}
			if _, ok := st.RecordShares[k]; ok {
				return st.UnshareRecord(k)
			}
			return st.ShareRecord(model.RecordShare{Module: k.Module, RecordID: k.RecordID, Principal: k.Principal, Access: model.AccessRead}, now)
		})
	})
	b.Run("department", func(b *testing.B) {
		depts := st.SortedDepartments()
		write(b, func(i int) (model.Change, error) {
			d := depts[i%len(depts)]
			d.Name = fmt.Sprint("renamed ", i)
			return st.UpdateDepartment(d)
		})
	})
	b.Run("role", func(b *testing.B) {
		write(b, func(i int) (model.Change, error) {
			r := st.Roles["sales_rep"]
			r.Description = fmt.Sprint("edit ", i)
			return st.ReplaceRole(r)
		})
	})
	b.Run("rebuild", func(b *testing.B) {
		for range b.N {
			if _, err := buildIndex(eng.space, eng.cat, st, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
