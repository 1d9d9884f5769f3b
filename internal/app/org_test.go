package app_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/policies"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// orgTenantYAML is the seeded tenant of the organisation tests. It uses the
// bundle's organisation keys, so the seed itself goes through the same
// model mutations as the admin writes below. The record share of L-1 has
// expired before the tests' clock starts (2026-11-24).
const orgTenantYAML = `
id: acme
name: Acme Org
templates: [admin, sales_rep, read_only]
users: [{id: oscar}, {id: alice}, {id: bob}, {id: carol}, {id: dave}]
grants:
  - {user: oscar, role: admin}
  - {user: bob, role: sales_rep}
  - {user: carol, role: read_only}
settings: {manager_depth: 3}
departments:
  - {id: hq, name: Head office}
  - {id: sales, name: Sales, parent: hq}
members:
  - {user: oscar, primary: hq}
sharing_rules:
  - id: hq_accounts
    module: account
    owned_by: {kind: department, id: hq, include_subs: true}
    shared_with: {kind: role, id: read_only}
    access: read
record_shares:
  - {module: lead, record_id: L-1, principal: {kind: user, id: carol}, access: read, expires_at: "2026-01-01T00:00:00Z"}
`

// orgConfig returns the default config serving a copy of policies/ whose
// demo tenant is orgTenantYAML.
func orgConfig(t *testing.T) config.Config {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(policies.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := policies.FS.ReadFile(path)
		if err != nil {
			return err
		}
		if path == "demo/tenant.yaml" {
			data = []byte(orgTenantYAML)
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o750); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.PoliciesDir = dir
	return cfg
}

// orgTenantID is the tenant orgTenantYAML seeds.
const orgTenantID = "acme"

// dept returns a department of a request or response.
func dept(id, name, parent string) *pb.Department {
	return &pb.Department{DepartmentId: id, Name: name, ParentId: parent}
}

func userP(id string) *pb.Principal { return &pb.Principal{Kind: &pb.Principal_UserId{UserId: id}} }
func roleP(id string) *pb.Principal { return &pb.Principal{Kind: &pb.Principal_RoleId{RoleId: id}} }
func deptP(id string, subs bool) *pb.Principal {
	return &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: id}, IncludeSubdepartments: subs}
}

// wantStatus fails t unless err carries code and reason; it returns the
// error's message.
func wantStatus(t *testing.T, err error, code codes.Code, reason string) string {
	t.Helper()
	got, gotReason, _ := errorInfo(t, err)
	if got != code || gotReason != reason {
		t.Fatalf("err = %v (reason %q), want %v %s", err, gotReason, code, reason)
	}
	return err.Error()
}

func (e *env) revision(t *testing.T) int64 {
	t.Helper()
	resp, err := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{ActorId: "oscar", TenantId: orgTenantID})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetRevision()
}

func (e *env) departments(t *testing.T) []string {
	t.Helper()
	resp, err := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{ActorId: "oscar", TenantId: orgTenantID})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range resp.GetDepartments() {
		out = append(out, d.GetDepartmentId()+"<"+d.GetParentId())
	}
	return out
}

func (e *env) createDept(t *testing.T, d *pb.Department) int64 {
	t.Helper()
	resp, err := e.admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "reorg", Department: d})
	if err != nil {
		t.Fatalf("create department %v: %v", d, err)
	}
	if !proto.Equal(resp.GetDepartment(), d) {
		t.Fatalf("created %v, want %v", resp.GetDepartment(), d)
	}
	return resp.GetRevision()
}

func (e *env) setMembership(m *pb.Membership) (*pb.SetMembershipResponse, error) {
	return e.admin.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "staffing", Membership: m})
}

func (e *env) createRule(r *pb.SharingRule) (*pb.CreateSharingRuleResponse, error) {
	return e.admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "sharing", Rule: r})
}

func (e *env) share(sh *pb.RecordShare) (*pb.ShareRecordResponse, error) {
	return e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "deal support", Share: sh})
}

