package app_test

import (
	"encoding/base64"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestBadInput sends malformed requests through gRPC, on memory and
// PostgreSQL (both without authentication, where every call names its
// actor): each must fail with INVALID_ARGUMENT naming the offending field,
// and no write may change the tenant.
func TestBadInput(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		cfg.InsecureNoAuth = true
		testBadInput(t, start(t, cfg))
	})
}

func testBadInput(t *testing.T, e *env) {
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
	gov := pb.NewGovernanceServiceClient(e.conn)
	const reqID, rvwID = "req_0123456789abcdef", "rvw_0123456789abcdef"
	future := timestamppb.New(e.clock.Now().Add(7 * 24 * time.Hour))
	manager := []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_MANAGER}}
	setPolicy := func(mut func(*pb.SetRequestPolicyRequest)) error {
		req := &pb.SetRequestPolicyRequest{TenantId: "demo", ActorId: "oscar", Reason: "offer it", RoleId: "read_only",
			Policy: &pb.RequestPolicy{Approvers: manager, MaxDays: 30}}
		mut(req)
		_, err := gov.SetRequestPolicy(ctx, req)
		return err
	}
	requestAccess := func(mut func(*pb.RequestAccessRequest)) error {
		req := &pb.RequestAccessRequest{TenantId: "demo", ActorId: "peggy", Reason: "churn analysis", RoleId: "data_exporter", Duration: days(3)}
		mut(req)
		_, err := gov.RequestAccess(ctx, req)
		return err
	}
	listRequests := func(mut func(*pb.ListAccessRequestsRequest)) error {
		req := &pb.ListAccessRequestsRequest{TenantId: "demo", ActorId: "oscar", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL}
		mut(req)
		_, err := gov.ListAccessRequests(ctx, req)
		return err
	}
	whoCan := func(mut func(*pb.WhoCanRequest)) error {
		req := &pb.WhoCanRequest{TenantId: "demo", ActorId: "oscar", Permission: functionPerm("data.export")}
		mut(req)
		_, err := gov.WhoCan(ctx, req)
		return err
	}
	expiring := func(mut func(*pb.ListExpiringRequest)) error {
		req := &pb.ListExpiringRequest{TenantId: "demo", ActorId: "oscar"}
		mut(req)
		_, err := gov.ListExpiring(ctx, req)
		return err
	}
	startReview := func(mut func(*pb.StartAccessReviewRequest)) error {
		req := &pb.StartAccessReviewRequest{TenantId: "demo", ActorId: "oscar", Reason: "quarterly", Name: "Q4 sales", RoleIds: []string{"sales_rep"},
			DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_KEEP, Deadline: future, UnusedDays: 30}
		mut(req)
		_, err := gov.StartAccessReview(ctx, req)
		return err
	}
	listItems := func(mut func(*pb.ListReviewItemsRequest)) error {
		req := &pb.ListReviewItemsRequest{TenantId: "demo", ActorId: "oscar", ReviewId: rvwID}
		mut(req)
		_, err := gov.ListReviewItems(ctx, req)
		return err
	}
	decideItem := func(mut func(*pb.DecideReviewItemRequest)) error {
		req := &pb.DecideReviewItemRequest{TenantId: "demo", ActorId: "oscar", Reason: "reviewed", ReviewId: rvwID, UserId: "bob", RoleId: "sales_rep",
			Decision: pb.ReviewDecision_REVIEW_DECISION_KEEP}
		mut(req)
		_, err := gov.DecideReviewItem(ctx, req)
		return err
	}
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

		// GovernanceService: access requests.
		{"policy role id upper case", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.RoleId = "Read_Only" }), "role_id"},
		{"policy without reason", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.Reason = "" }), "reason"},
		{"policy without approvers", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.Policy.Approvers = nil }), "policy.approvers"},
		{"policy approver without kind", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.Policy.Approvers = []*pb.Approver{{Id: "x"}} }), "policy.approvers[0].kind"},
		{"policy approver function pattern", setPolicy(func(r *pb.SetRequestPolicyRequest) {
			r.Policy.Approvers = []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_FUNCTION, Id: "admin.*"}}
		}), "policy.approvers[0].id"},
		{"policy approver unknown role", setPolicy(func(r *pb.SetRequestPolicyRequest) {
			r.Policy.Approvers = []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_ROLE, Id: "ghost"}}
		}), "policy.approvers[0].id"},
		{"policy max days 0", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.Policy.MaxDays = 0 }), "policy.max_days"},
		{"policy pending days 91", setPolicy(func(r *pb.SetRequestPolicyRequest) { r.Policy.PendingDays = 91 }), "policy.pending_days"},
		{"request role id with space", requestAccess(func(r *pb.RequestAccessRequest) { r.RoleId = "data exporter" }), "role_id"},
		{"request user id with colon", requestAccess(func(r *pb.RequestAccessRequest) { r.UserId = "r:admin" }), "user_id"},
		{"request without duration", requestAccess(func(r *pb.RequestAccessRequest) { r.Duration = nil }), "duration"},
		{"request negative duration", requestAccess(func(r *pb.RequestAccessRequest) { r.Duration = durationpb.New(-time.Hour) }), "duration"},
		{"request beyond the policy", requestAccess(func(r *pb.RequestAccessRequest) { r.Duration = days(31) }), "duration"},
		{"request without reason", requestAccess(func(r *pb.RequestAccessRequest) { r.Reason = "" }), "reason"},
		{"get request bad id", func() error {
			_, err := gov.GetAccessRequest(ctx, &pb.GetAccessRequestRequest{TenantId: "demo", ActorId: "oscar", RequestId: "req_1"})
			return err
		}(), "request_id"},
		{"list requests unknown view", listRequests(func(r *pb.ListAccessRequestsRequest) { r.View = 9 }), "view"},
		{"list requests unknown state", listRequests(func(r *pb.ListAccessRequestsRequest) { r.State = 9 }), "state"},
		{"list requests page too big", listRequests(func(r *pb.ListAccessRequestsRequest) { r.PageSize = 1001 }), "page_size"},
		{"list requests bad token", listRequests(func(r *pb.ListAccessRequestsRequest) { r.PageToken = "!!" }), "page_token"},
		{"approve bad id", func() error {
			_, err := gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", ActorId: "oscar", Reason: "ok", RequestId: "REQ_0123456789abcdef"})
			return err
		}(), "request_id"},
		{"approve zero duration", func() error {
			_, err := gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", ActorId: "oscar", Reason: "ok", RequestId: reqID, Duration: durationpb.New(0)})
			return err
		}(), "duration"},
		{"deny bad id", func() error {
			_, err := gov.DenyAccessRequest(ctx, &pb.DenyAccessRequestRequest{TenantId: "demo", ActorId: "oscar", Reason: "no", RequestId: "req_0123456789ABCDEF"})
			return err
		}(), "request_id"},
		{"deny without reason", func() error {
			_, err := gov.DenyAccessRequest(ctx, &pb.DenyAccessRequestRequest{TenantId: "demo", ActorId: "oscar", RequestId: reqID})
			return err
		}(), "reason"},
		{"cancel bad id", func() error {
			_, err := gov.CancelAccessRequest(ctx, &pb.CancelAccessRequestRequest{TenantId: "demo", ActorId: "oscar", Reason: "not needed", RequestId: ""})
			return err
		}(), "request_id"},

		// GovernanceService: who can, and what expires.
		{"who can tenant pattern", whoCan(func(r *pb.WhoCanRequest) { r.TenantId = "de*" }), "tenant_id"},
		{"who can nothing", whoCan(func(r *pb.WhoCanRequest) { r.Permission = nil }), "permission"},
		{"who can unknown verb", whoCan(func(r *pb.WhoCanRequest) { r.Permission = modulePerm("account", "fly") }), "permission.module.verb"},
		{"who can page too big", whoCan(func(r *pb.WhoCanRequest) { r.PageSize = 1001 }), "page_size"},
		{"who can bad token", whoCan(func(r *pb.WhoCanRequest) { r.PageToken = "!!" }), "page_token"},
		{"expiring within a minute", expiring(func(r *pb.ListExpiringRequest) { r.Within = durationpb.New(time.Minute) }), "within"},
		{"expiring user with space", expiring(func(r *pb.ListExpiringRequest) { r.UserId = "a b" }), "user_id"},
		{"expiring negative page size", expiring(func(r *pb.ListExpiringRequest) { r.PageSize = -1 }), "page_size"},
		{"expiring bad token", expiring(func(r *pb.ListExpiringRequest) { r.PageToken = "!!" }), "page_token"},

		// GovernanceService: access reviews.
		{"review name with control character", startReview(func(r *pb.StartAccessReviewRequest) { r.Name = "Q4\x00" }), "name"},
		{"review name too long", startReview(func(r *pb.StartAccessReviewRequest) { r.Name = strings.Repeat("n", 257) }), "name"},
		{"review role id pattern", startReview(func(r *pb.StartAccessReviewRequest) { r.RoleIds = []string{"sales_rep", "r:*"} }), "role_ids[1]"},
		{"review unknown role", startReview(func(r *pb.StartAccessReviewRequest) { r.RoleIds = []string{"sales_rep", "ghost"} }), "role_ids[1]"},
		{"review role twice", startReview(func(r *pb.StartAccessReviewRequest) { r.RoleIds = []string{"sales_rep", "read_only", "sales_rep"} }), "role_ids[2]"},
		{"review too many roles", startReview(func(r *pb.StartAccessReviewRequest) { r.RoleIds = slices.Repeat([]string{"sales_rep"}, 65) }), "role_ids"},
		{"review reviewer with space", startReview(func(r *pb.StartAccessReviewRequest) { r.ReviewerId = "a b" }), "reviewer_id"},
		{"review unknown reviewer", startReview(func(r *pb.StartAccessReviewRequest) { r.ReviewerId = "nobody" }), "reviewer_id"},
		{"review without default", startReview(func(r *pb.StartAccessReviewRequest) { r.DefaultDecision = 0 }), "default_decision"},
		{"review unused days 366", startReview(func(r *pb.StartAccessReviewRequest) { r.UnusedDays = 366 }), "unused_days"},
		{"review negative unused days", startReview(func(r *pb.StartAccessReviewRequest) { r.UnusedDays = -1 }), "unused_days"},
		{"review without deadline", startReview(func(r *pb.StartAccessReviewRequest) { r.Deadline = nil }), "deadline"},
		{"review deadline past", startReview(func(r *pb.StartAccessReviewRequest) { r.Deadline = timestamppb.New(e.clock.Now().Add(-time.Hour)) }), "deadline"},
		{"review deadline too far", startReview(func(r *pb.StartAccessReviewRequest) {
			r.Deadline = timestamppb.New(e.clock.Now().Add(366 * 24 * time.Hour))
		}), "deadline"},
		{"review without reason", startReview(func(r *pb.StartAccessReviewRequest) { r.Reason = "" }), "reason"},
		{"get review bad id", func() error {
			_, err := gov.GetAccessReview(ctx, &pb.GetAccessReviewRequest{TenantId: "demo", ActorId: "oscar", ReviewId: "req_0123456789abcdef"})
			return err
		}(), "review_id"},
		{"items bad review id", listItems(func(r *pb.ListReviewItemsRequest) { r.ReviewId = "rvw_" }), "review_id"},
		{"items reviewer with newline", listItems(func(r *pb.ListReviewItemsRequest) { r.ReviewerId = "bob\n" }), "reviewer_id"},
		{"items page too big", listItems(func(r *pb.ListReviewItemsRequest) { r.PageSize = 1001 }), "page_size"},
		{"items bad token", listItems(func(r *pb.ListReviewItemsRequest) { r.PageToken = "!!" }), "page_token"},
		{"decide bad review id", decideItem(func(r *pb.DecideReviewItemRequest) { r.ReviewId = "rvw_0123" }), "review_id"},
		{"decide user with space", decideItem(func(r *pb.DecideReviewItemRequest) { r.UserId = "a b" }), "user_id"},
		{"decide role upper case", decideItem(func(r *pb.DecideReviewItemRequest) { r.RoleId = "Sales_Rep" }), "role_id"},
		{"decide without decision", decideItem(func(r *pb.DecideReviewItemRequest) { r.Decision = 0 }), "decision"},
		{"decide without reason", decideItem(func(r *pb.DecideReviewItemRequest) { r.Reason = "" }), "reason"},
		{"close bad review id", func() error {
			_, err := gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", ActorId: "oscar", Reason: "done", ReviewId: "rvw_x"})
			return err
		}(), "review_id"},
		{"close without reason", func() error {
			_, err := gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", ActorId: "oscar", ReviewId: rvwID})
			return err
		}(), "reason"},
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
	requests, err := gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo", ActorId: "oscar", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL})
	if err != nil || len(requests.GetRequests()) != 0 {
		t.Fatalf("access requests after bad writes: %v %v", requests, err)
	}
	reviews, err := gov.ListAccessReviews(ctx, &pb.ListAccessReviewsRequest{TenantId: "demo", ActorId: "oscar"})
	if err != nil || len(reviews.GetReviews()) != 0 {
		t.Fatalf("access reviews after bad writes: %v %v", reviews, err)
	}
	role, err := e.admin.GetRole(ctx, &pb.GetRoleRequest{TenantId: "demo", ActorId: "oscar", RoleId: "read_only"})
	if err != nil || role.GetRole().GetRequestPolicy() != nil {
		t.Fatalf("read_only after bad request policies: %v %v", role, err)
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
