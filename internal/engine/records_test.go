package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestPlanFilterRejectsUnknownModuleAndVerb asks for filters of a module or
// verb the catalog lacks: the engine must refuse them as FieldAccess does,
// not panic (unknown module) or plan the filter of another verb (an unknown
// verb would be numbered as the catalog's first, list).
func TestPlanFilterRejectsUnknownModuleAndVerb(t *testing.T) {
	eng, _ := newTestEngine(t)
	st := model.NewTenantState("t", "t")
	st.Revision = 1
	st.Roles["rep"] = model.Role{ID: "rep", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "lead", Verbs: []string{"list"}}}}}
	st.Grants[model.GrantKey{UserID: "bob", RoleID: "rep"}] = model.Grant{UserID: "bob", RoleID: "rep"}
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	if f, err := eng.PlanFilter("t", "bob", "lead", "list"); err != nil || f.Kind != FilterAll {
		t.Fatalf("bob's lead list filter: %+v %v", f, err)
	}
	for _, tc := range []struct{ module, verb, field string }{
		{"spaceship", "list", "module"},
		{"lead", "lsit", "verb"},
		{"lead", "", "verb"},
	} {
		f, err := eng.PlanFilter("t", "bob", tc.module, tc.verb)
		var inv *model.InvalidError
		if !errors.As(err, &inv) || inv.Field != tc.field {
			t.Errorf("filter of %s %s: %+v, %v; want an invalid %s", tc.module, tc.verb, f, err, tc.field)
		}
	}
}

// TestFilterMatchesCheckInProcess is the record-filter contract in
// process, over what the PostgreSQL contract test (internal/service) does
// not generate: users without a membership or without grants, records of
// departments the tenant lacks, manager depths up to the limit, tenants of
// more than 64 roles (decided without role masks) and denies. For every
// record the filter's sets select exactly what Check allows, with and
// without an explanation.
func TestFilterMatchesCheckInProcess(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	modules := []string{"account", "lead"}
	verbs := []string{"list", "read", "update", "delete", "share"}
	for seed := range uint64(40) {
		r := rand.New(rand.NewPCG(seed, 7))
		now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
		pick := func(xs []string) string { return xs[r.IntN(len(xs))] }
		st := model.NewTenantState("t", "t")
		st.Revision = 1
		st.Settings.ManagerDepth = r.IntN(model.MaxManagerDepth + 1)
		var depts, users []string
		for i := range 15 {
			id := fmt.Sprintf("d%d", i)
			d := model.Department{ID: id, Name: id}
			if i > 0 && r.IntN(5) != 0 {
				d.Parent = depts[r.IntN(len(depts))]
			}
			st.Departments[id] = d
			depts = append(depts, id)
		}
		nroles := 5
		if r.IntN(4) == 0 {
			nroles = 70
		}
		for i := range nroles {
			ro := model.Role{ID: fmt.Sprintf("role%d", i)}
			for _, mod := range modules {
				for _, v := range verbs {
					if r.IntN(3) == 0 {
						continue
					}
					ro.Permissions.Modules = append(ro.Permissions.Modules, model.ModuleGrant{Module: mod, Verbs: []string{v}, Scope: model.Scopes[r.IntN(len(model.Scopes))]})
				}
				if r.IntN(8) == 0 {
					ro.Permissions.DenyModules = append(ro.Permissions.DenyModules, model.ModuleGrant{Module: mod, Verbs: []string{pick(verbs)}})
				}
			}
			if i > 0 && r.IntN(3) == 0 {
				ro.Inherits = []string{fmt.Sprintf("role%d", r.IntN(i))}
			}
			st.Roles[ro.ID] = ro
		}
		for i := range 30 {
			id := fmt.Sprintf("u%d", i)
			if i%2 == 1 {
				id = fmt.Sprintf("user-%d@x.example", i)
			}
			if r.IntN(5) != 0 {
				m := model.Membership{UserID: id, Primary: pick(depts)}
				for range r.IntN(3) {
					if o := pick(depts); o != m.Primary && !slices.Contains(m.Others, o) {
						m.Others = append(m.Others, o)
					}
				}
				if i > 0 && r.IntN(6) != 0 {
					m.Manager = users[max(0, len(users)-1-r.IntN(3))]
				}
				st.Members[id] = m
			}
			users = append(users, id)
			for range r.IntN(3) {
				gr := model.Grant{UserID: id, RoleID: fmt.Sprintf("role%d", r.IntN(nroles))}
				if r.IntN(4) == 0 {
					gr.ExpiresAt = now.Add(time.Duration(r.IntN(120)-60) * time.Minute)
				}
				st.Grants[model.GrantKey{UserID: gr.UserID, RoleID: gr.RoleID}] = gr
			}
		}
		principal := func() model.Principal {
			switch r.IntN(3) {
			case 0:
				return model.Principal{Kind: model.PrincipalUser, ID: pick(users)}
			case 1:
				return model.Principal{Kind: model.PrincipalDepartment, ID: pick(depts), IncludeSubs: r.IntN(2) == 0}
			}
			return model.Principal{Kind: model.PrincipalRole, ID: fmt.Sprintf("role%d", r.IntN(nroles))}
		}
		acc := func() model.Access { return []model.Access{model.AccessRead, model.AccessReadWrite}[r.IntN(2)] }
		for i := range 8 {
			ru := model.SharingRule{ID: fmt.Sprintf("rule%d", i), Module: pick(modules), OwnedBy: principal(), SharedWith: principal(), Access: acc()}
			st.SharingRules[ru.ID] = ru
		}
		for range 40 {
			s := model.RecordShare{Module: pick(modules), RecordID: fmt.Sprintf("rec%d", r.IntN(100)), Principal: principal(), Access: acc()}
			if r.IntN(3) == 0 {
				s.ExpiresAt = now.Add(time.Duration(r.IntN(120)-60) * time.Minute)
			}
			st.RecordShares[s.Key()] = s
		}
		eng, err := New(b.Catalog, b.ModelText, WithClock(func() time.Time { return now }))
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(st); err != nil {
			t.Fatal(err)
		}
		var recs []model.Record
		for i := range 100 {
			rec := model.Record{ID: fmt.Sprintf("rec%d", i), Owner: pick(append(users, "outsider"))}
			switch r.IntN(6) {
			case 0:
			case 1:
				rec.Department = "ghost"
			default:
				rec.Department = pick(depts)
			}
			recs = append(recs, rec)
		}
		for range 30 {
			user := pick(append(users, "nobody"))
			mod, verb := pick(modules), pick(verbs)
			f, err := eng.PlanFilter("t", user, mod, verb)
			if err != nil {
				t.Fatal(err)
			}
			for i := range recs {
				rec := &recs[i]
				p := model.Permission{Kind: model.KindModule, Module: mod, Verb: verb, Record: rec}
				d, _ := eng.Check("t", user, p, false)
				de, _ := eng.Check("t", user, p, true)
				var fsel bool
				switch f.Kind {
				case FilterAll:
					fsel = true
				case FilterConditional:
					fsel = slices.Contains(f.Owners, rec.Owner) || (rec.Department != "" && slices.Contains(f.Departments, rec.Department)) || slices.Contains(f.Records, rec.ID)
				}
				if d.Allowed != fsel || de.Allowed != d.Allowed {
					t.Fatalf("seed %d %s %s %s %+v: check %v, with explanation %v, filter %v %+v\n%+v", seed, user, mod, verb, *rec, d.Allowed, de.Allowed, fsel, f, de.Reasons)
				}
			}
		}
	}
}