// TestDepartmentTree builds a tree, renames and moves a department, is
// refused a cycle, and deletes a department once nothing uses it.
func TestDepartmentTree(t *testing.T) {
	e := start(t, orgConfig(t))
	if got, want := e.departments(t), []string{"hq<", "sales<hq"}; !slices.Equal(got, want) {
		t.Fatalf("seeded departments %q, want %q", got, want)
	}
	rev := e.revision(t)
	if rev != 1 {
		t.Fatalf("seeded revision %d, want 1", rev)
	}
	for _, d := range []*pb.Department{dept("east", "Sales East", "sales"), dept("west", "Sales West", "sales"), dept("support", "Support", "")} {
		if got := e.createDept(t, d); got != rev+1 {
			t.Fatalf("revision %d after a create, want %d", got, rev+1)
		}
		rev++
	}

	// Rename and move in one write.
	up, err := e.admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "west reports to hq",
		Department: dept("west", "West 西区", "hq")})
	if err != nil || up.GetRevision() != rev+1 || !proto.Equal(up.GetDepartment(), dept("west", "West 西区", "hq")) {
		t.Fatalf("update: %v %v", up, err)
	}
	if got, want := e.departments(t), []string{"east<sales", "hq<", "sales<hq", "support<", "west<hq"}; !slices.Equal(got, want) {
		t.Fatalf("departments %q, want %q", got, want)
	}

	update := func(d *pb.Department) error {
		_, err := e.admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: d})
		return err
	}
	del := func(id string) (*pb.DeleteDepartmentResponse, error) {
		return e.admin.DeleteDepartment(ctx, &pb.DeleteDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", DepartmentId: id})
	}
	wantStatus(t, update(dept("hq", "Head office", "east")), codes.FailedPrecondition, "DEPARTMENT_CYCLE")
	wantStatus(t, update(dept("sales", "Sales", "sales")), codes.FailedPrecondition, "DEPARTMENT_CYCLE")
	wantStatus(t, update(dept("north", "North", "")), codes.NotFound, "DEPARTMENT_NOT_FOUND")
	_, err = e.admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: dept("east", "East", "")})
	wantStatus(t, err, codes.AlreadyExists, "DEPARTMENT_EXISTS")
	_, err = e.admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: dept("north", "North", "nowhere")})
	wantStatus(t, err, codes.InvalidArgument, "DEPARTMENT_NOT_FOUND")

	// east is in use: by a sub-department, a member, a sharing rule.
	e.createDept(t, dept("east_a", "East A", "east"))
	if _, err := e.setMembership(&pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales", OtherDepartmentIds: []string{"east"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.createRule(&pb.SharingRule{RuleId: "east_leads", Module: "lead", OwnedBy: deptP("east", false), SharedWith: roleP("sales_rep"),
		Access: pb.RecordAccess_RECORD_ACCESS_READ}); err != nil {
		t.Fatal(err)
	}
	_, err = del("east")
	if msg := wantStatus(t, err, codes.FailedPrecondition, "DEPARTMENT_IN_USE"); !strings.Contains(msg, `"east_a"`) {
		t.Errorf("message %q does not name the sub-department", msg)
	}
	if _, err := del("east_a"); err != nil {
		t.Fatal(err)
	}
	_, err = del("east")
	if msg := wantStatus(t, err, codes.FailedPrecondition, "DEPARTMENT_IN_USE"); !strings.Contains(msg, `user "bob"`) {
		t.Errorf("message %q does not name the member", msg)
	}
	if _, err := e.setMembership(&pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales"}); err != nil {
		t.Fatal(err)
	}
	_, err = del("east")
	if msg := wantStatus(t, err, codes.FailedPrecondition, "DEPARTMENT_IN_USE"); !strings.Contains(msg, `sharing rule "east_leads"`) {
		t.Errorf("message %q does not name the rule", msg)
	}
	if _, err := e.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RuleId: "east_leads"}); err != nil {
		t.Fatal(err)
	}
	rev = e.revision(t)
	d, err := del("east")
	if err != nil || d.GetRevision() != rev+1 {
		t.Fatalf("delete emptied department: %v %v (revision before %d)", d, err, rev)
	}
	_, err = del("east")
	wantStatus(t, err, codes.NotFound, "DEPARTMENT_NOT_FOUND")
	if got, want := e.departments(t), []string{"hq<", "sales<hq", "support<", "west<hq"}; !slices.Equal(got, want) {
		t.Fatalf("departments %q, want %q", got, want)
	}
}

