package app_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

var ctx = context.Background()

func reasonKinds(resp *pb.CheckResponse) []pb.ReasonKind {
	var out []pb.ReasonKind
	for _, r := range resp.GetReasons() {
		out = append(out, r.GetKind())
	}
	return out
}

// TestGrantCheckRevoke walks an admin granting a role, the check that follows
// it, and the revocation.
func TestGrantCheckRevoke(t *testing.T) {
	e := start(t, cfgDefault())
	read := modulePerm("lead", "read")
	before := e.check(t, "demo", "peggy", read)
	if before.GetAllowed() {
		t.Fatal("peggy has no grants yet but may read leads")
	}
	if !slices.Equal(reasonKinds(before), []pb.ReasonKind{pb.ReasonKind_REASON_KIND_NOT_GRANTED}) {
		t.Fatalf("deny reasons %v", before.GetReasons())
	}

	g, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "joins marketing campaigns", UserId: "peggy", RoleId: "sales_rep"})
	if err != nil {
		t.Fatal(err)
	}
	if g.GetRevision() != before.GetRevision()+1 || g.GetGrant().GetGrantedBy() != "oscar" || !g.GetGrant().GetActive() {
		t.Fatalf("grant response %v (revision before %d)", g, before.GetRevision())
	}
	after := e.check(t, "demo", "peggy", read)
	if !after.GetAllowed() || after.GetRevision() != g.GetRevision() {
		t.Fatalf("after grant: %v", after)
	}
	r := after.GetReasons()[0]
	if r.GetKind() != pb.ReasonKind_REASON_KIND_ALLOWED_BY_ROLE || r.GetRoleId() != "sales_rep" || r.GetRule() != "p, r:sales_rep, demo, m:lead, read, allow" {
		t.Fatalf("allow reason %v", r)
	}
	eff, err := e.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: "demo", SubjectId: "peggy"})
	if err != nil {
		t.Fatal(err)
	}
	if len(eff.GetRoles()) != 1 || eff.GetRoles()[0].GetRoleId() != "sales_rep" || len(eff.GetModules()) == 0 {
		t.Fatalf("effective permissions %v", eff)
	}

	list, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}})
	if err != nil || len(list.GetGrants()) != 1 {
		t.Fatalf("list grants: %v %v", list, err)
	}

	rv, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "campaign over", UserId: "peggy", RoleId: "sales_rep"})
	if err != nil {
		t.Fatal(err)
	}
	if rv.GetRevision() != g.GetRevision()+1 {
		t.Fatalf("revoke revision %d", rv.GetRevision())
	}
	if e.check(t, "demo", "peggy", read).GetAllowed() {
		t.Fatal("still allowed after revoke")
	}
	_, err = e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "again", UserId: "peggy", RoleId: "sales_rep"})
	if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "GRANT_NOT_FOUND" {
		t.Fatalf("second revoke: %v", err)
	}
}

// TestGrantExpiry shows a time-bound grant deciding until it expires and
// nothing after, without any sweep.
func TestGrantExpiry(t *testing.T) {
	e := start(t, cfgDefault())
	until := e.clock.Now().Add(time.Hour)
	_, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "quarter-end close", UserId: "peggy", RoleId: "finance_readonly", ExpiresAt: timestamppb.New(until)})
	if err != nil {
		t.Fatal(err)
	}
	p := modulePerm("invoice", "read")
	if !e.check(t, "demo", "peggy", p).GetAllowed() {
		t.Fatal("time-bound grant does not apply before it expires")
	}
	e.clock.Advance(2 * time.Hour)
	resp := e.check(t, "demo", "peggy", p)
	if resp.GetAllowed() {
		t.Fatal("expired grant still allows")
	}
	if !slices.Contains(reasonKinds(resp), pb.ReasonKind_REASON_KIND_GRANT_EXPIRED) {
		t.Fatalf("reasons %v do not name the expired grant", resp.GetReasons())
	}
	active, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}})
	if err != nil || len(active.GetGrants()) != 0 {
		t.Fatalf("active grants after expiry: %v %v", active, err)
	}
	all, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}, IncludeExpired: true})
	if err != nil || len(all.GetGrants()) != 1 || all.GetGrants()[0].GetActive() {
		t.Fatalf("all grants after expiry: %v %v", all, err)
	}
	// A grant cannot be made already expired.
	_, err = e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "x", UserId: "peggy", RoleId: "sales_rep", ExpiresAt: timestamppb.New(e.clock.Now().Add(-time.Minute))})
	if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "expires_at" {
		t.Fatalf("past expiry: %v", err)
	}
}

