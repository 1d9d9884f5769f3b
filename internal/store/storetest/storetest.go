// Package storetest is the conformance suite of store.Store: every store
// implementation runs it from its own tests, so that the embedded memory
// store and PostgreSQL behave the same. A new store method gets its test
// here first.
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// Run runs the suite. open returns a new, empty store; it is called once
// per subtest, from subtests that run in parallel. The store must take its
// change-log times from the real clock. open should close the store when t
// ends (t.Cleanup); Close may then be called twice.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"CreateAndLoad", testCreateAndLoad},
		{"CreateTenantLogsItsOwnID", testCreateTenantLogsItsOwnID},
		{"DuplicateTenant", testDuplicateTenant},
		{"ConcurrentCreate", testConcurrentCreate},
		{"UnknownTenant", testUnknownTenant},
		{"TenantIDsSorted", testTenantIDsSorted},
		{"Update", testUpdate},
		{"FailingMutation", testFailingMutation},
		{"PanickingMutation", testPanickingMutation},
		{"ChangesPagination", testChangesPagination},
		{"TenantIsolation", testTenantIsolation},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Closed", testClosed},
		{"Credentials", testCredentials},
		{"CredentialsPaging", testCredentialsPaging},
		{"ChangeRecordsCredential", testChangeRecordsCredential},
		{"TenantsAndDelete", testTenantsAndDelete},
		{"AccessRequests", testAccessRequests},
		{"AccessReviews", testAccessReviews},
		{"History", testHistory},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.run(t, open(t))
		})
	}
}

// Times with nanoseconds and a zone other than UTC: stores keep at least
// microseconds and may return times in UTC.
var (
	grantedAt = time.Date(2025, 3, 4, 5, 6, 7, 123456789, time.UTC)
	expiresAt = time.Date(2099, 12, 31, 23, 59, 59, 987654321, time.FixedZone("CST", 8*3600))
)

// sampleTenant returns a tenant at revision 0 holding every kind of
// permission, an inheriting role, grants with and without expiry, a
// department tree, memberships with other departments and a manager, a
// manager depth other than the default, a sharing rule, and record shares
// with and without expiry.
func sampleTenant(t *testing.T, id string) *model.TenantState {
	t.Helper()
	st := model.NewTenantState(id, "Tenant "+id)
	viewer := model.Role{
		ID:          "viewer",
		DisplayName: "Viewer",
		Permissions: model.Permissions{
			Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}}},
			Fields:  []model.FieldRule{{Module: "account", Field: "annual_revenue", State: model.FieldHidden}},
		},
	}
	salesRep := model.Role{
		ID:          "sales_rep",
		DisplayName: "Sales representative",
		Description: "Works the accounts and opportunities they own.",
		Template:    "sales_rep",
		Inherits:    []string{"viewer"},
		Permissions: model.Permissions{
			Modules: []model.ModuleGrant{
				{Module: "opportunity", Verbs: []string{"read", "create", "update"}},
				{Module: "contact", Verbs: []string{"read"}},
			},
			Fields: []model.FieldRule{
				{Module: "opportunity", Field: "amount", State: model.FieldReadWrite},
				{Module: "contact", Field: "phone", State: model.FieldReadOnly},
			},
			Functions:     []string{"report.export", "lead.import"},
			DenyModules:   []model.ModuleGrant{{Module: "contract", Verbs: []string{"delete"}}},
			DenyFunctions: []string{"data.bulk_delete"},
		},
	}
	mustChange(t)(st.CreateRole(viewer))
	mustChange(t)(st.CreateRole(salesRep))
	// Every user the tests name; one is offboarded.
	for _, u := range []model.User{{ID: "alice", Name: "Alice 王"}, {ID: "bob@example.com", Name: "Bob"}, {ID: "carol"}, {ID: "dave"},
		{ID: "zoe"}, {ID: "ex_employee", Name: "Left in 2025", Status: model.UserInactive}} {
		mustChange(t)(st.UpsertUser(u))
	}
	now := time.Now()
	mustChange(t)(st.GrantRole(model.Grant{UserID: "alice", RoleID: "sales_rep", GrantedBy: "admin", GrantedAt: grantedAt}, now))
	mustChange(t)(st.GrantRole(model.Grant{UserID: "bob@example.com", RoleID: "viewer", ExpiresAt: expiresAt, GrantedBy: "admin", GrantedAt: grantedAt}, now))

	// Parents come first, as admin writes must create them; the ids sort
	// differently from the tree, so a store cannot rely on id order.
	mustChange(t)(st.CreateDepartment(model.Department{ID: "z_hq", Name: "Head office 总部"}))
	mustChange(t)(st.CreateDepartment(model.Department{ID: "sales", Name: "Sales", Parent: "z_hq"}))
	mustChange(t)(st.CreateDepartment(model.Department{ID: "east", Name: "Sales East", Parent: "sales"}))
	mustChange(t)(st.CreateDepartment(model.Department{ID: "service", Name: "Service", Parent: "z_hq"}))
	mustChange(t)(st.SetMembership(model.Membership{UserID: "bob@example.com", Primary: "sales"}))
	mustChange(t)(st.SetMembership(model.Membership{UserID: "alice", Primary: "east", Others: []string{"service", "z_hq"}, Manager: "bob@example.com"}))
	mustChange(t)(st.SetManagerDepth(3))
	mustChange(t)(st.SetActionAlias("can_read_account", "account.read"))
	mustChange(t)(st.SetActionAlias("can_export", "report.export"))
	mustChange(t)(st.CreateSharingRule(model.SharingRule{
		ID: "east_accounts", Module: "account",
		OwnedBy:    model.Principal{Kind: model.PrincipalDepartment, ID: "east", IncludeSubs: true},
		SharedWith: model.Principal{Kind: model.PrincipalRole, ID: "viewer"}, Access: model.AccessRead,
	}))
	mustChange(t)(st.ShareRecord(model.RecordShare{
		Module: "opportunity", RecordID: "opp-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "alice"},
		Access: model.AccessReadWrite, ExpiresAt: expiresAt, SharedBy: "admin", SharedAt: grantedAt,
	}, now))
	mustChange(t)(st.ShareRecord(model.RecordShare{
		Module: "opportunity", RecordID: "opp-1", Principal: model.Principal{Kind: model.PrincipalDepartment, ID: "sales", IncludeSubs: true},
		Access: model.AccessRead, SharedBy: "admin",
	}, now))
	return st
}

func testCreateAndLoad(t *testing.T, s store.Store) {
	ctx := t.Context()
	in := sampleTenant(t, "acme")
	w := store.Write{Tenant: "acme", Actor: "admin", Reason: "onboarding"}
	before := time.Now()
	created, err := s.CreateTenant(ctx, w, in)
	if err != nil {
		t.Fatalf("CreateTenant: %v", err)
	}
	if in.Revision != 0 {
		t.Errorf("CreateTenant changed its argument's revision to %d", in.Revision)
	}
	want := in.Clone()
	want.Revision = 1
	assertState(t, "CreateTenant result", created, want)

	loaded, err := s.Tenant(ctx, "acme")
	if err != nil {
		t.Fatalf("Tenant: %v", err)
	}
	assertState(t, "Tenant", loaded, want)

	ids, err := s.TenantIDs(ctx)
	if err != nil {
		t.Fatalf("TenantIDs: %v", err)
	}
	if !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("TenantIDs = %q, want [acme]", ids)
	}

	changes := changesOf(t, s, "acme")
	if len(changes) != 1 {
		t.Fatalf("change log has %d entries, want 1", len(changes))
	}
	wantEntry := store.ChangeEntry{
		Tenant: "acme", Revision: 1, Actor: "admin", Reason: "onboarding", Action: "tenant.create", Target: "tenant/acme",
		After: jsonOf(t, store.TenantSummary(want)),
	}
	assertEntry(t, changes[0], wantEntry, before)
}

