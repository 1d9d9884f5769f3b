package datagen_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
)

var now = time.Date(2026, 6, 1, 12, 30, 15, 123456789, time.UTC)

func defaultBundle(t testing.TB) *bundle.Bundle {
	t.Helper()
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func generate(t testing.TB, b *bundle.Bundle, o datagen.Options, seed uint64) *model.TenantState {
	t.Helper()
	st, err := datagen.Tenant("acme", b, o, seed, now)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func load(t testing.TB, b *bundle.Bundle, st *model.TenantState) *engine.Engine {
	t.Helper()
	eng, err := engine.New(b.Catalog, b.ModelText, engine.WithClock(func() time.Time { return now }))
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(st); err != nil {
		t.Fatalf("load generated tenant: %v", err)
	}
	return eng
}

func TestSameSeedSameTenant(t *testing.T) {
	b := defaultBundle(t)
	a, again := generate(t, b, datagen.Medium(), 7), generate(t, b, datagen.Medium(), 7)
	if !reflect.DeepEqual(a, again) {
		t.Fatal("two tenants of the same seed differ")
	}
	if other := generate(t, b, datagen.Medium(), 8); reflect.DeepEqual(a.Grants, other.Grants) {
		t.Fatal("tenants of seeds 7 and 8 hold the same grants")
	}
	qs, again2 := datagen.Requests(a, b.Catalog, 500, 3), datagen.Requests(a, b.Catalog, 500, 3)
	if !reflect.DeepEqual(qs, again2) {
		t.Fatal("two request lists of the same seed differ")
	}
}

// inheritDepth returns the longest inheritance chain below role id.
func inheritDepth(st *model.TenantState, id string) int {
	d := 0
	for _, p := range st.Roles[id].Inherits {
		d = max(d, inheritDepth(st, p)+1)
	}
	return d
}

// TestSizes: a tenant holds exactly what its options ask for, is valid
// by the model's rules, and loads into the engine.
func TestSizes(t *testing.T) {
	b := defaultBundle(t)
	for _, tc := range []struct {
		name  string
		opts  datagen.Options
		large bool
	}{
		{"small", datagen.Small(), false},
		{"medium", datagen.Medium(), false},
		{"large", datagen.Large(), true},
		{"zero", datagen.Options{}, false},
		{"more departments than users", datagen.Options{Users: 7, Departments: 20, GrantsPerUser: 0.5, SharingRules: 9, Shares: 30, ExpiringFraction: 1, InactiveFraction: 1}, false},
		{"three roles each", datagen.Options{Users: 50, Departments: 3, Roles: 1, GrantsPerUser: 3, OtherDepartmentsFraction: 1, ManagerDepth: 16}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.large && testing.Short() {
				t.Skip("the large tenant takes seconds under the race detector")
			}
			o := tc.opts
			st := generate(t, b, o, 1)
			for _, c := range []struct {
				what      string
				got, want int
			}{
				{"users", len(st.Users), o.Users},
				{"roles", len(st.Roles), len(b.Templates) + o.Roles},
				{"departments", len(st.Departments), o.Departments},
				{"grants", len(st.Grants), o.Grants()},
				{"sharing rules", len(st.SharingRules), o.SharingRules},
				{"record shares", len(st.RecordShares), o.Shares},
				{"manager depth", st.Settings.ManagerDepth, o.ManagerDepth},
			} {
				if c.got != c.want {
					t.Errorf("%s: %d, want %d", c.what, c.got, c.want)
				}
			}
			inactive := 0
			for _, u := range st.Users {
				if !u.Active() {
					inactive++
				}
			}
			if want := min(int(o.InactiveFraction*float64(o.Users)+0.5), max(0, o.Users-1)); inactive != want {
				t.Errorf("%d inactive users, want %d", inactive, want)
			}
			for _, tpl := range b.SortedTemplates() {
				if r, ok := st.Roles[tpl.ID]; !ok || r.Template != tpl.ID {
					t.Errorf("no role from template %q", tpl.ID)
				}
			}
			perUser := map[string]int{}
			for k, g := range st.Grants {
				perUser[k.UserID]++
				if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) {
					t.Errorf("grant %v expires at %v, not after now", k, g.ExpiresAt)
				}
			}
			for id := range st.Users {
				n := perUser[id]
				if n > 3 || (o.GrantsPerUser >= 1 && n < 1) {
					t.Errorf("user %q holds %d roles", id, n)
				}
				if _, ok := st.Members[id]; ok != (o.Departments > 0) {
					t.Errorf("user %q has a membership: %v", id, ok)
				}
			}
			if o.Users > 0 && o.GrantsPerUser > 0 {
				if _, ok := st.Grants[model.GrantKey{UserID: "u000001", RoleID: "admin"}]; !ok {
					t.Error("the first user does not hold admin")
				}
			}
			for id := range st.Roles {
				if d := inheritDepth(st, id); d > model.MaxInheritDepth {
					t.Errorf("role %q inherits %d levels deep", id, d)
				}
			}
			for k, sh := range st.RecordShares {
				if !sh.ExpiresAt.IsZero() && !sh.ExpiresAt.After(now) {
					t.Errorf("share %v expires at %v, not after now", k, sh.ExpiresAt)
				}
			}
			load(t, b, st)
		})
	}
}