// TestMemberships sets memberships and managers, refuses a manager cycle,
// lists by user and by department, and deletes.
func TestMemberships(t *testing.T) {
	e := start(t, orgConfig(t))
	alice := &pb.Membership{UserId: "alice", PrimaryDepartmentId: "sales", OtherDepartmentIds: []string{"hq"}, ManagerId: "oscar"}
	resp, err := e.setMembership(alice)
	if err != nil || !proto.Equal(resp.GetMembership(), alice) || resp.GetRevision() != 2 {
		t.Fatalf("set alice: %v %v", resp, err)
	}
	bob := &pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales", ManagerId: "alice"}
	if _, err := e.setMembership(bob); err != nil {
		t.Fatal(err)
	}
	_, err = e.setMembership(&pb.Membership{UserId: "oscar", PrimaryDepartmentId: "hq", ManagerId: "bob"})
	if msg := wantStatus(t, err, codes.FailedPrecondition, "MANAGER_CYCLE"); !strings.Contains(msg, `"oscar" -> "bob" -> "alice" -> "oscar"`) {
		t.Errorf("message %q does not show the cycle", msg)
	}
	_, err = e.setMembership(&pb.Membership{UserId: "dave", PrimaryDepartmentId: "hq", ManagerId: "zed"})
	wantStatus(t, err, codes.NotFound, "USER_NOT_FOUND")
	_, err = e.setMembership(&pb.Membership{UserId: "zed", PrimaryDepartmentId: "hq"})
	wantStatus(t, err, codes.NotFound, "USER_NOT_FOUND")
	_, err = e.setMembership(&pb.Membership{UserId: "dave", PrimaryDepartmentId: "nowhere"})
	wantStatus(t, err, codes.InvalidArgument, "DEPARTMENT_NOT_FOUND")

	list := func(req *pb.ListMembershipsRequest) []*pb.Membership {
		t.Helper()
		req.TenantId, req.ActorId = orgTenantID, "oscar"
		resp, err := e.admin.ListMemberships(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetMemberships()
	}
	oscar := &pb.Membership{UserId: "oscar", PrimaryDepartmentId: "hq"}
	if got := list(&pb.ListMembershipsRequest{Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "hq"}}); !protosEqual(got, alice, oscar) {
		t.Errorf("members of hq: %v", got)
	}
	if got := list(&pb.ListMembershipsRequest{Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "sales"}}); !protosEqual(got, alice, bob) {
		t.Errorf("members of sales: %v", got)
	}
	if got := list(&pb.ListMembershipsRequest{Filter: &pb.ListMembershipsRequest_UserId{UserId: "bob"}}); !protosEqual(got, bob) {
		t.Errorf("bob's membership: %v", got)
	}
	if got := list(&pb.ListMembershipsRequest{Filter: &pb.ListMembershipsRequest_UserId{UserId: "nobody"}}); len(got) != 0 {
		t.Errorf("nobody's membership: %v", got)
	}
	_, err = e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{ActorId: "oscar", TenantId: orgTenantID, Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "nowhere"}})
	wantStatus(t, err, codes.NotFound, "DEPARTMENT_NOT_FOUND")

	delMember := func(user string) error {
		_, err := e.admin.DeleteMembership(ctx, &pb.DeleteMembershipRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "left", UserId: user})
		return err
	}
	if err := delMember("bob"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, delMember("bob"), codes.NotFound, "MEMBERSHIP_NOT_FOUND")
	// With bob gone the chain oscar -> bob ends at bob: no cycle any more.
	if _, err := e.setMembership(&pb.Membership{UserId: "oscar", PrimaryDepartmentId: "hq", ManagerId: "bob"}); err != nil {
		t.Fatalf("manager link after the cycle is broken: %v", err)
	}
}

// TestTenantSettings changes the manager depth.
func TestTenantSettings(t *testing.T) {
	e := start(t, orgConfig(t))
	for i, depth := range []int32{5, 0, 16} {
		resp, err := e.admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "policy", ManagerDepth: depth})
		if err != nil || resp.GetManagerDepth() != depth || resp.GetRevision() != int64(i+2) {
			t.Fatalf("manager depth %d: %v %v", depth, resp, err)
		}
	}
	_, err := e.admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: "nope", ActorId: "oscar", Reason: "policy", ManagerDepth: 1})
	wantStatus(t, err, codes.NotFound, "TENANT_NOT_FOUND")
}

