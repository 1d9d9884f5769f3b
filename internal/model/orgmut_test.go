package model

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

var orgNow = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// orgTenant returns a tenant with a department tree
//
//	hq
//	├── sales
//	│   ├── east
//	│   └── west
//	└── support
//
// members alice (east), bob (east and support, managed by alice) and dave
// (west, managed by bob), carol known by a grant only, a sharing rule and a
// record share.
func orgTenant(t *testing.T) *TenantState {
	t.Helper()
	st := NewTenantState("acme", "Acme")
	must := func(_ Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("building the tenant: %v", err)
		}
	}
	must(st.CreateRole(Role{ID: "viewer"}))
	must(st.CreateRole(Role{ID: "rep"}))
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		must(st.UpsertUser(User{ID: u}))
	}
	must(st.GrantRole(Grant{UserID: "carol", RoleID: "viewer"}, orgNow))
	for _, d := range []Department{
		{ID: "hq", Name: "Head office"},
		{ID: "sales", Name: "Sales", Parent: "hq"},
		{ID: "east", Name: "Sales East", Parent: "sales"},
		{ID: "west", Name: "Sales West", Parent: "sales"},
		{ID: "support", Name: "Support", Parent: "hq"},
	} {
		must(st.CreateDepartment(d))
	}
	must(st.SetMembership(Membership{UserID: "alice", Primary: "east"}))
	must(st.SetMembership(Membership{UserID: "bob", Primary: "east", Others: []string{"support"}, Manager: "alice"}))
	must(st.SetMembership(Membership{UserID: "dave", Primary: "west", Manager: "bob"}))
	must(st.CreateSharingRule(SharingRule{
		ID: "east_to_viewers", Module: "account",
		OwnedBy:    Principal{Kind: PrincipalDepartment, ID: "east", IncludeSubs: true},
		SharedWith: Principal{Kind: PrincipalRole, ID: "viewer"}, Access: AccessRead,
	}))
	must(st.ShareRecord(RecordShare{
		Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"},
		Access: AccessReadWrite, ExpiresAt: orgNow.Add(time.Hour),
	}, orgNow))
	return st
}

// wantErr describes an expected error: its type ("invalid", "not found",
// "conflict", "exists"), reason and, for invalid input, the field.
type wantErr struct {
	kind, reason, field string
	msg                 string // a part of the message, when set
}

func (w wantErr) check(t *testing.T, err error) {
	t.Helper()
	var (
		inv *InvalidError
		nf  *NotFoundError
		ce  *ConflictError
	)
	switch w.kind {
	case "invalid":
		if !errors.As(err, &inv) || inv.Reason != w.reason || inv.Field != w.field {
			t.Fatalf("err = %#v, want an *InvalidError %s on %q", err, w.reason, w.field)
		}
	case "not found":
		if !errors.As(err, &nf) || nf.Reason != w.reason {
			t.Fatalf("err = %#v, want a *NotFoundError %s", err, w.reason)
		}
	case "conflict", "exists":
		if !errors.As(err, &ce) || ce.Reason != w.reason || ce.Exists != (w.kind == "exists") {
			t.Fatalf("err = %#v, want a *ConflictError %s (exists: %v)", err, w.reason, w.kind == "exists")
		}
	default:
		t.Fatalf("bad test: kind %q", w.kind)
	}
	if w.msg != "" && !strings.Contains(err.Error(), w.msg) {
		t.Errorf("message %q does not contain %q", err, w.msg)
	}
}