// TestDenyNarrows shows a narrowing role's deny beating another role's
// grant, with the deny named in the explanation.
func TestDenyNarrows(t *testing.T) {
	e := start(t, cfgDefault())
	p := functionPerm("data.export")
	if !e.check(t, "demo", "alice", p).GetAllowed() {
		t.Fatal("sales manager alice cannot export")
	}
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "export freeze", UserId: "alice", RoleId: "restricted_export"}); err != nil {
		t.Fatal(err)
	}
	resp := e.check(t, "demo", "alice", p)
	if resp.GetAllowed() {
		t.Fatal("deny did not narrow")
	}
	var deny *pb.Reason
	for _, r := range resp.GetReasons() {
		if r.GetKind() == pb.ReasonKind_REASON_KIND_DENIED_BY_ROLE {
			deny = r
		}
	}
	if deny == nil || deny.GetRoleId() != "restricted_export" || !strings.HasSuffix(deny.GetRule(), "f:data.export, use, deny") {
		t.Fatalf("reasons %v", resp.GetReasons())
	}
}

// TestRoleLifecycle creates roles from a template and from scratch, reads,
// lists, updates and deletes them, with inheritance.
func TestRoleLifecycle(t *testing.T) {
	e := start(t, cfgDefault())
	created, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "field sales team", RoleId: "field_sales", TemplateId: "sales_rep"})
	if err != nil {
		t.Fatal(err)
	}
	if created.GetRole().GetTemplateId() != "sales_rep" || len(created.GetRole().GetPermissions().GetModules()) == 0 {
		t.Fatalf("from template: %v", created.GetRole())
	}
	perms := &pb.RolePermissions{
		Modules:   []*pb.ModuleVerbs{{Module: "campaign", Verbs: []string{"list", "read", "update"}}},
		Fields:    []*pb.FieldRule{{Module: "campaign", Field: "budgeted_cost", State: pb.FieldState_FIELD_STATE_HIDDEN}},
		Functions: []string{"email.mass_send"},
	}
	mkt, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "marketing", RoleId: "marketer", DisplayName: "Marketer", Permissions: perms, Inherits: []string{"field_sales"}})
	if err != nil {
		t.Fatal(err)
	}
	if mkt.GetRevision() != created.GetRevision()+1 {
		t.Fatalf("revisions %d then %d", created.GetRevision(), mkt.GetRevision())
	}
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "marketing hire", UserId: "peggy", RoleId: "marketer"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		p    *pb.Permission
		want bool
	}{
		{modulePerm("campaign", "update"), true},
		{fieldPerm("campaign", "budgeted_cost", false), true}, // hidden here, but the inherited role reads it: roles are additive
		{fieldPerm("campaign", "budgeted_cost", true), false}, // no role of peggy's writes it
		{fieldPerm("campaign", "name", true), true},           // follows update
		{modulePerm("account", "read"), true},                 // inherited from field_sales
		{functionPerm("email.mass_send"), true},               // own function
		{modulePerm("campaign", "delete"), false},             // never granted
		{fieldPerm("account", "credit_limit", true), false},   // sales_rep rule keeps it read-only
	} {
		if got := e.check(t, "demo", "peggy", c.p).GetAllowed(); got != c.want {
			t.Errorf("%v: allowed=%v, want %v", c.p, got, c.want)
		}
	}

	got, err := e.admin.GetRole(ctx, &pb.GetRoleRequest{ActorId: "oscar", TenantId: "demo", RoleId: "marketer"})
	if err != nil || got.GetRole().GetDisplayName() != "Marketer" || !slices.Equal(got.GetRole().GetInherits(), []string{"field_sales"}) {
		t.Fatalf("get role: %v %v", got, err)
	}

	// Pages of two cover every role exactly once, in order.
	var ids []string
	token := ""
	for {
		page, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo", PageSize: 2, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range page.GetRoles() {
			ids = append(ids, r.GetRoleId())
		}
		if token = page.GetNextPageToken(); token == "" {
			break
		}
	}
	if !slices.IsSorted(ids) || len(ids) != 11 || !slices.Contains(ids, "marketer") {
		t.Fatalf("listed roles %v", ids)
	}

	// Remove the inheritance; account access goes with it.
	upd, err := e.admin.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: "demo", ActorId: "oscar", Reason: "narrow marketing", RoleId: "marketer", Permissions: perms})
	if err != nil {
		t.Fatal(err)
	}
	if len(upd.GetRole().GetInherits()) != 0 || e.check(t, "demo", "peggy", modulePerm("account", "read")).GetAllowed() ||
		e.check(t, "demo", "peggy", fieldPerm("campaign", "budgeted_cost", false)).GetAllowed() {
		t.Fatalf("update did not take effect: %v", upd.GetRole())
	}

	// In use: refused; after revoking: deleted.
	_, err = e.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cleanup", RoleId: "marketer"})
	if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "ROLE_IN_USE" {
		t.Fatalf("delete in use: %v", err)
	}
	if _, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cleanup", UserId: "peggy", RoleId: "marketer"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cleanup", RoleId: "marketer"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin.GetRole(ctx, &pb.GetRoleRequest{ActorId: "oscar", TenantId: "demo", RoleId: "marketer"})
	if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "ROLE_NOT_FOUND" {
		t.Fatalf("get deleted role: %v", err)
	}

	tpl, err := e.admin.ListRoleTemplates(ctx, &pb.ListRoleTemplatesRequest{})
	if err != nil || len(tpl.GetTemplates()) != 6 {
		t.Fatalf("templates: %v %v", tpl, err)
	}
}

