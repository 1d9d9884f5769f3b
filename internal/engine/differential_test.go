package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	casbinmodel "github.com/casbin/casbin/v2/model"
	stringadapter "github.com/casbin/casbin/v2/persist/string-adapter"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// gen generates random tenants, roles, grants, writes and requests over the
// shipped catalog.
type gen struct {
	r   *rand.Rand
	cat *model.Catalog
	now time.Time
}

func (g *gen) pick(n int) int { return g.r.IntN(n) }

// userID names user u: every other id is too long to sit in a user slot.
func userID(u int) string {
	if u%2 == 1 {
		return fmt.Sprintf("user-%d@sales.example", u)
	}
	return fmt.Sprintf("user%d", u)
}

func (g *gen) subset(all []string, p float64) []string {
	var out []string
	for _, s := range all {
		if g.r.Float64() < p {
			out = append(out, s)
		}
	}
	return out
}

func (g *gen) permissions() model.Permissions {
	var p model.Permissions
	fns := make([]string, len(g.cat.Functions))
	for i, f := range g.cat.Functions {
		fns[i] = f.ID
	}
	for _, m := range g.cat.Modules {
		if g.r.Float64() < 0.3 {
			if verbs := g.subset(g.cat.Verbs, 0.4); len(verbs) > 0 {
				// Sometimes split over two grants of different scopes.
				cut := g.pick(len(verbs) + 1)
				for _, part := range [][]string{verbs[:cut], verbs[cut:]} {
					if len(part) > 0 {
						p.Modules = append(p.Modules, model.ModuleGrant{Module: m.ID, Verbs: part, Scope: model.Scopes[g.pick(len(model.Scopes))]})
					}
				}
			}
		}
		if g.r.Float64() < 0.05 {
			if verbs := g.subset(g.cat.Verbs, 0.2); len(verbs) > 0 {
				p.DenyModules = append(p.DenyModules, model.ModuleGrant{Module: m.ID, Verbs: verbs})
			}
		}
		for _, f := range m.Fields {
			if g.r.Float64() < 0.08 {
				states := []model.FieldState{model.FieldHidden, model.FieldReadOnly, model.FieldReadWrite}
				p.Fields = append(p.Fields, model.FieldRule{Module: m.ID, Field: f, State: states[g.pick(3)]})
			}
		}
	}
	p.Functions = g.subset(fns, 0.3)
	if g.r.Float64() < 0.2 {
		p.DenyFunctions = g.subset(fns, 0.1)
	}
	return p
}

// expiry returns no expiry, or one within a few rounds of now.
func (g *gen) expiry() time.Time {
	if g.r.Float64() < 0.6 {
		return time.Time{}
	}
	return g.now.Add(time.Duration(1+g.pick(4*60)) * time.Minute)
}

func (g *gen) tenant(id string, roles, users int) *model.TenantState {
	st := model.NewTenantState(id, id)
	for i := range roles {
		r := model.Role{ID: fmt.Sprintf("role%d", i), Permissions: g.permissions()}
		for j := range i {
			parent := fmt.Sprintf("role%d", j)
			// About one parent per role at most, whatever the role count;
			// a role refused earlier (too deep) cannot be a parent.
			if _, ok := st.Roles[parent]; ok && g.r.Float64() < min(0.15, 1.5/float64(i)) {
				r.Inherits = append(r.Inherits, parent)
			}
		}
		if _, err := st.CreateRole(r); err != nil && !isConflict(err) {
			panic(err)
		}
	}
	for u := range users {
		mustChange(st.UpsertUser(model.User{ID: userID(u)}))
	}
	for u := range users {
		for _, r := range st.SortedRoles() {
			if g.r.Float64() < 0.25 {
				mustChange(st.GrantRole(model.Grant{UserID: userID(u), RoleID: r.ID, ExpiresAt: g.expiry()}, g.now))
			}
		}
	}
	st.Revision = 1
	return st
}

