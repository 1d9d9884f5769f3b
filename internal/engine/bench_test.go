package engine

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
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

// benchRequest names one check by its positions in benchData's tables, so
// the harness streams 8 bytes per check and the caches hold the engine's
// data rather than the harness's.
type benchRequest struct{ tenant, user, perm uint16 }

type benchData struct {
	states  []*model.TenantState
	tenants []string // the states' ids
	users   []string
	perms   []model.Permission
	random  []benchRequest // each for a random tenant, user and permission
	granted []benchRequest // each for a permission some role of the tenant allows
	pages   []benchRequest // runs of 8 for one tenant and user, as one CRM page asks
	lines   int
}

func newBenchData(b *testing.B, bun *bundle.Bundle, tenants int) *benchData {
	cat := bun.Catalog
	r := rand.New(rand.NewPCG(uint64(tenants), 7))
	d := &benchData{}
	for i := range 160 {
		d.users = append(d.users, fmt.Sprintf("user%d", i))
	}
	g := &gen{r: r, cat: cat}
	for range 1024 {
		d.perms = append(d.perms, g.permission())
	}
	for i := range tenants {
		st := benchTenant(r, cat, fmt.Sprintf("tenant%05d", i))
		d.states = append(d.states, st)
		d.tenants = append(d.tenants, st.ID)
		d.lines += len(CompilePolicy(cat, st, time.Time{}).P)
	}
	// Per tenant, the permissions some role of it allows.
	eng, err := New(cat, bun.ModelText)
	if err != nil {
		b.Fatal(err)
	}
	if err := eng.LoadAll(d.states); err != nil {
		b.Fatal(err)
	}
	allowedBy := make([][]uint16, tenants)
	for i, id := range d.tenants {
		ix, _ := eng.index(id)
		for p := range d.perms {
			var buf [3]int32
			if ix.someRoleAllows(eng.space.idsFor(d.perms[p], &buf)) {
				allowedBy[i] = append(allowedBy[i], uint16(p))
			}
		}
	}
	req := func(t, u int, p uint16) benchRequest { return benchRequest{uint16(t), uint16(u), p} }
	for range 1 << 16 {
		t := r.IntN(tenants)
		d.random = append(d.random, req(t, r.IntN(len(d.users)), uint16(r.IntN(len(d.perms)))))
		d.granted = append(d.granted, req(t, r.IntN(len(d.users)), allowedBy[t][r.IntN(len(allowedBy[t]))]))
	}
	for range 1 << 13 {
		t, u := r.IntN(tenants), r.IntN(len(d.users))
		for range 8 {
			d.pages = append(d.pages, req(t, u, uint16(r.IntN(len(d.perms)))))
		}
	}
	b.ReportMetric(float64(d.lines)/float64(tenants), "p-lines/tenant")
	return d
}

// benchTenants are the tenant counts of BenchmarkCheck; -bench-tenants adds
// 10,000 (the casbin runs at that size take minutes: select the engine's,
// -bench 'Check/.*/engine').
var benchTenants = flag.String("bench-tenants", "10,1000", "comma-separated tenant counts of BenchmarkCheck")

// BenchmarkCheck measures one decision at 10 and 1,000 tenants: the engine,
// plain casbin Enforce with one enforcer per tenant, and plain casbin with
// one enforcer holding every tenant, on the same data in the same run. The
// engine is measured on three request mixes:
//   - engine: a random tenant, user and catalog permission per check, the
//     worst case for the CPU caches; many permissions are held by no role of
//     the tenant, which the engine answers without looking the user up;
//   - engine-granted: as engine, but only permissions some role of the
//     tenant allows, so every check looks its user up;
//   - engine-pages: runs of 8 checks for one tenant and user, as a CRM page
//     (a record, its fields, its buttons) asks.
func BenchmarkCheck(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	for _, field := range strings.Split(*benchTenants, ",") {
		tenants, err := strconv.Atoi(field)
		if err != nil || tenants < 1 {
			b.Fatalf("-bench-tenants: %q is not a tenant count", field)
		}
		var data *benchData
		setup := func(b *testing.B) *benchData {
			if data == nil {
				data = newBenchData(b, bun, tenants)
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
				q := reqs[i%len(reqs)]
				if _, err := eng.Check(d.tenants[q.tenant], d.users[q.user], d.perms[q.perm], false); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.Run(fmt.Sprintf("tenants=%d/engine", tenants), func(b *testing.B) {
			engine(b, func(d *benchData) []benchRequest { return d.random })
		})
		b.Run(fmt.Sprintf("tenants=%d/engine-granted", tenants), func(b *testing.B) {
			engine(b, func(d *benchData) []benchRequest { return d.granted })
		})
		b.Run(fmt.Sprintf("tenants=%d/engine-pages", tenants), func(b *testing.B) {
			engine(b, func(d *benchData) []benchRequest { return d.pages })
		})
		plain := func(b *testing.B, enforcer func(tenant string) *casbin.Enforcer) {
			d := setup(b)
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				q := d.random[i%len(d.random)]
				tenant := d.tenants[q.tenant]
				plainDecision(b, enforcer(tenant), tenant, d.users[q.user], d.perms[q.perm])
			}
		}
		b.Run(fmt.Sprintf("tenants=%d/casbin-enforcer-per-tenant", tenants), func(b *testing.B) {
			enforcers := map[string]*casbin.Enforcer{}
			for _, st := range setup(b).states {
				enforcers[st.ID] = loadEnforcer(b, bun, []*model.TenantState{st})
			}
			plain(b, func(tenant string) *casbin.Enforcer { return enforcers[tenant] })
		})
		b.Run(fmt.Sprintf("tenants=%d/casbin-one-enforcer", tenants), func(b *testing.B) {
			e := loadEnforcer(b, bun, setup(b).states)
			plain(b, func(string) *casbin.Enforcer { return e })
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
