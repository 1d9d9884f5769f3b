package app_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// This file attacks the trust boundary: for every rule, a test tries to get
// around it through the real gRPC API.

// secureBackends runs f against the memory store with --require-auth and
// against PostgreSQL, where authentication is on by default. A second
// tenant, acme, exists beside demo.
func secureBackends(t *testing.T, f func(t *testing.T, e *secEnv)) {
	mem := config.Default()
	mem.RequireAuth = true
	for name, cfg := range map[string]func(t *testing.T) config.Config{
		"memory":   func(*testing.T) config.Config { return mem },
		"postgres": func(t *testing.T) config.Config { return pgConfig(t) },
	} {
		t.Run(name, func(t *testing.T) {
			clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
			e := startSetup(t, cfg(t), clk, func(st store.Store) {
				acme := model.NewTenantState("acme", "Acme")
				mustChange(t)(acme.CreateRole(model.Role{ID: "viewer", Permissions: model.Permissions{Functions: []string{"report.view"}}}))
				mustChange(t)(acme.UpsertUser(model.User{ID: "ann"}))
				mustChange(t)(acme.GrantRole(model.Grant{UserID: "ann", RoleID: "viewer"}, clk.Now()))
				if _, err := st.CreateTenant(context.Background(), store.Write{Tenant: "acme", Actor: "system", Reason: "test"}, acme); err != nil {
					t.Fatal(err)
				}
			})
			f(t, &secEnv{env: e, platform: pb.NewPlatformServiceClient(e.conn), audit: pb.NewAuditServiceClient(e.conn)})
		})
	}
}