func TestOrgMutationErrors(t *testing.T) {
	dept := func(id, name, parent string) func(st *TenantState) (Change, error) {
		return func(st *TenantState) (Change, error) {
			return st.CreateDepartment(Department{ID: id, Name: name, Parent: parent})
		}
	}
	move := func(id, parent string) func(st *TenantState) (Change, error) {
		return func(st *TenantState) (Change, error) {
			return st.UpdateDepartment(Department{ID: id, Name: "X", Parent: parent})
		}
	}
	member := func(m Membership) func(st *TenantState) (Change, error) {
		return func(st *TenantState) (Change, error) { return st.SetMembership(m) }
	}
	user := func(id string) Principal { return Principal{Kind: PrincipalUser, ID: id} }
	deptP := func(id string) Principal { return Principal{Kind: PrincipalDepartment, ID: id} }
	role := func(id string) Principal { return Principal{Kind: PrincipalRole, ID: id} }
	rule := func(mut func(r *SharingRule)) func(st *TenantState) (Change, error) {
		return func(st *TenantState) (Change, error) {
			r := SharingRule{ID: "r2", Module: "lead", OwnedBy: user("alice"), SharedWith: deptP("support"), Access: AccessReadWrite}
			mut(&r)
			return st.CreateSharingRule(r)
		}
	}
	share := func(mut func(sh *RecordShare)) func(st *TenantState) (Change, error) {
		return func(st *TenantState) (Change, error) {
			sh := RecordShare{Module: "lead", RecordID: "L-7", Principal: user("carol"), Access: AccessRead}
			mut(&sh)
			return st.ShareRecord(sh, orgNow)
		}
	}
	others := make([]string, MaxOtherDepartments+1)
	for i := range others {
		others[i] = "d" + strings.Repeat("x", i)
	}
	tests := []struct {
		name string
		fn   func(st *TenantState) (Change, error)
		want wantErr
	}{
		{"department bad id", dept("Sales", "S", ""), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "department.department_id"}},
		{"department pattern id", dept("s*", "S", ""), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "department.department_id"}},
		{"department without name", dept("north", "", ""), wantErr{kind: "invalid", reason: ReasonInvalidText, field: "department.name"}},
		{"department name too long", dept("north", strings.Repeat("n", 257), ""), wantErr{kind: "invalid", reason: ReasonInvalidText, field: "department.name"}},
		{"department name control character", dept("north", "a\nb", ""), wantErr{kind: "invalid", reason: ReasonInvalidText, field: "department.name"}},
		{"department bad parent", dept("north", "North", "a,b"), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "department.parent_id"}},
		{"department unknown parent", dept("north", "North", "nowhere"), wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "department.parent_id", msg: `"nowhere"`}},
		{"department exists", dept("east", "East", "sales"), wantErr{kind: "exists", reason: ReasonDepartmentExists}},

		{"update unknown department", move("north", ""), wantErr{kind: "not found", reason: ReasonDepartmentNotFound}},
		{"move under itself", move("sales", "sales"), wantErr{kind: "conflict", reason: ReasonDepartmentCycle}},
		{"move under child", move("sales", "east"), wantErr{kind: "conflict", reason: ReasonDepartmentCycle, msg: `"east"`}},
		{"move under grandchild", move("hq", "west"), wantErr{kind: "conflict", reason: ReasonDepartmentCycle}},
		{"move under unknown", move("sales", "nowhere"), wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "department.parent_id"}},
		{"update without name", func(st *TenantState) (Change, error) { return st.UpdateDepartment(Department{ID: "sales"}) },
			wantErr{kind: "invalid", reason: ReasonInvalidText, field: "department.name"}},

		{"delete unknown department", func(st *TenantState) (Change, error) { return st.DeleteDepartment("nowhere") },
			wantErr{kind: "not found", reason: ReasonDepartmentNotFound}},
		{"delete department with children", func(st *TenantState) (Change, error) { return st.DeleteDepartment("sales") },
			wantErr{kind: "conflict", reason: ReasonDepartmentInUse, msg: `sub-department "east"`}},
		{"delete primary department", func(st *TenantState) (Change, error) { return st.DeleteDepartment("east") },
			wantErr{kind: "conflict", reason: ReasonDepartmentInUse, msg: `user "alice"`}},
		{"delete other department", func(st *TenantState) (Change, error) { return st.DeleteDepartment("support") },
			wantErr{kind: "conflict", reason: ReasonDepartmentInUse, msg: `user "bob"`}},
		{"delete department of a rule", func(st *TenantState) (Change, error) {
			if _, err := st.SetMembership(Membership{UserID: "alice", Primary: "west"}); err != nil {
				return Change{}, err
			}
			if _, err := st.SetMembership(Membership{UserID: "bob", Primary: "west", Manager: "alice"}); err != nil {
				return Change{}, err
			}
			return st.DeleteDepartment("east")
		}, wantErr{kind: "conflict", reason: ReasonDepartmentInUse, msg: `sharing rule "east_to_viewers"`}},
		{"delete department of a share", func(st *TenantState) (Change, error) {
			if _, err := st.SetMembership(Membership{UserID: "dave", Primary: "east"}); err != nil {
				return Change{}, err
			}
			return st.DeleteDepartment("west")
		}, wantErr{kind: "conflict", reason: ReasonDepartmentInUse, msg: "account/acc-1"}},

		{"membership bad user", member(Membership{UserID: "a b", Primary: "east"}), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "membership.user_id"}},
		{"membership without primary", member(Membership{UserID: "erin"}), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "membership.primary_department_id"}},
		{"membership unknown primary", member(Membership{UserID: "erin", Primary: "north"}), wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "membership.primary_department_id"}},
		{"membership unknown other", member(Membership{UserID: "erin", Primary: "east", Others: []string{"west", "north"}}),
			wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "membership.other_department_ids[1]"}},
		{"membership other repeated", member(Membership{UserID: "erin", Primary: "east", Others: []string{"west", "west"}}),
			wantErr{kind: "invalid", reason: ReasonDuplicate, field: "membership.other_department_ids[1]"}},
		{"membership other is primary", member(Membership{UserID: "erin", Primary: "east", Others: []string{"east"}}),
			wantErr{kind: "invalid", reason: ReasonDuplicate, field: "membership.other_department_ids[0]"}},
		{"membership too many others", member(Membership{UserID: "erin", Primary: "east", Others: others}),
			wantErr{kind: "invalid", reason: ReasonTooMany, field: "membership.other_department_ids"}},
		{"membership bad manager", member(Membership{UserID: "erin", Primary: "east", Manager: "*"}),
			wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "membership.manager_id"}},
		{"own manager", member(Membership{UserID: "erin", Primary: "east", Manager: "erin"}),
			wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "membership.manager_id"}},
		{"unknown manager", member(Membership{UserID: "erin", Primary: "east", Manager: "zed"}),
			wantErr{kind: "not found", reason: ReasonUserNotFound, msg: `"zed"`}},
		{"membership of an unknown user", member(Membership{UserID: "zed", Primary: "east"}),
			wantErr{kind: "not found", reason: ReasonUserNotFound, msg: `"zed"`}},
		{"manager cycle of two", member(Membership{UserID: "alice", Primary: "east", Manager: "bob"}),
			wantErr{kind: "conflict", reason: ReasonManagerCycle, msg: `"alice" -> "bob" -> "alice"`}},
		{"manager cycle of three", member(Membership{UserID: "alice", Primary: "east", Manager: "dave"}),
			wantErr{kind: "conflict", reason: ReasonManagerCycle, msg: `"alice" -> "dave" -> "bob" -> "alice"`}},
		{"delete missing membership", func(st *TenantState) (Change, error) { return st.DeleteMembership("carol") },
			wantErr{kind: "not found", reason: ReasonMembershipNotFound}},

		{"manager depth negative", func(st *TenantState) (Change, error) { return st.SetManagerDepth(-1) },
			wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "manager_depth"}},
		{"manager depth too big", func(st *TenantState) (Change, error) { return st.SetManagerDepth(MaxManagerDepth + 1) },
			wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "manager_depth"}},

		{"rule bad id", rule(func(r *SharingRule) { r.ID = "r-2" }), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "rule.rule_id"}},
		{"rule bad module", rule(func(r *SharingRule) { r.Module = "" }), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "rule.module"}},
		{"rule without owner", rule(func(r *SharingRule) { r.OwnedBy = Principal{} }), wantErr{kind: "invalid", reason: ReasonMissingField, field: "rule.owned_by"}},
		{"rule bad principal kind", rule(func(r *SharingRule) { r.OwnedBy.Kind = "group" }), wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "rule.owned_by"}},
		{"rule bad user", rule(func(r *SharingRule) { r.OwnedBy.ID = "r:admin" }), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "rule.owned_by.user_id"}},
		{"rule subs of a role", rule(func(r *SharingRule) { r.SharedWith = Principal{Kind: PrincipalRole, ID: "viewer", IncludeSubs: true} }),
			wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "rule.shared_with.include_subdepartments"}},
		{"rule without access", rule(func(r *SharingRule) { r.Access = "" }), wantErr{kind: "invalid", reason: ReasonMissingField, field: "rule.access"}},
		{"rule bad access", rule(func(r *SharingRule) { r.Access = "write" }), wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "rule.access"}},
		{"rule unknown user", rule(func(r *SharingRule) { r.OwnedBy = user("zed") }), wantErr{kind: "not found", reason: ReasonUserNotFound}},
		{"rule unknown department", rule(func(r *SharingRule) { r.SharedWith = deptP("north") }),
			wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "rule.shared_with.department_id"}},
		{"rule unknown role", rule(func(r *SharingRule) { r.SharedWith = role("boss") }), wantErr{kind: "invalid", reason: ReasonRoleNotFound, field: "rule.shared_with.role_id"}},
		{"rule exists", rule(func(r *SharingRule) { r.ID = "east_to_viewers" }), wantErr{kind: "exists", reason: ReasonSharingRuleExists}},
		{"delete missing rule", func(st *TenantState) (Change, error) { return st.DeleteSharingRule("r2") },
			wantErr{kind: "not found", reason: ReasonSharingRuleNotFound}},

		{"share bad module", share(func(sh *RecordShare) { sh.Module = "lead*" }), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "share.module"}},
		{"share bad record", share(func(sh *RecordShare) { sh.RecordID = "L,7" }), wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "share.record_id"}},
		{"share record too long", share(func(sh *RecordShare) { sh.RecordID = strings.Repeat("r", MaxSubjectLength+1) }),
			wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "share.record_id"}},
		{"share without principal", share(func(sh *RecordShare) { sh.Principal = Principal{} }), wantErr{kind: "invalid", reason: ReasonMissingField, field: "share.principal"}},
		{"share bad access", share(func(sh *RecordShare) { sh.Access = "owner" }), wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "share.access"}},
		{"share expired", share(func(sh *RecordShare) { sh.ExpiresAt = orgNow.Add(-time.Second) }), wantErr{kind: "invalid", reason: ReasonExpiryInPast, field: "share.expires_at"}},
		{"share expiry past the engine's range", share(func(sh *RecordShare) { sh.ExpiresAt = MaxExpiry.Add(time.Microsecond) }), wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "share.expires_at"}},
		{"share expiring now", share(func(sh *RecordShare) { sh.ExpiresAt = orgNow }), wantErr{kind: "invalid", reason: ReasonExpiryInPast, field: "share.expires_at"}},
		{"share unknown user", share(func(sh *RecordShare) { sh.Principal = user("zed") }), wantErr{kind: "not found", reason: ReasonUserNotFound}},
		{"share unknown department", share(func(sh *RecordShare) {
			sh.Principal = Principal{Kind: PrincipalDepartment, ID: "north", IncludeSubs: true}
		}),
			wantErr{kind: "invalid", reason: ReasonDepartmentNotFound, field: "share.principal.department_id"}},
		{"share unknown role", share(func(sh *RecordShare) { sh.Principal = role("boss") }), wantErr{kind: "invalid", reason: ReasonRoleNotFound, field: "share.principal.role_id"}},
		{"unshare missing", func(st *TenantState) (Change, error) {
			// The stored share names west without its sub-departments.
			return st.UnshareRecord(ShareKey{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west", IncludeSubs: true}})
		}, wantErr{kind: "not found", reason: ReasonRecordShareNotFound}},

		{"delete role of a rule", func(st *TenantState) (Change, error) {
			if _, err := st.RevokeRole("carol", "viewer"); err != nil {
				return Change{}, err
			}
			return st.DeleteRole("viewer")
		}, wantErr{kind: "conflict", reason: ReasonRoleInUse, msg: `sharing rule "east_to_viewers"`}},
		{"delete role of a share", func(st *TenantState) (Change, error) {
			if _, err := st.ShareRecord(RecordShare{Module: "lead", RecordID: "L-1", Principal: role("rep"), Access: AccessRead}, orgNow); err != nil {
				return Change{}, err
			}
			return st.DeleteRole("rep")
		}, wantErr{kind: "conflict", reason: ReasonRoleInUse, msg: "lead/L-1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := orgTenant(t)
			_, err := tt.fn(st)
			tt.want.check(t, err)
		})
	}
}