// testCreateTenantLogsItsOwnID checks that a created tenant's change-log
// entry names the tenant created, whatever tenant the Write names.
func testCreateTenantLogsItsOwnID(t *testing.T, s store.Store) {
	for _, w := range []store.Write{{Actor: "admin"}, {Tenant: "other", Actor: "admin"}} {
		id := "acme" + w.Tenant
		if _, err := s.CreateTenant(t.Context(), w, model.NewTenantState(id, "")); err != nil {
			t.Fatalf("CreateTenant(%q): %v", id, err)
		}
		changes := changesOf(t, s, id)
		if len(changes) != 1 {
			t.Fatalf("change log of %q has %d entries, want 1", id, len(changes))
		}
		if e := changes[0]; e.Tenant != id || e.Target != "tenant/"+id {
			t.Errorf("tenant %q created with Write.Tenant %q: entry of tenant %q on %q, want tenant %q on tenant/%s",
				id, w.Tenant, e.Tenant, e.Target, id, id)
		}
	}
}

func testDuplicateTenant(t *testing.T, s store.Store) {
	ctx := t.Context()
	createSample(t, s, "acme")
	other := model.NewTenantState("acme", "Another Acme")
	_, err := s.CreateTenant(ctx, store.Write{Tenant: "acme", Actor: "mallory"}, other)
	assertTenantExists(t, err)

	want := sampleTenant(t, "acme")
	want.Revision = 1
	assertState(t, "Tenant after a duplicate create", mustTenant(t, s, "acme"), want)
	if n := len(changesOf(t, s, "acme")); n != 1 {
		t.Errorf("change log has %d entries after a duplicate create, want 1", n)
	}
}

// testConcurrentCreate races creators of one tenant: exactly one wins.
func testConcurrentCreate(t *testing.T, s store.Store) {
	const creators = 8
	errs := make([]error, creators)
	var wg sync.WaitGroup
	for i := range creators {
		wg.Go(func() {
			st := model.NewTenantState("acme", fmt.Sprintf("Acme %d", i))
			_, errs[i] = s.CreateTenant(t.Context(), store.Write{Tenant: "acme", Actor: "admin"}, st)
		})
	}
	wg.Wait()
	won := 0
	for _, err := range errs {
		if err == nil {
			won++
			continue
		}
		assertTenantExists(t, err)
	}
	if won != 1 {
		t.Errorf("%d creators of one tenant succeeded, want 1", won)
	}
	if n := len(changesOf(t, s, "acme")); n != 1 {
		t.Errorf("change log has %d entries, want 1", n)
	}
}

func testUnknownTenant(t *testing.T, s store.Store) {
	ctx := t.Context()
	createSample(t, s, "acme")
	tests := []struct {
		name string
		call func() error
	}{
		{"Tenant", func() error { _, err := s.Tenant(ctx, "nope"); return err }},
		{"Update", func() error {
			_, err := s.Update(ctx, store.Write{Tenant: "nope", Actor: "admin"}, func(*model.TenantState) (model.Change, error) {
				t.Error("mutation of an unknown tenant was called")
				return model.Change{Action: "noop"}, nil
			})
			return err
		}},
		{"Changes", func() error { _, err := s.Changes(ctx, "nope", 0, 10); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, model.ErrTenantNotFound) {
				t.Fatalf("err = %v, want one matching model.ErrTenantNotFound", err)
			}
			var nf *model.NotFoundError
			if !errors.As(err, &nf) || nf.Reason != model.ReasonTenantNotFound {
				t.Errorf("err = %#v, want a *model.NotFoundError with reason %s", err, model.ReasonTenantNotFound)
			}
		})
	}
	if ids, _ := s.TenantIDs(ctx); !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("TenantIDs = %q after calls on an unknown tenant, want [acme]", ids)
	}
}

// testTenantIDsSorted checks the byte order of ids, which differs from the
// order of most natural-language collations.
func testTenantIDsSorted(t *testing.T, s store.Store) {
	want := []string{"a-b", "a1", "a_b", "ab", "b", "b-"}
	for _, i := range []int{3, 5, 0, 2, 4, 1} {
		if _, err := s.CreateTenant(t.Context(), store.Write{Tenant: want[i], Actor: "admin"}, model.NewTenantState(want[i], "")); err != nil {
			t.Fatalf("CreateTenant(%q): %v", want[i], err)
		}
	}
	ids, err := s.TenantIDs(t.Context())
	if err != nil {
		t.Fatalf("TenantIDs: %v", err)
	}
	if !slices.Equal(ids, want) {
		t.Errorf("TenantIDs = %q, want %q", ids, want)
	}
}

