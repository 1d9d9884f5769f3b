package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// bigOrgTenant builds a tenant of 5,000 users in a 500-department tree
// (each department below one of the previous twenty, so the tree is both
// deep and wide), every user with a manager in the department above, roles
// with every scope, 50 sharing rules and 2,000 record shares.
func bigOrgTenant(r *rand.Rand) *model.TenantState {
	st := model.NewTenantState("big", "big")
	st.Revision = 1
	depts := make([]string, 500)
	for i := range depts {
		depts[i] = fmt.Sprintf("d%03d", i)
		d := model.Department{ID: depts[i], Name: depts[i]}
		if i > 0 {
			d.Parent = depts[max(0, i-1-r.IntN(20))]
		}
		st.Departments[d.ID] = d
	}
	scopes := []model.Scope{model.ScopeSelf, model.ScopeDept, model.ScopeDeptTree, model.ScopeOrg}
	for i, s := range scopes {
		id := fmt.Sprintf("role_%s", s)
		st.Roles[id] = model.Role{ID: id, Permissions: model.Permissions{Modules: []model.ModuleGrant{
			{Module: "account", Verbs: []string{"list", "read", "update"}, Scope: s},
		}}}
		_ = i
	}
	byDept := map[string][]string{}
	for i := range 5000 {
		u := fmt.Sprintf("u%04d", i)
		dept := depts[r.IntN(len(depts))]
		m := model.Membership{UserID: u, Primary: dept}
		if parent := st.Departments[dept].Parent; parent != "" && len(byDept[parent]) > 0 {
			m.Manager = byDept[parent][r.IntN(len(byDept[parent]))]
		}
		byDept[dept] = append(byDept[dept], u)
		st.Members[u] = m
		role := fmt.Sprintf("role_%s", scopes[r.IntN(3)]) // org is rare
		st.Grants[model.GrantKey{UserID: u, RoleID: role}] = model.Grant{UserID: u, RoleID: role}
	}
	users := func() string { return fmt.Sprintf("u%04d", r.IntN(5000)) }
	for i := range 50 {
		rule := model.SharingRule{ID: fmt.Sprintf("rule%d", i), Module: "account", Access: model.AccessRead,
			OwnedBy:    model.Principal{Kind: model.PrincipalDepartment, ID: depts[r.IntN(len(depts))], IncludeSubs: true},
			SharedWith: model.Principal{Kind: model.PrincipalDepartment, ID: depts[r.IntN(len(depts))]}}
		st.SharingRules[rule.ID] = rule
	}
	for i := range 2000 {
		s := model.RecordShare{Module: "account", RecordID: fmt.Sprintf("rec%d", i), Principal: model.Principal{Kind: model.PrincipalUser, ID: users()}, Access: model.AccessRead}
		st.RecordShares[model.ShareKey{Module: s.Module, RecordID: s.RecordID, Principal: s.Principal}] = s
	}
	return st
}

// BenchmarkRecords measures a record check and a filter plan for users of a
// 5,000-user tenant with a 500-department tree.
func BenchmarkRecords(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(1, 2))
	st := bigOrgTenant(r)
	eng, err := New(bun.Catalog, bun.ModelText)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.Load(st); err != nil {
		b.Fatal(err)
	}
	type req struct {
		user string
		rec  model.Record
	}
	reqs := make([]req, 4096)
	for i := range reqs {
		reqs[i] = req{fmt.Sprintf("u%04d", r.IntN(5000)), model.Record{ID: fmt.Sprintf("rec%d", r.IntN(10000)), Owner: fmt.Sprintf("u%04d", r.IntN(5000)), Department: fmt.Sprintf("d%03d", r.IntN(500))}}
	}
	b.Run("check-record", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			q := &reqs[i%len(reqs)]
			p := model.Permission{Kind: model.KindModule, Module: "account", Verb: "read", Record: &q.rec}
			if _, err := eng.Check("big", q.user, p, false); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, role := range []string{"role_self", "role_dept", "role_dept_tree"} {
		var users []string
		for u, g := range st.Grants {
			if g.RoleID == role && st.Members[u.UserID].Primary < "d050" { // high in the tree: large subtrees
				users = append(users, u.UserID)
			}
		}
		b.Run("plan-filter/"+role, func(b *testing.B) {
			b.ReportAllocs()
			size := 0
			for i := 0; b.Loop(); i++ {
				f, err := eng.PlanFilter("big", users[i%len(users)], "account", "list")
				if err != nil {
					b.Fatal(err)
				}
				size += len(f.Owners) + len(f.Departments) + len(f.Records)
			}
			b.ReportMetric(float64(size)/float64(b.N), "ids/filter")
		})
	}
}