// write applies one random admin write to st.
func (g *gen) write(st *model.TenantState, users int) {
	roles := st.SortedRoles()
	user := userID(g.pick(users))
	switch g.pick(6) {
	case 0:
		r := model.Role{ID: fmt.Sprintf("new%d", g.r.Uint32()), Permissions: g.permissions()}
		if len(roles) > 0 && g.r.Float64() < 0.3 {
			r.Inherits = []string{roles[g.pick(len(roles))].ID}
		}
		mustChange(st.CreateRole(r))
	case 1:
		if len(roles) > 0 {
			r := roles[g.pick(len(roles))]
			r.Permissions = g.permissions()
			mustChange(st.ReplaceRole(r))
		}
	case 2:
		if len(roles) > 0 {
			// Fails harmlessly while the role is in use.
			_, _ = st.DeleteRole(roles[g.pick(len(roles))].ID)
		}
	case 3:
		if len(roles) > 0 {
			mustChange(st.GrantRole(model.Grant{UserID: user, RoleID: roles[g.pick(len(roles))].ID, ExpiresAt: g.expiry()}, g.now))
		}
	case 4:
		if grants := st.SortedGrants(); len(grants) > 0 {
			gr := grants[g.pick(len(grants))]
			mustChange(st.RevokeRole(gr.UserID, gr.RoleID))
		}
	case 5:
		// Offboard a user, or bring one back.
		status := model.UserInactive
		if st.Inactive(user) {
			status = model.UserActive
		}
		mustChange(st.SetUserStatus(user, status))
	}
	st.Revision++
}

func (g *gen) permission() model.Permission {
	m := g.cat.Modules[g.pick(len(g.cat.Modules))]
	switch g.pick(3) {
	case 0:
		return model.ModulePerm(m.ID, g.cat.Verbs[g.pick(len(g.cat.Verbs))])
	case 1:
		return model.FunctionPerm(g.cat.Functions[g.pick(len(g.cat.Functions))].ID)
	}
	return model.FieldPerm(m.ID, m.Fields[g.pick(len(m.Fields))], g.r.Float64() < 0.5)
}

func isConflict(err error) bool {
	var c *model.ConflictError
	return errors.As(err, &c)
}

// mustChange panics on anything but a refused write (a cycle, a too deep
// inheritance chain), which the generator may produce and which changes
// nothing.
func mustChange(_ model.Change, err error) {
	if err != nil && !isConflict(err) {
		panic(err)
	}
}