// testUpdate runs a sequence of writes, each checked against the same
// mutation applied to a private copy of the state.
func testUpdate(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	later := time.Now().Add(30 * 24 * time.Hour)
	auditor := model.Role{
		ID: "auditor", DisplayName: "Auditor", Inherits: []string{"viewer", "sales_rep"},
		Permissions: model.Permissions{Functions: []string{"audit.view"}},
	}
	tests := []struct {
		name   string
		fn     store.Mutation
		action string
		target string
	}{
		{"create user", func(st *model.TenantState) (model.Change, error) {
			return st.UpsertUser(model.User{ID: "erin", Name: "Erin 刘"})
		}, "user.create", "user/erin"},
		{"rename user", func(st *model.TenantState) (model.Change, error) {
			return st.UpsertUser(model.User{ID: "erin", Name: "Erin Liu"})
		}, "user.update", "user/erin"},
		{"deactivate user", func(st *model.TenantState) (model.Change, error) { return st.SetUserStatus("erin", model.UserInactive) },
			"user.deactivate", "user/erin"},
		{"reactivate user", func(st *model.TenantState) (model.Change, error) { return st.SetUserStatus("erin", model.UserActive) },
			"user.reactivate", "user/erin"},
		{"create role", func(st *model.TenantState) (model.Change, error) { return st.CreateRole(auditor) },
			"role.create", "role/auditor"},
		{"replace role", func(st *model.TenantState) (model.Change, error) {
			r := auditor
			r.Description = "Reads everything, changes nothing."
			r.Inherits = []string{"viewer"}
			return st.ReplaceRole(r)
		}, "role.update", "role/auditor"},
		{"grant without expiry", func(st *model.TenantState) (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: "carol", RoleID: "auditor", GrantedBy: "admin", GrantedAt: grantedAt}, time.Now())
		}, "grant.create", "grant/carol/auditor"},
		{"grant with expiry", func(st *model.TenantState) (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: "dave", RoleID: "viewer", ExpiresAt: later, GrantedBy: "admin", GrantedAt: grantedAt}, time.Now())
		}, "grant.create", "grant/dave/viewer"},
		{"grant again changes expiry", func(st *model.TenantState) (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: "carol", RoleID: "auditor", ExpiresAt: later, GrantedBy: "root", GrantedAt: grantedAt.Add(time.Hour)}, time.Now())
		}, "grant.update", "grant/carol/auditor"},
		{"revoke", func(st *model.TenantState) (model.Change, error) { return st.RevokeRole("carol", "auditor") },
			"grant.revoke", "grant/carol/auditor"},
		{"delete role", func(st *model.TenantState) (model.Change, error) { return st.DeleteRole("auditor") },
			"role.delete", "role/auditor"},
		{"create department", func(st *model.TenantState) (model.Change, error) {
			return st.CreateDepartment(model.Department{ID: "west", Name: "Sales West", Parent: "sales"})
		}, "department.create", "department/west"},
		{"move and rename department", func(st *model.TenantState) (model.Change, error) {
			return st.UpdateDepartment(model.Department{ID: "west", Name: "West", Parent: "service"})
		}, "department.update", "department/west"},
		{"move department to the top", func(st *model.TenantState) (model.Change, error) {
			return st.UpdateDepartment(model.Department{ID: "service", Name: "Service"})
		}, "department.update", "department/service"},
		{"new membership", func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "dave", Primary: "west", Others: []string{"east"}, Manager: "alice"})
		}, "membership.create", "membership/dave"},
		{"replace membership", func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "alice", Primary: "west"})
		}, "membership.update", "membership/alice"},
		{"manager depth", func(st *model.TenantState) (model.Change, error) { return st.SetManagerDepth(0) },
			"settings.update", "settings"},
		{"add action alias", func(st *model.TenantState) (model.Change, error) {
			return st.SetActionAlias("can_update", "account.update")
		},
			"action_alias.set", "action_alias/can_update"},
		{"repoint action alias", func(st *model.TenantState) (model.Change, error) {
			return st.SetActionAlias("can_read_account", "lead.read")
		},
			"action_alias.set", "action_alias/can_read_account"},
		{"delete action alias", func(st *model.TenantState) (model.Change, error) { return st.DeleteActionAlias("can_export") },
			"action_alias.delete", "action_alias/can_export"},
		{"create sharing rule", func(st *model.TenantState) (model.Change, error) {
			return st.CreateSharingRule(model.SharingRule{
				ID: "dave_leads", Module: "lead", OwnedBy: model.Principal{Kind: model.PrincipalUser, ID: "dave"},
				SharedWith: model.Principal{Kind: model.PrincipalDepartment, ID: "west"}, Access: model.AccessReadWrite,
			})
		}, "sharing_rule.create", "sharing_rule/dave_leads"},
		{"share record", func(st *model.TenantState) (model.Change, error) {
			return st.ShareRecord(model.RecordShare{
				Module: "lead", RecordID: "L-9", Principal: model.Principal{Kind: model.PrincipalRole, ID: "viewer"},
				Access: model.AccessRead, ExpiresAt: expiresAt, SharedBy: "admin", SharedAt: grantedAt,
			}, time.Now())
		}, "record_share.create", "record_share/lead/L-9/role:viewer"},
		{"share record again", func(st *model.TenantState) (model.Change, error) {
			return st.ShareRecord(model.RecordShare{
				Module: "lead", RecordID: "L-9", Principal: model.Principal{Kind: model.PrincipalRole, ID: "viewer"},
				Access: model.AccessReadWrite, SharedBy: "root", SharedAt: grantedAt.Add(time.Minute),
			}, time.Now())
		}, "record_share.update", "record_share/lead/L-9/role:viewer"},
		{"unshare record", func(st *model.TenantState) (model.Change, error) {
			return st.UnshareRecord(model.ShareKey{Module: "opportunity", RecordID: "opp-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "alice"}})
		}, "record_share.delete", "record_share/opportunity/opp-1/user:alice"},
		{"delete sharing rule", func(st *model.TenantState) (model.Change, error) { return st.DeleteSharingRule("dave_leads") },
			"sharing_rule.delete", "sharing_rule/dave_leads"},
		{"delete membership", func(st *model.TenantState) (model.Change, error) { return st.DeleteMembership("dave") },
			"membership.delete", "membership/dave"},
		{"move member out", func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "alice", Primary: "east"})
		}, "membership.update", "membership/alice"},
		{"delete department", func(st *model.TenantState) (model.Change, error) { return st.DeleteDepartment("west") },
			"department.delete", "department/west"},
		{"rename tenant", func(st *model.TenantState) (model.Change, error) {
			before := st.Name
			st.Name = "Acme Renamed"
			return model.Change{Action: "tenant.update", Target: "tenant/acme", Before: before, After: st.Name}, nil
		}, "tenant.update", "tenant/acme"},
	}
	for i, tt := range tests {
		// The steps build on each other, so they run in order and stop at the
		// first failure.
		ok := t.Run(tt.name, func(t *testing.T) {
			ctx := t.Context()
			cur := mustTenant(t, s, "acme")
			if cur.Revision != int64(i+1) {
				t.Fatalf("revision before the write = %d, want %d", cur.Revision, i+1)
			}
			// The expected outcome: the same mutation on a private copy.
			want := cur.Clone()
			wantChange, err := tt.fn(want)
			if err != nil {
				t.Fatalf("mutation on a copy: %v", err)
			}
			want.Revision = cur.Revision + 1

			var got *model.TenantState
			w := store.Write{Tenant: "acme", Actor: "admin", Reason: "step " + tt.name, Applied: func(st *model.TenantState, _ model.Delta) error {
				got = st.Clone()
				return nil
			}}
			before := time.Now()
			rev, err := s.Update(ctx, w, func(st *model.TenantState) (model.Change, error) {
				if st.Revision != cur.Revision {
					t.Errorf("mutation saw revision %d, want %d", st.Revision, cur.Revision)
				}
				return tt.fn(st)
			})
			if err != nil {
				t.Fatalf("Update: %v", err)
			}
			if rev != want.Revision {
				t.Errorf("Update returned revision %d, want %d", rev, want.Revision)
			}
			assertState(t, "state Applied saw", got, want)
			assertState(t, "Tenant after Update", mustTenant(t, s, "acme"), want)

			changes, err := s.Changes(ctx, "acme", cur.Revision, 100)
			if err != nil {
				t.Fatalf("Changes: %v", err)
			}
			if len(changes) != 1 {
				t.Fatalf("Update appended %d change entries, want 1", len(changes))
			}
			assertEntry(t, changes[0], store.ChangeEntry{
				Tenant: "acme", Revision: want.Revision, Actor: "admin", Reason: w.Reason,
				Action: tt.action, Target: tt.target,
				Before: jsonOf(t, wantChange.Before), After: jsonOf(t, wantChange.After),
			}, before)
		})
		if !ok {
			return
		}
	}
}

