package app_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// user is a key bound to one demo user, with admin and check scopes: how a
// CRM's UI calls on a signed-in user's behalf.
type user struct {
	*caller
	id  string
	gov pb.GovernanceServiceClient
}

func (e *secEnv) user(t *testing.T, id string) *user {
	t.Helper()
	c := e.newKey(t, id+"'s key", []string{"check", "admin"}, []string{"demo"}, id)
	return &user{caller: c, id: id, gov: pb.NewGovernanceServiceClient(e.dial(t, c.key))}
}

func days(n int) *durationpb.Duration { return durationpb.New(time.Duration(n) * 24 * time.Hour) }

func (u *user) request(t *testing.T, role string, d *durationpb.Duration) *pb.AccessRequest {
	t.Helper()
	resp, err := u.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "quarterly churn analysis", RoleId: role, Duration: d})
	if err != nil {
		t.Fatalf("request %s: %v", role, err)
	}
	r := resp.GetRequest()
	if r.GetState() != pb.AccessRequestState_ACCESS_REQUEST_STATE_PENDING || r.GetRoleId() != role || r.GetRequestId() == "" {
		t.Fatalf("request %s: %v", role, r)
	}
	return r
}

func (u *user) allowed(t *testing.T, p *pb.Permission) bool {
	t.Helper()
	resp, err := u.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: u.id, Permission: p})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetAllowed()
}

// wantCode asserts err has code and, when reason is set, that reason.
func wantCode(t *testing.T, what string, err error, code codes.Code, reason string) {
	t.Helper()
	got, r, _ := errorInfo(t, err)
	if got != code || (reason != "" && r != reason) {
		t.Fatalf("%s: %v (reason %s), want %s %s", what, err, r, code, reason)
	}
}

// TestAccessRequests drives requests through the real API on memory and
// PostgreSQL: a user asks, their manager approves for less time than
// asked, the grant decides checks and ends when it should; and every rule
// is attacked: approving one's own request, approving as a stranger,
// approving past the escalation rule (a manager under an export freeze),
// deciding twice or after the request lapsed, asking twice, asking for
// what is not requestable or for too long. Every step is in the change
// log.
func TestAccessRequests(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		bob, alice, frank, erin, peggy, oscar := e.user(t, "bob"), e.user(t, "alice"), e.user(t, "frank"), e.user(t, "erin"), e.user(t, "peggy"), e.user(t, "oscar")
		export := functionPerm("data.export")
		if bob.allowed(t, export) {
			t.Fatal("bob may export before any request")
		}
		roles, err := peggy.gov.ListRequestableRoles(ctx, &pb.ListRequestableRolesRequest{TenantId: "demo"})
		if err != nil || len(roles.GetRoles()) != 1 || roles.GetRoles()[0].GetRoleId() != "data_exporter" ||
			roles.GetRoles()[0].GetRequestPolicy().GetMaxDays() != 30 {
			t.Fatalf("requestable roles: %v, %v", roles, err)
		}

		asked := bob.request(t, "data_exporter", days(3))
		if asked.GetUserId() != "bob" || asked.GetRequestedBy() != "bob" || !asked.GetPendingUntil().AsTime().Equal(e.clock.Now().Add(7*24*time.Hour)) {
			t.Errorf("request: %v", asked)
		}
		_, err = bob.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "again", RoleId: "data_exporter", Duration: days(1)})
		wantCode(t, "a second pending request", err, codes.AlreadyExists, "ACCESS_REQUEST_PENDING")
		_, err = bob.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "r", RoleId: "admin", Duration: days(1)})
		wantCode(t, "a role that is not requestable", err, codes.FailedPrecondition, "ROLE_NOT_REQUESTABLE")
		_, err = peggy.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "r", RoleId: "data_exporter", Duration: days(31)})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "duration" {
			t.Errorf("longer than the policy allows: %v", err)
		}
		_, err = peggy.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "r", RoleId: "data_exporter", UserId: "bob", Duration: days(1)})
		denied(t, "asking for another user without admin.users.manage", err, "MISSING_PERMISSION")

		approve := func(u *user, id string, d *durationpb.Duration) (*pb.ApproveAccessRequestResponse, error) {
			return u.gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", Reason: "ok for the quarter", RequestId: id, Duration: d})
		}
		_, err = approve(bob, asked.GetRequestId(), nil)
		denied(t, "approving one's own request", err, "SELF_APPROVAL")
		_, err = approve(peggy, asked.GetRequestId(), nil)
		denied(t, "approving as neither manager nor user admin", err, "NOT_APPROVER")
		_, err = approve(alice, asked.GetRequestId(), days(4))
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "duration" {
			t.Errorf("approving for longer than asked: %v", err)
		}
		if bob.allowed(t, export) {
			t.Fatal("a refused approval granted something")
		}

		toDecide, err := alice.gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_TO_DECIDE})
		if err != nil || len(toDecide.GetRequests()) != 1 || toDecide.GetRequests()[0].GetRequestId() != asked.GetRequestId() {
			t.Fatalf("alice's requests to decide: %v, %v", toDecide, err)
		}
		ok, err := approve(alice, asked.GetRequestId(), days(1))
		if err != nil {
			t.Fatal(err)
		}
		until := e.clock.Now().Add(24 * time.Hour)
		if r := ok.GetRequest(); r.GetState() != pb.AccessRequestState_ACCESS_REQUEST_STATE_APPROVED || r.GetDecidedBy() != "alice" ||
			!r.GetGrantExpiresAt().AsTime().Equal(until) || !ok.GetGrant().GetExpiresAt().AsTime().Equal(until) {
			t.Errorf("approved: %v", ok)
		}
		if !bob.allowed(t, export) {
			t.Fatal("an approved request did not grant")
		}
		_, err = approve(oscar, asked.GetRequestId(), nil)
		wantCode(t, "deciding twice", err, codes.FailedPrecondition, "ACCESS_REQUEST_CLOSED")

		// frank manages erin but is under the export freeze: he may not
		// approve what he could not grant; oscar, a user admin, may deny.
		erinAsked := erin.request(t, "data_exporter", days(2))
		_, err = erin.gov.DenyAccessRequest(ctx, &pb.DenyAccessRequestRequest{TenantId: "demo", Reason: "r", RequestId: erinAsked.GetRequestId()})
		denied(t, "the requester deciding their own request", err, "SELF_APPROVAL")
		_, err = approve(frank, erinAsked.GetRequestId(), nil)
		if missing := denied(t, "a manager approving beyond his own rights", err, "ESCALATION"); missing != "function data.export" {
			t.Errorf("missing %q", missing)
		}
		no, err := oscar.gov.DenyAccessRequest(ctx, &pb.DenyAccessRequestRequest{TenantId: "demo", Reason: "use the shared report", RequestId: erinAsked.GetRequestId()})
		if err != nil || no.GetRequest().GetState() != pb.AccessRequestState_ACCESS_REQUEST_STATE_DENIED || no.GetRequest().GetDecisionReason() != "use the shared report" {
			t.Fatalf("deny: %v, %v", no, err)
		}
		if erin.allowed(t, export) {
			t.Fatal("a denied request granted")
		}

		// peggy withdraws hers; bob may not withdraw it for her.
		peggyAsked := peggy.request(t, "data_exporter", days(1))
		_, err = bob.gov.CancelAccessRequest(ctx, &pb.CancelAccessRequestRequest{TenantId: "demo", Reason: "r", RequestId: peggyAsked.GetRequestId()})
		denied(t, "cancelling another user's request", err, "MISSING_PERMISSION")
		_, err = bob.gov.GetAccessRequest(ctx, &pb.GetAccessRequestRequest{TenantId: "demo", RequestId: peggyAsked.GetRequestId()})
		denied(t, "reading another user's request", err, "MISSING_PERMISSION")
		got, err := oscar.gov.GetAccessRequest(ctx, &pb.GetAccessRequestRequest{TenantId: "demo", RequestId: peggyAsked.GetRequestId()})
		if err != nil || !got.GetActorMayDecide() {
			t.Fatalf("oscar reads peggy's request: %v, %v", got, err)
		}
		if _, err := peggy.gov.CancelAccessRequest(ctx, &pb.CancelAccessRequestRequest{TenantId: "demo", Reason: "not needed", RequestId: peggyAsked.GetRequestId()}); err != nil {
			t.Fatal(err)
		}

		// An undecided request lapses: it can no longer be approved.
		e.clock.Advance(time.Minute)
		lapsing := peggy.request(t, "data_exporter", days(1))
		e.clock.Advance(7*24*time.Hour + time.Second)
		_, err = approve(oscar, lapsing.GetRequestId(), nil)
		wantCode(t, "approving a lapsed request", err, codes.FailedPrecondition, "ACCESS_REQUEST_CLOSED")
		if bob.allowed(t, export) {
			t.Error("the approved grant outlived its day")
		}
		mine, err := peggy.gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		var states []string
		for _, r := range mine.GetRequests() {
			states = append(states, r.GetState().String())
		}
		if !slices.Equal(states, []string{"ACCESS_REQUEST_STATE_LAPSED", "ACCESS_REQUEST_STATE_CANCELLED"}) {
			t.Errorf("peggy's requests, newest first: %v", states)
		}
		_, err = peggy.gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL})
		denied(t, "listing everyone's requests without admin.users.manage", err, "MISSING_PERMISSION")
		all, err := oscar.gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL, PageSize: 2})
		if err != nil || len(all.GetRequests()) != 2 || all.GetNextPageToken() == "" {
			t.Fatalf("first page of all: %v, %v", all, err)
		}
		rest, err := oscar.gov.ListAccessRequests(ctx, &pb.ListAccessRequestsRequest{TenantId: "demo", View: pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL, PageToken: all.GetNextPageToken()})
		if err != nil || len(rest.GetRequests()) != 2 || rest.GetNextPageToken() != "" {
			t.Fatalf("second page of all: %v, %v", rest, err)
		}

		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, c := range changes.GetChanges() {
			steps = append(steps, c.GetAction()+" by "+c.GetActorId())
		}
		want := []string{"request.create by bob", "request.approve by alice", "request.create by erin", "request.deny by oscar",
			"request.create by peggy", "request.cancel by peggy", "request.create by peggy"}
		if !slices.Equal(steps[len(steps)-len(want):], want) {
			t.Errorf("change log ends with %v, want %v", steps, want)
		}
	})
}