// TestRoleConflicts covers writes the tenant's state refuses.
func TestRoleConflicts(t *testing.T) {
	e := start(t, cfgDefault())
	scratch := &pb.RolePermissions{Functions: []string{"report.view"}}
	mk := func(id string, inherits ...string) error {
		_, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "test", RoleId: id, Permissions: scratch, Inherits: inherits})
		return err
	}
	if err := mk("a"); err != nil {
		t.Fatal(err)
	}
	if err := mk("b", "a"); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
	}{
		{"duplicate", mk("a"), codes.AlreadyExists, "ROLE_EXISTS"},
		{"unknown tenant", func() error {
			_, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "nowhere", ActorId: "oscar", Reason: "x", RoleId: "x", Permissions: scratch})
			return err
		}(), codes.NotFound, "TENANT_NOT_FOUND"},
		{"cycle", func() error {
			_, err := e.admin.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: "demo", ActorId: "oscar", Reason: "x", RoleId: "a", Permissions: scratch, Inherits: []string{"b"}})
			return err
		}(), codes.FailedPrecondition, "ROLE_INHERITANCE_CYCLE"},
		{"inherits missing role", mk("c", "ghost"), codes.InvalidArgument, "ROLE_NOT_FOUND"},
		{"grant of unknown role", func() error {
			_, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "x", UserId: "bob", RoleId: "ghost"})
			return err
		}(), codes.NotFound, "ROLE_NOT_FOUND"},
		{"check in unknown tenant", func() error {
			_, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "nowhere", SubjectId: "bob", Permission: modulePerm("account", "read")})
			return err
		}(), codes.NotFound, "TENANT_NOT_FOUND"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, reason, _ := errorInfo(t, tt.err); code != tt.code || reason != tt.reason {
				t.Fatalf("got %v %s (%v), want %v %s", code, reason, tt.err, tt.code, tt.reason)
			}
		})
	}
}

func TestBatchCheckAnswersInOrder(t *testing.T) {
	e := start(t, cfgDefault())
	items := []*pb.BatchCheckItem{
		{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")},
		{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "delete")},
		{TenantId: "demo", SubjectId: "oscar", Permission: functionPerm("admin.roles.manage")},
		{TenantId: "demo", SubjectId: "peggy", Permission: fieldPerm("account", "name", false)},
	}
	resp, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	var got []bool
	for _, r := range resp.GetResults() {
		got = append(got, r.GetAllowed())
	}
	if !slices.Equal(got, []bool{true, false, true, false}) {
		t.Fatalf("batch results %v", got)
	}
}

func TestHealthAndReflection(t *testing.T) {
	e := start(t, cfgDefault())
	for _, svc := range []string{"", "crmauthz.v1.AuthorizationService", "crmauthz.v1.AdminService"} {
		resp, err := healthpb.NewHealthClient(e.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("health %q: %v %v", svc, resp, err)
		}
	}
	stream, err := grpc_reflection_v1.NewServerReflectionClient(e.conn).ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&grpc_reflection_v1.ServerReflectionRequest{MessageRequest: &grpc_reflection_v1.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	resp, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range resp.GetListServicesResponse().GetService() {
		names = append(names, s.GetName())
	}
	for _, want := range []string{"crmauthz.v1.AuthorizationService", "crmauthz.v1.AdminService", "grpc.health.v1.Health"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
	_ = stream.CloseSend()
}
