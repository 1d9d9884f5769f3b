package engine

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	casbinmodel "github.com/casbin/casbin/v2/model"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// benchTenant builds a tenant of the size ARCHITECTURE.md measures: six roles
// of about 55 policy lines each (module verbs, the field lines they imply,
// functions) and 150 users holding one or two roles, ~330 p lines and ~220
// g lines in all.
func benchTenant(r *rand.Rand, cat *model.Catalog, id string) *model.TenantState {
	st := model.NewTenantState(id, id)
	st.Revision = 1
	for i := range 6 {
		role := model.Role{ID: fmt.Sprintf("role%d", i)}
		for _, mi := range r.Perm(len(cat.Modules))[:3] {
			role.Permissions.Modules = append(role.Permissions.Modules, model.ModuleGrant{Module: cat.Modules[mi].ID, Verbs: []string{"list", "read", "create", "update"}[:2+r.IntN(3)]})
		}
		for _, fi := range r.Perm(len(cat.Functions))[:3] {
			role.Permissions.Functions = append(role.Permissions.Functions, cat.Functions[fi].ID)
		}
		st.Roles[role.ID] = role
	}
	for u := range 150 {
		for range 1 + r.IntN(2) {
			g := model.Grant{UserID: fmt.Sprintf("user%d", u), RoleID: fmt.Sprintf("role%d", r.IntN(6))}
			st.Grants[model.GrantKey{UserID: g.UserID, RoleID: g.RoleID}] = g
		}
	}
	return st
}

type benchRequest struct {
	tenant, user string
	perm         model.Permission
}

type benchData struct {
	states   []*model.TenantState
	requests []benchRequest // each for a random tenant and user
	pages    []benchRequest // runs of 8 for one tenant and user, as one CRM page asks
	lines    int
}

func newBenchData(b *testing.B, cat *model.Catalog, tenants int) *benchData {
	r := rand.New(rand.NewPCG(uint64(tenants), 7))
	d := &benchData{}
	for i := range tenants {
		st := benchTenant(r, cat, fmt.Sprintf("tenant%05d", i))
		d.states = append(d.states, st)
		d.lines += len(CompilePolicy(cat, st, time.Time{}).P)
	}
	g := &gen{r: r, cat: cat}
	for range 1 << 16 {
		st := d.states[r.IntN(len(d.states))]
		d.requests = append(d.requests, benchRequest{st.ID, fmt.Sprintf("user%d", r.IntN(160)), g.permission()})
	}
	for range 1 << 13 {
		st := d.states[r.IntN(len(d.states))]
		user := fmt.Sprintf("user%d", r.IntN(160))
		for range 8 {
			d.pages = append(d.pages, benchRequest{st.ID, user, g.permission()})
		}
	}
	b.ReportMetric(float64(d.lines)/float64(tenants), "p-lines/tenant")
	return d
}

// BenchmarkCheck measures one decision at 10 and 1,000 tenants: the engine,
// plain casbin Enforce with one enforcer per tenant, and plain casbin with
// one enforcer holding every tenant, on the same data in the same run.
// engine draws every check's tenant and user at random, the worst case for
// the CPU caches; engine-pages asks in runs of 8 checks for one user, as a
// CRM page (a record, its fields, its buttons) does.
func BenchmarkCheck(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	for _, tenants := range []int{10, 1000} {
		var data *benchData
		setup := func(b *testing.B) *benchData {
			if data == nil {
				data = newBenchData(b, bun.Catalog, tenants)
			}
			return data
		}
		engine := func(b *testing.B, requests func(*benchData) []benchRequest) {
			d := setup(b)
			eng, err := New(bun.Catalog, bun.ModelText)
			if err != nil {
				b.Fatal(err)
			}
			if err := eng.LoadAll(d.states); err != nil {
				b.Fatal(err)
			}
			reqs := requests(d)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				q := &reqs[i%len(reqs)]
				if _, err := eng.Check(q.tenant, q.user, q.perm, false); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("tenants=%d/engine", tenants), func(b *testing.B) {
			engine(b, func(d *benchData) []benchRequest { return d.requests })
		})
		b.Run(fmt.Sprintf("tenants=%d/engine-pages", tenants), func(b *testing.B) {
			engine(b, func(d *benchData) []benchRequest { return d.pages })
		})
		b.Run(fmt.Sprintf("tenants=%d/casbin-enforcer-per-tenant", tenants), func(b *testing.B) {
			d := setup(b)
			enforcers := map[string]*casbin.Enforcer{}
			for _, st := range d.states {
				enforcers[st.ID] = loadEnforcer(b, bun, []*model.TenantState{st})
			}
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				q := &d.requests[i%len(d.requests)]
				plainDecision(b, enforcers[q.tenant], q.tenant, q.user, q.perm)
			}
		})
		b.Run(fmt.Sprintf("tenants=%d/casbin-one-enforcer", tenants), func(b *testing.B) {
			d := setup(b)
			e := loadEnforcer(b, bun, d.states)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				q := &d.requests[i%len(d.requests)]
				plainDecision(b, e, q.tenant, q.user, q.perm)
			}
		})
	}
}

// loadEnforcer builds a plain enforcer over the tenants' exported policies.
func loadEnforcer(b *testing.B, bun *bundle.Bundle, states []*model.TenantState) *casbin.Enforcer {
	m, err := casbinmodel.NewModelFromString(bun.ModelText)
	if err != nil {
		b.Fatal(err)
	}
	e, err := casbin.NewEnforcer(m)
	if err != nil {
		b.Fatal(err)
	}
	for _, st := range states {
		pol := CompilePolicy(bun.Catalog, st, time.Time{})
		if err := e.GetModel().AddPolicies("p", "p", pol.P); err != nil {
			b.Fatal(err)
		}
		if err := e.GetModel().AddPolicies("g", "g", pol.G); err != nil {
			b.Fatal(err)
		}
	}
	if err := e.BuildRoleLinks(); err != nil {
		b.Fatal(err)
	}
	return e
}
