package model

import (
	"fmt"
	"reflect"
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

// TestRoleCountBounded: the engine numbers a tenant's roles in 16 bits and
// refuses to load a tenant with more than MaxRoles; the model must refuse
// the role that would pass that bound rather than store a tenant no replica
// can load.
func TestRoleCountBounded(t *testing.T) {
	st := NewTenantState("acme", "")
	for i := range MaxRoles {
		id := fmt.Sprintf("r%d", i)
		st.Roles[id] = Role{ID: id}
	}
	before := st.Clone()
	_, err := st.CreateRole(Role{ID: "one_more"})
	wantErr{kind: "conflict", reason: ReasonTooMany}.check(t, err)
	if !reflect.DeepEqual(st, before) {
		t.Fatal("a refused role changed the tenant")
	}
	// Replacing an existing role is no new role.
	if _, err := st.ReplaceRole(Role{ID: "r0", Permissions: Permissions{Functions: []string{"report.view"}}}); err != nil {
		t.Fatalf("replace at the bound: %v", err)
	}
}