func mustChange(t *testing.T) func(model.Change, error) {
	return func(_ model.Change, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// secEnv is a running authzd whose callers authenticate; conn calls with
// a platform key for every tenant.
type secEnv struct {
	*env
	platform pb.PlatformServiceClient
	audit    pb.AuditServiceClient
}

// caller is a client calling with one credential.
type caller struct {
	key   string
	authz pb.AuthorizationServiceClient
	admin pb.AdminServiceClient
	audit pb.AuditServiceClient
	plat  pb.PlatformServiceClient
}

func (e *secEnv) as(t *testing.T, key string) *caller {
	t.Helper()
	conn := e.dial(t, key)
	return &caller{key: key, authz: pb.NewAuthorizationServiceClient(conn), admin: pb.NewAdminServiceClient(conn),
		audit: pb.NewAuditServiceClient(conn), plat: pb.NewPlatformServiceClient(conn)}
}

// newKey creates a key through PlatformService and returns a caller with it.
func (e *secEnv) newKey(t *testing.T, name string, scopes, tenants []string, user string) *caller {
	t.Helper()
	resp, err := e.platform.CreateKey(ctx, &pb.CreateKeyRequest{Name: name, Scopes: scopes, TenantIds: tenants, UserId: user})
	if err != nil {
		t.Fatalf("create key %s: %v", name, err)
	}
	if !strings.HasPrefix(resp.GetSecret(), "crmz_"+resp.GetKey().GetKeyId()+"_") {
		t.Fatalf("secret %q does not carry key id %s", resp.GetSecret(), resp.GetKey().GetKeyId())
	}
	return e.as(t, resp.GetSecret())
}

// denied asserts err is PERMISSION_DENIED with reason, and returns what
// the ErrorInfo says is missing.
func denied(t *testing.T, what string, err error, reason string) string {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.PermissionDenied {
		t.Fatalf("%s: %v, want PERMISSION_DENIED %s", what, err, reason)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			if info.GetReason() != reason {
				t.Fatalf("%s: reason %s (%s), want %s", what, info.GetReason(), st.Message(), reason)
			}
			return info.GetMetadata()["missing"]
		}
	}
	t.Fatalf("%s: no ErrorInfo in %v", what, err)
	return ""
}

func unauthenticated(t *testing.T, what string, err error) *status.Status {
	t.Helper()
	st, _ := status.FromError(err)
	if st.Code() != codes.Unauthenticated {
		t.Fatalf("%s: %v, want UNAUTHENTICATED", what, err)
	}
	return st
}

func checkBob(c pb.AuthorizationServiceClient) error {
	_, err := c.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")})
	return err
}

// TestAuthenticationRefusesBadCredentials: no credential, a malformed,
// unknown or wrong key, another scheme: each is UNAUTHENTICATED on every
// service, and an unknown key id is answered exactly like a wrong secret.
// Health and reflection stay open.
func TestAuthenticationRefusesBadCredentials(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		good := e.newKey(t, "reader", []string{"check"}, []string{"demo"}, "")
		if err := checkBob(good.authz); err != nil {
			t.Fatalf("a new key works at once: %v", err)
		}
		id := good.key[len("crmz_") : len("crmz_")+16]
		// The decision log names the credential as the caller.
		found := false
		for deadline := time.Now().Add(10 * time.Second); !found && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", Caller: "key:" + id})
			if err != nil {
				t.Fatal(err)
			}
			found = len(resp.GetDecisions()) == 1
		}
		if !found {
			t.Error("the decision is not logged with its credential as the caller")
		}
		wrongSecret := good.key[:len(good.key)-4] + "AAAA"
		unknownID := "crmz_0123456789abcdef" + good.key[len("crmz_")+16:]
		var messages []string
		for name, key := range map[string]string{"wrong secret": wrongSecret, "unknown id": unknownID} {
			st := unauthenticated(t, name, checkBob(e.as(t, key).authz))
			messages = append(messages, st.Message())
		}
		if messages[0] != messages[1] {
			t.Errorf("an unknown id and a wrong secret answer differently: %q vs %q", messages[0], messages[1])
		}
		none := e.as(t, "")
		unauthenticated(t, "no credential: check", checkBob(none.authz))
		_, err := none.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}})
		unauthenticated(t, "no credential: page", err)
		_, err = none.admin.ListRoleTemplates(ctx, &pb.ListRoleTemplatesRequest{})
		unauthenticated(t, "no credential: admin", err)
		_, err = none.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
		unauthenticated(t, "no credential: audit", err)
		_, err = none.plat.ListKeys(ctx, &pb.ListKeysRequest{})
		unauthenticated(t, "no credential: platform", err)
		for _, bad := range []string{"crmz_", "crmz_" + id, "Basic dXNlcjpwYXNz", good.key + "x", strings.ToUpper(good.key)} {
			unauthenticated(t, "malformed "+bad, checkBob(e.as(t, bad).authz))
		}
		// Another scheme with the right key.
		md := metadata.Pairs("authorization", "Basic "+good.key)
		_, err = e.as(t, "").authz.Check(metadata.NewOutgoingContext(ctx, md), &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")})
		unauthenticated(t, "basic scheme", err)

		if resp, err := healthpb.NewHealthClient(e.dial(t, "")).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health without a credential: %v %v", resp, err)
		}
	})
}