// TestSharingRules creates, lists and deletes sharing rules and refuses
// rules naming what the tenant does not know.
func TestSharingRules(t *testing.T) {
	e := start(t, orgConfig(t))
	rule := &pb.SharingRule{RuleId: "bob_leads", Module: "lead", OwnedBy: userP("bob"), SharedWith: deptP("hq", true), Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE}
	resp, err := e.createRule(rule)
	if err != nil || !proto.Equal(resp.GetRule(), rule) || resp.GetRevision() != 2 {
		t.Fatalf("create rule: %v %v", resp, err)
	}
	_, err = e.createRule(rule)
	wantStatus(t, err, codes.AlreadyExists, "SHARING_RULE_EXISTS")

	refused := []struct {
		name   string
		mut    func(r *pb.SharingRule)
		reason string
		field  string
	}{
		{"unknown department", func(r *pb.SharingRule) { r.SharedWith = deptP("nowhere", false) }, "DEPARTMENT_NOT_FOUND", "rule.shared_with.department_id"},
		{"unknown role", func(r *pb.SharingRule) { r.OwnedBy = roleP("boss") }, "ROLE_NOT_FOUND", "rule.owned_by.role_id"},
		{"unknown module", func(r *pb.SharingRule) { r.Module = "spaceship" }, "UNKNOWN_MODULE", "rule.module"},
	}
	_, err = e.createRule(&pb.SharingRule{RuleId: "r2", Module: "account", OwnedBy: userP("carol"), SharedWith: userP("zed"), Access: pb.RecordAccess_RECORD_ACCESS_READ})
	wantStatus(t, err, codes.NotFound, "USER_NOT_FOUND")
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := &pb.SharingRule{RuleId: "r2", Module: "account", OwnedBy: userP("carol"), SharedWith: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ}
			tt.mut(r)
			_, err := e.createRule(r)
			code, reason, field := errorInfo(t, err)
			if code != codes.InvalidArgument || reason != tt.reason || field != tt.field || !strings.Contains(err.Error(), tt.field) {
				t.Fatalf("got %v %s %q (%v), want INVALID_ARGUMENT %s naming %q", code, reason, field, err, tt.reason, tt.field)
			}
		})
	}

	list, err := e.admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{ActorId: "oscar", TenantId: orgTenantID})
	seeded := &pb.SharingRule{RuleId: "hq_accounts", Module: "account", OwnedBy: deptP("hq", true), SharedWith: roleP("read_only"), Access: pb.RecordAccess_RECORD_ACCESS_READ}
	if err != nil || !protosEqual(list.GetRules(), rule, seeded) || list.GetRevision() != 2 {
		t.Fatalf("rules: %v %v", list, err)
	}

	// A role named by a rule cannot be deleted.
	if _, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", UserId: "carol", RoleId: "read_only"}); err != nil {
		t.Fatal(err)
	}
	_, err = e.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RoleId: "read_only"})
	if msg := wantStatus(t, err, codes.FailedPrecondition, "ROLE_IN_USE"); !strings.Contains(msg, `"hq_accounts"`) {
		t.Errorf("message %q does not name the rule", msg)
	}
	delRule := func(id string) error {
		_, err := e.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RuleId: id})
		return err
	}
	if err := delRule("hq_accounts"); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, delRule("hq_accounts"), codes.NotFound, "SHARING_RULE_NOT_FOUND")
	if _, err := e.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RoleId: "read_only"}); err != nil {
		t.Fatalf("delete role once its rule is gone: %v", err)
	}
}