// testFailingMutation checks that a mutation's error comes back as is and
// that nothing of what the mutation did is kept, even when it changed its
// state before failing.
func testFailingMutation(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	errBoom := errors.New("boom")
	tests := []struct {
		name  string
		fn    store.Mutation
		check func(t *testing.T, err error)
	}{
		{"plain error after changes", func(st *model.TenantState) (model.Change, error) {
			mustChange(t)(st.CreateRole(model.Role{ID: "ghost"}))
			mustChange(t)(st.RevokeRole("alice", "sales_rep"))
			st.Name = "Ghost"
			return model.Change{Action: "role.create", Target: "role/ghost"}, errBoom
		}, func(t *testing.T, err error) {
			if err != errBoom { //nolint:errorlint // the error must come back as is, not wrapped
				t.Errorf("err = %v, want the mutation's error as is", err)
			}
		}},
		{"org error after org changes", func(st *model.TenantState) (model.Change, error) {
			mustChange(t)(st.CreateDepartment(model.Department{ID: "ghost", Name: "Ghost", Parent: "east"}))
			mustChange(t)(st.SetMembership(model.Membership{UserID: "alice", Primary: "ghost"}))
			mustChange(t)(st.SetManagerDepth(9))
			mustChange(t)(st.DeleteSharingRule("east_accounts"))
			mustChange(t)(st.UnshareRecord(model.ShareKey{Module: "opportunity", RecordID: "opp-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "alice"}}))
			return st.DeleteDepartment("ghost")
		}, wantConflict(model.ReasonDepartmentInUse)},
		{"department cycle", func(st *model.TenantState) (model.Change, error) {
			return st.UpdateDepartment(model.Department{ID: "z_hq", Name: "Head office", Parent: "east"})
		}, wantConflict(model.ReasonDepartmentCycle)},
		{"manager cycle", func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "bob@example.com", Primary: "sales", Manager: "alice"})
		}, wantConflict(model.ReasonManagerCycle)},
		{"unknown principal", func(st *model.TenantState) (model.Change, error) {
			return st.ShareRecord(model.RecordShare{Module: "lead", RecordID: "L-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "nobody"}, Access: model.AccessRead}, time.Now())
		}, func(t *testing.T, err error) {
			var nf *model.NotFoundError
			if !errors.As(err, &nf) || nf.Reason != model.ReasonUserNotFound {
				t.Errorf("err = %v, want a *model.NotFoundError %s", err, model.ReasonUserNotFound)
			}
		}},
		{"model error", func(st *model.TenantState) (model.Change, error) {
			return st.RevokeRole("nobody", "viewer")
		}, func(t *testing.T, err error) {
			var nf *model.NotFoundError
			if !errors.As(err, &nf) || nf.Reason != model.ReasonGrantNotFound {
				t.Errorf("err = %v, want a *model.NotFoundError with reason %s", err, model.ReasonGrantNotFound)
			}
		}},
		{"conflict", func(st *model.TenantState) (model.Change, error) {
			return st.DeleteRole("viewer")
		}, wantConflict(model.ReasonRoleInUse)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			snap := Snapshot(t, s, "acme")
			rev, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin", Applied: func(*model.TenantState, model.Delta) error {
				t.Error("a failed Update called Applied")
				return nil
			}}, tt.fn)
			if rev != 0 {
				t.Errorf("Update returned revision %d with its error", rev)
			}
			tt.check(t, err)
			AssertUnchanged(t, s, snap)
		})
	}
}

func wantConflict(reason string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var ce *model.ConflictError
		if !errors.As(err, &ce) || ce.Reason != reason {
			t.Errorf("err = %v, want a *model.ConflictError with reason %s", err, reason)
		}
	}
}

// testPanickingMutation checks that a mutation's panic reaches the caller
// and leaves the tenant unchanged and open to the next writer.
func testPanickingMutation(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	snap := Snapshot(t, s, "acme")
	func() {
		defer func() {
			if recover() == nil {
				t.Error("Update did not pass on the mutation's panic")
			}
		}()
		_, _ = s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin"}, func(st *model.TenantState) (model.Change, error) {
			st.Name = "Broken"
			panic("a bug in a mutation")
		})
	}()
	AssertUnchanged(t, s, snap)

	// A lock left behind would make the next writer wait forever.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	_, err := s.Update(ctx, store.Write{Tenant: "acme", Actor: "admin"}, func(st *model.TenantState) (model.Change, error) {
		return st.RevokeRole("alice", "sales_rep")
	})
	if err != nil {
		t.Fatalf("Update after a panicking mutation: %v", err)
	}
}

func testChangesPagination(t *testing.T, s store.Store) {
	ctx := t.Context()
	createSample(t, s, "acme")
	for i := range 5 {
		grant(t, s, "acme", fmt.Sprintf("user%d", i), "viewer")
	}
	tests := []struct {
		after int64
		limit int
		want  []int64
	}{
		{0, 100, []int64{1, 2, 3, 4, 5, 6}},
		{0, 2, []int64{1, 2}},
		{2, 2, []int64{3, 4}},
		{5, 100, []int64{6}},
		{6, 100, nil},
		{100, 100, nil},
		{0, 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("after=%d,limit=%d", tt.after, tt.limit), func(t *testing.T) {
			changes, err := s.Changes(ctx, "acme", tt.after, tt.limit)
			if err != nil {
				t.Fatalf("Changes: %v", err)
			}
			if got := revisions(changes); !slices.Equal(got, tt.want) {
				t.Errorf("revisions = %v, want %v", got, tt.want)
			}
		})
	}

	// Paging through the log with the last revision seen as cursor visits
	// every entry once, in order.
	var seen []int64
	for after := int64(0); ; {
		page, err := s.Changes(ctx, "acme", after, 4)
		if err != nil {
			t.Fatalf("Changes: %v", err)
		}
		if len(page) == 0 {
			break
		}
		seen = append(seen, revisions(page)...)
		after = page[len(page)-1].Revision
	}
	if want := []int64{1, 2, 3, 4, 5, 6}; !slices.Equal(seen, want) {
		t.Errorf("paging visited %v, want %v", seen, want)
	}
}

// testTenantIsolation writes to one tenant and checks that another with the
// same role and user ids does not change.
func testTenantIsolation(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	createSample(t, s, "acme-eu")
	eu := Snapshot(t, s, "acme-eu")

	grant(t, s, "acme", "carol", "viewer")
	for _, fn := range []store.Mutation{
		func(st *model.TenantState) (model.Change, error) { return st.RevokeRole("alice", "sales_rep") },
		func(st *model.TenantState) (model.Change, error) { return st.RevokeRole("bob@example.com", "viewer") },
		func(st *model.TenantState) (model.Change, error) { return st.RevokeRole("carol", "viewer") },
		func(st *model.TenantState) (model.Change, error) { return st.DeleteRole("sales_rep") },
		func(st *model.TenantState) (model.Change, error) {
			return st.CreateRole(model.Role{ID: "sales_rep", Permissions: model.Permissions{Functions: []string{"report.view"}}})
		},
		func(st *model.TenantState) (model.Change, error) { return st.DeleteSharingRule("east_accounts") },
		func(st *model.TenantState) (model.Change, error) { return st.DeleteMembership("alice") },
		func(st *model.TenantState) (model.Change, error) { return st.DeleteDepartment("east") },
		func(st *model.TenantState) (model.Change, error) { return st.SetManagerDepth(1) },
		func(st *model.TenantState) (model.Change, error) {
			return st.UpdateDepartment(model.Department{ID: "sales", Name: "Sales renamed", Parent: "service"})
		},
	} {
		if _, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin"}, fn); err != nil {
			t.Fatalf("Update: %v", err)
		}
	}
	AssertUnchanged(t, s, eu)
	acme := mustTenant(t, s, "acme")
	if acme.Revision != 12 || len(acme.Grants) != 0 || len(acme.Members) != 1 || len(acme.Departments) != 3 {
		t.Errorf("acme at revision %d with %d grants, %d members, %d departments; want revision 12, no grants, 1 member, 3 departments",
			acme.Revision, len(acme.Grants), len(acme.Members), len(acme.Departments))
	}
}

