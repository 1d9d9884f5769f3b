package app_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestBadInput sends malformed requests through gRPC: each must fail with
// INVALID_ARGUMENT naming the offending field, and no write may change the
// tenant.
func TestBadInput(t *testing.T) {
	e := start(t, cfgDefault())
	check := func(tenant, subject string, p *pb.Permission) error {
		_, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: tenant, SubjectId: subject, Permission: p})
		return err
	}
	createRole := func(mut func(*pb.CreateRoleRequest)) error {
		req := &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "test", RoleId: "new_role", Permissions: &pb.RolePermissions{Functions: []string{"report.view"}}}
		mut(req)
		_, err := e.admin.CreateRole(ctx, req)
		return err
	}
	grant := func(mut func(*pb.GrantRoleRequest)) error {
		req := &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "test", UserId: "peggy", RoleId: "sales_rep"}
		mut(req)
		_, err := e.admin.GrantRole(ctx, req)
		return err
	}
	batch := func(n int, bad int) error {
		items := make([]*pb.BatchCheckItem, n)
		for i := range items {
			items[i] = &pb.BatchCheckItem{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")}
		}
		if bad >= 0 {
			items[bad].SubjectId = "bob,alice"
		}
		_, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: items})
		return err
	}
	read := modulePerm("account", "read")
	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"empty tenant", check("", "bob", read), "tenant_id"},
		{"tenant pattern", check("de*mo", "bob", read), "tenant_id"},
		{"tenant with comma", check("demo,other", "bob", read), "tenant_id"},
		{"tenant upper case", check("Demo", "bob", read), "tenant_id"},
		{"empty subject", check("demo", "", read), "subject_id"},
		{"subject with space", check("demo", "bob smith", read), "subject_id"},
		{"subject with newline", check("demo", "bob\n", read), "subject_id"},
		{"subject with colon", check("demo", "r:admin", read), "subject_id"},
		{"subject wildcard", check("demo", "*", read), "subject_id"},
		{"subject keyMatch", check("demo", "keyMatch(bob)", read), "subject_id"},
		{"subject too long", check("demo", strings.Repeat("b", 129), read), "subject_id"},
		{"no permission", check("demo", "bob", nil), "permission"},
		{"empty permission", check("demo", "bob", &pb.Permission{}), "permission"},
		{"unknown module", check("demo", "bob", modulePerm("spaceship", "read")), "permission.module.module"},
		{"unknown verb", check("demo", "bob", modulePerm("account", "fly")), "permission.module.verb"},
		{"verb pattern", check("demo", "bob", modulePerm("account", "read*")), "permission.module.verb"},
		{"module with dot", check("demo", "bob", modulePerm("account.name", "read")), "permission.module.module"},
		{"function not dotted", check("demo", "bob", functionPerm("report")), "permission.function.function"},
		{"unknown function", check("demo", "bob", functionPerm("report.fly")), "permission.function.function"},
		{"function empty segment", check("demo", "bob", functionPerm("report..view")), "permission.function.function"},
		{"unknown field", check("demo", "bob", fieldPerm("account", "shoe_size", false)), "permission.field.field"},
		{"field of unknown module", check("demo", "bob", fieldPerm("spaceship", "name", false)), "permission.field.module"},
		{"bad access mode", check("demo", "bob", &pb.Permission{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: "account", Field: "name", Access: 7}}}), "permission.field.access"},
		{"empty batch", batch(0, -1), "items"},
		{"oversize batch", batch(1001, -1), "items"},
		{"bad batch item", batch(3, 1), "items[1].subject_id"},
		{"field access unknown module", func() error {
			_, err := e.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "bob", Module: "spaceship"})
			return err
		}(), "module"},
		{"effective bad subject", func() error {
			_, err := e.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: "demo", SubjectId: "a\tb"})
			return err
		}(), "subject_id"},

		{"role id with space", createRole(func(r *pb.CreateRoleRequest) { r.RoleId = "sales rep" }), "role_id"},
		{"role id upper case", createRole(func(r *pb.CreateRoleRequest) { r.RoleId = "Admin" }), "role_id"},
		{"role id too long", createRole(func(r *pb.CreateRoleRequest) { r.RoleId = strings.Repeat("r", 65) }), "role_id"},
		{"no actor", createRole(func(r *pb.CreateRoleRequest) { r.ActorId = "" }), "actor_id"},
		{"no reason", createRole(func(r *pb.CreateRoleRequest) { r.Reason = "" }), "reason"},
		{"reason too long", createRole(func(r *pb.CreateRoleRequest) { r.Reason = strings.Repeat("x", 1025) }), "reason"},
		{"reason with control character", createRole(func(r *pb.CreateRoleRequest) { r.Reason = "a\x00b" }), "reason"},
		{"unknown template", createRole(func(r *pb.CreateRoleRequest) { r.TemplateId = "superuser"; r.Permissions = nil }), "template_id"},
		{"no permissions", createRole(func(r *pb.CreateRoleRequest) { r.Permissions = nil }), "permissions"},
		{"unknown verb in role", createRole(func(r *pb.CreateRoleRequest) {
			r.Permissions.Modules = []*pb.ModuleVerbs{{Module: "account", Verbs: []string{"read", "teleport"}}}
		}), "permissions.modules[0].verbs[1]"},
		{"verb twice", createRole(func(r *pb.CreateRoleRequest) {
			r.Permissions.Modules = []*pb.ModuleVerbs{{Module: "lead", Verbs: []string{"read"}}, {Module: "lead", Verbs: []string{"list", "read"}, Scope: pb.DataScope_DATA_SCOPE_SELF}}
		}), "permissions.modules[1].verbs[1]"},
		{"field rule without state", createRole(func(r *pb.CreateRoleRequest) {
			r.Permissions.Fields = []*pb.FieldRule{{Module: "account", Field: "name"}}
		}), "permissions.fields[0].state"},
		{"unknown denied function", createRole(func(r *pb.CreateRoleRequest) {
			r.Permissions.DenyFunctions = []string{"data.*"}
		}), "permissions.deny_functions[0]"},
		{"inherits pattern", createRole(func(r *pb.CreateRoleRequest) { r.Inherits = []string{"r:admin"} }), "inherits[0]"},
		{"grant user with space", grant(func(r *pb.GrantRoleRequest) { r.UserId = "a b" }), "user_id"},
		{"grant without role", grant(func(r *pb.GrantRoleRequest) { r.RoleId = "" }), "role_id"},
		{"grant tenant pattern", grant(func(r *pb.GrantRoleRequest) { r.TenantId = "*" }), "tenant_id"},
		{"grant invalid expiry", grant(func(r *pb.GrantRoleRequest) { r.ExpiresAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -1} }), "expires_at"},
		{"grant expiry in the past", grant(func(r *pb.GrantRoleRequest) { r.ExpiresAt = timestamppb.New(e.clock.Now().Add(-1)) }), "expires_at"},
		{"grant expiry at the zero time", grant(func(r *pb.GrantRoleRequest) { r.ExpiresAt = &timestamppb.Timestamp{Seconds: -62135596800} }), "expires_at"},
		{"list roles page too big", func() error {
			_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo", PageSize: 5000})
			return err
		}(), "page_size"},
		{"list roles bad token", func() error {
			_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo", PageToken: "!!not-a-token"})
			return err
		}(), "page_token"},
		{"list grants without filter", func() error {
			_, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo"})
			return err
		}(), "filter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, field := errorInfo(t, tt.err)
			if code != codes.InvalidArgument || field != tt.field || reason == "" {
				t.Fatalf("got %v reason=%q field=%q (%v), want INVALID_ARGUMENT naming %q", code, reason, field, tt.err, tt.field)
			}
			if !strings.Contains(tt.err.Error(), tt.field) {
				t.Fatalf("message %q does not name %q", tt.err, tt.field)
			}
		})
	}

	// Nothing changed: the seeded tenant is still at revision 1, with its
	// roles and peggy without grants.
	roles, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if roles.GetRevision() != 1 || len(roles.GetRoles()) != 9 {
		t.Fatalf("after bad writes: revision %d, %d roles", roles.GetRevision(), len(roles.GetRoles()))
	}
	grants, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}, IncludeExpired: true})
	if err != nil || len(grants.GetGrants()) != 0 {
		t.Fatalf("peggy's grants after bad writes: %v %v", grants, err)
	}
}

