package app_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestTenantLifecycle onboards a CRM customer with a first administrator,
// who can administer it at once, and offboards it: the tenant stops
// answering at once, its change log stays readable and records the
// deletion, and its id is not given out again. A platform key limited to
// one tenant can do none of it elsewhere.
func TestTenantLifecycle(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		created, err := e.platform.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "globex", Name: "Globex Corp.", AdminUserId: "gina",
			AdminDisplayName: "Gina Park", Reason: "signed up"})
		if err != nil {
			t.Fatal(err)
		}
		if tn := created.GetTenant(); tn.GetRoleCount() != 6 || tn.GetUserCount() != 1 || tn.GetGrantCount() != 1 || created.GetRevision() != 1 || tn.GetName() != "Globex Corp." {
			t.Fatalf("created %v", created)
		}
		if !e.check(t, "globex", "gina", functionPerm("admin.super")).GetAllowed() {
			t.Fatal("the first administrator is not the tenant's super-administrator")
		}
		if _, err := e.admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: "globex", ActorId: "gina", Reason: "first hire", User: &pb.User{UserId: "hank"}}); err != nil {
			t.Fatalf("the first administrator administers: %v", err)
		}
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "globex", ActorId: "gina", Reason: "rep", UserId: "hank", RoleId: "sales_rep"}); err != nil {
			t.Fatal(err)
		}
		_, err = e.platform.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "globex", Reason: "again"})
		if code, reason, _ := errorInfo(t, err); code != codes.AlreadyExists || reason != "TENANT_EXISTS" {
			t.Errorf("create twice: %v", err)
		}
		for name, tt := range map[string]struct {
			req   *pb.CreateTenantRequest
			field string
		}{
			"bad id":                     {&pb.CreateTenantRequest{TenantId: "Globex!", Reason: "r"}, "tenant_id"},
			"no reason":                  {&pb.CreateTenantRequest{TenantId: "x"}, "reason"},
			"unknown template":           {&pb.CreateTenantRequest{TenantId: "x", Reason: "r", Templates: []string{"sales_rep", "wizard"}}, "templates[1]"},
			"template twice":             {&pb.CreateTenantRequest{TenantId: "x", Reason: "r", Templates: []string{"admin", "admin"}}, "templates[1]"},
			"admin without the template": {&pb.CreateTenantRequest{TenantId: "x", Reason: "r", Templates: []string{"sales_rep"}, AdminUserId: "gina"}, "admin_user_id"},
			"bad admin id":               {&pb.CreateTenantRequest{TenantId: "x", Reason: "r", AdminUserId: "a b"}, "admin_user_id"},
		} {
			_, err := e.platform.CreateTenant(ctx, tt.req)
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != tt.field {
				t.Errorf("%s: %v, want INVALID_ARGUMENT on %s", name, err, tt.field)
			}
		}

		list, err := e.platform.ListTenants(ctx, &pb.ListTenantsRequest{PageSize: 1})
		if err != nil || len(list.GetTenants()) != 1 || list.GetNextPageToken() == "" {
			t.Fatalf("first page: %v %v", list, err)
		}
		rest, err := e.platform.ListTenants(ctx, &pb.ListTenantsRequest{PageSize: 10, PageToken: list.GetNextPageToken()})
		if err != nil || len(rest.GetTenants()) != 2 { // acme, demo, globex in all
			t.Fatalf("second page: %v %v", rest, err)
		}

		demoOps := e.newKey(t, "demo ops", []string{"platform"}, []string{"demo"}, "")
		_, err = demoOps.plat.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "initech", Reason: "r"})
		denied(t, "a limited platform key creating another tenant", err, "TENANT_NOT_ALLOWED")
		_, err = demoOps.plat.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "globex", ConfirmTenantId: "globex", Reason: "r"})
		denied(t, "a limited platform key deleting another tenant", err, "TENANT_NOT_ALLOWED")
		mine, err := demoOps.plat.ListTenants(ctx, &pb.ListTenantsRequest{})
		if err != nil || len(mine.GetTenants()) != 1 || mine.GetTenants()[0].GetTenantId() != "demo" {
			t.Errorf("a limited platform key lists %v %v", mine, err)
		}
		admin := e.newKey(t, "globex console", []string{"admin"}, []string{"globex"}, "")
		_, err = admin.plat.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "globex", ConfirmTenantId: "globex", Reason: "r"})
		denied(t, "an admin key deleting its tenant", err, "MISSING_SCOPE")

		_, err = e.platform.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "globex", ConfirmTenantId: "globe", Reason: "contract ended"})
		if code, reason, field := errorInfo(t, err); code != codes.InvalidArgument || reason != "CONFIRMATION_MISMATCH" || field != "confirm_tenant_id" {
			t.Fatalf("unconfirmed deletion: %v", err)
		}
		if !e.check(t, "globex", "hank", modulePerm("account", "read")).GetAllowed() {
			t.Fatal("an unconfirmed deletion changed the tenant")
		}
		del, err := e.platform.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "globex", ConfirmTenantId: "globex", Reason: "contract ended"})
		if err != nil || del.GetRevision() != 4 {
			t.Fatalf("delete: %v %v", del, err)
		}
		_, err = e.authz.Check(ctx, &pb.CheckRequest{TenantId: "globex", SubjectId: "hank", Permission: modulePerm("account", "read")})
		if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "TENANT_NOT_FOUND" {
			t.Errorf("check in a deleted tenant: %v", err)
		}
		_, err = e.admin.ListUsers(ctx, &pb.ListUsersRequest{TenantId: "globex", ActorId: "gina"})
		if code, _, _ := errorInfo(t, err); code != codes.NotFound {
			t.Errorf("admin in a deleted tenant: %v", err)
		}
		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "globex"})
		if err != nil {
			t.Fatal(err)
		}
		if c := changes.GetChanges(); len(c) != 4 || c[3].GetAction() != "tenant.delete" || c[3].GetActorId() != "platform:tests" || c[3].GetReason() != "contract ended" {
			t.Errorf("the deleted tenant's change log: %v", c)
		}
		got, err := e.platform.GetTenant(ctx, &pb.GetTenantRequest{TenantId: "globex"})
		if err != nil || got.GetTenant().GetDeleteTime() == nil || got.GetTenant().GetRoleCount() != 0 {
			t.Errorf("get the deleted tenant: %v %v", got, err)
		}
		_, err = e.platform.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "globex", Reason: "again"})
		if code, _, _ := errorInfo(t, err); code != codes.AlreadyExists {
			t.Errorf("reuse the id: %v", err)
		}
		live, err := e.platform.ListTenants(ctx, &pb.ListTenantsRequest{})
		all, err2 := e.platform.ListTenants(ctx, &pb.ListTenantsRequest{IncludeDeleted: true})
		if err != nil || err2 != nil || len(live.GetTenants()) != 2 || len(all.GetTenants()) != 3 {
			t.Errorf("listings after the deletion: %v %v / %v %v", live, err, all, err2)
		}
		_, err = e.platform.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "globex", ConfirmTenantId: "globex", Reason: "again"})
		if code, _, _ := errorInfo(t, err); code != codes.NotFound {
			t.Errorf("delete twice: %v", err)
		}
	})
}