// TestRequestPolicies: only a role administrator sets a policy, within
// their own rights, and a policy naming what the tenant lacks is
// INVALID_ARGUMENT naming the field; a role another policy names as
// approver cannot be deleted.
func TestRequestPolicies(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		alice, oscar := e.user(t, "alice"), e.user(t, "oscar")
		set := func(u *user, role string, p *pb.RequestPolicy) (*pb.SetRequestPolicyResponse, error) {
			return u.gov.SetRequestPolicy(ctx, &pb.SetRequestPolicyRequest{TenantId: "demo", Reason: "offer it", RoleId: role, Policy: p})
		}
		byRole := &pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_ROLE, Id: "sales_rep"}}, MaxDays: 90}
		_, err := set(alice, "sales_rep", byRole)
		denied(t, "a policy set without admin.roles.manage", err, "MISSING_PERMISSION")
		for _, c := range []struct {
			p     *pb.RequestPolicy
			field string
		}{
			{&pb.RequestPolicy{MaxDays: 9}, "policy.approvers"},
			{&pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_FUNCTION, Id: "no.such"}}, MaxDays: 9}, "policy.approvers[0].id"},
			{&pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_ROLE, Id: "ghost"}}, MaxDays: 9}, "policy.approvers[0].id"},
			{&pb.RequestPolicy{Approvers: []*pb.Approver{{}}, MaxDays: 9}, "policy.approvers[0].kind"},
			{&pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_MANAGER}}, MaxDays: 366}, "policy.max_days"},
			{&pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_MANAGER}, {Kind: pb.ApproverKind_APPROVER_KIND_MANAGER}}, MaxDays: 9}, "policy.approvers[1]"},
		} {
			_, err := set(oscar, "sales_rep", c.p)
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != c.field {
				t.Errorf("policy %v: %v, want INVALID_ARGUMENT on %s", c.p, err, c.field)
			}
		}
		resp, err := set(oscar, "sales_rep", byRole)
		if err != nil || resp.GetRole().GetRequestPolicy().GetPendingDays() != 14 {
			t.Fatalf("set policy: %v, %v", resp, err)
		}
		// A holder of the approver role approves, through inheritance too:
		// dave holds sales_rep only as part of key_account_manager.
		peggy, dave := e.user(t, "peggy"), e.user(t, "dave")
		r := peggy.request(t, "sales_rep", days(60))
		if _, err := dave.gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", Reason: "welcome", RequestId: r.GetRequestId()}); err != nil {
			t.Fatalf("a holder of the approver role approves: %v", err)
		}
		if !peggy.allowed(t, modulePerm("account", "read")) {
			t.Error("the approved sales_rep grant does not decide")
		}
		// Nobody deletes a role while a policy names it as approver.
		if _, err := e.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", RoleId: "export_desk",
			Permissions: &pb.RolePermissions{Functions: []string{"report.view"}}}); err != nil {
			t.Fatal(err)
		}
		if _, err := set(oscar, "read_only", &pb.RequestPolicy{Approvers: []*pb.Approver{{Kind: pb.ApproverKind_APPROVER_KIND_ROLE, Id: "export_desk"}}, MaxDays: 5}); err != nil {
			t.Fatal(err)
		}
		_, err = e.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "r", RoleId: "export_desk"})
		wantCode(t, "deleting an approver role", err, codes.FailedPrecondition, "ROLE_IN_USE")
		off, err := set(oscar, "sales_rep", nil)
		if err != nil || off.GetRole().GetRequestPolicy() != nil {
			t.Fatalf("policy off: %v, %v", off, err)
		}
		_, err = peggy.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", Reason: "r", RoleId: "sales_rep", Duration: days(1)})
		wantCode(t, "requesting a role no longer requestable", err, codes.FailedPrecondition, "ROLE_NOT_REQUESTABLE")
		_, err = peggy.gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", Reason: "r", RequestId: "req_nothex"})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "request_id" {
			t.Errorf("a malformed request id: %v", err)
		}
		_, err = peggy.gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", Reason: "r", RequestId: "req_0123456789abcdef"})
		wantCode(t, "an unknown request", err, codes.NotFound, "ACCESS_REQUEST_NOT_FOUND")
	})
}