// TestRecordShares shares a record with a user and a department tree,
// replaces a share, lets one expire, and unshares.
func TestRecordShares(t *testing.T) {
	e := start(t, orgConfig(t))
	until := e.clock.Now().Add(time.Hour)
	toBob := &pb.RecordShare{Module: "lead", RecordId: "L-1", Principal: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ, ExpiresAt: timestamppb.New(until)}
	resp, err := e.share(toBob)
	if err != nil || resp.GetRevision() != 2 {
		t.Fatalf("share: %v %v", resp, err)
	}
	wantBob := proto.CloneOf(toBob)
	wantBob.SharedBy, wantBob.Active = "oscar", true
	if !proto.Equal(resp.GetShare(), wantBob) {
		t.Fatalf("share %v, want %v", resp.GetShare(), wantBob)
	}
	toSales := &pb.RecordShare{Module: "lead", RecordId: "L-1", Principal: deptP("sales", true), Access: pb.RecordAccess_RECORD_ACCESS_READ}
	if _, err := e.share(toSales); err != nil {
		t.Fatal(err)
	}
	// Sharing again with the same principal replaces the share.
	toSales.Access = pb.RecordAccess_RECORD_ACCESS_READ_WRITE
	if _, err := e.share(toSales); err != nil {
		t.Fatal(err)
	}
	wantSales := proto.CloneOf(toSales)
	wantSales.SharedBy, wantSales.Active = "oscar", true

	_, err = e.share(&pb.RecordShare{Module: "lead", RecordId: "L-2", Principal: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ,
		ExpiresAt: timestamppb.New(e.clock.Now().Add(-time.Second))})
	wantStatus(t, err, codes.InvalidArgument, "EXPIRY_IN_PAST")
	_, err = e.share(&pb.RecordShare{Module: "lead", RecordId: "L-2", Principal: userP("zed"), Access: pb.RecordAccess_RECORD_ACCESS_READ})
	wantStatus(t, err, codes.NotFound, "USER_NOT_FOUND")
	_, err = e.share(&pb.RecordShare{Module: "lead", RecordId: "L-2", Principal: roleP("boss"), Access: pb.RecordAccess_RECORD_ACCESS_READ})
	wantStatus(t, err, codes.InvalidArgument, "ROLE_NOT_FOUND")

	list := func(includeExpired bool) *pb.ListRecordSharesResponse {
		t.Helper()
		resp, err := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{ActorId: "oscar", TenantId: orgTenantID, Module: "lead", RecordId: "L-1", IncludeExpired: includeExpired})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	// Ordered by principal: departments, roles, users. carol's seeded share
	// has expired.
	if got := list(false).GetShares(); !protosEqual(got, wantSales, wantBob) {
		t.Fatalf("active shares %v", got)
	}
	carol := &pb.RecordShare{Module: "lead", RecordId: "L-1", Principal: userP("carol"), Access: pb.RecordAccess_RECORD_ACCESS_READ,
		ExpiresAt: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), SharedBy: "system"}
	if got := list(true).GetShares(); !protosEqual(got, wantSales, wantBob, carol) {
		t.Fatalf("all shares %v", got)
	}

	// Once bob's expiry passes, his share decides nothing and is listed
	// only on request.
	e.clock.Advance(2 * time.Hour)
	wantBob.Active = false
	if got := list(false).GetShares(); !protosEqual(got, wantSales) {
		t.Fatalf("active shares after expiry %v", got)
	}
	if got := list(true).GetShares(); !protosEqual(got, wantSales, wantBob, carol) {
		t.Fatalf("all shares after expiry %v", got)
	}

	unshare := func(p *pb.Principal) (*pb.UnshareRecordResponse, error) {
		return e.admin.UnshareRecord(ctx, &pb.UnshareRecordRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "deal closed", Module: "lead", RecordId: "L-1", Principal: p})
	}
	rev := list(false).GetRevision()
	u, err := unshare(deptP("sales", true))
	if err != nil || u.GetRevision() != rev+1 {
		t.Fatalf("unshare: %v %v", u, err)
	}
	_, err = unshare(deptP("sales", true))
	wantStatus(t, err, codes.NotFound, "RECORD_SHARE_NOT_FOUND")
	_, err = unshare(deptP("sales", false))
	wantStatus(t, err, codes.NotFound, "RECORD_SHARE_NOT_FOUND")
	if got := list(true).GetShares(); !protosEqual(got, wantBob, carol) {
		t.Fatalf("shares after unshare %v", got)
	}
}