// TestOrgMutationFailureChangesNothing checks that a mutation refusing its
// input leaves the tenant as it was.
func TestOrgMutationFailureChangesNothing(t *testing.T) {
	fns := map[string]func(st *TenantState) (Change, error){
		"move into a cycle": func(st *TenantState) (Change, error) {
			return st.UpdateDepartment(Department{ID: "hq", Name: "Renamed", Parent: "east"})
		},
		"manager cycle": func(st *TenantState) (Change, error) {
			return st.SetMembership(Membership{UserID: "alice", Primary: "west", Others: []string{"support"}, Manager: "dave"})
		},
		"department in use": func(st *TenantState) (Change, error) { return st.DeleteDepartment("east") },
		"bad manager depth": func(st *TenantState) (Change, error) { return st.SetManagerDepth(99) },
		"expired share": func(st *TenantState) (Change, error) {
			return st.ShareRecord(RecordShare{Module: "lead", RecordID: "x", Principal: Principal{Kind: PrincipalUser, ID: "carol"}, Access: AccessRead, ExpiresAt: orgNow}, orgNow)
		},
		"rule of unknown role": func(st *TenantState) (Change, error) {
			return st.CreateSharingRule(SharingRule{ID: "x", Module: "lead", OwnedBy: Principal{Kind: PrincipalRole, ID: "rep"}, SharedWith: Principal{Kind: PrincipalRole, ID: "nope"}, Access: AccessRead})
		},
	}
	for name, fn := range fns {
		t.Run(name, func(t *testing.T) {
			st := orgTenant(t)
			if _, err := fn(st); err == nil {
				t.Fatal("mutation succeeded")
			}
			if want := orgTenant(t); !reflect.DeepEqual(st, want) {
				t.Errorf("a failed mutation changed the tenant:\n got %+v\nwant %+v", st, want)
			}
		})
	}
}

