package auth

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// orgTenant: hq > sales > {east > east_1, west}; lee heads east (scope
// dept_tree on accounts), ray works in east (scope dept), sam in west
// reports to ray, who reports to lee.
func orgTenant(t *testing.T) (*model.Catalog, *model.TenantState) {
	t.Helper()
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	st := model.NewTenantState("t", "")
	for _, d := range []model.Department{{ID: "hq", Name: "HQ"}, {ID: "sales", Name: "S", Parent: "hq"}, {ID: "east", Name: "E", Parent: "sales"},
		{ID: "east_1", Name: "E1", Parent: "east"}, {ID: "west", Name: "W", Parent: "sales"}} {
		must(t)(st.CreateDepartment(d))
	}
	role := func(id string, scope model.Scope) {
		must(t)(st.CreateRole(model.Role{ID: id, Permissions: model.Permissions{Modules: []model.ModuleGrant{
			{Module: "account", Verbs: []string{"list", "read", "update"}, Scope: scope}}}}))
	}
	role("head", model.ScopeDeptTree)
	role("rep", model.ScopeDept)
	role("solo", model.ScopeSelf)
	now := time.Now()
	for _, u := range []string{"lee", "ray", "sam"} {
		must(t)(st.UpsertUser(model.User{ID: u}))
	}
	for _, g := range []model.Grant{{UserID: "lee", RoleID: "head"}, {UserID: "ray", RoleID: "rep"}, {UserID: "sam", RoleID: "solo"}} {
		must(t)(st.GrantRole(g, now))
	}
	for _, m := range []model.Membership{{UserID: "lee", Primary: "east"}, {UserID: "ray", Primary: "east", Manager: "lee"},
		{UserID: "sam", Primary: "west", Manager: "ray"}} {
		must(t)(st.SetMembership(m))
	}
	return b.Catalog, st
}

func must(t *testing.T) func(model.Change, error) {
	return func(_ model.Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSharingRuleReach: a sharing rule may share only records the actor
// reaches by scope or as a manager, at the access the actor has.
func TestSharingRuleReach(t *testing.T) {
	cat, st := orgTenant(t)
	dept := func(id string, subs bool) model.Principal {
		return model.Principal{Kind: model.PrincipalDepartment, ID: id, IncludeSubs: subs}
	}
	user := func(id string) model.Principal { return model.Principal{Kind: model.PrincipalUser, ID: id} }
	tests := []struct {
		actor  string
		owner  model.Principal
		access model.Access
		ok     bool
	}{
		{"lee", dept("east", true), model.AccessReadWrite, true},                                // dept_tree covers east and below
		{"lee", dept("east_1", false), model.AccessRead, true},                                  // below east
		{"lee", dept("west", false), model.AccessRead, false},                                   // a sibling
		{"lee", dept("sales", false), model.AccessRead, false},                                  // above
		{"ray", dept("east", false), model.AccessRead, true},                                    // dept: own department
		{"ray", dept("east", true), model.AccessRead, false},                                    // dept does not reach east_1
		{"ray", dept("east_1", false), model.AccessRead, false},                                 // nor below
		{"ray", user("ray"), model.AccessReadWrite, true},                                       // own records
		{"ray", user("sam"), model.AccessReadWrite, true},                                       // direct manager reads and updates
		{"lee", user("sam"), model.AccessRead, true},                                            // second-level manager reads
		{"lee", user("sam"), model.AccessReadWrite, false},                                      // but only the direct manager updates
		{"sam", user("ray"), model.AccessRead, false},                                           // a report does not reach the manager
		{"sam", user("sam"), model.AccessRead, true},                                            // self
		{"ray", model.Principal{Kind: model.PrincipalRole, ID: "rep"}, model.AccessRead, false}, // a role's holders: only org
	}
	for _, tt := range tests {
		g := NewGuard(cat, st, Actor{ID: tt.actor}, time.Now())
		err := g.SharingRule(model.SharingRule{ID: "r", Module: "account", OwnedBy: tt.owner, SharedWith: user("x"), Access: tt.access})
		var d *DeniedError
		switch {
		case tt.ok && err != nil:
			t.Errorf("%s shares %s at %s: %v", tt.actor, tt.owner, tt.access, err)
		case !tt.ok && (!errors.As(err, &d) || d.Reason != ReasonEscalation):
			t.Errorf("%s shares %s at %s: %v, want ESCALATION", tt.actor, tt.owner, tt.access, err)
		}
	}
	// The direct manager only updates: with a manager depth of 1, lee
	// (two levels up) no longer reads sam's records either.
	st.Settings.ManagerDepth = 1
	g := NewGuard(cat, st, Actor{ID: "lee"}, time.Now())
	if err := g.SharingRule(model.SharingRule{ID: "r", Module: "account", OwnedBy: user("sam"), SharedWith: user("x"), Access: model.AccessRead}); err == nil {
		t.Error("beyond the manager depth")
	}
}

// TestDepartmentMoveAndMembership: a department may not be moved into the
// actor's own tree, and nobody but a super-administrator changes their own
// membership or makes themselves a manager.
func TestDepartmentMoveAndMembership(t *testing.T) {
	cat, st := orgTenant(t)
	g := NewGuard(cat, st, Actor{ID: "ray"}, time.Now())
	if err := g.DepartmentMove("west", "east_1"); err == nil {
		t.Error("west moved under ray's department")
	}
	if err := g.DepartmentMove("east_1", "east"); err != nil {
		t.Errorf("a move within ray's tree: %v", err)
	}
	if err := g.DepartmentMove("west", "hq"); err != nil {
		t.Errorf("a move outside ray's reach: %v", err)
	}
	for _, tt := range []struct{ user, manager string }{{"ray", ""}, {"sam", "ray"}} {
		if err := g.Membership(tt.user, tt.manager); err == nil || !strings.Contains(err.Error(), "ray") {
			t.Errorf("membership %v: %v", tt, err)
		}
	}
	if err := g.Membership("sam", "lee"); err != nil {
		t.Errorf("naming someone else the manager: %v", err)
	}
	op := NewGuard(cat, st, Actor{ID: "platform:ops", Operator: true}, time.Now())
	if err := op.Membership("ray", "ray2"); err != nil || !op.Super() {
		t.Errorf("the operator: %v", err)
	}
}