// TestOrgBadInput sends malformed organisation and sharing requests: each
// fails with INVALID_ARGUMENT naming the field, and the tenant stays at
// its revision with its data unchanged.
func TestOrgBadInput(t *testing.T) {
	e := start(t, orgConfig(t))
	snapshot := func() []proto.Message {
		t.Helper()
		d, err1 := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{ActorId: "oscar", TenantId: orgTenantID})
		m, err2 := e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{ActorId: "oscar", TenantId: orgTenantID, Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "hq"}})
		r, err3 := e.admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{ActorId: "oscar", TenantId: orgTenantID})
		s, err4 := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{ActorId: "oscar", TenantId: orgTenantID, Module: "lead", RecordId: "L-1", IncludeExpired: true})
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return []proto.Message{d, m, r, s}
	}
	before := snapshot()

	createDept := func(mut func(r *pb.CreateDepartmentRequest)) error {
		r := &pb.CreateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: dept("east", "East", "sales")}
		mut(r)
		_, err := e.admin.CreateDepartment(ctx, r)
		return err
	}
	updateDept := func(d *pb.Department) error {
		_, err := e.admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: d})
		return err
	}
	setMember := func(mut func(m *pb.Membership)) error {
		m := &pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales", OtherDepartmentIds: []string{"hq"}, ManagerId: "oscar"}
		mut(m)
		_, err := e.setMembership(m)
		return err
	}
	rule := func(mut func(r *pb.SharingRule)) error {
		r := &pb.SharingRule{RuleId: "r2", Module: "lead", OwnedBy: userP("bob"), SharedWith: deptP("sales", true), Access: pb.RecordAccess_RECORD_ACCESS_READ}
		mut(r)
		_, err := e.createRule(r)
		return err
	}
	share := func(mut func(sh *pb.RecordShare)) error {
		sh := &pb.RecordShare{Module: "lead", RecordId: "L-9", Principal: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ}
		mut(sh)
		_, err := e.share(sh)
		return err
	}
	unshare := func(mut func(r *pb.UnshareRecordRequest)) error {
		r := &pb.UnshareRecordRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Module: "lead", RecordId: "L-1", Principal: userP("carol")}
		mut(r)
		_, err := e.admin.UnshareRecord(ctx, r)
		return err
	}
	settings := func(depth int32) error {
		_, err := e.admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", ManagerDepth: depth})
		return err
	}
	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"no department", createDept(func(r *pb.CreateDepartmentRequest) { r.Department = nil }), "department"},
		{"department id pattern", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.DepartmentId = "e*" }), "department.department_id"},
		{"department id upper case", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.DepartmentId = "East" }), "department.department_id"},
		{"department id too long", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.DepartmentId = strings.Repeat("d", 65) }), "department.department_id"},
		{"department without name", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.Name = "" }), "department.name"},
		{"department name too long", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.Name = strings.Repeat("n", 257) }), "department.name"},
		{"department name control character", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.Name = "East\x07" }), "department.name"},
		{"department parent with comma", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.ParentId = "sales,hq" }), "department.parent_id"},
		{"department unknown parent", createDept(func(r *pb.CreateDepartmentRequest) { r.Department.ParentId = "nowhere" }), "department.parent_id"},
		{"department without actor", createDept(func(r *pb.CreateDepartmentRequest) { r.ActorId = "" }), "actor_id"},
		{"department without reason", createDept(func(r *pb.CreateDepartmentRequest) { r.Reason = "" }), "reason"},
		{"department bad tenant", createDept(func(r *pb.CreateDepartmentRequest) { r.TenantId = "ac me" }), "tenant_id"},
		{"update without department", updateDept(nil), "department"},
		{"update moved under unknown", updateDept(dept("sales", "Sales", "nowhere")), "department.parent_id"},
		{"delete department bad id", func() error {
			_, err := e.admin.DeleteDepartment(ctx, &pb.DeleteDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", DepartmentId: "keyMatch(x)"})
			return err
		}(), "department_id"},

		{"no membership", func() error {
			_, err := e.admin.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r"})
			return err
		}(), "membership"},
		{"membership user with space", setMember(func(m *pb.Membership) { m.UserId = "bob smith" }), "membership.user_id"},
		{"membership without primary", setMember(func(m *pb.Membership) { m.PrimaryDepartmentId = "" }), "membership.primary_department_id"},
		{"membership unknown primary", setMember(func(m *pb.Membership) { m.PrimaryDepartmentId = "nowhere" }), "membership.primary_department_id"},
		{"membership other repeated", setMember(func(m *pb.Membership) { m.OtherDepartmentIds = []string{"hq", "hq"} }), "membership.other_department_ids[1]"},
		{"membership other is primary", setMember(func(m *pb.Membership) { m.OtherDepartmentIds = []string{"sales"} }), "membership.other_department_ids[0]"},
		{"membership too many others", setMember(func(m *pb.Membership) {
			m.OtherDepartmentIds = nil
			for i := range 17 {
				m.OtherDepartmentIds = append(m.OtherDepartmentIds, "d"+strings.Repeat("x", i))
			}
		}), "membership.other_department_ids"},
		{"membership unknown other", setMember(func(m *pb.Membership) { m.OtherDepartmentIds = []string{"nowhere"} }), "membership.other_department_ids[0]"},
		{"own manager", setMember(func(m *pb.Membership) { m.ManagerId = "bob" }), "membership.manager_id"},
		{"manager pattern", setMember(func(m *pb.Membership) { m.ManagerId = "*" }), "membership.manager_id"},
		{"delete membership bad user", func() error {
			_, err := e.admin.DeleteMembership(ctx, &pb.DeleteMembershipRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", UserId: "a,b"})
			return err
		}(), "user_id"},
		{"list memberships without filter", func() error {
			_, err := e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{ActorId: "oscar", TenantId: orgTenantID})
			return err
		}(), "filter"},
		{"list memberships bad department", func() error {
			_, err := e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{ActorId: "oscar", TenantId: orgTenantID, Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "A"}})
			return err
		}(), "department_id"},

		{"manager depth negative", settings(-1), "manager_depth"},
		{"manager depth too big", settings(17), "manager_depth"},

		{"no rule", func() error {
			_, err := e.admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r"})
			return err
		}(), "rule"},
		{"rule bad id", rule(func(r *pb.SharingRule) { r.RuleId = "r:2" }), "rule.rule_id"},
		{"rule unknown module", rule(func(r *pb.SharingRule) { r.Module = "spaceship" }), "rule.module"},
		{"rule without owner", rule(func(r *pb.SharingRule) { r.OwnedBy = nil }), "rule.owned_by"},
		{"rule with empty owner", rule(func(r *pb.SharingRule) { r.OwnedBy = &pb.Principal{} }), "rule.owned_by"},
		{"rule without sharee", rule(func(r *pb.SharingRule) { r.SharedWith = nil }), "rule.shared_with"},
		{"rule owner user pattern", rule(func(r *pb.SharingRule) { r.OwnedBy = userP("r:admin") }), "rule.owned_by.user_id"},
		{"rule sharee role pattern", rule(func(r *pb.SharingRule) { r.SharedWith = roleP("admin*") }), "rule.shared_with.role_id"},
		{"rule subs of a user", rule(func(r *pb.SharingRule) { r.OwnedBy.IncludeSubdepartments = true }), "rule.owned_by.include_subdepartments"},
		{"rule access unspecified", rule(func(r *pb.SharingRule) { r.Access = pb.RecordAccess_RECORD_ACCESS_UNSPECIFIED }), "rule.access"},
		{"rule access unknown", rule(func(r *pb.SharingRule) { r.Access = 9 }), "rule.access"},
		{"rule unknown department", rule(func(r *pb.SharingRule) { r.SharedWith = deptP("nowhere", true) }), "rule.shared_with.department_id"},
		{"delete rule bad id", func() error {
			_, err := e.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RuleId: ""})
			return err
		}(), "rule_id"},

		{"no share", func() error {
			_, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r"})
			return err
		}(), "share"},
		{"share unknown module", share(func(sh *pb.RecordShare) { sh.Module = "spaceship" }), "share.module"},
		{"share record id empty", share(func(sh *pb.RecordShare) { sh.RecordId = "" }), "share.record_id"},
		{"share record id with slash", share(func(sh *pb.RecordShare) { sh.RecordId = "a/b" }), "share.record_id"},
		{"share record id too long", share(func(sh *pb.RecordShare) { sh.RecordId = strings.Repeat("r", 129) }), "share.record_id"},
		{"share without principal", share(func(sh *pb.RecordShare) { sh.Principal = nil }), "share.principal"},
		{"share subs of a role", share(func(sh *pb.RecordShare) { sh.Principal = roleP("sales_rep"); sh.Principal.IncludeSubdepartments = true }), "share.principal.include_subdepartments"},
		{"share access unspecified", share(func(sh *pb.RecordShare) { sh.Access = 0 }), "share.access"},
		{"share invalid expiry", share(func(sh *pb.RecordShare) { sh.ExpiresAt = &timestamppb.Timestamp{Seconds: 1, Nanos: -1} }), "share.expires_at"},
		{"share expiry in the past", share(func(sh *pb.RecordShare) { sh.ExpiresAt = timestamppb.New(e.clock.Now()) }), "share.expires_at"},
		{"share expiry at the zero time", share(func(sh *pb.RecordShare) { sh.ExpiresAt = timestamppb.New(time.Time{}) }), "share.expires_at"},
		{"share reason too long", func() error {
			_, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: strings.Repeat("x", 1025),
				Share: &pb.RecordShare{Module: "lead", RecordId: "L-9", Principal: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ}})
			return err
		}(), "reason"},
		{"unshare unknown module", unshare(func(r *pb.UnshareRecordRequest) { r.Module = "spaceship" }), "module"},
		{"unshare bad record", unshare(func(r *pb.UnshareRecordRequest) { r.RecordId = "L 1" }), "record_id"},
		{"unshare without principal", unshare(func(r *pb.UnshareRecordRequest) { r.Principal = nil }), "principal"},
		{"unshare department pattern", unshare(func(r *pb.UnshareRecordRequest) { r.Principal = deptP("*", false) }), "principal.department_id"},
		{"list shares bad record", func() error {
			_, err := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{ActorId: "oscar", TenantId: orgTenantID, Module: "lead", RecordId: "L\n1"})
			return err
		}(), "record_id"},
		{"list shares unknown module", func() error {
			_, err := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{ActorId: "oscar", TenantId: orgTenantID, Module: "spaceship", RecordId: "L-1"})
			return err
		}(), "module"},
		{"list departments bad tenant", func() error {
			_, err := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{ActorId: "oscar", TenantId: "*"})
			return err
		}(), "tenant_id"},
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

	// Nothing changed: still the seeded revision and data.
	after := snapshot()
	for i := range before {
		if !proto.Equal(after[i], before[i]) {
			t.Errorf("after bad writes:\n%v\nbefore:\n%v", after[i], before[i])
		}
	}
	if rev := e.revision(t); rev != 1 {
		t.Errorf("revision after bad writes %d, want 1", rev)
	}
}

