package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// everyPermission lists every permission of the catalog: each module verb,
// each function, each field read and write.
func everyPermission(cat *model.Catalog) []model.Permission {
	var out []model.Permission
	for _, m := range cat.Modules {
		for _, v := range cat.Verbs {
			out = append(out, model.ModulePerm(m.ID, v))
		}
		for _, f := range m.Fields {
			out = append(out, model.FieldPerm(m.ID, f, false), model.FieldPerm(m.ID, f, true))
		}
	}
	for _, f := range cat.Functions {
		out = append(out, model.FunctionPerm(f.ID))
	}
	return out
}

// userPermissions returns the permissions the user's granted roles name
// (grants, denies, field rules) and some random others, so a check covers
// every role mask bit the user holds without deciding the whole catalog.
func userPermissions(r *rand.Rand, cat *model.Catalog, st *model.TenantState, user string) []model.Permission {
	var out []model.Permission
	for _, g := range st.SortedGrants() {
		if g.UserID != user {
			continue
		}
		ps := st.Roles[g.RoleID].Permissions
		for _, mg := range append(slices.Clone(ps.Modules), ps.DenyModules...) {
			for _, v := range mg.Verbs {
				out = append(out, model.ModulePerm(mg.Module, v))
			}
		}
		for _, f := range append(slices.Clone(ps.Functions), ps.DenyFunctions...) {
			out = append(out, model.FunctionPerm(f))
		}
		for _, fr := range ps.Fields {
			out = append(out, model.FieldPerm(fr.Module, fr.Field, false), model.FieldPerm(fr.Module, fr.Field, true))
		}
	}
	all := everyPermission(cat)
	for range 12 {
		out = append(out, all[r.IntN(len(all))])
	}
	return out
}

// assertAgreesWithCasbin decides permissions (userPermissions) for each
// user with the engine, with and without an explanation and as a record
// check for module verbs, and with plain casbin on the exported policy;
// it compares field states and effective permissions too.
func assertAgreesWithCasbin(t *testing.T, eng *Engine, b *bundle.Bundle, st *model.TenantState, now time.Time, users []string) {
	t.Helper()
	var plain *casbin.Enforcer
	if len(st.Roles) > 0 {
		plain = plainEnforcer(t, b, st, now)
	}
	r := rand.New(rand.NewPCG(uint64(len(st.Roles)), uint64(now.Unix())))
	allowed := 0
	for _, user := range users {
		perms := userPermissions(r, b.Catalog, st, user)
		for _, p := range perms {
			want := plain != nil && plainDecision(t, plain, st.ID, user, p)
			for _, explain := range []bool{false, true} {
				got, err := eng.Check(st.ID, user, p, explain)
				if err != nil {
					t.Fatal(err)
				}
				if got.Allowed != want {
					t.Fatalf("%s %q %v explain=%v: engine %v, casbin %v", st.ID, user, p, explain, got.Allowed, want)
				}
			}
			if want {
				allowed++
			}
			if p.Kind == model.KindModule {
				// A record the user owns: the data layer may still refuse
				// it (scope none), but never allow what the module layer
				// refuses, and the fast path must agree with the explained
				// path.
				rp := p
				rp.Record = &model.Record{ID: "rec1", Owner: user}
				fast, err := eng.Check(st.ID, user, rp, false)
				if err != nil {
					t.Fatal(err)
				}
				slow, err := eng.Check(st.ID, user, rp, true)
				if err != nil {
					t.Fatal(err)
				}
				if fast.Allowed != slow.Allowed || (fast.Allowed && !want) {
					t.Fatalf("%s %q %v on a record: fast %v, explained %v, module layer %v", st.ID, user, p, fast.Allowed, slow.Allowed, want)
				}
			}
		}
		if plain != nil {
			for _, p := range perms[:1] {
				if m := b.Catalog.Module(p.Module); m != nil {
					assertFieldStates(t, eng, plain, st.ID, user, *m)
				}
			}
			if user == users[0] {
				assertEffective(t, eng, plain, b.Catalog, st.ID, user)
			}
		}
	}
	if len(st.Grants) > 0 && allowed == 0 {
		t.Fatalf("%s: nothing allowed; the test data is degenerate", st.ID)
	}
}

func roleName(i int) string { return fmt.Sprintf("role%03d", i) }