// TestKeysExpireAndRevokeAtOnce: an expired key, and a key the moment it
// is revoked, are refused; a key stored behind the server's back (as
// `authzd keys create` does) works at once.
func TestKeysExpireAndRevokeAtOnce(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		resp, err := e.platform.CreateKey(ctx, &pb.CreateKeyRequest{Name: "temp", Scopes: []string{"check"}, TenantIds: []string{"demo"},
			ExpiresAt: timestamppb.New(e.clock.Now().Add(time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		temp := e.as(t, resp.GetSecret())
		if err := checkBob(temp.authz); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(2 * time.Hour)
		st := unauthenticated(t, "expired", checkBob(temp.authz))
		if !strings.Contains(st.Message(), "expired") {
			t.Errorf("the holder of an expired key is told: %q", st.Message())
		}

		c := e.newKey(t, "soon revoked", []string{"check"}, []string{"demo"}, "")
		if err := checkBob(c.authz); err != nil {
			t.Fatal(err)
		}
		id := c.key[len("crmz_") : len("crmz_")+16]
		if _, err := e.platform.RevokeKey(ctx, &pb.RevokeKeyRequest{KeyId: id, Reason: "laptop lost"}); err != nil {
			t.Fatal(err)
		}
		unauthenticated(t, "just revoked", checkBob(c.authz))

		offline := createKey(t, e.app.Store(), "offline", []string{"check"}, []string{"demo"}, "")
		if err := checkBob(e.as(t, offline).authz); err != nil {
			t.Errorf("a key stored beside the running server: %v", err)
		}
		list, err := e.platform.ListKeys(ctx, &pb.ListKeysRequest{IncludeRevoked: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range list.GetKeys() {
			if k.GetKeyId() == id && (k.GetActive() || k.GetRevokeTime() == nil || k.GetRevokedBy() != "platform:tests") {
				t.Errorf("revoked key listed as %v", k)
			}
		}
	})
}

// TestScopesTenantsAndBoundUsers: a credential calls only the services of
// its scopes, in its tenants; a bound credential decides only about its
// user and acts only as its user.
func TestScopesTenantsAndBoundUsers(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		check := e.newKey(t, "orders service", []string{"check"}, []string{"demo"}, "")
		_, err := check.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "peggy", RoleId: "admin"})
		if missing := denied(t, "write with a check key", err, "MISSING_SCOPE"); missing != "admin" {
			t.Errorf("missing %q", missing)
		}
		_, err = check.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"})
		denied(t, "audit with a check key", err, "MISSING_SCOPE")
		auditOnly := e.newKey(t, "auditors' page", []string{"audit"}, []string{"demo"}, "")
		_, err = auditOnly.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}})
		if missing := denied(t, "a page with an audit key", err, "MISSING_SCOPE"); missing != "check" {
			t.Errorf("missing %q", missing)
		}
		_, err = check.authz.Check(ctx, &pb.CheckRequest{TenantId: "acme", SubjectId: "ann", Permission: functionPerm("report.view")})
		if missing := denied(t, "check in another tenant", err, "TENANT_NOT_ALLOWED"); missing != "acme" {
			t.Errorf("missing %q", missing)
		}
		_, err = check.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
			{TenantId: "demo", SubjectId: "bob", Permission: functionPerm("report.view")},
			{TenantId: "acme", SubjectId: "ann", Permission: functionPerm("report.view")},
		}})
		denied(t, "a batch reaching into another tenant", err, "TENANT_NOT_ALLOWED")
		_, err = check.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "acme", SubjectId: "ann", Permissions: []*pb.Permission{functionPerm("report.view")}})
		denied(t, "a page in another tenant", err, "TENANT_NOT_ALLOWED")

		admin := e.newKey(t, "console", []string{"admin"}, []string{"demo"}, "")
		_, err = admin.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "acme", ActorId: "oscar", Reason: "r", UserId: "ann", RoleId: "viewer"})
		denied(t, "admin write in another tenant", err, "TENANT_NOT_ALLOWED")
		_, err = admin.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", Reason: "r", UserId: "peggy", RoleId: "read_only"})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "actor_id" {
			t.Errorf("a service key naming no actor: %v", err)
		}

		bob := e.newKey(t, "bob's key", []string{"check", "admin", "audit"}, []string{"demo"}, "bob")
		if err := checkBob(bob.authz); err != nil {
			t.Errorf("bound key about its own user: %v", err)
		}
		_, err = bob.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "alice", Permission: modulePerm("account", "read")})
		denied(t, "bound key about another user", err, "SUBJECT_NOT_ALLOWED")
		_, err = bob.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "alice", Permissions: []*pb.Permission{modulePerm("account", "read")}})
		denied(t, "bound key asking a page about another user", err, "SUBJECT_NOT_ALLOWED")
		_, err = bob.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "bob", RoleId: "admin"})
		if missing := denied(t, "bound key acting as another user", err, "ACTOR_MISMATCH"); missing != "oscar" {
			t.Errorf("missing %q", missing)
		}
		_, err = bob.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", Reason: "r", UserId: "bob", RoleId: "admin"})
		if missing := denied(t, "bound key of a user without the function", err, "MISSING_PERMISSION"); missing != "admin.users.manage" {
			t.Errorf("missing %q", missing)
		}
		_, err = bob.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"})
		denied(t, "bound audit key of a user without audit.view", err, "MISSING_PERMISSION")
		if _, err := bob.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "bob"}}); err != nil {
			t.Errorf("a user lists their own grants: %v", err)
		}
		_, err = bob.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "alice"}})
		denied(t, "a user lists another's grants", err, "MISSING_PERMISSION")

		oscar := e.newKey(t, "oscar's key", []string{"audit"}, []string{"demo"}, "oscar")
		if _, err := oscar.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"}); err != nil {
			t.Errorf("bound audit key of a holder of audit.view: %v", err)
		}
		auditor := e.newKey(t, "auditors", []string{"audit"}, []string{"demo"}, "")
		if _, err := auditor.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo"}); err != nil {
			t.Errorf("an auditors' key: %v", err)
		}
		_, err = auditor.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "acme"})
		denied(t, "an auditors' key in another tenant", err, "TENANT_NOT_ALLOWED")
		// Streams too.
		for name, c := range map[string]struct {
			caller *caller
			tenant string
			reason string
		}{"export with a check key": {check, "demo", "MISSING_SCOPE"}, "export another tenant": {auditor, "acme", "TENANT_NOT_ALLOWED"}} {
			stream, err := c.caller.audit.ExportDecisions(ctx, &pb.ExportDecisionsRequest{TenantId: c.tenant})
			if err == nil {
				_, err = stream.Recv()
			}
			denied(t, name, err, c.reason)
		}

		// A platform key limited to demo manages only demo's credentials.
		ops := e.newKey(t, "demo ops", []string{"platform"}, []string{"demo"}, "")
		_, err = ops.plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: "x", Scopes: []string{"check"}, TenantIds: []string{"acme"}})
		denied(t, "a limited platform key creating a key for another tenant", err, "TENANT_NOT_ALLOWED")
		_, err = ops.plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: "x", Scopes: []string{"platform"}})
		denied(t, "a limited platform key creating one for every tenant", err, "TENANT_NOT_ALLOWED")
		keys, err := ops.plat.ListKeys(ctx, &pb.ListKeysRequest{})
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys.GetKeys() {
			if len(k.GetTenantIds()) == 0 {
				t.Errorf("a limited platform key sees key %s of every tenant", k.GetKeyId())
			}
		}
		_, err = ops.plat.RevokeKey(ctx, &pb.RevokeKeyRequest{KeyId: e.key[len("crmz_") : len("crmz_")+16], Reason: "take over"})
		denied(t, "a limited platform key revoking the root key", err, "TENANT_NOT_ALLOWED")
		if _, err := ops.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", Reason: "covers the north", UserId: "peggy", RoleId: "sales_rep"}); err != nil {
			t.Errorf("the platform operator writes in its tenant: %v", err)
		}
		_, err = ops.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "acme", Reason: "r", UserId: "ann", RoleId: "viewer"})
		denied(t, "the platform operator of demo in acme", err, "TENANT_NOT_ALLOWED")
	})
}

