package service

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// orgGen generates a tenant with a deep department tree, managers, roles
// with data scopes, sharing rules and record shares, and a table of records.
type orgGen struct {
	r     *rand.Rand
	cat   *model.Catalog
	now   time.Time
	depts []string
	users []string
}

func (g *orgGen) pick(xs []string) string { return xs[g.r.IntN(len(xs))] }

func (g *orgGen) principal() model.Principal {
	switch g.r.IntN(3) {
	case 0:
		return model.Principal{Kind: model.PrincipalUser, ID: g.pick(g.users)}
	case 1:
		return model.Principal{Kind: model.PrincipalDepartment, ID: g.pick(g.depts), IncludeSubs: g.r.IntN(2) == 0}
	}
	return model.Principal{Kind: model.PrincipalRole, ID: fmt.Sprintf("role%d", g.r.IntN(5))}
}

func (g *orgGen) access() model.Access {
	if g.r.IntN(2) == 0 {
		return model.AccessRead
	}
	return model.AccessReadWrite
}

func (g *orgGen) tenant(modules []string) *model.TenantState {
	st := model.NewTenantState("t", "t")
	st.Revision = 1
	st.Settings.ManagerDepth = g.r.IntN(4)
	for i := range 60 {
		id := fmt.Sprintf("d%d", i)
		d := model.Department{ID: id, Name: id}
		if i > 0 {
			// Mostly below a recent department, so the tree gets deep.
			d.Parent = g.depts[max(0, len(g.depts)-1-g.r.IntN(4))]
		}
		st.Departments[id] = d
		g.depts = append(g.depts, id)
	}
	for i := range 80 {
		id := fmt.Sprintf("u%d", i)
		m := model.Membership{UserID: id, Primary: g.pick(g.depts)}
		if g.r.IntN(4) == 0 {
			if o := g.pick(g.depts); o != m.Primary {
				m.Others = []string{o}
			}
		}
		if i > 0 && g.r.IntN(5) != 0 {
			m.Manager = g.users[g.r.IntN(len(g.users))] // an earlier user: no cycles
		}
		st.Members[id] = m
		g.users = append(g.users, id)
	}
	verbs := []string{"list", "read", "update", "delete"}
	for i := range 5 {
		r := model.Role{ID: fmt.Sprintf("role%d", i)}
		for _, mod := range modules {
			for _, v := range verbs {
				if g.r.IntN(3) == 0 {
					continue
				}
				r.Permissions.Modules = append(r.Permissions.Modules, model.ModuleGrant{Module: mod, Verbs: []string{v}, Scope: model.Scopes[g.r.IntN(len(model.Scopes))]})
			}
		}
		if i > 0 && g.r.IntN(3) == 0 {
			r.Inherits = []string{fmt.Sprintf("role%d", g.r.IntN(i))}
		}
		st.Roles[r.ID] = r
	}
	for _, u := range g.users {
		for range g.r.IntN(3) {
			gr := model.Grant{UserID: u, RoleID: fmt.Sprintf("role%d", g.r.IntN(5))}
			if g.r.IntN(5) == 0 {
				gr.ExpiresAt = g.now.Add(time.Duration(g.r.IntN(120)-60) * time.Minute) // some expired
			}
			st.Grants[model.GrantKey{UserID: gr.UserID, RoleID: gr.RoleID}] = gr
		}
	}
	for i := range 12 {
		r := model.SharingRule{ID: fmt.Sprintf("rule%d", i), Module: g.pick(modules), OwnedBy: g.principal(), SharedWith: g.principal(), Access: g.access()}
		if r.OwnedBy.Kind != model.PrincipalDepartment {
			r.OwnedBy.IncludeSubs = false
		}
		if r.SharedWith.Kind != model.PrincipalDepartment {
			r.SharedWith.IncludeSubs = false
		}
		st.SharingRules[r.ID] = r
	}
	for range 60 {
		s := model.RecordShare{Module: g.pick(modules), RecordID: fmt.Sprintf("rec%d", g.r.IntN(400)), Principal: g.principal(), Access: g.access()}
		if s.Principal.Kind != model.PrincipalDepartment {
			s.Principal.IncludeSubs = false
		}
		if g.r.IntN(3) == 0 {
			s.ExpiresAt = g.now.Add(time.Duration(g.r.IntN(120)-60) * time.Minute)
		}
		st.RecordShares[model.ShareKey{Module: s.Module, RecordID: s.RecordID, Principal: s.Principal}] = s
	}
	return st
}

