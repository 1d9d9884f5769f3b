package engine

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// TestModelRightsAgreeWithEngine proves that what the admin checks compute
// from a tenant's state (model.Rights) is what the engine decides: every
// module verb with its widest scope, every function and every field state,
// for every user of generated tenants, before and after random writes and
// while grants expire.
func TestModelRightsAgreeWithEngine(t *testing.T) {
	eng, b := newTestEngine(t)
	cat := b.Catalog
	now := time.Date(2026, 12, 5, 9, 0, 0, 0, time.UTC)
	clock := now
	eng.now = func() time.Time { return clock }
	for seed := range uint64(4) {
		g := &gen{r: rand.New(rand.NewPCG(seed, 7)), cat: cat, now: now}
		const users = 30
		tenant := fmt.Sprintf("t%d", seed)
		st := g.tenant(tenant, 12, users)
		for round := range 6 {
			if err := eng.Load(st); err != nil {
				t.Fatal(err)
			}
			clock = now.Add(time.Duration(round) * 50 * time.Minute)
			for u := range users {
				user := userID(u)
				r := st.UserRights(cat, user, clock)
				eff, err := eng.EffectivePermissions(tenant, user)
				if err != nil {
					t.Fatal(err)
				}
				scopes := map[model.ModuleVerb]model.Scope{}
				for _, m := range eff.Modules {
					for _, v := range m.Verbs {
						scopes[model.ModuleVerb{Module: m.Module, Verb: v}] = m.Scope
					}
				}
				for _, m := range cat.Modules {
					for _, v := range cat.Verbs {
						sc, held := r.Module(m.ID, v)
						want, engHeld := scopes[model.ModuleVerb{Module: m.ID, Verb: v}]
						if held != engHeld || (held && sc != want) {
							t.Fatalf("seed %d round %d user %s module %s %s: model %v %q, engine %v %q", seed, round, user, m.ID, v, held, sc, engHeld, want)
						}
					}
					states, _, err := eng.FieldAccess(tenant, user, m.ID, nil)
					if err != nil {
						t.Fatal(err)
					}
					for i, f := range m.Fields {
						if got := r.Field(m.ID, f); got != states[i] {
							t.Fatalf("seed %d round %d user %s field %s.%s: model %s, engine %s", seed, round, user, m.ID, f, got, states[i])
						}
					}
				}
				for _, f := range cat.Functions {
					if got, want := r.Function(f.ID), slices.Contains(eff.Functions, f.ID); got != want {
						t.Fatalf("seed %d round %d user %s function %s: model %v, engine %v", seed, round, user, f.ID, got, want)
					}
				}
			}
			for range 5 {
				g.write(st, users)
			}
		}
	}
}

// TestMissingNamesWhatIsNotHeld shows the escalation comparison: a role's
// lines are within a user's rights only when every verb (at its scope),
// field line and function is held.
func TestMissingNamesWhatIsNotHeld(t *testing.T) {
	_, b := newTestEngine(t)
	cat := b.Catalog
	now := time.Now()
	st := model.NewTenantState("t", "")
	mustChange(st.CreateRole(model.Role{ID: "holder", Permissions: model.Permissions{
		Modules:   []model.ModuleGrant{{Module: "account", Verbs: []string{"list", "read", "update"}, Scope: model.ScopeDept}},
		Fields:    []model.FieldRule{{Module: "account", Field: "credit_limit", State: model.FieldReadOnly}},
		Functions: []string{"report.view"},
	}}))
	mustChange(st.UpsertUser(model.User{ID: "u"}))
	mustChange(st.GrantRole(model.Grant{UserID: "u", RoleID: "holder"}, now))
	have := st.UserRights(cat, "u", now)
	for _, tt := range []struct {
		name string
		p    model.Permissions
		want string
	}{
		{"the same", model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}, Scope: model.ScopeSelf}}, Functions: []string{"report.view"}}, ""},
		{"a verb", model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"delete"}}}}, "module account delete"},
		{"a wider scope", model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}, Scope: model.ScopeOrg}}}, "module account read at scope org (held at dept)"},
		{"a wider field", model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read", "update"}, Scope: model.ScopeSelf}}}, "field account.credit_limit write"},
		{"a narrowed field", model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read", "update"}, Scope: model.ScopeSelf}},
			Fields: []model.FieldRule{{Module: "account", Field: "credit_limit", State: model.FieldReadOnly}}}, ""},
		{"a function", model.Permissions{Functions: []string{"admin.super"}}, "function admin.super"},
		{"a deny only", model.Permissions{DenyFunctions: []string{"admin.super"}}, ""},
	} {
		got := have.Missing(cat, model.LinesOf(cat, []model.Role{{ID: "x", Permissions: tt.p}}))
		if got != tt.want {
			t.Errorf("%s: missing %q, want %q", tt.name, got, tt.want)
		}
	}
}