// TestWhoCanAndExpiring: WhoCan names the users Check allows, with the
// granting role and expiry, page by page; ListExpiring lists what ends
// within a window, soonest first. Both refuse users without
// admin.users.manage, but a user may list their own expiring access.
func TestWhoCanAndExpiring(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar, peggy := e.user(t, "oscar"), e.user(t, "peggy")
		export := functionPerm("data.export")
		_, err := peggy.gov.WhoCan(ctx, &pb.WhoCanRequest{TenantId: "demo", Permission: export})
		denied(t, "WhoCan without admin.users.manage", err, "MISSING_PERMISSION")
		_, err = oscar.gov.WhoCan(ctx, &pb.WhoCanRequest{TenantId: "demo"})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "permission" {
			t.Errorf("WhoCan of nothing: %v", err)
		}
		_, err = oscar.gov.WhoCan(ctx, &pb.WhoCanRequest{TenantId: "demo", Permission: functionPerm("no.such")})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "permission.function.function" {
			t.Errorf("WhoCan of an unknown function: %v", err)
		}
		whoCan := func(p *pb.Permission) map[string]*pb.WhoCanUser { t.Helper(); return whoCanAll(t, oscar, p, 2) }
		// frank holds sales_manager too, but restricted_export denies it.
		got := whoCan(export)
		if len(got) != 2 || got["alice"] == nil || got["oscar"] == nil {
			t.Fatalf("who may export: %v", got)
		}
		if r := got["alice"].GetReasons(); len(r) != 1 || r[0].GetRoleId() != "sales_manager" || got["alice"].GetExpiresAt() != nil {
			t.Errorf("alice's path: %v", got["alice"])
		}
		// A module verb comes with the widest scope each user holds for it.
		reads := whoCan(modulePerm("lead", "read"))
		if reads["bob"].GetScope() != pb.DataScope_DATA_SCOPE_DEPT || reads["alice"].GetScope() != pb.DataScope_DATA_SCOPE_DEPT_TREE {
			t.Errorf("scopes of lead read: bob %v, alice %v", reads["bob"].GetScope(), reads["alice"].GetScope())
		}
		// judy's finance_readonly grant ends in 2099; the users WhoCan names
		// are those Check allows, every demo user asked.
		for _, p := range []*pb.Permission{modulePerm("contract", "read"), export, fieldPerm("account", "annual_revenue", false),
			{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "contact", Verb: "read", Record: &pb.Record{Id: "c-1", OwnerId: "mallory", DepartmentId: "sales_west"}}}}} {
			got := whoCan(p)
			for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy"} {
				resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: u, Permission: p})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetAllowed() != (got[u] != nil) {
					t.Errorf("%v: Check says %t for %s, WhoCan %v", p, resp.GetAllowed(), u, got[u])
				}
			}
			if j := got["judy"]; j != nil && j.GetExpiresAt().AsTime().Year() != 2099 {
				t.Errorf("judy's access through a grant ending in 2099 ends %v", j.GetExpiresAt())
			}
		}

		now := e.clock.Now()
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "read_only",
			ExpiresAt: timestamppb.New(now.Add(72 * time.Hour))}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "oscar", Reason: "deal support", RecordOwnerId: "alice",
			Share: &pb.RecordShare{Module: "account", RecordId: "acc-9", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}},
				Access: pb.RecordAccess_RECORD_ACCESS_READ, ExpiresAt: timestamppb.New(now.Add(48 * time.Hour))}}); err != nil {
			t.Fatal(err)
		}
		// Shares with roles and departments: peggy holds read_only (for
		// three days), not finance_readonly; she is in marketing, below hq.
		for record, who := range map[string]*pb.Principal{
			"acc-read_only":        {Kind: &pb.Principal_RoleId{RoleId: "read_only"}},
			"acc-finance_readonly": {Kind: &pb.Principal_RoleId{RoleId: "finance_readonly"}},
			"acc-hq-tree":          {Kind: &pb.Principal_DepartmentId{DepartmentId: "hq"}, IncludeSubdepartments: true},
			"acc-hq":               {Kind: &pb.Principal_DepartmentId{DepartmentId: "hq"}},
			"acc-sales-tree":       {Kind: &pb.Principal_DepartmentId{DepartmentId: "sales"}, IncludeSubdepartments: true},
		} {
			if _, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "oscar", Reason: "review", RecordOwnerId: "alice",
				Share: &pb.RecordShare{Module: "account", RecordId: record, Principal: who,
					Access: pb.RecordAccess_RECORD_ACCESS_READ, ExpiresAt: timestamppb.New(now.Add(60 * time.Hour))}}); err != nil {
				t.Fatal(err)
			}
		}
		list, err := peggy.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo", UserId: "peggy"})
		if err != nil {
			t.Fatal(err)
		}
		var listed []string
		for _, it := range list.GetItems() {
			if sh := it.GetRecordShare(); sh != nil {
				listed = append(listed, sh.GetRecordId())
			} else {
				listed = append(listed, "grant "+it.GetGrant().GetRoleId())
			}
		}
		if want := []string{"acc-9", "acc-hq-tree", "acc-read_only", "grant read_only"}; !slices.Equal(listed, want) {
			t.Fatalf("peggy's expiring access, soonest first: %q, want %q", listed, want)
		}
		_, err = peggy.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo"})
		denied(t, "everyone's expiring access without admin.users.manage", err, "MISSING_PERMISSION")
		_, err = peggy.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo", UserId: "judy"})
		denied(t, "another user's expiring access", err, "MISSING_PERMISSION")
		page, err := oscar.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo", PageSize: 1, Within: days(2)})
		if err != nil || len(page.GetItems()) != 1 || page.GetNextPageToken() != "" || page.GetItems()[0].GetRecordShare() == nil {
			t.Fatalf("what ends within two days: %v, %v", page, err)
		}
		_, err = oscar.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo", Within: durationpb.New(time.Minute)})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "within" {
			t.Errorf("a window of a minute: %v", err)
		}
		_, err = oscar.gov.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: "demo", PageToken: page.GetNextPageToken() + "x"})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "page_token" {
			t.Errorf("a forged page token: %v", err)
		}
	})
}