func TestOrgMutations(t *testing.T) {
	later := orgNow.Add(24 * time.Hour)
	tests := []struct {
		name   string
		fn     func(st *TenantState) (Change, error)
		action string
		target string
		before any
		after  any
		check  func(t *testing.T, st *TenantState)
	}{
		{
			name: "create top department",
			fn: func(st *TenantState) (Change, error) {
				return st.CreateDepartment(Department{ID: "finance", Name: "Finance 财务"})
			},
			action: "department.create", target: "department/finance",
			after: Department{ID: "finance", Name: "Finance 财务"},
		},
		{
			name: "rename and move department",
			fn: func(st *TenantState) (Change, error) {
				return st.UpdateDepartment(Department{ID: "west", Name: "West", Parent: "support"})
			},
			action: "department.update", target: "department/west",
			before: Department{ID: "west", Name: "Sales West", Parent: "sales"},
			after:  Department{ID: "west", Name: "West", Parent: "support"},
		},
		{
			name: "move department to the top",
			fn: func(st *TenantState) (Change, error) {
				return st.UpdateDepartment(Department{ID: "sales", Name: "Sales"})
			},
			action: "department.update", target: "department/sales",
			before: Department{ID: "sales", Name: "Sales", Parent: "hq"},
			after:  Department{ID: "sales", Name: "Sales"},
		},
		{
			name: "delete emptied department",
			fn: func(st *TenantState) (Change, error) {
				if _, err := st.SetMembership(Membership{UserID: "bob", Primary: "east", Manager: "alice"}); err != nil {
					return Change{}, err
				}
				return st.DeleteDepartment("support")
			},
			action: "department.delete", target: "department/support",
			before: Department{ID: "support", Name: "Support", Parent: "hq"},
			check: func(t *testing.T, st *TenantState) {
				if _, ok := st.Departments["support"]; ok {
					t.Error("support is still there")
				}
			},
		},
		{
			name: "new membership of a user known by grant",
			fn: func(st *TenantState) (Change, error) {
				return st.SetMembership(Membership{UserID: "erin", Primary: "west", Others: []string{}, Manager: "carol"})
			},
			action: "membership.create", target: "membership/erin",
			after: Membership{UserID: "erin", Primary: "west", Manager: "carol"},
		},
		{
			name: "replace membership",
			fn: func(st *TenantState) (Change, error) {
				return st.SetMembership(Membership{UserID: "dave", Primary: "east", Others: []string{"west", "support"}, Manager: "alice"})
			},
			action: "membership.update", target: "membership/dave",
			before: Membership{UserID: "dave", Primary: "west", Manager: "bob"},
			after:  Membership{UserID: "dave", Primary: "east", Others: []string{"west", "support"}, Manager: "alice"},
		},
		{
			name: "reverse a manager link",
			fn: func(st *TenantState) (Change, error) {
				return st.SetMembership(Membership{UserID: "alice", Primary: "east", Manager: "carol"})
			},
			action: "membership.update", target: "membership/alice",
			before: Membership{UserID: "alice", Primary: "east"},
			after:  Membership{UserID: "alice", Primary: "east", Manager: "carol"},
		},
		{
			name:   "delete membership",
			fn:     func(st *TenantState) (Change, error) { return st.DeleteMembership("alice") },
			action: "membership.delete", target: "membership/alice",
			before: Membership{UserID: "alice", Primary: "east"},
			check: func(t *testing.T, st *TenantState) {
				if st.Members["bob"].Manager != "alice" {
					t.Error("deleting alice's membership changed bob's manager link")
				}
				if !st.KnowsUser("alice") {
					t.Error("the tenant forgot alice with her membership")
				}
			},
		},
		{
			name:   "manager depth",
			fn:     func(st *TenantState) (Change, error) { return st.SetManagerDepth(0) },
			action: "settings.update", target: "settings",
			before: Settings{ManagerDepth: DefaultManagerDepth}, after: Settings{ManagerDepth: 0},
		},
		{
			name: "sharing rule",
			fn: func(st *TenantState) (Change, error) {
				return st.CreateSharingRule(SharingRule{ID: "carol_leads", Module: "lead", OwnedBy: Principal{Kind: PrincipalUser, ID: "carol"},
					SharedWith: Principal{Kind: PrincipalDepartment, ID: "sales", IncludeSubs: true}, Access: AccessReadWrite})
			},
			action: "sharing_rule.create", target: "sharing_rule/carol_leads",
			after: SharingRule{ID: "carol_leads", Module: "lead", OwnedBy: Principal{Kind: PrincipalUser, ID: "carol"},
				SharedWith: Principal{Kind: PrincipalDepartment, ID: "sales", IncludeSubs: true}, Access: AccessReadWrite},
		},
		{
			name:   "delete sharing rule",
			fn:     func(st *TenantState) (Change, error) { return st.DeleteSharingRule("east_to_viewers") },
			action: "sharing_rule.delete", target: "sharing_rule/east_to_viewers",
			before: SharingRule{ID: "east_to_viewers", Module: "account", OwnedBy: Principal{Kind: PrincipalDepartment, ID: "east", IncludeSubs: true},
				SharedWith: Principal{Kind: PrincipalRole, ID: "viewer"}, Access: AccessRead},
		},
		{
			name: "share with a user",
			fn: func(st *TenantState) (Change, error) {
				return st.ShareRecord(RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalUser, ID: "dave"}, Access: AccessRead, SharedBy: "alice"}, orgNow)
			},
			action: "record_share.create", target: "record_share/account/acc-1/user:dave",
			after: RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalUser, ID: "dave"}, Access: AccessRead, SharedBy: "alice"},
			check: func(t *testing.T, st *TenantState) {
				if n := len(st.RecordShares); n != 2 {
					t.Errorf("%d shares, want 2 (another principal adds a share)", n)
				}
			},
		},
		{
			name: "share again replaces",
			fn: func(st *TenantState) (Change, error) {
				return st.ShareRecord(RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"}, Access: AccessRead, ExpiresAt: later}, orgNow)
			},
			action: "record_share.update", target: "record_share/account/acc-1/department:west",
			before: RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"}, Access: AccessReadWrite, ExpiresAt: orgNow.Add(time.Hour)},
			after:  RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"}, Access: AccessRead, ExpiresAt: later},
			check: func(t *testing.T, st *TenantState) {
				if n := len(st.RecordShares); n != 1 {
					t.Errorf("%d shares, want 1", n)
				}
			},
		},
		{
			name: "share with sub-departments is another share",
			fn: func(st *TenantState) (Change, error) {
				return st.ShareRecord(RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west", IncludeSubs: true}, Access: AccessRead}, orgNow)
			},
			action: "record_share.create", target: "record_share/account/acc-1/department:west+subs",
			after: RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west", IncludeSubs: true}, Access: AccessRead},
		},
		{
			name: "unshare",
			fn: func(st *TenantState) (Change, error) {
				return st.UnshareRecord(ShareKey{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"}})
			},
			action: "record_share.delete", target: "record_share/account/acc-1/department:west",
			before: RecordShare{Module: "account", RecordID: "acc-1", Principal: Principal{Kind: PrincipalDepartment, ID: "west"}, Access: AccessReadWrite, ExpiresAt: orgNow.Add(time.Hour)},
			check: func(t *testing.T, st *TenantState) {
				if len(st.RecordShares) != 0 {
					t.Error("the share is still there")
				}
				if _, err := st.DeleteDepartment("west"); err == nil || !strings.Contains(err.Error(), `user "dave"`) {
					t.Errorf("deleting west after the unshare: %v, want refused for dave's membership only", err)
				}
			},
		},
		{
			name: "delete role once its rule is gone",
			fn: func(st *TenantState) (Change, error) {
				if _, err := st.DeleteSharingRule("east_to_viewers"); err != nil {
					return Change{}, err
				}
				if _, err := st.RevokeRole("carol", "viewer"); err != nil {
					return Change{}, err
				}
				return st.DeleteRole("viewer")
			},
			action: "role.delete", target: "role/viewer", before: Role{ID: "viewer"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := orgTenant(t)
			c, err := tt.fn(st)
			if err != nil {
				t.Fatal(err)
			}
			if c.Action != tt.action || c.Target != tt.target {
				t.Errorf("change %s %s, want %s %s", c.Action, c.Target, tt.action, tt.target)
			}
			if !reflect.DeepEqual(c.Before, tt.before) || !reflect.DeepEqual(c.After, tt.after) {
				t.Errorf("change before/after = %+v / %+v, want %+v / %+v", c.Before, c.After, tt.before, tt.after)
			}
			if tt.check != nil {
				tt.check(t, st)
			}
		})
	}
}

// TestMembershipIsPrivate checks that the stored membership does not share
// its slice with the caller's.
func TestMembershipIsPrivate(t *testing.T) {
	st := orgTenant(t)
	others := []string{"west"}
	if _, err := st.SetMembership(Membership{UserID: "erin", Primary: "east", Others: others}); err != nil {
		t.Fatal(err)
	}
	others[0] = "support"
	if got := st.Members["erin"].Others[0]; got != "west" {
		t.Errorf("stored membership changed with the caller's slice: %q", got)
	}
}

func TestSortedOrgData(t *testing.T) {
	st := orgTenant(t)
	var ids []string
	for _, d := range st.SortedDepartments() {
		ids = append(ids, d.ID)
	}
	if want := []string{"east", "hq", "sales", "support", "west"}; !reflect.DeepEqual(ids, want) {
		t.Errorf("SortedDepartments = %q, want %q", ids, want)
	}
	for _, p := range []Principal{
		{Kind: PrincipalUser, ID: "carol"}, {Kind: PrincipalDepartment, ID: "west", IncludeSubs: true}, {Kind: PrincipalRole, ID: "rep"},
	} {
		if _, err := st.ShareRecord(RecordShare{Module: "account", RecordID: "acc-1", Principal: p, Access: AccessRead}, orgNow); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, sh := range st.SortedRecordShares() {
		got = append(got, sh.Principal.String())
	}
	if want := []string{"department:west", "department:west+subs", "role:rep", "user:carol"}; !reflect.DeepEqual(got, want) {
		t.Errorf("SortedRecordShares principals = %q, want %q", got, want)
	}
}