// testConcurrentWriters races writers of one tenant: no write may be lost.
func testConcurrentWriters(t *testing.T, s store.Store) {
	const writers, grantsEach = 16, 10
	createSample(t, s, "acme")
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := range grantsEach {
				user := fmt.Sprintf("user-%d-%d", i, j)
				_, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin"}, func(st *model.TenantState) (model.Change, error) {
					if _, err := st.UpsertUser(model.User{ID: user}); err != nil {
						return model.Change{}, err
					}
					return st.GrantRole(model.Grant{UserID: user, RoleID: "viewer"}, time.Now())
				})
				if err != nil {
					t.Errorf("grant to %s: %v", user, err)
					return
				}
			}
		})
	}
	wg.Wait()

	st := mustTenant(t, s, "acme")
	if want := int64(1 + writers*grantsEach); st.Revision != want {
		t.Errorf("revision = %d, want %d", st.Revision, want)
	}
	for i := range writers {
		for j := range grantsEach {
			k := model.GrantKey{UserID: fmt.Sprintf("user-%d-%d", i, j), RoleID: "viewer"}
			if _, ok := st.Grants[k]; !ok {
				t.Errorf("grant %v was lost", k)
			}
		}
	}
	changes := changesOf(t, s, "acme")
	if got, want := len(changes), 1+writers*grantsEach; got != want {
		t.Errorf("change log has %d entries, want %d", got, want)
	}
	for i, e := range changes {
		if e.Revision != int64(i+1) {
			t.Fatalf("change log entry %d has revision %d, want %d", i, e.Revision, i+1)
		}
	}
}

func testClosed(t *testing.T, s store.Store) {
	ctx := t.Context()
	createSample(t, s, "acme")
	s.Close()
	tests := []struct {
		name string
		call func() error
	}{
		{"TenantIDs", func() error { _, err := s.TenantIDs(ctx); return err }},
		{"Tenant", func() error { _, err := s.Tenant(ctx, "acme"); return err }},
		{"CreateTenant", func() error {
			_, err := s.CreateTenant(ctx, store.Write{Tenant: "other"}, model.NewTenantState("other", ""))
			return err
		}},
		{"Update", func() error {
			_, err := s.Update(ctx, store.Write{Tenant: "acme"}, func(st *model.TenantState) (model.Change, error) {
				return model.Change{Action: "noop"}, nil
			})
			return err
		}},
		{"Changes", func() error { _, err := s.Changes(ctx, "acme", 0, 10); return err }},
		{"CreateCredential", func() error { return s.CreateCredential(ctx, sampleKey("00000000000000aa")) }},
		{"Credential", func() error { _, err := s.Credential(ctx, "00000000000000aa"); return err }},
		{"CredentialByCertificate", func() error { _, err := s.CredentialByCertificate(ctx, "spiffe://x"); return err }},
		{"Credentials", func() error { _, err := s.Credentials(ctx, "", 10, true); return err }},
		{"RevokeCredential", func() error {
			_, err := s.RevokeCredential(ctx, "00000000000000aa", "x", time.Now())
			return err
		}},
	}
	for _, tt := range tests {
		if err := tt.call(); !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: err = %v, want store.ErrClosed", tt.name, err)
		}
	}
}

// sampleKey returns an API key credential with every attribute set, its
// times at microsecond precision in UTC as stores keep them.
func sampleKey(id string) store.Credential {
	return store.Credential{
		ID: id, Name: "crm console", SecretHash: []byte("0123456789abcdef0123456789abcdef"),
		Scopes: []string{"admin", "check"}, Tenants: []string{"acme", "globex"}, User: "",
		ExpiresAt: time.Date(2099, 1, 2, 3, 4, 5, 6000, time.UTC), CreatedAt: grantedAt.Truncate(time.Microsecond),
		CreatedBy: "platform:ops",
	}
}

func testCredentials(t *testing.T, s store.Store) {
	ctx := t.Context()
	key := sampleKey("0123456789abcdef")
	cert := store.Credential{
		ID: "fedcba9876543210", Name: "orders service", Certificate: "spiffe://crm.example/orders",
		Scopes: []string{"check"}, Tenants: []string{"acme"}, User: "alice", CreatedAt: grantedAt.Truncate(time.Microsecond), CreatedBy: "platform:ops",
	}
	platform := store.Credential{
		ID: "00000000000000ff", Name: "ops", SecretHash: []byte("fedcba9876543210fedcba9876543210"),
		Scopes: []string{"platform"}, CreatedAt: grantedAt.Truncate(time.Microsecond), CreatedBy: "authzd keys create",
	}
	for _, c := range []store.Credential{key, cert, platform} {
		if err := s.CreateCredential(ctx, c); err != nil {
			t.Fatalf("create %s: %v", c.ID, err)
		}
		got, err := s.Credential(ctx, c.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Errorf("credential %s:\n got %+v\nwant %+v", c.ID, got, c)
		}
	}
	var conflict *model.ConflictError
	if err := s.CreateCredential(ctx, key); !errors.As(err, &conflict) || !conflict.Exists {
		t.Errorf("same id again: %v, want ALREADY_EXISTS", err)
	}
	twin := cert
	twin.ID = "1111111111111111"
	if err := s.CreateCredential(ctx, twin); !errors.As(err, &conflict) {
		t.Errorf("a second credential for one certificate identity: %v, want a conflict", err)
	}
	got, err := s.CredentialByCertificate(ctx, cert.Certificate)
	if err != nil || got.ID != cert.ID {
		t.Fatalf("by certificate: %+v, %v", got, err)
	}
	var notFound *model.NotFoundError
	if _, err := s.Credential(ctx, "aaaaaaaaaaaaaaaa"); !errors.As(err, &notFound) || notFound.Reason != model.ReasonCredentialNotFound {
		t.Errorf("unknown id: %v", err)
	}
	if _, err := s.RevokeCredential(ctx, "aaaaaaaaaaaaaaaa", "x", time.Now()); !errors.As(err, &notFound) {
		t.Errorf("revoke unknown id: %v", err)
	}

	at := time.Date(2026, 12, 5, 9, 0, 0, 123456789, time.UTC)
	revoked, err := s.RevokeCredential(ctx, cert.ID, "platform:ops", at)
	if err != nil {
		t.Fatal(err)
	}
	if !revoked.Revoked() || !revoked.RevokedAt.Equal(at.Truncate(time.Microsecond)) || revoked.RevokedBy != "platform:ops" {
		t.Errorf("revoked: %+v", revoked)
	}
	again, err := s.RevokeCredential(ctx, cert.ID, "someone else", at.Add(time.Hour))
	if err != nil || !again.RevokedAt.Equal(revoked.RevokedAt) || again.RevokedBy != "platform:ops" {
		t.Errorf("a second revocation changed the first: %+v, %v", again, err)
	}
	if _, err := s.CredentialByCertificate(ctx, cert.Certificate); !errors.As(err, &notFound) {
		t.Errorf("a revoked certificate identity is still found: %v", err)
	}
	// The identity may then get a new credential.
	if err := s.CreateCredential(ctx, twin); err != nil {
		t.Errorf("new credential for a revoked certificate identity: %v", err)
	}
	if got, err := s.CredentialByCertificate(ctx, cert.Certificate); err != nil || got.ID != twin.ID {
		t.Errorf("by certificate after renewal: %+v, %v", got, err)
	}
}

func testCredentialsPaging(t *testing.T, s store.Store) {
	ctx := t.Context()
	var ids []string
	for i := range 7 {
		c := sampleKey(fmt.Sprintf("%016x", 0xa0+i))
		if err := s.CreateCredential(ctx, c); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, c.ID)
	}
	if _, err := s.RevokeCredential(ctx, ids[2], "x", time.Now()); err != nil {
		t.Fatal(err)
	}
	list := func(includeRevoked bool) []string {
		var out []string
		after := ""
		for {
			page, err := s.Credentials(ctx, after, 3, includeRevoked)
			if err != nil {
				t.Fatal(err)
			}
			if len(page) == 0 {
				return out
			}
			for _, c := range page {
				out = append(out, c.ID)
			}
			after = page[len(page)-1].ID
		}
	}
	if got := list(true); !slices.Equal(got, ids) {
		t.Errorf("with revoked: %v, want %v", got, ids)
	}
	want := slices.Delete(slices.Clone(ids), 2, 3)
	if got := list(false); !slices.Equal(got, want) {
		t.Errorf("in force: %v, want %v", got, want)
	}
}