// TestAccessReviews drives a review through the real API on memory and
// PostgreSQL: items for the reviewed roles' active grants with the
// decision log's evidence, each for the user's manager; reviewers keep
// and revoke (a revoke decides the next check), nobody reviews their own
// grant or another reviewer's item, an item is decided once; at the
// deadline the server closes the review and the undecided grants follow
// its default. Progress, items and every step are queryable.
func TestAccessReviews(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar, alice, frank, bob, peggy := e.user(t, "oscar"), e.user(t, "alice"), e.user(t, "frank"), e.user(t, "bob"), e.user(t, "peggy")
		read := modulePerm("account", "read")
		if !bob.allowed(t, read) {
			t.Fatal("bob may not read accounts")
		}
		// The evidence comes from the decision log: wait for bob's check.
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			ds, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", SubjectId: "bob"})
			if err != nil {
				t.Fatal(err)
			}
			if len(ds.GetDecisions()) > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("bob's check never reached the decision log")
			}
		}
		start := &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "quarterly review", Name: "2026 Q4 sales and finance",
			RoleIds: []string{"sales_rep", "finance_readonly"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_REVOKE,
			Deadline: timestamppb.New(e.clock.Now().Add(7 * 24 * time.Hour)), UnusedDays: 30}
		_, err := peggy.gov.StartAccessReview(ctx, start)
		denied(t, "starting a review without admin.users.manage", err, "MISSING_PERMISSION")
		started, err := oscar.gov.StartAccessReview(ctx, start)
		if err != nil {
			t.Fatal(err)
		}
		rv := started.GetReview()
		// sales_rep: bob, erin, mallory (ivan's grant expired); finance_readonly: grace, judy,
		// mallory. Only bob's grant was used.
		if p := rv.GetProgress(); p.GetItems() != 6 || p.GetUndecided() != 6 || p.GetUnused() != 5 || rv.GetState() != pb.AccessReviewState_ACCESS_REVIEW_STATE_OPEN {
			t.Fatalf("started review: %v", rv)
		}
		items := func(u *user, reviewer string) []*pb.ReviewItem {
			t.Helper()
			resp, err := u.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: rv.GetReviewId(), ReviewerId: reviewer})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetItems()
		}
		if its := items(alice, "alice"); len(its) != 1 || its[0].GetUserId() != "bob" || its[0].GetLastUsedAt() == nil || its[0].GetUnused() {
			t.Fatalf("alice's items: %v", its)
		}
		if its := items(frank, "frank"); len(its) != 3 {
			t.Fatalf("frank's items (erin's and mallory's grants): %v", its)
		}
		_, err = peggy.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: rv.GetReviewId()})
		denied(t, "listing every item without admin.users.manage", err, "MISSING_PERMISSION")

		decide := func(u *user, user, role string, d pb.ReviewDecision) (*pb.DecideReviewItemResponse, error) {
			return u.gov.DecideReviewItem(ctx, &pb.DecideReviewItemRequest{TenantId: "demo", Reason: "reviewed", ReviewId: rv.GetReviewId(),
				UserId: user, RoleId: role, Decision: d})
		}
		keep, revoke := pb.ReviewDecision_REVIEW_DECISION_KEEP, pb.ReviewDecision_REVIEW_DECISION_REVOKE
		_, err = decide(bob, "bob", "sales_rep", keep)
		denied(t, "reviewing one's own grant", err, "SELF_REVIEW")
		_, err = decide(peggy, "erin", "sales_rep", keep)
		denied(t, "deciding another reviewer's item", err, "NOT_REVIEWER")
		_, err = decide(frank, "erin", "sales_rep", pb.ReviewDecision_REVIEW_DECISION_UNSPECIFIED)
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "decision" {
			t.Errorf("no decision: %v", err)
		}
		erin := e.user(t, "erin")
		if !erin.allowed(t, read) {
			t.Fatal("erin may not read accounts before the review")
		}
		if _, err := decide(frank, "erin", "sales_rep", revoke); err != nil {
			t.Fatal(err)
		}
		if erin.allowed(t, read) {
			t.Error("a revoke in the review left erin's grant deciding")
		}
		if _, err := decide(frank, "mallory", "finance_readonly", keep); err != nil {
			t.Fatal(err)
		}
		_, err = decide(oscar, "mallory", "finance_readonly", revoke)
		wantCode(t, "deciding an item twice", err, codes.FailedPrecondition, "REVIEW_ITEM_DECIDED")
		if _, err := decide(alice, "bob", "sales_rep", keep); err != nil {
			t.Fatal(err)
		}
		_, err = peggy.gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", Reason: "r", ReviewId: rv.GetReviewId()})
		denied(t, "closing without admin.users.manage", err, "MISSING_PERMISSION")

		// The deadline passes: the server closes the review, and the three
		// undecided grants (mallory's sales_rep, grace's and judy's
		// finance_readonly) follow the default, revoke.
		judy := e.user(t, "judy")
		if !judy.allowed(t, read) {
			t.Fatal("judy may not read accounts before the deadline")
		}
		e.clock.Advance(7*24*time.Hour + time.Minute)
		var closed *pb.AccessReview
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err := oscar.gov.GetAccessReview(ctx, &pb.GetAccessReviewRequest{TenantId: "demo", ReviewId: rv.GetReviewId()})
			if err != nil {
				t.Fatal(err)
			}
			if closed = got.GetReview(); closed.GetState() == pb.AccessReviewState_ACCESS_REVIEW_STATE_CLOSED {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the review was not closed at its deadline")
			}
		}
		if p := closed.GetProgress(); closed.GetClosedBy() != "system:review-deadline" || p.GetKept() != 2 || p.GetRevoked() != 4 || p.GetUndecided() != 0 {
			t.Errorf("closed review: %v", closed)
		}
		if judy.allowed(t, read) {
			t.Error("judy's undecided grant outlived the review")
		}
		if !bob.allowed(t, read) {
			t.Error("bob's kept grant was taken")
		}
		_, err = decide(frank, "mallory", "sales_rep", keep)
		wantCode(t, "deciding in a closed review", err, codes.FailedPrecondition, "ACCESS_REVIEW_CLOSED")
		all, err := oscar.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: rv.GetReviewId(), PageSize: 4})
		if err != nil || len(all.GetItems()) != 4 || all.GetNextPageToken() == "" {
			t.Fatalf("first page of the record: %v, %v", all, err)
		}
		rest, err := oscar.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: rv.GetReviewId(), PageToken: all.GetNextPageToken()})
		if err != nil || len(rest.GetItems()) != 2 || rest.GetItems()[1].GetDecidedBy() != "system:review-deadline" && rest.GetItems()[0].GetDecidedBy() != "system:review-deadline" {
			t.Fatalf("second page of the record: %v, %v", rest, err)
		}
		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", PageSize: 100})
		if err != nil {
			t.Fatal(err)
		}
		var steps []string
		for _, c := range changes.GetChanges() {
			steps = append(steps, c.GetAction()+" by "+c.GetActorId())
		}
		want := []string{"review.start by oscar", "review.decide by frank", "review.decide by frank", "review.decide by alice", "review.close by system:review-deadline"}
		if !slices.Equal(steps[len(steps)-len(want):], want) {
			t.Errorf("change log ends with %v, want %v", steps, want)
		}
	})
}