// filler returns a tenant of one role and many users, loaded beside small
// tenants so that reloading one of them leaves its tables loose (under a
// quarter of the packed ones) rather than packing again.
func filler(cat *model.Catalog) *model.TenantState {
	st := model.NewTenantState("filler", "filler")
	st.Revision = 1
	st.Roles["r"] = model.Role{ID: "r", Permissions: model.Permissions{Functions: []string{cat.Functions[0].ID}}}
	for u := range 3000 {
		st.Grants[model.GrantKey{UserID: userID(u), RoleID: "r"}] = model.Grant{UserID: userID(u), RoleID: "r"}
	}
	return st
}

// loadLoose loads st, which must leave the engine's tables loose.
func loadLoose(t *testing.T, eng *Engine, st *model.TenantState) {
	t.Helper()
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	if eng.loose == 0 {
		t.Fatalf("loading %s packed the engine; the test decides from loose tables", st.ID)
	}
}

// smallPermissions returns a few random grants and sometimes a deny, so
// tenants of many roles stay quick to decide with plain casbin.
func smallPermissions(g *gen) model.Permissions {
	var p model.Permissions
	cat := g.cat
	for range 1 + g.pick(2) {
		m := cat.Modules[g.pick(len(cat.Modules))]
		p.Modules = append(p.Modules, model.ModuleGrant{Module: m.ID, Verbs: g.subset(cat.Verbs, 0.4), Scope: model.Scopes[g.pick(len(model.Scopes))]})
		if f := m.Fields[g.pick(len(m.Fields))]; g.r.Float64() < 0.5 {
			p.Fields = append(p.Fields, model.FieldRule{Module: m.ID, Field: f, State: []model.FieldState{model.FieldHidden, model.FieldReadOnly, model.FieldReadWrite}[g.pick(3)]})
		}
	}
	p.Functions = []string{cat.Functions[g.pick(len(cat.Functions))].ID}
	if g.r.Float64() < 0.2 {
		m := cat.Modules[g.pick(len(cat.Modules))]
		p.DenyModules = []model.ModuleGrant{{Module: m.ID, Verbs: []string{cat.Verbs[g.pick(len(cat.Verbs))]}}}
	}
	if g.r.Float64() < 0.1 {
		p.DenyFunctions = []string{cat.Functions[g.pick(len(cat.Functions))].ID}
	}
	return p
}

// TestRoleMaskWidthBoundaries decides tenants whose role counts sit at and
// beside every role-mask width (1, 2, 4 and 8 bytes) and the bitset fallback
// beyond 64 roles, with users holding the first role, the last role (the
// mask's highest bit), both (exactly two grants, inline in the slot), three,
// and expiring ones, under user ids of 8, 9 and 128 bytes.
func TestRoleMaskWidthBoundaries(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)
	fn0 := b.Catalog.Functions[0].ID
	for _, n := range []int{1, 8, 9, 16, 17, 32, 33, 64, 65} {
		t.Run(fmt.Sprintf("roles%d", n), func(t *testing.T) {
			t.Parallel()
			clock := now
			eng, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return clock }))
			if err != nil {
				t.Fatal(err)
			}
			g := &gen{r: rand.New(rand.NewPCG(uint64(n), 3)), cat: b.Catalog, now: now}
			st := model.NewTenantState("t", "t")
			st.Revision = 1
			for i := range n {
				r := model.Role{ID: roleName(i), Permissions: smallPermissions(g)}
				if i != 0 && i != n/2 && i < n-2 {
					// Roles no user holds matter only to the fast path
					// (someRoleAllows): one function and one module verb
					// each keeps plain casbin quick.
					verb := b.Catalog.Verbs[g.pick(len(b.Catalog.Verbs))]
					if verb == model.VerbRead || verb == model.VerbUpdate {
						verb = model.VerbList
					}
					r.Permissions = model.Permissions{
						Modules:   []model.ModuleGrant{{Module: b.Catalog.Modules[g.pick(len(b.Catalog.Modules))].ID, Verbs: []string{verb}}},
						Functions: []string{b.Catalog.Functions[g.pick(len(b.Catalog.Functions))].ID},
					}
				}
				switch i {
				case 0:
					r.Permissions.Functions = append(r.Permissions.Functions, fn0)
				case n - 1:
					// The highest bit of the deny mask overrides role 0.
					r.Permissions.DenyFunctions = append(r.Permissions.DenyFunctions, fn0)
				}
				st.Roles[r.ID] = r
			}
			last, mid := roleName(n-1), roleName(n/2)
			grant := func(user, role string, exp time.Time) {
				st.Grants[model.GrantKey{UserID: user, RoleID: role}] = model.Grant{UserID: user, RoleID: role, ExpiresAt: exp}
			}
			long := strings.Repeat("x", model.MaxSubjectLength-1) + "1"
			grant("first", roleName(0), time.Time{})
			grant("lastrole", last, time.Time{})
			grant("exactly8", roleName(0), time.Time{}) // an id filling the slot
			grant("exactly8", last, time.Time{})
			grant("exactly9b", roleName(0), time.Time{}) // one byte too long for it
			grant("exactly9b", last, time.Time{})
			grant(long, last, time.Time{})
			grant("secondlast", roleName(max(n-2, 0)), time.Time{})
			grant(long, mid, time.Time{})
			grant("trio", roleName(0), time.Time{})
			grant("trio", mid, time.Time{})
			grant("trio", last, time.Time{})
			grant("expiring", roleName(0), now.Add(time.Hour))
			grant("expiring", last, time.Time{})
			users := []string{"trio", "first", "lastrole", "secondlast", "exactly8", "exactly9b", long, "expiring", "nobody", "exactly8x", "exactly9"}
			if err := eng.LoadAll([]*model.TenantState{st, filler(b.Catalog)}); err != nil {
				t.Fatal(err)
			}
			width := 0
			for _, w := range []int{1, 2, 4, 8} {
				if n <= 8*w {
					width = w
					break
				}
			}
			if ix, _ := eng.index("t"); ix.masks.width != width {
				t.Fatalf("%d roles: masks of %d bytes, want %d", n, ix.masks.width, width)
			}
			assertAgreesWithCasbin(t, eng, b, st, now, users)
			// The same tenant decided from loose tables.
			st2 := st.Clone()
			st2.Revision = 2
			loadLoose(t, eng, st2)
			assertAgreesWithCasbin(t, eng, b, st2, now, users)
			// Once a grant expired.
			clock = now.Add(2 * time.Hour)
			assertAgreesWithCasbin(t, eng, b, st2, clock, users)
		})
	}
}

