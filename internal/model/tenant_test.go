package model

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestGrantExpiryBeyondEngineRange: the engine judges expiry in Unix
// nanoseconds, which end in April 2262. A later expiry (such as the common
// "forever" 9999-12-31) wraps to a date in the past there, so the grant
// would be expired in the engine while the Casbin export, which compares
// times, keeps it active. GrantRole must refuse it and change nothing.
func TestGrantExpiryBeyondEngineRange(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	st := NewTenantState("acme", "")
	if _, err := st.CreateRole(Role{ID: "viewer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpsertUser(User{ID: "alice"}); err != nil {
		t.Fatal(err)
	}
	for _, exp := range []time.Time{
		time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC),
		time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC),
		MaxExpiry.Add(time.Nanosecond),
	} {
		before := st.Clone()
		_, err := st.GrantRole(Grant{UserID: "alice", RoleID: "viewer", ExpiresAt: exp}, now)
		wantErr{kind: "invalid", reason: ReasonInvalidValue, field: "expires_at"}.check(t, err)
		if !reflect.DeepEqual(st, before) {
			t.Fatalf("a refused grant expiring at %s changed the tenant", exp)
		}
	}
	// The last representable instant is accepted and stays in range.
	if _, err := st.GrantRole(Grant{UserID: "alice", RoleID: "viewer", ExpiresAt: MaxExpiry}, now); err != nil {
		t.Fatalf("grant expiring at MaxExpiry: %v", err)
	}
	if got := st.Grants[GrantKey{"alice", "viewer"}].ExpiresAt; got.UnixNano() <= now.UnixNano() || !got.Equal(time.Unix(0, got.UnixNano())) {
		t.Fatalf("expiry %s does not survive Unix nanoseconds", got)
	}
}

// TestTenantLimits fills a tenant to each of its limits and tries one
// more: the write is refused with a LimitError naming the limit and
// changes nothing, while replacing what the tenant holds still works.
func TestTenantLimits(t *testing.T) {
	now := time.Now()
	fill := func(n int, put func(st *TenantState, i int)) *TenantState {
		st := NewTenantState("acme", "")
		st.Roles["r"] = Role{ID: "r"}
		st.Users["u"] = User{ID: "u", Status: UserActive}
		st.Departments["d"] = Department{ID: "d", Name: "D"}
		for i := range n {
			put(st, i)
		}
		return st
	}
	share := func(i int) RecordShare {
		return RecordShare{Module: "lead", RecordID: fmt.Sprintf("L-%d", i), Principal: Principal{Kind: PrincipalUser, ID: "u"}, Access: AccessRead}
	}
	for _, tc := range []struct {
		what     string
		max      int
		put      func(st *TenantState, i int)
		more     func(st *TenantState) (Change, error)
		replaced func(st *TenantState) (Change, error)
	}{
		{"roles", MaxTenantRoles - 1, func(st *TenantState, i int) { id := fmt.Sprintf("r%d", i); st.Roles[id] = Role{ID: id} },
			func(st *TenantState) (Change, error) { return st.CreateRole(Role{ID: "one_more"}) },
			func(st *TenantState) (Change, error) {
				return st.ReplaceRole(Role{ID: "r0", Permissions: Permissions{Functions: []string{"report.view"}}})
			}},
		{"users", MaxTenantUsers - 1, func(st *TenantState, i int) {
			id := fmt.Sprintf("u%d", i)
			st.Users[id] = User{ID: id, Status: UserActive}
		},
			func(st *TenantState) (Change, error) { return st.UpsertUser(User{ID: "one_more"}) },
			func(st *TenantState) (Change, error) { return st.UpsertUser(User{ID: "u0", Name: "Renamed"}) }},
		{"grants", MaxTenantGrants, func(st *TenantState, i int) {
			st.Grants[GrantKey{fmt.Sprintf("g%d", i), "r"}] = Grant{UserID: fmt.Sprintf("g%d", i), RoleID: "r"}
		},
			func(st *TenantState) (Change, error) { return st.GrantRole(Grant{UserID: "u", RoleID: "r"}, now) },
			func(st *TenantState) (Change, error) {
				st.Users["g0"] = User{ID: "g0", Status: UserActive}
				return st.GrantRole(Grant{UserID: "g0", RoleID: "r", ExpiresAt: now.Add(time.Hour)}, now)
			}},
		{"departments", MaxTenantDepartments - 1, func(st *TenantState, i int) {
			id := fmt.Sprintf("d%d", i)
			st.Departments[id] = Department{ID: id, Name: "D"}
		},
			func(st *TenantState) (Change, error) {
				return st.CreateDepartment(Department{ID: "one_more", Name: "D"})
			},
			func(st *TenantState) (Change, error) {
				return st.UpdateDepartment(Department{ID: "d0", Name: "Renamed"})
			}},
		{"sharing rules", MaxTenantSharingRules, func(st *TenantState, i int) {
			id := fmt.Sprintf("s%d", i)
			st.SharingRules[id] = SharingRule{ID: id, Module: "lead", OwnedBy: Principal{Kind: PrincipalUser, ID: "u"}, SharedWith: Principal{Kind: PrincipalUser, ID: "u"}, Access: AccessRead}
		},
			func(st *TenantState) (Change, error) {
				return st.CreateSharingRule(SharingRule{ID: "one_more", Module: "lead", OwnedBy: Principal{Kind: PrincipalUser, ID: "u"},
					SharedWith: Principal{Kind: PrincipalDepartment, ID: "d"}, Access: AccessRead})
			},
			func(st *TenantState) (Change, error) { return st.DeleteSharingRule("s0") }},
		{"record shares", MaxTenantRecordShares, func(st *TenantState, i int) { sh := share(i); st.RecordShares[sh.Key()] = sh },
			func(st *TenantState) (Change, error) { return st.ShareRecord(share(-1), now) },
			func(st *TenantState) (Change, error) {
				sh := share(0)
				sh.Access = AccessReadWrite
				return st.ShareRecord(sh, now)
			}},
	} {
		t.Run(tc.what, func(t *testing.T) {
			st := fill(tc.max, tc.put)
			before := st.Clone()
			_, err := tc.more(st)
			var limit *LimitError
			if !errors.As(err, &limit) || limit.What != tc.what || !strings.Contains(err.Error(), "the most a tenant may") {
				t.Fatalf("one more of %s: %v; want a LimitError on %s", tc.what, err, tc.what)
			}
			if !reflect.DeepEqual(st, before) {
				t.Fatal("a refused write changed the tenant")
			}
			if _, err := tc.replaced(st); err != nil {
				t.Fatalf("replacing at the limit: %v", err)
			}
		})
	}
}