// TestOrgPostgresSurvivesRestart writes organisation and sharing data
// through gRPC against PostgreSQL, restarts the server on the same
// database, and reads it all back unchanged.
func TestOrgPostgresSurvivesRestart(t *testing.T) {
	cfg := pgConfig(t)
	cfg.PoliciesDir = orgConfig(t).PoliciesDir
	first := start(t, cfg)
	if _, err := first.admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: dept("east", "Sales East 东区", "sales")}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", Department: dept("sales", "Sales & Marketing", "hq")}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.setMembership(&pb.Membership{UserId: "bob", PrimaryDepartmentId: "east", OtherDepartmentIds: []string{"sales", "hq"}, ManagerId: "oscar"}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", ManagerDepth: 7}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.createRule(&pb.SharingRule{RuleId: "east_to_bob", Module: "opportunity", OwnedBy: deptP("east", true), SharedWith: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE}); err != nil {
		t.Fatal(err)
	}
	until := first.clock.Now().Add(72*time.Hour + 123456789)
	if _, err := first.share(&pb.RecordShare{Module: "lead", RecordId: "L-1", Principal: deptP("east", false), Access: pb.RecordAccess_RECORD_ACCESS_READ_WRITE, ExpiresAt: timestamppb.New(until)}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", RuleId: "hq_accounts"}); err != nil {
		t.Fatal(err)
	}
	read := func(e *env) []proto.Message {
		t.Helper()
		d, err1 := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{ActorId: "oscar", TenantId: orgTenantID})
		m, err2 := e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{ActorId: "oscar", TenantId: orgTenantID, Filter: &pb.ListMembershipsRequest_DepartmentId{DepartmentId: "hq"}})
		r, err3 := e.admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{ActorId: "oscar", TenantId: orgTenantID})
		s, err4 := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{ActorId: "oscar", TenantId: orgTenantID, Module: "lead", RecordId: "L-1", IncludeExpired: true})
		for _, err := range []error{err1, err2, err3, err4} {
			if err != nil {
				t.Fatal(err)
			}
		}
		return []proto.Message{d, m, r, s}
	}
	before := read(first)
	if rev := before[0].(*pb.ListDepartmentsResponse).GetRevision(); rev != 8 {
		t.Fatalf("revision after seed and seven writes %d, want 8", rev)
	}
	if n := len(before[1].(*pb.ListMembershipsResponse).GetMemberships()); n != 2 {
		t.Fatalf("%d members of hq, want bob and oscar", n)
	}
	if n := len(before[3].(*pb.ListRecordSharesResponse).GetShares()); n != 2 {
		t.Fatalf("%d shares of L-1, want the seeded expired one and east's", n)
	}
	first.stop()

	second := start(t, cfg)
	after := read(second)
	for i := range before {
		if !proto.Equal(after[i], before[i]) {
			t.Errorf("after restart:\n%v\nbefore:\n%v", after[i], before[i])
		}
	}
	// The revision carries on from where the first server stopped.
	resp, err := second.admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: orgTenantID, ActorId: "oscar", Reason: "r", ManagerDepth: 7})
	if err != nil || resp.GetRevision() != 9 {
		t.Fatalf("settings after restart: %v %v", resp, err)
	}
}

func protosEqual[M proto.Message](got []M, want ...M) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			return false
		}
	}
	return true
}