func testChangeRecordsCredential(t *testing.T, s store.Store) {
	ctx := t.Context()
	createSample(t, s, "acme")
	w := store.Write{Tenant: "acme", Actor: "oscar", Reason: "why", Credential: "key:0123456789abcdef"}
	if _, err := s.Update(ctx, w, func(st *model.TenantState) (model.Change, error) {
		return st.GrantRole(model.Grant{UserID: "zoe", RoleID: "viewer"}, time.Now())
	}); err != nil {
		t.Fatal(err)
	}
	cs, err := s.Changes(ctx, "acme", 1, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1 || cs[0].Credential != w.Credential || cs[0].Actor != "oscar" {
		t.Errorf("changes: %+v", cs)
	}
}

func testTenantsAndDelete(t *testing.T, s store.Store) {
	ctx := t.Context()
	for _, id := range []string{"acme", "globex", "initech"} {
		createSample(t, s, id)
	}
	infos, err := s.Tenants(ctx, "", 2, false)
	if err != nil {
		t.Fatal(err)
	}
	want := sampleTenant(t, "acme")
	if len(infos) != 2 || infos[0].ID != "acme" || infos[1].ID != "globex" || infos[0].Roles != len(want.Roles) ||
		infos[0].Users != len(want.Users) || infos[0].Grants != len(want.Grants) || infos[0].Revision != 1 ||
		infos[0].Name != "Tenant acme" || infos[0].CreatedAt.IsZero() || infos[0].Deleted() {
		t.Fatalf("first page %+v", infos)
	}
	if rest, err := s.Tenants(ctx, "globex", 2, false); err != nil || len(rest) != 1 || rest[0].ID != "initech" {
		t.Fatalf("second page %+v %v", rest, err)
	}

	w := store.Write{Tenant: "globex", Actor: "platform:ops", Reason: "contract ended", Credential: "key:0123456789abcdef"}
	rev, err := s.DeleteTenant(ctx, w)
	if err != nil || rev != 2 {
		t.Fatalf("delete: %d %v", rev, err)
	}
	if _, err := s.DeleteTenant(ctx, w); !errors.Is(err, model.ErrTenantNotFound) {
		t.Errorf("delete again: %v", err)
	}
	if _, err := s.Tenant(ctx, "globex"); !errors.Is(err, model.ErrTenantNotFound) {
		t.Errorf("load a deleted tenant: %v", err)
	}
	if _, err := s.Update(ctx, store.Write{Tenant: "globex"}, func(st *model.TenantState) (model.Change, error) {
		return st.SetManagerDepth(1)
	}); !errors.Is(err, model.ErrTenantNotFound) {
		t.Errorf("write a deleted tenant: %v", err)
	}
	if ids, err := s.TenantIDs(ctx); err != nil || !slices.Equal(ids, []string{"acme", "initech"}) {
		t.Errorf("tenant ids %v %v", ids, err)
	}
	// Many at once, as a start-up reads them: in id order, each whole and
	// only its own, without the deleted or unknown ones.
	states, err := s.TenantStates(ctx, []string{"initech", "globex", "nobody", "acme"})
	if err != nil || len(states) != 2 {
		t.Fatalf("tenant states: %d %v", len(states), err)
	}
	for i, id := range []string{"acme", "initech"} {
		one, err := s.Tenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		assertState(t, "TenantStates "+id, states[i], one)
	}
	grant(t, s, "acme", "newbie", "viewer")
	if revs, err := s.Revisions(ctx); err != nil || !reflect.DeepEqual(revs, map[string]int64{"acme": 2, "initech": 1}) {
		t.Errorf("revisions %v %v", revs, err)
	}
	var conflict *model.ConflictError
	if _, err := s.CreateTenant(ctx, store.Write{Tenant: "globex"}, model.NewTenantState("globex", "")); !errors.As(err, &conflict) || !conflict.Exists {
		t.Errorf("reuse a deleted tenant's id: %v", err)
	}
	info, err := s.TenantInfo(ctx, "globex")
	if err != nil || !info.Deleted() || info.Revision != 2 || info.Roles != 0 {
		t.Errorf("info of the deleted tenant: %+v %v", info, err)
	}
	if all, err := s.Tenants(ctx, "", 10, true); err != nil || len(all) != 3 || !all[1].Deleted() {
		t.Errorf("with deleted: %+v %v", all, err)
	}
	changes, err := s.Changes(ctx, "globex", 0, 10)
	if err != nil || len(changes) != 2 {
		t.Fatalf("the deleted tenant's change log: %+v %v", changes, err)
	}
	if last := changes[1]; last.Action != "tenant.delete" || last.Revision != 2 || last.Actor != w.Actor || last.Credential != w.Credential ||
		last.Before == nil || last.After != nil {
		t.Errorf("deletion entry %+v", last)
	}
	if _, err := s.TenantInfo(ctx, "nowhere"); !errors.Is(err, model.ErrTenantNotFound) {
		t.Errorf("info of an unknown tenant: %v", err)
	}
	// The other tenants are untouched.
	if got := mustTenant(t, s, "initech"); len(got.Grants) != len(want.Grants) || len(got.Users) != len(want.Users) {
		t.Errorf("another tenant changed: %+v", got)
	}
}

// TenantSnapshot is a tenant's state and whole change log at one moment.
type TenantSnapshot struct {
	ID      string
	State   *model.TenantState
	Changes []store.ChangeEntry
}

// Snapshot records a tenant's state and change log.
func Snapshot(t *testing.T, s store.Store, id string) TenantSnapshot {
	t.Helper()
	return TenantSnapshot{ID: id, State: mustTenant(t, s, id), Changes: changesOf(t, s, id)}
}

// AssertUnchanged fails t unless the tenant's state and change log equal
// the snapshot: same revision, same roles, grants, settings, organisation
// and sharing, same entries.
func AssertUnchanged(t *testing.T, s store.Store, snap TenantSnapshot) {
	t.Helper()
	assertState(t, "tenant "+snap.ID, mustTenant(t, s, snap.ID), snap.State)
	changes := changesOf(t, s, snap.ID)
	if len(changes) != len(snap.Changes) {
		t.Fatalf("tenant %s: change log has %d entries, want %d", snap.ID, len(changes), len(snap.Changes))
	}
	for i := range changes {
		assertEntry(t, changes[i], snap.Changes[i], time.Time{})
	}
}

// AssertState fails t unless got and want hold the same tenant: id, name,
// revision, settings, roles, grants, departments, memberships, sharing
// rules and record shares (times compared at microsecond precision).
func AssertState(t *testing.T, got, want *model.TenantState) {
	t.Helper()
	assertState(t, "state", got, want)
}

func assertState(t *testing.T, what string, got, want *model.TenantState) {
	t.Helper()
	if got == nil {
		t.Fatalf("%s: nil state", what)
	}
	if g, w := canonical(t, got), canonical(t, want); g != w {
		t.Fatalf("%s differs\n got: %s\nwant: %s", what, g, w)
	}
}

// canonical renders a state for comparison: everything sorted by key,
// times in UTC rounded down to the microsecond, and empty lists as absent.
func canonical(t *testing.T, st *model.TenantState) string {
	t.Helper()
	for id, r := range st.Roles {
		if id != r.ID {
			t.Errorf("role %q is filed under %q", r.ID, id)
		}
	}
	grants := st.SortedGrants()
	for i, g := range grants {
		if k := (model.GrantKey{UserID: g.UserID, RoleID: g.RoleID}); st.Grants[k] != g {
			t.Errorf("grant %v is filed under another key", k)
		}
		grants[i].ExpiresAt, grants[i].GrantedAt = micro(g.ExpiresAt), micro(g.GrantedAt)
	}
	checkOrgKeys(t, st)
	shares := st.SortedRecordShares()
	for i, sh := range shares {
		shares[i].ExpiresAt, shares[i].SharedAt = micro(sh.ExpiresAt), micro(sh.SharedAt)
	}
	b, err := json.Marshal(struct {
		ID           string
		Name         string
		Revision     int64
		Settings     model.Settings
		Roles        []model.Role
		Grants       []model.Grant
		Departments  []model.Department
		Members      []model.Membership
		SharingRules []model.SharingRule
		RecordShares []model.RecordShare
		Requests     []model.AccessRequest
		Reviews      []model.AccessReview
		ReviewItems  map[string][]model.ReviewItem
	}{st.ID, st.Name, st.Revision, st.Settings, st.SortedRoles(), grants,
		st.SortedDepartments(), st.SortedMembers(), st.SortedSharingRules(), shares, st.SortedRequests(),
		st.SortedReviews(), reviewItems(st)})
	if err != nil {
		t.Fatalf("encode state: %v", err)
	}
	return string(b)
}

// checkOrgKeys fails t when a department, membership, sharing rule or
// record share is filed under another key than its own.
func checkOrgKeys(t *testing.T, st *model.TenantState) {
	t.Helper()
	for id, d := range st.Departments {
		if id != d.ID {
			t.Errorf("department %q is filed under %q", d.ID, id)
		}
	}
	for id, m := range st.Members {
		if id != m.UserID {
			t.Errorf("membership of %q is filed under %q", m.UserID, id)
		}
	}
	for id, r := range st.SharingRules {
		if id != r.ID {
			t.Errorf("sharing rule %q is filed under %q", r.ID, id)
		}
	}
	for k, sh := range st.RecordShares {
		if k != sh.Key() {
			t.Errorf("record share %+v is filed under %+v", sh.Key(), k)
		}
	}
}

// assertEntry compares a change log entry with want. JSON documents compare
// by meaning, not bytes. The entry's time must be in UTC and, unless
// notBefore is zero, lie between notBefore and now.
func assertEntry(t *testing.T, got, want store.ChangeEntry, notBefore time.Time) {
	t.Helper()
	if got.Tenant != want.Tenant || got.Revision != want.Revision || got.Actor != want.Actor || got.Reason != want.Reason ||
		got.Action != want.Action || got.Target != want.Target {
		t.Errorf("change entry = %+v, want %+v", got, want)
	}
	if !sameJSON(t, got.Before, want.Before) {
		t.Errorf("change entry %d: before = %s, want %s", got.Revision, got.Before, want.Before)
	}
	if !sameJSON(t, got.After, want.After) {
		t.Errorf("change entry %d: after = %s, want %s", got.Revision, got.After, want.After)
	}
	if got.Time.Location() != time.UTC {
		t.Errorf("change entry %d: time %v is not in UTC", got.Revision, got.Time)
	}
	switch {
	case notBefore.IsZero():
		if !micro(got.Time).Equal(micro(want.Time)) {
			t.Errorf("change entry %d: time = %v, want %v", got.Revision, got.Time, want.Time)
		}
	case got.Time.Before(micro(notBefore)) || got.Time.After(time.Now()):
		t.Errorf("change entry %d: time %v does not lie between %v and now", got.Revision, got.Time, notBefore)
	}
}

func assertTenantExists(t *testing.T, err error) {
	t.Helper()
	var ce *model.ConflictError
	if !errors.As(err, &ce) || ce.Reason != model.ReasonTenantExists || !ce.Exists {
		t.Errorf("err = %v, want a *model.ConflictError with reason %s and Exists", err, model.ReasonTenantExists)
	}
}

// sameJSON reports whether two JSON documents mean the same; nil is the
// absent document.
func sameJSON(t *testing.T, a, b []byte) bool {
	t.Helper()
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Errorf("invalid JSON %s: %v", a, err)
		return false
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Errorf("invalid JSON %s: %v", b, err)
		return false
	}
	return reflect.DeepEqual(va, vb)
}