// TestFilterMatchesCheck is the record-filter contract, on real PostgreSQL:
// for generated tenants and a table of records, the rows the filter's SQL
// selects are exactly the records Check allows, for random users and verbs.
func TestFilterMatchesCheck(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	modules := []string{"account", "lead"}
	for seed := range uint64(20) {
		t.Run(fmt.Sprintf("seed%d", seed), func(t *testing.T) {
			g := &orgGen{r: rand.New(rand.NewPCG(seed, 99)), cat: b.Catalog, now: time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)}
			st := g.tenant(modules)
			eng, err := engine.New(b.Catalog, b.ModelText, engine.WithClock(func() time.Time { return g.now }))
			if err != nil {
				t.Fatal(err)
			}
			if err := eng.Load(st); err != nil {
				t.Fatal(err)
			}
			table := fmt.Sprintf("records_%d", seed)
			if _, err := pool.Exec(ctx, fmt.Sprintf("CREATE TABLE %s (rec_id text PRIMARY KEY, owner text NOT NULL, dept text)", table)); err != nil {
				t.Fatal(err)
			}
			var records []model.Record
			rows := [][]any{}
			for i := range 400 {
				rec := model.Record{ID: fmt.Sprintf("rec%d", i), Owner: g.pick(append(g.users, "outsider"))}
				var dept any
				if g.r.IntN(6) != 0 {
					rec.Department = g.pick(g.depts)
					dept = rec.Department
				}
				records = append(records, rec)
				rows = append(rows, []any{rec.ID, rec.Owner, dept})
			}
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{table}, []string{"rec_id", "owner", "dept"}, pgx.CopyFromRows(rows)); err != nil {
				t.Fatal(err)
			}
			kinds := map[engine.FilterKind]int{}
			for range 40 {
				user := g.pick(g.users)
				module := g.pick(modules)
				verb := g.pick([]string{"list", "read", "update", "delete"})
				f, err := eng.PlanFilter("t", user, module, verb)
				if err != nil {
					t.Fatal(err)
				}
				kinds[f.Kind]++
				resp := filterToProto(f, sqlColumns{id: "r.rec_id", owner: "r.owner", dept: "r.dept"}, 2)
				args := []any{"unused"} // $1 belongs to the caller: the filter starts at $2
				for _, a := range resp.GetArgs() {
					args = append(args, a.GetValues())
				}
				q := fmt.Sprintf("SELECT r.rec_id FROM %s r WHERE $1::text IS NOT NULL AND %s ORDER BY r.rec_id", table, resp.GetSql())
				got, err := pgx.CollectRows(must(pool.Query(ctx, q, args...)), pgx.RowTo[string])
				if err != nil {
					t.Fatalf("%s: %v", q, err)
				}
				var want []string
				for i := range records {
					p := model.Permission{Kind: model.KindModule, Module: module, Verb: verb, Record: &records[i]}
					d, err := eng.Check("t", user, p, false)
					if err != nil {
						t.Fatal(err)
					}
					if d.Allowed {
						want = append(want, records[i].ID)
					}
				}
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("%s %s %s: filter %q selects %d records, Check allows %d\nonly filter: %v\nonly check: %v",
						user, module, verb, resp.GetSql(), len(got), len(want), diff(got, want), diff(want, got))
				}
			}
			if kinds[engine.FilterConditional] == 0 {
				t.Fatalf("no conditional filter was planned: %v", kinds)
			}
			g.now = g.now.Add(45 * time.Minute)
		})
	}
}

func must(rows pgx.Rows, err error) pgx.Rows {
	if err != nil {
		panic(err)
	}
	return rows
}

func diff(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	return out
}