// TestHighRoleNumbers grants roles numbered 253 to 256, around the largest
// number a user slot holds inline (254), alone and in pairs.
func TestHighRoleNumbers(t *testing.T) {
	eng, b := newTestEngine(t)
	fns := b.Catalog.Functions
	st := model.NewTenantState("t", "t")
	st.Revision = 1
	for i := range 300 {
		// Each role allows its own function or module verb, so a user's
		// permissions name the roles it holds.
		r := model.Role{ID: roleName(i)}
		if i < len(fns) {
			r.Permissions.Functions = []string{fns[i].ID}
		} else {
			m := b.Catalog.Modules[i%len(b.Catalog.Modules)]
			r.Permissions.Modules = []model.ModuleGrant{{Module: m.ID, Verbs: []string{b.Catalog.Verbs[i%len(b.Catalog.Verbs)]}}}
		}
		if i == 255 {
			r.Permissions.DenyFunctions = []string{fns[0].ID}
		}
		st.Roles[r.ID] = r
	}
	sets := [][]int{{0}, {253}, {254}, {255}, {256}, {299}, {253, 254}, {254, 255}, {255, 256}, {0, 254}, {0, 255}, {0, 1, 254}}
	users := make([]string, len(sets))
	for k, set := range sets {
		users[k] = "u"
		for _, i := range set {
			users[k] += fmt.Sprintf("-%d", i)
		}
		for _, i := range set {
			st.Grants[model.GrantKey{UserID: users[k], RoleID: roleName(i)}] = model.Grant{UserID: users[k], RoleID: roleName(i)}
		}
	}
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	for k, user := range users {
		eff, err := eng.EffectivePermissions("t", user)
		if err != nil {
			t.Fatal(err)
		}
		var got, want []string
		for _, r := range eff.Roles {
			got = append(got, r.Role)
		}
		for _, i := range sets[k] {
			want = append(want, roleName(i))
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s holds roles %v, want %v", user, got, want)
		}
	}
	assertAgreesWithCasbin(t, eng, b, st, time.Time{}, append(users, "u"))
}