// TestShape: a mid-sized tenant has the variety tests and benchmarks rely
// on.
func TestShape(t *testing.T) {
	b := defaultBundle(t)
	st := generate(t, b, datagen.Medium(), 1)
	seen := map[string]bool{}
	note := func(format string, args ...any) { seen[fmt.Sprintf(format, args...)] = true }
	for _, r := range st.Roles {
		if r.Template != "" {
			continue
		}
		for _, m := range r.Permissions.Modules {
			note("scope %s", m.Scope)
		}
		if len(r.Permissions.Fields) > 0 {
			note("field rules")
		}
		if len(r.Permissions.Functions) > 0 {
			note("functions")
		}
		if len(r.Permissions.DenyModules) > 0 || len(r.Permissions.DenyFunctions) > 0 {
			note("denies")
		}
		if len(r.Inherits) > 0 {
			note("inheritance")
		}
	}
	for _, d := range st.Departments {
		if p := d.Parent; p != "" && st.Departments[p].Parent != "" && st.Departments[st.Departments[p].Parent].Parent != "" {
			note("department three levels down")
		}
	}
	for _, m := range st.Members {
		if len(m.Others) > 0 {
			note("other departments")
		}
		if mgr := m.Manager; mgr != "" && st.Members[mgr].Manager != "" {
			note("manager chain")
		}
	}
	for _, g := range st.Grants {
		if !g.ExpiresAt.IsZero() {
			note("expiring grant")
		}
	}
	for _, r := range st.SharingRules {
		note("rule owned by %s", r.OwnedBy.Kind)
		note("rule shared with %s", r.SharedWith.Kind)
		if r.OwnedBy == r.SharedWith {
			t.Errorf("rule %q shares records with their owner", r.ID)
		}
	}
	for _, sh := range st.RecordShares {
		note("share with %s", sh.Principal.Kind)
		if !sh.ExpiresAt.IsZero() {
			note("expiring share")
		}
	}
	var want []string
	for _, s := range model.Scopes {
		want = append(want, "scope "+string(s))
	}
	for _, k := range []string{"user", "department", "role"} {
		want = append(want, "rule owned by "+k, "rule shared with "+k, "share with "+k)
	}
	want = append(want, "field rules", "functions", "denies", "inheritance", "department three levels down",
		"other departments", "manager chain", "expiring grant", "expiring share")
	for _, w := range want {
		if !seen[w] {
			t.Errorf("no %s", w)
		}
	}
}

// TestRequests: generated checks are valid for the catalog, and each kind
// of permission is allowed for some and denied for others.
func TestRequests(t *testing.T) {
	b := defaultBundle(t)
	st := generate(t, b, datagen.Medium(), 1)
	eng := load(t, b, st)
	results := map[string]int{}
	for i, q := range datagen.Requests(st, b.Catalog, 4000, 1) {
		if err := q.Permission.Validate(b.Catalog, "permission"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		d, err := eng.Check(st.ID, q.User, q.Permission, false)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		kind := map[model.Kind]string{model.KindModule: "module", model.KindField: "field", model.KindFunction: "function"}[q.Permission.Kind]
		if q.Permission.Record != nil {
			kind = "record"
		}
		results[fmt.Sprintf("%s %v", kind, d.Allowed)]++
	}
	t.Logf("decisions: %v", results)
	for _, kind := range []string{"module", "record", "field", "function"} {
		for _, allowed := range []bool{true, false} {
			if k := fmt.Sprintf("%s %v", kind, allowed); results[k] < 20 {
				t.Errorf("%d of %s", results[k], k)
			}
		}
	}
}

func TestValidate(t *testing.T) {
	b := defaultBundle(t)
	for _, o := range []datagen.Options{
		{Users: -1},
		{Shares: -1},
		{GrantsPerUser: 3.5},
		{ExpiringFraction: 1.5},
		{InactiveFraction: -0.1},
		{ManagerDepth: model.MaxManagerDepth + 1},
	} {
		if _, err := datagen.Tenant("acme", b, o, 1, now); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	if _, err := datagen.Tenant("Acme Corp", b, datagen.Small(), 1, now); err == nil {
		t.Error("a bad tenant id accepted")
	}
	empty := &bundle.Bundle{ModelText: b.ModelText, Catalog: b.Catalog}
	if _, err := datagen.Tenant("acme", empty, datagen.Options{SharingRules: 1}, 1, now); !errors.Is(err, datagen.ErrNoPrincipals) {
		t.Errorf("a sharing rule with nothing to name: %v", err)
	}
	for _, name := range []string{"small", "medium", "large"} {
		if _, err := datagen.Preset(name); err != nil {
			t.Error(err)
		}
	}
	if _, err := datagen.Preset("huge"); err == nil {
		t.Error("preset huge accepted")
	}
}

// BenchmarkTenant measures generating a tenant of each preset.
func BenchmarkTenant(b *testing.B) {
	bun := defaultBundle(b)
	for _, name := range []string{"small", "medium", "large"} {
		o, err := datagen.Preset(name)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				if _, err := datagen.Tenant("acme", bun, o, uint64(i), now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