// TestGovernanceAndExplainBoundary attacks the trust boundary of the new
// RPCs: GovernanceService needs the admin scope and a credential for the
// tenant; ExplainDecision the audit scope, the tenant, and for a key bound
// to a user, audit.view.
func TestGovernanceAndExplainBoundary(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		checkOnly := e.newKey(t, "orders service", []string{"check"}, []string{"demo"}, "")
		_, err := pb.NewGovernanceServiceClient(e.dial(t, checkOnly.key)).ListRequestableRoles(ctx, &pb.ListRequestableRolesRequest{TenantId: "demo", ActorId: "bob"})
		if missing := denied(t, "governance with a check key", err, "MISSING_SCOPE"); missing != "admin" {
			t.Errorf("missing %q", missing)
		}
		_, err = pb.NewGovernanceServiceClient(e.dial(t, "")).RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", ActorId: "bob", Reason: "r", RoleId: "data_exporter", Duration: days(1)})
		unauthenticated(t, "governance without a credential", err)
		console := e.newKey(t, "console", []string{"admin"}, []string{"demo"}, "")
		gov := pb.NewGovernanceServiceClient(e.dial(t, console.key))
		_, err = gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "acme", ActorId: "ann", Reason: "r", RoleId: "viewer", Duration: days(1)})
		denied(t, "a request in another tenant", err, "TENANT_NOT_ALLOWED")
		_, err = gov.WhoCan(ctx, &pb.WhoCanRequest{TenantId: "acme", ActorId: "ann", Permission: functionPerm("report.view")})
		denied(t, "WhoCan in another tenant", err, "TENANT_NOT_ALLOWED")

		resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: functionPerm("report.view")})
		if err != nil {
			t.Fatal(err)
		}
		(&auditEnv{env: e.env, audit: e.audit}).waitDecision(t, "demo", resp.GetDecisionId())
		explain := &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()}
		_, err = console.audit.ExplainDecision(ctx, explain)
		if missing := denied(t, "explaining with an admin key", err, "MISSING_SCOPE"); missing != "audit" {
			t.Errorf("missing %q", missing)
		}
		bob := e.newKey(t, "bob's audit key", []string{"audit"}, []string{"demo"}, "bob")
		_, err = bob.audit.ExplainDecision(ctx, explain)
		denied(t, "explaining as a user without audit.view", err, "MISSING_PERMISSION")
		acmeAuditor := e.newKey(t, "acme auditors", []string{"audit"}, []string{"acme"}, "")
		_, err = acmeAuditor.audit.ExplainDecision(ctx, explain)
		denied(t, "explaining another tenant's decision", err, "TENANT_NOT_ALLOWED")
		auditor := e.newKey(t, "auditors", []string{"audit"}, []string{"demo"}, "")
		if got, err := auditor.audit.ExplainDecision(ctx, explain); err != nil || !got.GetAgreesWithLog() {
			t.Errorf("an auditor explains: %v, %v", got, err)
		}
	})
}

// waitReviewClosed polls a review until the server has closed it.
func waitReviewClosed(t *testing.T, u *user, id string) *pb.AccessReview {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got, err := u.gov.GetAccessReview(ctx, &pb.GetAccessReviewRequest{TenantId: "demo", ReviewId: id})
		if err != nil {
			t.Fatal(err)
		}
		if r := got.GetReview(); r.GetState() == pb.AccessReviewState_ACCESS_REVIEW_STATE_CLOSED {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("review %s was not closed at its deadline", id)
		}
	}
}

// reviewRecord returns a review's items as "user/role decision by who: comment".
func reviewRecord(t *testing.T, u *user, id string) map[string]string {
	t.Helper()
	resp, err := u.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: id})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, it := range resp.GetItems() {
		out[it.GetUserId()+"/"+it.GetRoleId()] = it.GetDecision().String() + " by " + it.GetDecidedBy() + ": " + it.GetComment()
	}
	return out
}