// TestBadInputMessages: free text refuses bidirectional controls and
// zero-width characters, and every refusal quotes the offending character
// whole, with its code point and byte offset, never a broken byte of it.
func TestBadInputMessages(t *testing.T) {
	e := start(t, cfgDefault())
	createRole := func(mut func(*pb.CreateRoleRequest)) error {
		req := &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "test", RoleId: "new_role", Permissions: &pb.RolePermissions{Functions: []string{"report.view"}}}
		mut(req)
		_, err := e.admin.CreateRole(ctx, req)
		return err
	}
	grant := func(mut func(*pb.GrantRoleRequest)) error {
		req := &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "test", UserId: "peggy", RoleId: "sales_rep"}
		mut(req)
		_, err := e.admin.GrantRole(ctx, req)
		return err
	}
	tests := []struct {
		name   string
		err    error
		field  string
		reason string
		want   string // in the message
	}{
		{"reason with right-to-left override", grant(func(r *pb.GrantRoleRequest) { r.Reason = "covers north \u202etsae" }),
			"reason", "INVALID_TEXT", "U+202E), a bidirectional control character, at byte 13"},
		{"reason with isolate", grant(func(r *pb.GrantRoleRequest) { r.Reason = "\u2067x\u2069" }),
			"reason", "INVALID_TEXT", "U+2067), a bidirectional control character, at byte 0"},
		{"reason with zero width space", grant(func(r *pb.GrantRoleRequest) { r.Reason = "ok\u200b" }),
			"reason", "INVALID_TEXT", "U+200B), a zero-width character, at byte 2"},
		{"display name with byte order mark", createRole(func(r *pb.CreateRoleRequest) { r.DisplayName = "Sales\ufeff" }),
			"display_name", "INVALID_TEXT", "U+FEFF), a zero-width character, at byte 5"},
		{"description with left-to-right mark", createRole(func(r *pb.CreateRoleRequest) { r.Description = "Café\u200e" }),
			"description", "INVALID_TEXT", "U+200E), a bidirectional control character, at byte 5"},
		{"department name with joiner", func() error {
			_, err := e.admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: "demo", ActorId: "oscar", Reason: "test",
				Department: &pb.Department{DepartmentId: "north", Name: "No\u200drth"}})
			return err
		}(), "department.name", "INVALID_TEXT", "U+200D), a zero-width character, at byte 2"},
		{"user id with two-byte character", grant(func(r *pb.GrantRoleRequest) { r.UserId = "jos\u00e9" }),
			"user_id", "INVALID_IDENTIFIER", "has 'é' (U+00E9) at byte 3"},
		{"role id with euro sign", grant(func(r *pb.GrantRoleRequest) { r.RoleId = "\u20acrep" }),
			"role_id", "INVALID_IDENTIFIER", "must not start with '€' (U+20AC) (at byte 0)"},
		{"actor id with override", grant(func(r *pb.GrantRoleRequest) { r.ActorId = "oscar\u202e" }),
			"actor_id", "INVALID_IDENTIFIER", `has '\u202e' (U+202E) at byte 5`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, field := errorInfo(t, tt.err)
			if code != codes.InvalidArgument || field != tt.field || reason != tt.reason {
				t.Fatalf("got %v reason=%q field=%q (%v), want INVALID_ARGUMENT %s naming %q", code, reason, field, tt.err, tt.reason, tt.field)
			}
			if msg := status.Convert(tt.err).Message(); !strings.Contains(msg, tt.field) || !strings.Contains(msg, tt.want) {
				t.Fatalf("message %q does not name %q and say %q", msg, tt.field, tt.want)
			}
		})
	}
}

