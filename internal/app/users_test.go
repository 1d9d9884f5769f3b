package app_test

import (
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestUsersAndOffboarding: users are records; a grant naming an unknown
// user is NOT_FOUND and changes nothing; deactivating a user is one write
// that denies every decision for them at once (the explanation says why)
// and keeps their grants, which reactivation restores.
func TestUsersAndOffboarding(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		revision := func() int64 {
			t.Helper()
			r, err := e.admin.ListUsers(ctx, &pb.ListUsersRequest{TenantId: "demo", ActorId: "oscar", PageSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			return r.GetRevision()
		}
		before := revision()
		_, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "typo", UserId: "nobody_here", RoleId: "sales_rep"})
		if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "USER_NOT_FOUND" {
			t.Fatalf("grant to an unknown user: %v", err)
		}
		if revision() != before {
			t.Fatal("a refused grant changed the tenant")
		}

		up, err := e.admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "hired",
			User: &pb.User{UserId: "quinn", DisplayName: "Quinn Zhao", PrimaryDepartmentId: "sales_east", ManagerId: "alice"}})
		if err != nil {
			t.Fatal(err)
		}
		if u := up.GetUser(); u.GetStatus() != pb.UserStatus_USER_STATUS_ACTIVE || u.GetManagerId() != "alice" || up.GetRevision() != before+1 {
			t.Fatalf("upsert: %v", up)
		}
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "new rep", UserId: "quinn", RoleId: "sales_rep"}); err != nil {
			t.Fatal(err)
		}
		if !e.check(t, "demo", "quinn", modulePerm("account", "read")).GetAllowed() {
			t.Fatal("quinn may not read accounts")
		}

		off, err := e.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "left the company", UserId: "quinn"})
		if err != nil {
			t.Fatal(err)
		}
		if off.GetUser().GetStatus() != pb.UserStatus_USER_STATUS_INACTIVE || off.GetRevision() != before+3 {
			t.Fatalf("deactivate: %v", off)
		}
		d := e.check(t, "demo", "quinn", modulePerm("account", "read"))
		inactive := false
		for _, r := range d.GetReasons() {
			inactive = inactive || (r.GetKind() == pb.ReasonKind_REASON_KIND_USER_INACTIVE && strings.Contains(r.GetMessage(), "inactive"))
		}
		if d.GetAllowed() || !inactive {
			t.Fatalf("an offboarded user's check: %v", d)
		}
		fields, err := e.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "quinn", Module: "account"})
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fields.GetFields() {
			if f.GetState() != pb.FieldState_FIELD_STATE_HIDDEN {
				t.Errorf("an offboarded user sees field %v", f)
			}
		}
		grants, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", ActorId: "oscar", Filter: &pb.ListGrantsRequest_UserId{UserId: "quinn"}})
		if err != nil {
			t.Fatal(err)
		}
		if g := grants.GetGrants(); len(g) != 1 || g[0].GetActive() || g[0].GetUserStatus() != pb.UserStatus_USER_STATUS_INACTIVE {
			t.Fatalf("the offboarded user's grants: %v", g)
		}
		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", TargetPrefix: "user/quinn"})
		if err != nil {
			t.Fatal(err)
		}
		if c := changes.GetChanges(); len(c) != 2 || c[1].GetAction() != "user.deactivate" || c[1].GetReason() != "left the company" {
			t.Fatalf("changes: %v", c)
		}

		if _, err := e.admin.ReactivateUser(ctx, &pb.ReactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "rehired", UserId: "quinn"}); err != nil {
			t.Fatal(err)
		}
		if !e.check(t, "demo", "quinn", modulePerm("account", "read")).GetAllowed() {
			t.Fatal("reactivation did not restore quinn's grants")
		}

		// Listing, paging and filtering.
		var ids []string
		req := &pb.ListUsersRequest{TenantId: "demo", ActorId: "oscar", PageSize: 5}
		for {
			page, err := e.admin.ListUsers(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range page.GetUsers() {
				ids = append(ids, u.GetUserId())
			}
			if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		if len(ids) != 14 || ids[0] != "alice" || ids[len(ids)-1] != "quinn" {
			t.Errorf("users %v", ids)
		}
		if _, err := e.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "leave", UserId: "peggy"}); err != nil {
			t.Fatal(err)
		}
		list, err := e.admin.ListUsers(ctx, &pb.ListUsersRequest{TenantId: "demo", ActorId: "oscar", Status: pb.UserStatus_USER_STATUS_INACTIVE})
		if err != nil || len(list.GetUsers()) != 1 || list.GetUsers()[0].GetUserId() != "peggy" {
			t.Errorf("inactive users: %v %v", list, err)
		}
		got, err := e.admin.GetUser(ctx, &pb.GetUserRequest{TenantId: "demo", ActorId: "oscar", UserId: "bob"})
		if err != nil || got.GetUser().GetPrimaryDepartmentId() != "sales_east" || got.GetUser().GetManagerId() != "alice" || got.GetUser().GetDisplayName() != "Bob Li" {
			t.Errorf("get bob: %v %v", got, err)
		}

		for name, call := range map[string]func() error{
			"unknown user": func() error {
				_, err := e.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "ghost"})
				return err
			},
			"get unknown": func() error {
				_, err := e.admin.GetUser(ctx, &pb.GetUserRequest{TenantId: "demo", ActorId: "oscar", UserId: "ghost"})
				return err
			},
		} {
			if code, reason, _ := errorInfo(t, call()); code != codes.NotFound || reason != "USER_NOT_FOUND" {
				t.Errorf("%s: %v %s", name, code, reason)
			}
		}
		before = revision()
		for name, tt := range map[string]struct {
			user  *pb.User
			field string
		}{
			"bad id":               {&pb.User{UserId: "a b"}, "user.user_id"},
			"bad status":           {&pb.User{UserId: "x", Status: 7}, "user.status"},
			"manager without dept": {&pb.User{UserId: "x", ManagerId: "alice"}, "user.primary_department_id"},
			"bad other department": {&pb.User{UserId: "x", PrimaryDepartmentId: "hq", OtherDepartmentIds: []string{"hq"}}, "user.other_department_ids[0]"},
			"name with bidi":       {&pb.User{UserId: "x", DisplayName: "evil\u202egnp.exe"}, "user.display_name"},
			"unknown department":   {&pb.User{UserId: "x", PrimaryDepartmentId: "nowhere"}, "user.primary_department_id"},
		} {
			_, err := e.admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", User: tt.user})
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != tt.field {
				t.Errorf("%s: %v on %q, want INVALID_ARGUMENT on %q", name, err, field, tt.field)
			}
		}
		if revision() != before {
			t.Error("refused upserts changed the tenant")
		}
	})
}
