package model

import (
	"reflect"
	"testing"
	"time"
)

func journalTenant(t *testing.T) *TenantState {
	t.Helper()
	st := NewTenantState("t", "T")
	for _, r := range []Role{{ID: "admin", Permissions: Permissions{Functions: []string{"admin.super"}}}, {ID: "rep"}} {
		if _, err := st.CreateRole(r); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range []string{"ann", "bob"} {
		if _, err := st.UpsertUser(User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GrantRole(Grant{UserID: "ann", RoleID: "admin"}, time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateDepartment(Department{ID: "d", Name: "D"}); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestJournal runs writes under a journal: the delta names each changed
// row once, the partial state holds what they were, Rollback restores the
// state exactly, and AtBase shows the state before the write and puts the
// write back.
func TestJournal(t *testing.T) {
	now := time.Now()
	st := journalTenant(t)
	want := st.Clone()
	st.Begin()
	if _, err := st.GrantRole(Grant{UserID: "bob", RoleID: "rep"}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GrantRole(Grant{UserID: "bob", RoleID: "rep", ExpiresAt: now.Add(time.Hour)}, now); err != nil {
		t.Fatal(err)
	}
	if _, err := st.RevokeRole("ann", "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetMembership(Membership{UserID: "bob", Primary: "d"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.SetManagerDepth(5); err != nil {
		t.Fatal(err)
	}
	d, before := st.Delta()
	wantDelta := Delta{Settings: true, Grants: []GrantKey{{"ann", "admin"}, {"bob", "rep"}}, Members: []string{"bob"}}
	if !reflect.DeepEqual(d, wantDelta) {
		t.Fatalf("delta %+v, want %+v", d, wantDelta)
	}
	if _, ok := before.Grants[GrantKey{"ann", "admin"}]; !ok || len(before.Grants) != 1 || len(before.Members) != 0 {
		t.Fatalf("before holds %v and %v; want ann's admin grant alone", before.Grants, before.Members)
	}
	if st.Unjournaled() {
		t.Fatal("journaled writes reported as unjournaled")
	}
	if !st.MayLoseHolder("admin.super", now) {
		t.Fatal("revoking the only admin grant may lose admin.super's holder, and was not reported")
	}
	st.AtBase(func() {
		if !reflect.DeepEqual(st.Grants, want.Grants) || !st.Settings.Equal(want.Settings) || len(st.Members) != 0 {
			t.Errorf("AtBase shows grants %v, settings %v, members %v", st.Grants, st.Settings, st.Members)
		}
	})
	if _, ok := st.Grants[GrantKey{"bob", "rep"}]; !ok || st.Settings.ManagerDepth != 5 || len(st.Members) != 1 {
		t.Fatal("AtBase did not put the write back")
	}
	// A second look at the delta sees the same.
	if d2, _ := st.Delta(); !reflect.DeepEqual(d2, wantDelta) {
		t.Fatalf("second delta %+v", d2)
	}
	st.Rollback()
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("after Rollback\n got %+v\nwant %+v", st, want)
	}

	// Rows put in behind the journal's back are noticed; SetRow is not.
	st.Begin()
	st.Departments["x"] = Department{ID: "x"}
	if !st.Unjournaled() {
		t.Fatal("a row added behind the journal went unnoticed")
	}
	st.Rollback()
	delete(st.Departments, "x")
	st.Begin()
	SetRow(st, st.Departments, "x", &Department{ID: "x"})
	if st.Unjournaled() {
		t.Fatal("a row put with SetRow was reported as unjournaled")
	}
	if d, _ := st.Delta(); !reflect.DeepEqual(d.Departments, []string{"x"}) {
		t.Fatalf("delta of SetRow: %+v", d)
	}
	st.Commit()

	// A grant of a role that denies the function may lose its holder.
	st.Begin()
	if _, err := st.CreateRole(Role{ID: "narrow", Permissions: Permissions{DenyFunctions: []string{"admin.super"}}}); err != nil {
		t.Fatal(err)
	}
	st.Commit()
	st.Begin()
	if _, err := st.GrantRole(Grant{UserID: "bob", RoleID: "narrow"}, now); err != nil {
		t.Fatal(err)
	}
	if !st.MayLoseHolder("admin.super", now) {
		t.Fatal("a grant of a role denying admin.super was not reported as able to lose a holder")
	}
	st.Rollback()

	// A grant that leaves a holder holding cannot lose one.
	st.Begin()
	if _, err := st.GrantRole(Grant{UserID: "bob", RoleID: "admin"}, now); err != nil {
		t.Fatal(err)
	}
	if st.MayLoseHolder("admin.super", now) {
		t.Fatal("a new grant reported as able to lose a holder")
	}
	st.Commit()

	// Maps replaced wholesale: the delta says so, and the partial state is
	// the state as it was.
	base := st.Clone()
	st.Begin()
	if _, err := st.RevokeRole("bob", "admin"); err != nil {
		t.Fatal(err)
	}
	st.Grants = map[GrantKey]Grant{}
	d, before = st.Delta()
	if !d.Whole || !reflect.DeepEqual(before.Grants, base.Grants) {
		t.Fatalf("whole write: delta %+v, before grants %v, want %v", d, before.Grants, base.Grants)
	}
	st.Rollback()
	if !reflect.DeepEqual(st, base) {
		t.Fatal("Rollback of a whole write did not restore the state")
	}
}