// TestPageTokensAreChecked: each listing takes only its own page tokens and
// checks what a token holds; a token of another listing, of the untyped
// form of before, or holding what no listing returns is INVALID_ARGUMENT on
// page_token, while tokens from the listing itself page to the end.
func TestPageTokensAreChecked(t *testing.T) {
	// The demo grants are made two days before the calls, so the access
	// review of the last day lists them.
	clk := &clock{t: time.Now().Add(-48 * time.Hour)}
	e := startClock(t, cfgDefault(), clk)
	clk.Advance(48 * time.Hour)
	raw := func(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }
	byRole := &pb.ListGrantsRequest_RoleId{RoleId: "sales_rep"}

	roles, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo", PageSize: 1})
	if err != nil || roles.GetNextPageToken() == "" {
		t.Fatalf("roles: %v %v", roles, err)
	}
	grants, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: byRole, PageSize: 1})
	if err != nil || grants.GetNextPageToken() == "" {
		t.Fatalf("grants: %v %v", grants, err)
	}
	unused, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "demo", UnusedDays: 1, PageSize: 1})
	if err != nil || unused.GetNextPageToken() == "" {
		t.Fatalf("unused grants: %v %v", unused, err)
	}
	decisions, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"})
	if err != nil || decisions.GetResumeToken() == "" {
		t.Fatalf("decisions: %v %v", decisions, err)
	}

	listRoles := func(tok string) error {
		_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo", PageToken: tok})
		return err
	}
	listGrants := func(tok string) error {
		_, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: byRole, PageToken: tok})
		return err
	}
	listUnused := func(tok string) error {
		_, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "demo", UnusedDays: 1, PageToken: tok})
		return err
	}
	tests := []struct {
		name string
		err  error
	}{
		{"roles: a grants token", listRoles(grants.GetNextPageToken())},
		{"roles: an unused grants token", listRoles(unused.GetNextPageToken())},
		{"roles: a decisions token", listRoles(decisions.GetResumeToken())},
		{"roles: the untyped token of before", listRoles(raw("sales_rep"))},
		{"roles: not base64", listRoles("!!")},
		{"roles: not a role id", listRoles(raw("RSales Rep"))},
		{"roles: a pattern", listRoles(raw("R*"))},
		{"grants: a roles token", listGrants(roles.GetNextPageToken())},
		{"grants: an unused grants token", listGrants(unused.GetNextPageToken())},
		{"grants: the untyped token of before", listGrants(raw("bob\x00sales_rep"))},
		{"grants: no role id", listGrants(raw("Gbob"))},
		{"grants: not a user id", listGrants(raw("Gbob smith\x00sales_rep"))},
		{"unused grants: a grants token", listUnused(grants.GetNextPageToken())},
		{"unused grants: a roles token", listUnused(roles.GetNextPageToken())},
		{"unused grants: the untyped token of before", listUnused(raw("bob\x00sales_rep"))},
		{"unused grants: not a role id", listUnused(raw("Ubob\x00r:admin"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, field := errorInfo(t, tt.err)
			if code != codes.InvalidArgument || field != "page_token" || reason != "INVALID_VALUE" {
				t.Fatalf("got %v reason=%q field=%q (%v), want INVALID_ARGUMENT INVALID_VALUE naming page_token", code, reason, field, tt.err)
			}
		})
	}

	// A listing's own tokens page through it: every sales_rep grant once.
	var users []string
	req := &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: byRole, PageSize: 1}
	for {
		page, err := e.admin.ListGrants(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, g := range page.GetGrants() {
			users = append(users, g.GetUserId())
		}
		if req.PageToken = page.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	all, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: byRole})
	if err != nil || len(users) < 2 || len(users) != len(all.GetGrants()) || !slices.IsSorted(users) {
		t.Fatalf("paged %v, all %v (%v)", users, all.GetGrants(), err)
	}
}