// TestReviewCloseKeepsOnlyTheLastSuperAdmin: a review whose default is
// revoke, closed at its deadline or by hand, keeps only the item whose
// revoke would leave the tenant without a holder of admin.super, saying so
// on the item and in the outcome; every other undecided item is revoked.
func TestReviewCloseKeepsOnlyTheLastSuperAdmin(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar, bob, peggy := e.user(t, "oscar"), e.user(t, "bob"), e.user(t, "peggy")
		super, read := functionPerm("admin.super"), modulePerm("account", "read")
		start := func(roles ...string) string {
			t.Helper()
			resp, err := oscar.gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "yearly", Name: "admins and reps",
				RoleIds: roles, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_REVOKE, Deadline: timestamppb.New(e.clock.Now().Add(24 * time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			return resp.GetReview().GetReviewId()
		}
		const (
			keptWhy = "REVIEW_DECISION_KEEP by %s: kept: revoking it would leave the tenant without a holder of admin.super"
			revoked = "REVIEW_DECISION_REVOKE by %s: the review closed undecided"
		)

		// At the deadline: oscar, the only super-administrator, keeps
		// admin; bob's, erin's and mallory's sales_rep follow the default.
		atDeadline := start("admin", "sales_rep")
		e.clock.Advance(24*time.Hour + time.Minute)
		closed := waitReviewClosed(t, oscar, atDeadline)
		if p := closed.GetProgress(); p.GetKept() != 1 || p.GetRevoked() != 3 || p.GetUndecided() != 0 {
			t.Errorf("closed at the deadline: %v", p)
		}
		by := "system:review-deadline"
		want := map[string]string{"oscar/admin": fmt.Sprintf(keptWhy, by), "bob/sales_rep": fmt.Sprintf(revoked, by),
			"erin/sales_rep": fmt.Sprintf(revoked, by), "mallory/sales_rep": fmt.Sprintf(revoked, by)}
		if got := reviewRecord(t, oscar, atDeadline); !reflect.DeepEqual(got, want) {
			t.Errorf("items closed at the deadline:\n got %v\nwant %v", got, want)
		}
		if bob.allowed(t, read) {
			t.Error("bob's undecided grant outlived the review")
		}
		if !oscar.allowed(t, super) {
			t.Error("the last super-administrator lost admin.super")
		}
		changes, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", TargetPrefix: "review/" + atDeadline, Action: "review.close"})
		if err != nil || len(changes.GetChanges()) != 1 {
			t.Fatalf("the close in the change log: %v, %v", changes, err)
		}
		var after struct{ Outcome map[string]int }
		if err := json.Unmarshal([]byte(changes.GetChanges()[0].GetAfterJson()), &after); err != nil {
			t.Fatal(err)
		}
		if w := map[string]int{"keep": 1, "revoke": 3, "default_revoke": 3, "kept_not_revocable": 1}; !reflect.DeepEqual(after.Outcome, w) {
			t.Errorf("outcome %v, want %v", after.Outcome, w)
		}

		// By hand, with two super-administrators: the first in order
		// (oscar) is revoked, the second (peggy), then the last, is kept.
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "deputy", UserId: "peggy", RoleId: "admin"}); err != nil {
			t.Fatal(err)
		}
		byHand := start("admin")
		if _, err := oscar.gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", Reason: "done", ReviewId: byHand}); err != nil {
			t.Fatalf("closing by hand: %v", err)
		}
		want = map[string]string{"oscar/admin": fmt.Sprintf(revoked, "oscar"), "peggy/admin": fmt.Sprintf(keptWhy, "oscar")}
		if got := reviewRecord(t, peggy, byHand); !reflect.DeepEqual(got, want) {
			t.Errorf("items closed by hand:\n got %v\nwant %v", got, want)
		}
		if oscar.allowed(t, super) || !peggy.allowed(t, super) {
			t.Errorf("after the close by hand: oscar super %t, peggy super %t; want false, true", oscar.allowed(t, super), peggy.allowed(t, super))
		}
	})
}

// TestWhoCanRecordPaths asks WhoCan a record-level question (may read
// contact c-1, owned by mallory in sales_west) on memory and PostgreSQL:
// each user comes with every path Check names — a role's scope, an
// inherited role, a manager link, a sharing rule, a record share — and
// with when the access ends, which for peggy is her expiring grant; past
// it she is no longer named. The users named are exactly those Check
// allows.
func TestWhoCanRecordPaths(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar := e.user(t, "oscar")
		until, shareUntil := e.clock.Now().Add(72*time.Hour), e.clock.Now().Add(24*time.Hour)
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "covers key accounts", UserId: "peggy",
			RoleId: "key_account_manager", ExpiresAt: timestamppb.New(until)}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "oscar", Reason: "deal support", RecordOwnerId: "mallory",
			Share: &pb.RecordShare{Module: "contact", RecordId: "c-1", Principal: &pb.Principal{Kind: &pb.Principal_UserId{UserId: "peggy"}},
				Access: pb.RecordAccess_RECORD_ACCESS_READ, ExpiresAt: timestamppb.New(shareUntil)}}); err != nil {
			t.Fatal(err)
		}
		p := &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "contact", Verb: "read",
			Record: &pb.Record{Id: "c-1", OwnerId: "mallory", DepartmentId: "sales_west"}}}}
		whoCan := func() map[string]*pb.WhoCanUser { t.Helper(); return whoCanAll(t, oscar, p, 3) }
		// paths renders a user's reasons as "KIND role rule", with the
		// grant's expiry when it has one.
		paths := func(u *pb.WhoCanUser) []string {
			var out []string
			for _, r := range u.GetReasons() {
				s := strings.TrimPrefix(r.GetKind().String(), "REASON_KIND_")
				if r.GetRoleId() != "" {
					s += " " + r.GetRoleId()
				}
				if r.GetKind() == pb.ReasonKind_REASON_KIND_SHARING_RULE {
					s += " " + r.GetRule()
				}
				if strings.Contains(r.GetMessage(), "inherited from role") {
					s += " " + r.GetMessage()[strings.Index(r.GetMessage(), "(inherited"):]
				}
				if x := r.GetGrantExpiresAt(); x != nil {
					s += " until " + x.AsTime().Format(time.RFC3339)
				}
				out = append(out, s)
			}
			return out
		}
		got := whoCan()
		for _, c := range []struct {
			user  string
			paths []string
			until *timestamppb.Timestamp
		}{
			// A record share that ends tomorrow reaches the record; the
			// line comes from the inherited sales_rep, through a grant that
			// ends in three days. Her access ends with the share.
			{"peggy", []string{"ALLOWED_BY_ROLE key_account_manager (inherited from role sales_rep) until " + until.Format(time.RFC3339), "RECORD_SHARE until " + shareUntil.Format(time.RFC3339)},
				timestamppb.New(shareUntil)},
			// Two levels above the owner, outside the record's department tree.
			{"alice", []string{"ALLOWED_BY_ROLE sales_manager", "MANAGER"}, nil},
			// Mallory's contacts are shared with bob, outside his department.
			{"bob", []string{"ALLOWED_BY_ROLE sales_rep", "SHARING_RULE mallory_contacts_to_bob"}, nil},
			// In the record's department tree, and her manager.
			{"frank", []string{"ALLOWED_BY_ROLE sales_manager", "IN_SCOPE sales_manager", "MANAGER"}, nil},
			{"erin", []string{"ALLOWED_BY_ROLE sales_rep", "IN_SCOPE sales_rep"}, nil},
		} {
			u := got[c.user]
			if u == nil {
				t.Errorf("WhoCan does not name %s: %v", c.user, got)
				continue
			}
			if ps := paths(u); !slices.Equal(ps, c.paths) {
				t.Errorf("%s's paths:\n got %q\nwant %q", c.user, ps, c.paths)
			}
			if !proto.Equal(u.GetExpiresAt(), c.until) {
				t.Errorf("%s's access ends %v, want %v", c.user, u.GetExpiresAt(), c.until)
			}
		}
		// dave holds the line through the same inherited role, but nothing
		// reaches the record; ivan's grant expired.
		for _, u := range []string{"dave", "ivan", "judy"} {
			if got[u] != nil {
				t.Errorf("WhoCan names %s: %v", u, got[u])
			}
		}
		agree := func(got map[string]*pb.WhoCanUser) {
			t.Helper()
			for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy"} {
				resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: u, Permission: p})
				if err != nil {
					t.Fatal(err)
				}
				if resp.GetAllowed() != (got[u] != nil) {
					t.Errorf("Check says %t for %s, WhoCan %v", resp.GetAllowed(), u, got[u])
				}
			}
		}
		agree(got)

		// Past the share's end peggy's access is gone, her grant still on;
		// past the grant's end too.
		e.clock.Advance(24*time.Hour + time.Minute)
		if got := whoCan(); got["peggy"] != nil || got["bob"] == nil {
			t.Errorf("after peggy's share ended: peggy %v, bob %v", got["peggy"], got["bob"])
		}
		e.clock.Advance(48 * time.Hour)
		later := whoCan()
		if later["peggy"] != nil || later["bob"] == nil {
			t.Errorf("after peggy's grant ended: peggy %v, bob %v", later["peggy"], later["bob"])
		}
		agree(later)
	})
}