// jsonOf encodes v as a change log entry would; nil stays nil.
func jsonOf(t *testing.T, v any) []byte {
	t.Helper()
	if v == nil {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	return b
}

// testAccessRequests: a request policy and requests in every state are
// kept by Update and read back whole (a restart reads them from the
// store), the approval's grant with them; each step is a change-log entry
// of its own.
func testAccessRequests(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	want := mustTenant(t, s, "acme")
	now := time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC)
	policy := &model.RequestPolicy{Approvers: []model.Approver{{Kind: model.ApproverManager}, {Kind: model.ApproverRole, ID: "sales_rep"}}, MaxDays: 30, PendingDays: 7}
	ask := func(id, user string) store.Mutation {
		return func(st *model.TenantState) (model.Change, error) {
			return st.RequestAccess(model.AccessRequest{ID: id, UserID: user, RoleID: "viewer", Reason: "quarter close 季度结账", Duration: 48 * time.Hour, RequestedBy: user}, now)
		}
	}
	steps := []store.Mutation{
		func(st *model.TenantState) (model.Change, error) { return st.SetRequestPolicy("viewer", policy) },
		ask("req_00000000000000a1", "carol"),
		ask("req_00000000000000a2", "dave"),
		ask("req_00000000000000a3", "zoe"),
		func(st *model.TenantState) (model.Change, error) {
			return st.ApproveRequest("req_00000000000000a1", "alice", "ok", now.Add(24*time.Hour), now)
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.CloseRequest("req_00000000000000a2", model.RequestDenied, "alice", "no", now)
		},
	}
	for i, m := range steps {
		if _, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "alice", Reason: "step"}, m); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if _, err := m(want); err != nil {
			t.Fatalf("step %d on the expected state: %v", i, err)
		}
	}
	want.Revision += int64(len(steps))
	got := mustTenant(t, s, "acme")
	assertState(t, "after the requests", got, want)
	if r := got.AccessRequests["req_00000000000000a1"]; r.State != model.RequestApproved || !r.GrantExpires.Equal(now.Add(24*time.Hour)) {
		t.Errorf("approved request read back as %+v", r)
	}
	if g, ok := got.Grants[model.GrantKey{UserID: "carol", RoleID: "viewer"}]; !ok || !micro(g.ExpiresAt).Equal(micro(now.Add(24*time.Hour))) {
		t.Errorf("the approval's grant read back as %+v, %t", g, ok)
	}
	if got.Roles["viewer"].Request == nil || got.Roles["sales_rep"].Request != nil {
		t.Errorf("request policies read back as %v and %v", got.Roles["viewer"].Request, got.Roles["sales_rep"].Request)
	}
	var actions []string
	for _, c := range changesOf(t, s, "acme")[1:] {
		actions = append(actions, strings.Join(append([]string{c.Action, c.Target}, c.Related...), " "))
	}
	// The approval's entry names the grant it made beside its request.
	wantActions := []string{"role.request_policy role/viewer", "request.create request/req_00000000000000a1", "request.create request/req_00000000000000a2",
		"request.create request/req_00000000000000a3", "request.approve request/req_00000000000000a1 grant/carol/viewer", "request.deny request/req_00000000000000a2"}
	if !slices.Equal(actions, wantActions) {
		t.Errorf("change log %v, want %v", actions, wantActions)
	}
}