// plainEnforcer loads a tenant's exported CSV policy into a plain Casbin
// enforcer, exactly as a user of the casbin library would.
func plainEnforcer(t testing.TB, b *bundle.Bundle, st *model.TenantState, at time.Time) *casbin.Enforcer {
	t.Helper()
	csv := CompilePolicy(b.Catalog, st, at).CSV()
	m, err := casbinmodel.NewModelFromString(b.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	e, err := casbin.NewEnforcer(m, stringadapter.NewAdapter(csv))
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func plainDecision(t testing.TB, e *casbin.Enforcer, tenant, user string, p model.Permission) bool {
	t.Helper()
	for _, r := range Requests(tenant, user, p) {
		ok, err := e.Enforce(r.Sub, r.Dom, r.Obj, r.Act)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			return false
		}
	}
	return true
}

// TestDifferentialAgainstPlainCasbin generates tenants and checks that the
// engine decides every request exactly as plain casbin Enforce on the same
// model and exported policy, across rounds of random writes and a clock that
// moves so grants expire.
func TestDifferentialAgainstPlainCasbin(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	for seed := range uint64(5) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			t.Parallel()
			g := &gen{r: rand.New(rand.NewPCG(seed, 42)), cat: b.Catalog, now: time.Date(2026, 5, 1, 9, 0, 0, 0, time.UTC)}
			eng, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return g.now }))
			if err != nil {
				t.Fatal(err)
			}
			const tenants, users = 5, 12
			var states []*model.TenantState
			for i := range tenants {
				roles := 4 + g.pick(5)
				if i == 1 {
					// Role counts for every width of the role masks, and
					// one beyond them, decided from the bitsets.
					roles = []int{6, 12, 24, 48, 70}[seed]
				}
				states = append(states, g.tenant(fmt.Sprintf("t%d", i), roles, users))
			}
			if err := eng.LoadAll(states); err != nil {
				t.Fatal(err)
			}
			if eng.packed == 0 || eng.loose != 0 {
				t.Fatalf("after a start-up load %d bytes are packed and %d loose", eng.packed, eng.loose)
			}
			// Tenants reloaded one at a time are decided from loose tables
			// until the engine packs them again; both must decide alike.
			checked, allowedN, loose := 0, 0, 0
			for round := range 6 {
				plain := map[string]*casbin.Enforcer{}
				for _, st := range states {
					plain[st.ID] = plainEnforcer(t, b, st, g.now)
				}
				for range 300 {
					st := states[g.pick(len(states))]
					user := userID(g.pick(users + 1)) // one user holds nothing
					p := g.permission()
					want := plainDecision(t, plain[st.ID], st.ID, user, p)
					got, err := eng.Check(st.ID, user, p, round%2 == 0)
					if err != nil {
						t.Fatal(err)
					}
					if got.Allowed != want {
						t.Fatalf("round %d: %s %s %v: engine %v, casbin %v\npolicy:\n%s", round, st.ID, user, p, got.Allowed, want, CompilePolicy(b.Catalog, st, g.now).CSV())
					}
					if got.Revision != st.Revision {
						t.Fatalf("revision %d, want %d", got.Revision, st.Revision)
					}
					checked++
					if want {
						allowedN++
					}
				}
				// Field states and effective permissions agree with checks.
				{
					st := states[g.pick(len(states))]
					user := userID(g.pick(users))
					m := b.Catalog.Modules[g.pick(len(b.Catalog.Modules))]
					assertFieldStates(t, eng, plain[st.ID], st.ID, user, m)
					assertEffective(t, eng, plain[st.ID], b.Catalog, st.ID, user)
				}
				// Random writes, then time moves on so some grants expire.
				for _, st := range states {
					for range 1 + g.pick(6) {
						g.write(st, users)
					}
					if err := eng.Load(st.Clone()); err != nil {
						t.Fatal(err)
					}
					if eng.loose > 0 {
						loose++
					}
				}
				g.now = g.now.Add(30 * time.Minute)
			}
			if allowedN == 0 || allowedN == checked {
				t.Fatalf("degenerate data: %d of %d allowed", allowedN, checked)
			}
			if loose == 0 {
				t.Fatal("every reload packed the engine; loose tables were never decided from")
			}
		})
	}
}

func assertFieldStates(t *testing.T, eng *Engine, plain *casbin.Enforcer, tenant, user string, m model.CatalogModule) {
	t.Helper()
	states, _, err := eng.FieldAccess(tenant, user, m.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range m.Fields {
		read := plainDecision(t, plain, tenant, user, model.FieldPerm(m.ID, f, false))
		write := plainDecision(t, plain, tenant, user, model.FieldPerm(m.ID, f, true))
		want := model.FieldHidden
		switch {
		case read && write:
			want = model.FieldReadWrite
		case read:
			want = model.FieldReadOnly
		}
		if states[i] != want {
			t.Fatalf("%s %s field %s.%s: state %s, casbin read=%v write=%v", tenant, user, m.ID, f, states[i], read, write)
		}
	}
}

func assertEffective(t *testing.T, eng *Engine, plain *casbin.Enforcer, cat *model.Catalog, tenant, user string) {
	t.Helper()
	eff, err := eng.EffectivePermissions(tenant, user)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range cat.Modules {
		var want []string
		for _, v := range cat.Verbs {
			if plainDecision(t, plain, tenant, user, model.ModulePerm(m.ID, v)) {
				want = append(want, v)
			}
		}
		var got []string
		for _, mg := range eff.Modules {
			if mg.Module == m.ID {
				got = append(got, mg.Verbs...)
			}
		}
		if got = cat.SortedVerbs(got); !slices.Equal(got, want) {
			t.Fatalf("%s %s module %s: effective verbs %v, casbin %v", tenant, user, m.ID, got, want)
		}
	}
	var want []string
	for _, f := range cat.Functions {
		if plainDecision(t, plain, tenant, user, model.FunctionPerm(f.ID)) {
			want = append(want, f.ID)
		}
	}
	slices.Sort(want)
	if !slices.Equal(eff.Functions, want) {
		t.Fatalf("%s %s: effective functions %v, casbin %v", tenant, user, eff.Functions, want)
	}
}