// TestAccessReviewOfOffboardedUsers: a review has an item for the grant of
// a user offboarded when it starts, marked so and unused (their grants
// decide nothing); revoked in the review, the grant does not come back
// with the user.
func TestAccessReviewOfOffboardedUsers(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar, frank, erin := e.user(t, "oscar"), e.user(t, "frank"), e.user(t, "erin")
		read := modulePerm("account", "read")
		if _, err := e.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "left", UserId: "erin"}); err != nil {
			t.Fatal(err)
		}
		started, err := oscar.gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "offboarding sweep", Name: "sales reps",
			RoleIds: []string{"sales_rep"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_KEEP,
			Deadline: timestamppb.New(e.clock.Now().Add(24 * time.Hour)), UnusedDays: 30})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := oscar.gov.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: "demo", ReviewId: started.GetReview().GetReviewId()})
		if err != nil {
			t.Fatal(err)
		}
		inactive := map[string]bool{}
		for _, it := range resp.GetItems() {
			inactive[it.GetUserId()] = it.GetUserInactive()
			if it.GetUserId() == "erin" && (!it.GetUnused() || it.GetReviewerId() != "frank") {
				t.Errorf("erin's item: %v", it)
			}
		}
		if on, ok := inactive["erin"]; !ok || !on || len(inactive) < 2 {
			t.Fatalf("items by user, offboarded or not: %v", inactive)
		}
		for u, on := range inactive {
			if u != "erin" && on {
				t.Errorf("%s's item is marked offboarded", u)
			}
		}
		if _, err := frank.gov.DecideReviewItem(ctx, &pb.DecideReviewItemRequest{TenantId: "demo", Reason: "left the company",
			ReviewId: started.GetReview().GetReviewId(), UserId: "erin", RoleId: "sales_rep", Decision: pb.ReviewDecision_REVIEW_DECISION_REVOKE}); err != nil {
			t.Fatal(err)
		}
		if _, err := e.admin.ReactivateUser(ctx, &pb.ReactivateUserRequest{TenantId: "demo", ActorId: "oscar", Reason: "rehired", UserId: "erin"}); err != nil {
			t.Fatal(err)
		}
		if erin.allowed(t, read) {
			t.Error("a grant revoked in the review came back with its user")
		}
	})
}

// TestAccessRequestsForUsers: a CRM back end with a service credential
// (not bound to a user) asks for access on a user's behalf as that
// user; the request is the user's, and the user, acting through the same
// service, still cannot approve it. A credential bound to one user cannot
// ask as another.
func TestAccessRequestsForUsers(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		svc := e.newKey(t, "crm back end", []string{"admin"}, []string{"demo"}, "")
		gov := pb.NewGovernanceServiceClient(e.dial(t, svc.key))
		resp, err := gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", ActorId: "erin", Reason: "quarter-end export",
			RoleId: "data_exporter", Duration: days(2)})
		if err != nil {
			t.Fatal(err)
		}
		r := resp.GetRequest()
		if r.GetUserId() != "erin" || r.GetRequestedBy() != "erin" || r.GetState() != pb.AccessRequestState_ACCESS_REQUEST_STATE_PENDING {
			t.Fatalf("request made for erin by the service: %v", r)
		}
		_, err = gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", ActorId: "erin", Reason: "mine", RequestId: r.GetRequestId()})
		denied(t, "approving one's own request through a service", err, "SELF_APPROVAL")
		bob := e.user(t, "bob")
		_, err = bob.gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", ActorId: "erin", Reason: "as erin",
			RoleId: "data_exporter", Duration: days(1)})
		denied(t, "a user's credential asking as another user", err, "ACTOR_MISMATCH")
	})
}

// whoCanAll reads WhoCan of p in the demo tenant as u, page by page, and
// returns the users named, by id.
func whoCanAll(t *testing.T, u *user, p *pb.Permission, pageSize int32) map[string]*pb.WhoCanUser {
	t.Helper()
	out := map[string]*pb.WhoCanUser{}
	for token := ""; ; {
		resp, err := u.gov.WhoCan(ctx, &pb.WhoCanRequest{TenantId: "demo", Permission: p, PageSize: pageSize, PageToken: token})
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range resp.GetUsers() {
			out[h.GetUserId()] = h
		}
		if token = resp.GetNextPageToken(); token == "" {
			return out
		}
	}
}