func reviewItems(st *model.TenantState) map[string][]model.ReviewItem {
	out := map[string][]model.ReviewItem{}
	for id := range st.AccessReviews {
		out[id] = st.SortedReviewItems(id)
	}
	return out
}

// testAccessReviews: a review, its items with their evidence and
// decisions, and its closing are kept by Update and read back whole; a
// revoke takes the grant away in the same write; DueReviews finds the
// open reviews past their deadline, soonest first.
func testAccessReviews(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	want := mustTenant(t, s, "acme")
	now := time.Date(2026, 5, 6, 7, 8, 9, 123456000, time.UTC)
	used := map[model.GrantKey]time.Time{{UserID: "alice", RoleID: "sales_rep"}: now.Add(-time.Hour)}
	review := func(id string, deadline time.Time, roles ...string) store.Mutation {
		return func(st *model.TenantState) (model.Change, error) {
			return st.StartReview(model.AccessReview{ID: id, Name: "Q2 review 二季度", Roles: roles, Default: model.ReviewRevoke,
				Deadline: deadline, UnusedDays: 90, CreatedBy: "admin"}, used, now)
		}
	}
	steps := []store.Mutation{
		review("rvw_00000000000000a1", now.Add(48*time.Hour)),
		review("rvw_00000000000000a2", now.Add(time.Hour), "viewer"),
		func(st *model.TenantState) (model.Change, error) {
			return st.DecideReviewItem(model.ReviewItemKey{Review: "rvw_00000000000000a1", UserID: "alice", RoleID: "sales_rep"}, model.ReviewKeep, "bob@example.com", "still sells", now)
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.CloseReview("rvw_00000000000000a2", "admin", now, nil)
		},
	}
	for i, m := range steps {
		if _, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin", Reason: "review"}, m); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if _, err := m(want); err != nil {
			t.Fatalf("step %d on the expected state: %v", i, err)
		}
	}
	want.Revision += int64(len(steps))
	got := mustTenant(t, s, "acme")
	assertState(t, "after the review", got, want)
	if len(got.SortedReviewItems("rvw_00000000000000a1")) != 2 || got.ReviewItems[model.ReviewItemKey{Review: "rvw_00000000000000a1", UserID: "alice", RoleID: "sales_rep"}].LastUsed.IsZero() {
		t.Errorf("the first review's items read back as %v", got.SortedReviewItems("rvw_00000000000000a1"))
	}
	if _, ok := got.Grants[model.GrantKey{UserID: "bob@example.com", RoleID: "viewer"}]; ok {
		t.Error("closing a review whose default is revoke left its undecided grant")
	}
	// The close's entry names the grants it revoked; a kept item names none.
	var related []string
	for _, c := range changesOf(t, s, "acme")[1:] {
		related = append(related, c.Action+" "+strings.Join(c.Related, ","))
	}
	if w := []string{"review.start ", "review.start ", "review.decide ", "review.close grant/bob@example.com/viewer"}; !slices.Equal(related, w) {
		t.Errorf("change log %q, want %q", related, w)
	}
	due, err := s.DueReviews(t.Context(), now.Add(72*time.Hour), 10)
	if err != nil || len(due) != 1 || due[0] != (store.ReviewRef{Tenant: "acme", Review: "rvw_00000000000000a1"}) {
		t.Errorf("due reviews: %v, %v", due, err)
	}
	if due, err := s.DueReviews(t.Context(), now, 10); err != nil || len(due) != 0 {
		t.Errorf("due reviews before any deadline: %v, %v", due, err)
	}
}

// testHistory: StateAt rebuilds the tenant at every revision, across
// writes of every kind and a write that replaces the whole state, and
// refuses a revision the tenant never had.
func testHistory(t *testing.T, s store.Store) {
	createSample(t, s, "acme")
	states := map[int64]*model.TenantState{1: mustTenant(t, s, "acme")}
	now := time.Now()
	writes := []store.Mutation{
		func(st *model.TenantState) (model.Change, error) {
			return st.GrantRole(model.Grant{UserID: "carol", RoleID: "viewer", GrantedBy: "admin", GrantedAt: grantedAt, ExpiresAt: expiresAt}, now)
		},
		func(st *model.TenantState) (model.Change, error) { return st.RevokeRole("alice", "sales_rep") },
		func(st *model.TenantState) (model.Change, error) { return st.SetManagerDepth(1) },
		func(st *model.TenantState) (model.Change, error) {
			// A restore: the maps replaced whole.
			next := sampleTenant(t, "acme")
			st.Roles, st.Grants, st.Users = next.Roles, next.Grants, next.Users
			return model.Change{Action: "tenant.import", Target: "tenant/acme"}, nil
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.UpsertUser(model.User{ID: "newcomer", Name: "New"})
		},
	}
	for i, w := range writes {
		rev, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin", Reason: "history"}, w)
		if err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		states[rev] = mustTenant(t, s, "acme")
	}
	for rev := int64(1); rev <= int64(len(writes))+1; rev++ {
		got, err := s.StateAt(t.Context(), "acme", rev)
		if err != nil {
			t.Fatalf("StateAt(%d): %v", rev, err)
		}
		assertState(t, fmt.Sprintf("at revision %d", rev), got, states[rev])
	}
	if _, err := s.StateAt(t.Context(), "acme", 0); !isConflict(err, model.ReasonHistoryUnavailable) {
		t.Errorf("StateAt(0): %v, want HISTORY_UNAVAILABLE", err)
	}
	if _, err := s.StateAt(t.Context(), "nobody", 1); !errors.Is(err, model.ErrTenantNotFound) {
		t.Errorf("StateAt of an unknown tenant: %v", err)
	}
}

func isConflict(err error, reason string) bool {
	var c *model.ConflictError
	return errors.As(err, &c) && c.Reason == reason
}

func createSample(t *testing.T, s store.Store, id string) {
	t.Helper()
	if _, err := s.CreateTenant(t.Context(), store.Write{Tenant: id, Actor: "admin"}, sampleTenant(t, id)); err != nil {
		t.Fatalf("CreateTenant(%q): %v", id, err)
	}
}

func grant(t *testing.T, s store.Store, tenant, user, role string) {
	t.Helper()
	_, err := s.Update(t.Context(), store.Write{Tenant: tenant, Actor: "admin"}, func(st *model.TenantState) (model.Change, error) {
		if !st.KnowsUser(user) {
			if _, err := st.UpsertUser(model.User{ID: user}); err != nil {
				return model.Change{}, err
			}
		}
		return st.GrantRole(model.Grant{UserID: user, RoleID: role, GrantedBy: "admin"}, time.Now())
	})
	if err != nil {
		t.Fatalf("grant %s to %s: %v", role, user, err)
	}
}

func mustTenant(t *testing.T, s store.Store, id string) *model.TenantState {
	t.Helper()
	st, err := s.Tenant(t.Context(), id)
	if err != nil {
		t.Fatalf("Tenant(%q): %v", id, err)
	}
	return st
}

func changesOf(t *testing.T, s store.Store, id string) []store.ChangeEntry {
	t.Helper()
	changes, err := s.Changes(t.Context(), id, 0, 1_000_000)
	if err != nil {
		t.Fatalf("Changes(%q): %v", id, err)
	}
	return changes
}

// mustChange fails t when a model mutation used to build test data fails.
func mustChange(t *testing.T) func(model.Change, error) {
	return func(_ model.Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("building test data: %v", err)
		}
	}
}

func revisions(entries []store.ChangeEntry) []int64 {
	var out []int64
	for _, e := range entries {
		out = append(out, e.Revision)
	}
	return out
}

func micro(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}