// TestEmptyTenants decides in a tenant of no roles and no users, and in one
// of members (departments, managers) but no roles: everything is denied or
// hidden, nothing panics.
func TestEmptyTenants(t *testing.T) {
	eng, b := newTestEngine(t)
	empty := model.NewTenantState("empty", "empty")
	empty.Revision = 1
	members := model.NewTenantState("members", "members")
	members.Revision = 1
	members.Departments["d1"] = model.Department{ID: "d1", Name: "d1"}
	members.Members["alice"] = model.Membership{UserID: "alice", Primary: "d1"}
	members.Members["bob"] = model.Membership{UserID: "bob", Primary: "d1", Manager: "alice"}
	members.SharingRules["r1"] = model.SharingRule{ID: "r1", Module: b.Catalog.Modules[0].ID,
		OwnedBy:    model.Principal{Kind: model.PrincipalDepartment, ID: "d1"},
		SharedWith: model.Principal{Kind: model.PrincipalUser, ID: "bob"}, Access: model.AccessReadWrite}
	for _, load := range []func() error{
		func() error { return eng.LoadAll([]*model.TenantState{empty, members, filler(b.Catalog)}) }, // packed
		func() error { // loose
			e2, m2 := empty.Clone(), members.Clone()
			e2.Revision, m2.Revision = 2, 2
			loadLoose(t, eng, e2)
			loadLoose(t, eng, m2)
			return nil
		},
	} {
		if err := load(); err != nil {
			t.Fatal(err)
		}
		for _, st := range []*model.TenantState{empty, members} {
			assertAgreesWithCasbin(t, eng, b, st, time.Time{}, []string{"alice", "bob", "nobody"})
			for _, user := range []string{"alice", "bob"} {
				eff, err := eng.EffectivePermissions(st.ID, user)
				if err != nil {
					t.Fatal(err)
				}
				if len(eff.Modules)+len(eff.Functions)+len(eff.Roles) != 0 {
					t.Fatalf("%s %s: effective %+v", st.ID, user, eff)
				}
				for _, m := range b.Catalog.Modules {
					for _, v := range b.Catalog.Verbs {
						f, err := eng.PlanFilter(st.ID, user, m.ID, v)
						if err != nil {
							t.Fatal(err)
						}
						if f.Kind != FilterNone {
							t.Fatalf("%s %s %s %s: filter %+v", st.ID, user, m.ID, v, f)
						}
					}
					states, _, err := eng.FieldAccess(st.ID, user, m.ID, &model.Record{ID: "x", Owner: "bob", Department: "d1"})
					if err != nil {
						t.Fatal(err)
					}
					for i, s := range states {
						if s != model.FieldHidden {
							t.Fatalf("%s %s %s.%s: %s", st.ID, user, m.ID, m.Fields[i], s)
						}
					}
				}
			}
		}
	}
}

// TestUserIDLengths loads grants to user ids of the lengths a user slot
// tells apart (8 bytes inline, 9 beside the table) up to the longest it
// holds (255), and refuses the lengths it cannot hold (0, 256, 257), which
// used to wrap: a 256-byte id lost its grants and a 257-byte id's grants
// could be read as those of a 1-byte id.
func TestUserIDLengths(t *testing.T) {
	eng, b := newTestEngine(t)
	fn := b.Catalog.Functions[0].ID
	state := func(rev int64, ids ...string) *model.TenantState {
		st := model.NewTenantState("t", "t")
		st.Revision = rev
		st.Roles["r"] = model.Role{ID: "r", Permissions: model.Permissions{Functions: []string{fn}}}
		for _, id := range ids {
			st.Grants[model.GrantKey{UserID: id, RoleID: "r"}] = model.Grant{UserID: id, RoleID: "r"}
		}
		return st
	}
	var ok []string
	for _, n := range []int{1, 8, 9, model.MaxSubjectLength, 254, 255} {
		ok = append(ok, strings.Repeat("a", n-1)+"z")
	}
	if err := eng.Load(state(1, ok...)); err != nil {
		t.Fatal(err)
	}
	for _, id := range ok {
		// The id, and absent ids of its length and one byte longer.
		for _, probe := range []string{id, strings.Repeat("a", len(id)), id + "y"} {
			d, err := eng.Check("t", probe, model.FunctionPerm(fn), false)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allowed != (probe == id) {
				t.Fatalf("%d-byte id: %d-byte probe decided %v", len(id), len(probe), d.Allowed)
			}
		}
	}
	for _, n := range []int{0, 256, 257, 300} {
		long := strings.Repeat("b", n)
		if err := eng.Load(state(2, long)); err == nil {
			t.Fatalf("a grant to a %d-byte user id loaded", n)
		}
	}
	if d, _ := eng.Check("t", ok[0], model.FunctionPerm(fn), false); !d.Allowed || d.Revision != 1 {
		t.Fatalf("after refused loads: %+v", d)
	}
}

// newTestEngine returns an engine with no tenants over the shipped bundle,
// and the bundle.
func newTestEngine(t testing.TB, opts ...Option) (*Engine, *bundle.Bundle) {
	t.Helper()
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	eng, err := New(b.Catalog, b.ModelText, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return eng, b
}