// TestReviewRevokeSparesAGrantGivenAgain: a grant revoked and given again
// while its review is open, or changed since, is not the grant the review
// shows; revoking the item is refused, saying so (REVIEW_GRANT_REPLACED),
// and the review's default of revoke keeps it at the close, with the
// reason as its comment. Untouched grants are revoked as before.
func TestReviewRevokeSparesAGrantGivenAgain(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar, frank := e.user(t, "oscar"), e.user(t, "frank")
		read := modulePerm("account", "read")
		started, err := oscar.gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "quarterly review",
			Name: "sales", RoleIds: []string{"sales_rep"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_REVOKE,
			Deadline: timestamppb.New(e.clock.Now().Add(7 * 24 * time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		id := started.GetReview().GetReviewId()
		e.clock.Advance(time.Hour)
		// erin's grant goes and comes back; mallory's is changed (a new
		// expiry): both are grants the reviewers never saw.
		if _, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "moved", UserId: "erin", RoleId: "sales_rep"}); err != nil {
			t.Fatal(err)
		}
		for _, u := range []string{"erin", "mallory"} {
			if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "back in sales", UserId: u,
				RoleId: "sales_rep", ExpiresAt: timestamppb.New(e.clock.Now().Add(30 * 24 * time.Hour))}); err != nil {
				t.Fatal(err)
			}
		}
		_, err = frank.gov.DecideReviewItem(ctx, &pb.DecideReviewItemRequest{TenantId: "demo", Reason: "reviewed", ReviewId: id,
			UserId: "erin", RoleId: "sales_rep", Decision: pb.ReviewDecision_REVIEW_DECISION_REVOKE})
		wantCode(t, "revoking a grant given again since the review started", err, codes.FailedPrecondition, "REVIEW_GRANT_REPLACED")
		erin := e.user(t, "erin")
		if !erin.allowed(t, read) {
			t.Fatal("the refused revoke took erin's new grant")
		}
		closed, err := oscar.gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", Reason: "done", ReviewId: id})
		if err != nil {
			t.Fatal(err)
		}
		if p := closed.GetReview().GetProgress(); p.GetKept() != 2 || p.GetRevoked() != 1 {
			t.Errorf("closed review: %v", closed.GetReview())
		}
		record := reviewRecord(t, oscar, id)
		for _, u := range []string{"erin", "mallory"} {
			if got := record[u+"/sales_rep"]; !strings.HasPrefix(got, "REVIEW_DECISION_KEEP by oscar: the grant was given again at ") {
				t.Errorf("%s's item: %s", u, got)
			}
		}
		if got := record["bob/sales_rep"]; !strings.HasPrefix(got, "REVIEW_DECISION_REVOKE by oscar") {
			t.Errorf("bob's untouched grant: %s", got)
		}
		if !erin.allowed(t, read) {
			t.Error("the close took erin's new grant")
		}
		if e.user(t, "bob").allowed(t, read) {
			t.Error("bob's grant, untouched since the review started, outlived its revoke")
		}
	})
}

// TestAccessReviewsPaged: ListAccessReviews pages newest first; the pages
// together are the whole list, in order, each review once, also when the
// review a token ends at is gone; a bad page size or a token of another
// listing is refused, naming the field.
func TestAccessReviewsPaged(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		oscar := e.user(t, "oscar")
		var started []string
		for i := range 5 {
			resp, err := oscar.gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "audit", Name: fmt.Sprintf("review %d", i),
				RoleIds: []string{"sales_rep"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_KEEP,
				Deadline: timestamppb.New(e.clock.Now().Add(7 * 24 * time.Hour))})
			if err != nil {
				t.Fatal(err)
			}
			started = append(started, resp.GetReview().GetReviewId())
			if i != 2 { // two reviews started at one time: ordered by id
				e.clock.Advance(time.Minute)
			}
		}
		list := func(size int32, token string) (*pb.ListAccessReviewsResponse, error) {
			return oscar.gov.ListAccessReviews(ctx, &pb.ListAccessReviewsRequest{TenantId: "demo", PageSize: size, PageToken: token})
		}
		all, err := list(0, "")
		if err != nil || len(all.GetReviews()) != 5 || all.GetNextPageToken() != "" {
			t.Fatalf("one page of everything: %v, %v", all, err)
		}
		var want []string
		for _, r := range all.GetReviews() {
			want = append(want, r.GetReviewId())
		}
		if want[0] != started[4] || want[4] != started[0] {
			t.Fatalf("not newest first: %v, started %v", want, started)
		}
		var got []string
		token, pages := "", 0
		for {
			page, err := list(2, token)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			for _, r := range page.GetReviews() {
				got = append(got, r.GetReviewId())
			}
			if token = page.GetNextPageToken(); token == "" || pages == 10 {
				break
			}
		}
		if !slices.Equal(got, want) || pages != 3 {
			t.Fatalf("pages of 2: %v in %d pages, want %v in 3", got, pages, want)
		}

		// A review started between two pages is newer than both: the pages
		// that follow the token are the same.
		first, err := list(2, "")
		if err != nil {
			t.Fatal(err)
		}
		if _, err := oscar.gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", Reason: "audit", Name: "late",
			RoleIds: []string{"sales_rep"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_KEEP,
			Deadline: timestamppb.New(e.clock.Now().Add(7 * 24 * time.Hour))}); err != nil {
			t.Fatal(err)
		}
		rest, err := list(10, first.GetNextPageToken())
		if err != nil {
			t.Fatal(err)
		}
		got = got[:0]
		for _, r := range rest.GetReviews() {
			got = append(got, r.GetReviewId())
		}
		if !slices.Equal(got, want[2:]) || rest.GetNextPageToken() != "" {
			t.Fatalf("after a review started between pages: %v, want %v", got, want[2:])
		}

		// The listing's rule holds on every page: a token from oscar's
		// listing opens nothing to a user without admin.users.manage, nor
		// another tenant's reviews to oscar's key.
		peggy := e.user(t, "peggy")
		for _, token := range []string{"", first.GetNextPageToken()} {
			_, err := peggy.gov.ListAccessReviews(ctx, &pb.ListAccessReviewsRequest{TenantId: "demo", PageSize: 2, PageToken: token})
			denied(t, "listing reviews without admin.users.manage", err, "MISSING_PERMISSION")
			_, err = oscar.gov.ListAccessReviews(ctx, &pb.ListAccessReviewsRequest{TenantId: "acme", PageSize: 2, PageToken: token})
			denied(t, "listing another tenant's reviews", err, "TENANT_NOT_ALLOWED")
		}

		for _, c := range []struct {
			size  int32
			token string
			field string
		}{
			{1001, "", "page_size"},
			{-1, "", "page_size"},
			{2, "not a token", "page_token"},
			{2, "SXJvbGU", "page_token"}, // a ListReviewItems token
		} {
			_, err := list(c.size, c.token)
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != c.field {
				t.Errorf("page_size %d, page_token %q: %v, want INVALID_ARGUMENT naming %s", c.size, c.token, err, c.field)
			}
		}
	})
}