// TestNoEscalation tries every route to a right wider than the actor's own
// for dana, a delegated administrator: the sales_rep rights plus the four
// admin functions, but not admin.super. Each is PERMISSION_DENIED naming
// what dana lacks and changes nothing; the same writes within dana's
// rights succeed. Nobody, not even the super-administrator, removes the
// tenant's last super-administrator.
func TestNoEscalation(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		setup := func(what string, err error) {
			t.Helper()
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
		}
		_, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "delegated admins", RoleId: "team_admin",
			Inherits: []string{"sales_rep"}, Permissions: &pb.RolePermissions{
				Modules:   []*pb.ModuleVerbs{{Module: "account", Verbs: []string{"share"}, Scope: pb.DataScope_DATA_SCOPE_DEPT}},
				Functions: []string{"admin.users.manage", "admin.roles.manage", "admin.sharing.manage", "admin.settings.manage"}}})
		setup("create team_admin", err)
		_, err = e.admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "joins",
			User: &pb.User{UserId: "dana", DisplayName: "Dana", PrimaryDepartmentId: "sales_east"}})
		setup("dana joins", err)
		_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "dana runs Sales East's access", UserId: "dana", RoleId: "team_admin"})
		setup("grant team_admin", err)

		console := e.newKey(t, "admin console", []string{"admin"}, []string{"demo"}, "")
		dana := console.admin
		revision := func() int64 {
			t.Helper()
			r, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: "demo", ActorId: "oscar", PageSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			return r.GetRevision()
		}
		before := revision()
		moduleVerbs := func(module string, scope string, verbs ...string) *pb.ModuleVerbs {
			sc := pb.DataScope(pb.DataScope_value["DATA_SCOPE_"+strings.ToUpper(scope)])
			return &pb.ModuleVerbs{Module: module, Verbs: verbs, Scope: sc}
		}
		createRole := func(id string, p *pb.RolePermissions, inherits ...string) error {
			_, err := dana.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "dana", Reason: "try", RoleId: id, Permissions: p, Inherits: inherits})
			return err
		}
		routes := []struct {
			name    string
			call    func() error
			reason  string
			missing string // a prefix of what the refusal names
		}{
			{"grant self admin", func() error {
				_, err := dana.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "dana", Reason: "r", UserId: "dana", RoleId: "admin"})
				return err
			}, "ESCALATION", "module account list at scope org"},
			{"edit one's own role to add a permission", func() error {
				_, err := dana.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: "demo", ActorId: "dana", Reason: "r", RoleId: "team_admin",
					Inherits: []string{"sales_rep"}, Permissions: &pb.RolePermissions{Functions: []string{"admin.users.manage", "admin.roles.manage", "report.export"}}})
				return err
			}, "ESCALATION", "function report.export"},
			{"create a role wider than oneself", func() error {
				return createRole("deleter", &pb.RolePermissions{Modules: []*pb.ModuleVerbs{moduleVerbs("account", "", "delete")}})
			}, "ESCALATION", "module account delete"},
			{"inherit a wider role", func() error {
				return createRole("climber", &pb.RolePermissions{Functions: []string{"report.view"}}, "sales_manager")
			}, "ESCALATION", "module "},
			{"make one's own role inherit a wider one", func() error {
				_, err := dana.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: "demo", ActorId: "dana", Reason: "r", RoleId: "team_admin",
					Inherits: []string{"sales_rep", "admin"}, Permissions: &pb.RolePermissions{Functions: []string{"admin.users.manage"}}})
				return err
			}, "ESCALATION", "module "},
			{"widen a scope", func() error {
				return createRole("org_reader", &pb.RolePermissions{Modules: []*pb.ModuleVerbs{moduleVerbs("account", "org", "read")}})
			}, "ESCALATION", "module account read at scope org (held at dept)"},
			{"widen a field", func() error {
				// sales_rep's field rules, but credit_limit read-write.
				return createRole("field_writer", &pb.RolePermissions{Modules: []*pb.ModuleVerbs{moduleVerbs("account", "self", "read", "update")},
					Fields: []*pb.FieldRule{
						{Module: "account", Field: "credit_limit", State: pb.FieldState_FIELD_STATE_READ_WRITE},
						{Module: "account", Field: "tax_id", State: pb.FieldState_FIELD_STATE_READ_ONLY},
						{Module: "account", Field: "annual_revenue", State: pb.FieldState_FIELD_STATE_HIDDEN},
						{Module: "account", Field: "owner_id", State: pb.FieldState_FIELD_STATE_READ_ONLY},
					}})
			}, "ESCALATION", "field account.credit_limit write"},
			{"see a hidden field", func() error {
				return createRole("peeker", &pb.RolePermissions{Modules: []*pb.ModuleVerbs{moduleVerbs("account", "self", "read")},
					Fields: []*pb.FieldRule{{Module: "account", Field: "annual_revenue", State: pb.FieldState_FIELD_STATE_READ_ONLY}}})
			}, "ESCALATION", "field account.annual_revenue read"},
			{"grant a function one lacks", func() error {
				return createRole("super", &pb.RolePermissions{Functions: []string{"admin.super"}})
			}, "ESCALATION", "function admin.super"},
			{"share a record outside one's scope", func() error {
				_, err := dana.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "dana", Reason: "r", RecordOwnerId: "erin", RecordDepartmentId: "sales_west",
					Share: &pb.RecordShare{Module: "account", RecordId: "acc-9", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "dana"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ}})
				return err
			}, "MISSING_PERMISSION", "module account share on record acc-9"},
			{"share a record wider than one's access to it", func() error {
				// dana may share and read bob's record (scope dept) but
				// update only her own (self).
				_, err := dana.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "dana", Reason: "r", RecordOwnerId: "bob", RecordDepartmentId: "sales_east",
					Share: &pb.RecordShare{Module: "account", RecordId: "acc-8", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE}})
				return err
			}, "ESCALATION", "module account update on record acc-8"},
			{"share without naming the record's owner", func() error {
				_, err := dana.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					Share: &pb.RecordShare{Module: "account", RecordId: "acc-8", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ}})
				return err
			}, "", ""},
			{"a sharing rule over records out of reach", func() error {
				_, err := dana.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: "demo", ActorId: "dana", Reason: "r", Rule: &pb.SharingRule{
					RuleId: "west_to_dana", Module: "account", OwnedBy: &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales_west"}},
					SharedWith: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "dana"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ}})
				return err
			}, "ESCALATION", "module account list on the records owned by department:sales_west"},
			{"a read-write sharing rule over records only readable", func() error {
				_, err := dana.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: "demo", ActorId: "dana", Reason: "r", Rule: &pb.SharingRule{
					RuleId: "east_rw", Module: "account", OwnedBy: &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales_east"}},
					SharedWith: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE}})
				return err
			}, "ESCALATION", "module account update on the records owned by department:sales_east"},
			{"revoke the super-administrator", func() error {
				_, err := dana.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "dana", Reason: "r", UserId: "oscar", RoleId: "admin"})
				return err
			}, "ESCALATION", "module "},
			{"offboard the super-administrator", func() error {
				_, err := dana.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: "demo", ActorId: "dana", Reason: "r", UserId: "oscar"})
				return err
			}, "ESCALATION", "module "},
			{"bring someone back wider than oneself", func() error {
				_, err := dana.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					User: &pb.User{UserId: "alice", Status: pb.UserStatus_USER_STATUS_INACTIVE, PrimaryDepartmentId: "sales_east"}})
				return err
			}, "ESCALATION", "module "},
			{"change one's own membership", func() error {
				_, err := dana.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					Membership: &pb.Membership{UserId: "dana", PrimaryDepartmentId: "sales_west"}})
				return err
			}, "ESCALATION", "membership of dana"},
			{"become someone's manager", func() error {
				_, err := dana.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					Membership: &pb.Membership{UserId: "erin", PrimaryDepartmentId: "sales_west", ManagerId: "dana"}})
				return err
			}, "ESCALATION", "manager of erin"},
			{"place someone in a department out of one's reach", func() error {
				_, err := dana.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					Membership: &pb.Membership{UserId: "peggy", PrimaryDepartmentId: "sales_east", OtherDepartmentIds: []string{"finance"}}})
				return err
			}, "ESCALATION", "department finance"},
			{"raise the manager depth", func() error {
				_, err := dana.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: "demo", ActorId: "dana", Reason: "r", ManagerDepth: 5})
				return err
			}, "ESCALATION", "manager depth 5"},
			{"move a department into one's reach", func() error {
				_, err := dana.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: "demo", ActorId: "dana", Reason: "r",
					Department: &pb.Department{DepartmentId: "finance", Name: "Finance", ParentId: "sales_east"}})
				return err
			}, "ESCALATION", "department finance"},
			{"a user without the function", func() error {
				_, err := dana.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "bob", Reason: "r", UserId: "bob", RoleId: "sales_rep"})
				return err
			}, "MISSING_PERMISSION", "admin.users.manage"},
		}
		for _, r := range routes {
			err := r.call()
			if r.reason == "" {
				if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "record_owner_id" {
					t.Errorf("%s: %v, want INVALID_ARGUMENT on record_owner_id", r.name, err)
				}
				continue
			}
			if missing := denied(t, r.name, err, r.reason); !strings.HasPrefix(missing, r.missing) {
				t.Errorf("%s: missing %q, want it to start with %q", r.name, missing, r.missing)
			}
		}
		if after := revision(); after != before {
			t.Fatalf("refused writes changed the tenant: revision %d → %d", before, after)
		}

		// Within dana's rights, the same kinds of writes go through.
		if _, err := dana.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "dana", Reason: "new rep", UserId: "peggy", RoleId: "sales_rep"}); err != nil {
			t.Errorf("grant a role within one's rights: %v", err)
		}
		if err := createRole("east_reader", &pb.RolePermissions{Modules: []*pb.ModuleVerbs{moduleVerbs("account", "self", "list", "read")},
			Fields: []*pb.FieldRule{{Module: "account", Field: "credit_limit", State: pb.FieldState_FIELD_STATE_HIDDEN},
				{Module: "account", Field: "annual_revenue", State: pb.FieldState_FIELD_STATE_HIDDEN}}}); err != nil {
			t.Errorf("create a narrower role: %v", err)
		}
		if _, err := dana.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "dana", Reason: "cover", RecordOwnerId: "dana", RecordDepartmentId: "sales_east",
			Share: &pb.RecordShare{Module: "account", RecordId: "acc-7", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "bob"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE}}); err != nil {
			t.Errorf("share one's own record read-write: %v", err)
		}
		if _, err := dana.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "dana", Reason: "cover", RecordOwnerId: "bob", RecordDepartmentId: "sales_east",
			Share: &pb.RecordShare{Module: "account", RecordId: "acc-8", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ}}); err != nil {
			t.Errorf("share a department's record read-only: %v", err)
		}
		if _, err := dana.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: "demo", ActorId: "dana", Reason: "team", Rule: &pb.SharingRule{
			RuleId: "east_to_peggy", Module: "account", OwnedBy: &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales_east"}},
			SharedWith: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}}, Access: pb.RecordAccess_RECORD_ACCESS_READ}}); err != nil {
			t.Errorf("share one's department's records read-only: %v", err)
		}
		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", ActorId: "dana"})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := dana.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: "demo", ActorId: "dana", Reason: "joins the team",
			Membership: &pb.Membership{UserId: "peggy", PrimaryDepartmentId: "sales_east"}}); err != nil {
			t.Errorf("place someone in one's own department: %v", err)
		}
		if _, err := dana.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: "demo", ActorId: "dana", Reason: "less reach", ManagerDepth: 1}); err != nil {
			t.Errorf("lower the manager depth: %v", err)
		}
		if len(changes.GetChanges()) != 5 {
			t.Fatalf("dana's changes: %v", changes.GetChanges())
		}
		for _, c := range changes.GetChanges() {
			if !strings.HasPrefix(c.GetCredential(), "key:") || c.GetCredential() == "key:" {
				t.Errorf("change %d records credential %q", c.GetRevision(), c.GetCredential())
			}
		}

		// The last super-administrator stays, whoever tries.
		_, err = e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "oscar", RoleId: "admin"})
		if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "LAST_SUPER_ADMIN" {
			t.Errorf("revoke the last super-administrator: %v", err)
		}
		_, err = e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", Reason: "r", UserId: "oscar", RoleId: "admin"})
		if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "LAST_SUPER_ADMIN" {
			t.Errorf("the platform operator revokes the last super-administrator: %v", err)
		}
		_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "oscar", RoleId: "restricted_export"})
		if err != nil {
			t.Fatalf("a narrowing role that keeps admin.super: %v", err)
		}
		_, err = e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", RoleId: "no_super",
			Permissions: &pb.RolePermissions{DenyFunctions: []string{"admin.super"}}})
		setup("create no_super", err)
		_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "oscar", RoleId: "no_super"})
		if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "LAST_SUPER_ADMIN" {
			t.Errorf("deny the last super-administrator admin.super: %v", err)
		}
		// With a second super-administrator, the first may go.
		_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "deputy", UserId: "judy", RoleId: "admin"})
		setup("a second super-administrator", err)
		if _, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "judy", Reason: "handover", UserId: "oscar", RoleId: "admin"}); err != nil {
			t.Errorf("revoke one of two super-administrators: %v", err)
		}
	})
}

// TestSecurityEventsAreAudited: refused authentications and refused calls
// are listed with the credential, actor, method, reason, request id and
// peer; a credential limited to a tenant sees only that tenant's events.
func TestSecurityEventsAreAudited(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		console := e.newKey(t, "console", []string{"admin", "audit"}, []string{"demo"}, "")
		_, err := console.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "bob", Reason: "r", UserId: "bob", RoleId: "admin"})
		denied(t, "bob grants himself admin", err, "MISSING_PERMISSION")
		_, err = console.admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: "acme", ActorId: "oscar"})
		denied(t, "another tenant", err, "TENANT_NOT_ALLOWED")
		wrong := console.key[:len(console.key)-4] + "AAAA"
		for range 3 {
			unauthenticated(t, "wrong secret", checkBob(e.as(t, wrong).authz))
		}

		var events []*pb.SecurityEvent
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			resp, err := e.audit.ListSecurityEvents(ctx, &pb.ListSecurityEventsRequest{PageSize: 100})
			if err != nil {
				t.Fatal(err)
			}
			if events = resp.GetEvents(); len(events) >= 6 { // 2 keys created, 2 refused calls, 3 refusals... at least
				break
			}
		}
		find := func(kind, reason string) *pb.SecurityEvent {
			for _, ev := range events {
				if ev.GetKind() == kind && ev.GetReason() == reason {
					return ev
				}
			}
			t.Fatalf("no %s %s event in %v", kind, reason, events)
			return nil
		}
		ev := find("call.refused", "MISSING_PERMISSION")
		if ev.GetActorId() != "bob" || ev.GetTenantId() != "demo" || ev.GetMethod() != "/crmauthz.v1.AdminService/GrantRole" ||
			ev.GetRequestId() == "" || ev.GetPeer() == "" || !strings.HasPrefix(ev.GetCredential(), "key:") {
			t.Errorf("refused call recorded as %v", ev)
		}
		find("call.refused", "TENANT_NOT_ALLOWED")
		bad := find("authn.refused", "WRONG_SECRET")
		if bad.GetCredential() != "key:"+console.key[len("crmz_"):len("crmz_")+16] || strings.Contains(bad.String(), wrong) {
			t.Errorf("refused authentication recorded as %v", bad)
		}
		find("credential.created", "CREDENTIAL_CREATED")

		// An auditor of demo sees demo's events only, none of no tenant.
		resp, err := console.audit.ListSecurityEvents(ctx, &pb.ListSecurityEventsRequest{PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.GetEvents() {
			if ev.GetTenantId() != "demo" {
				t.Errorf("demo's auditor sees %v", ev)
			}
		}
		_, err = console.audit.ListSecurityEvents(ctx, &pb.ListSecurityEventsRequest{TenantId: "acme"})
		denied(t, "acme's events", err, "TENANT_NOT_ALLOWED")
	})
}

// TestDemoModeStillChecksActors: without authentication the request's
// actor is taken as given, and checked like any actor: the escalation
// rule holds in the demo too. GetLogStatus says authentication is off.
func TestDemoModeStillChecksActors(t *testing.T) {
	e := startAudit(t, config.Config{})
	_, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "bob", Reason: "r", UserId: "bob", RoleId: "admin"})
	denied(t, "bob grants himself admin in the demo", err, "MISSING_PERMISSION")
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", UserId: "peggy", RoleId: "sales_rep"}); err != nil {
		t.Errorf("oscar grants in the demo: %v", err)
	}
	_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", Reason: "r", UserId: "peggy", RoleId: "sales_rep"})
	if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "actor_id" {
		t.Errorf("a write naming no actor in the demo: %v", err)
	}
	st, err := e.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
	if err != nil || !strings.HasPrefix(st.GetAuthentication(), "off (demo") {
		t.Errorf("status: %v %v", st, err)
	}
}
