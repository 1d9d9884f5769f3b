package app_test

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestExplainAfterTheFact: across random grants, revokes, role edits and
// a moving clock (grants expire), every Check logged with its reasons is
// explained after the fact exactly as it was explained when decided: the
// tenant's policy rebuilt at the decision's revision and decided at its
// time. A decision of a page is refused as not explainable.
func TestExplainAfterTheFact(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		// Decisions logged at the test's clock, which moves by hours.
		clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
		base := startSetup(t, cfg, clk, nil, app.WithClockedDecisions())
		e := &auditEnv{env: base, audit: pb.NewAuditServiceClient(base.conn)}
		rng := rand.New(rand.NewPCG(7, 11))
		users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "peggy"}
		roles := []string{"sales_rep", "sales_manager", "finance_readonly", "read_only", "customer_service", "restricted_export", "data_exporter"}
		rec := func(owner, dept string) *pb.Record {
			return &pb.Record{Id: "r-" + owner, OwnerId: owner, DepartmentId: dept}
		}
		perms := []*pb.Permission{
			modulePerm("account", "read"), modulePerm("account", "export"), modulePerm("lead", "update"), functionPerm("data.export"),
			functionPerm("report.view"), fieldPerm("account", "annual_revenue", false), fieldPerm("order", "discount", true),
			{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "lead", Verb: "update", Record: rec("ivan", "sales_west")}}},
			{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "contact", Verb: "read", Record: rec("mallory", "sales_west")}}},
			{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "opportunity", Verb: "update", Record: rec("bob", "sales_east")}}},
		}
		type logged struct {
			id      string
			allowed bool
			reasons []string
		}
		var decisions []logged
		writes := 0
		for step := 0; step < 30; step++ {
			u, r := users[rng.IntN(len(users))], roles[rng.IntN(len(roles))]
			var err error
			switch rng.IntN(4) {
			case 0, 1:
				req := &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "random", UserId: u, RoleId: r}
				if rng.IntN(2) == 0 {
					req.ExpiresAt = timestamppb.New(e.clock.Now().Add(time.Duration(1+rng.IntN(48)) * time.Hour))
				}
				_, err = e.admin.GrantRole(ctx, req)
			case 2:
				_, err = e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "random", UserId: u, RoleId: r})
			default:
				verbs := []string{"read", "list"}
				if rng.IntN(2) == 0 {
					verbs = append(verbs, "export")
				}
				_, err = e.admin.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: "demo", ActorId: "oscar", Reason: "random",
					RoleId: "read_only", Permissions: &pb.RolePermissions{Modules: []*pb.ModuleVerbs{{Module: "account", Verbs: verbs}},
						Functions: []string{"report.view"}}})
			}
			if err == nil {
				writes++
			} else if c := status.Code(err); c != codes.NotFound && c != codes.FailedPrecondition {
				t.Fatalf("write %d: %v", step, err)
			}
			e.clock.Advance(time.Duration(rng.IntN(20)) * time.Hour)
			for k := 0; k < 4; k++ {
				resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: users[rng.IntN(len(users))],
					Permission: perms[rng.IntN(len(perms))], Explain: true})
				if err != nil {
					t.Fatal(err)
				}
				var why []string
				for _, r := range resp.GetReasons() {
					why = append(why, r.GetMessage())
				}
				decisions = append(decisions, logged{resp.GetDecisionId(), resp.GetAllowed(), why})
			}
		}
		if writes < 15 {
			t.Fatalf("only %d random writes took: the test proves too little", writes)
		}
		e.waitDecision(t, "demo", decisions[len(decisions)-1].id)
		allowed := 0
		for _, d := range decisions {
			got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: d.id})
			if err != nil {
				t.Fatalf("explain %s: %v", d.id, err)
			}
			var why []string
			for _, r := range got.GetReasons() {
				why = append(why, r.GetMessage())
			}
			if got.GetAllowed() != d.allowed || !got.GetAgreesWithLog() || !slices.Equal(why, d.reasons) {
				t.Fatalf("decision %s (%s of %s at revision %d): explained after the fact as %t %q, at the time as %t %q",
					d.id, got.GetDecision().GetPermission(), got.GetDecision().GetSubjectId(), got.GetRevision(), got.GetAllowed(), why, d.allowed, d.reasons)
			}
			if d.allowed {
				allowed++
			}
		}
		if allowed == 0 || allowed == len(decisions) {
			t.Fatalf("%d of %d decisions allowed: the test proves too little", allowed, len(decisions))
		}

		page, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}})
		if err != nil {
			t.Fatal(err)
		}
		e.waitDecision(t, "demo", page.GetDecisionId())
		_, err = e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: page.GetDecisionId()})
		if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "NOT_EXPLAINABLE" {
			t.Errorf("explaining a page: %v", err)
		}
	})
}

// TestExplainRefusesAlteredHistory: someone with database access who edits
// a tenant's snapshot or a change's rows to make the past policy say
// otherwise gets HISTORY_ALTERED, not a false explanation.
func TestExplainRefusesAlteredHistory(t *testing.T) {
	cfg := pgConfig(t)
	e := startAudit(t, cfg)
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "read_only"}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "peggy", Permission: modulePerm("account", "read")})
	if err != nil || !resp.GetAllowed() {
		t.Fatalf("peggy reads accounts: %v, %v", resp, err)
	}
	e.waitDecision(t, "demo", resp.GetDecisionId())
	explain := func() error {
		_, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()})
		return err
	}
	if err := explain(); err != nil {
		t.Fatal(err)
	}
	db := pgtest.Open(t, cfg.DatabaseURL)
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, edit := range []struct{ name, sql, undo string }{
		{"the snapshot", `UPDATE tenant_snapshots SET rows = replace(rows::text, '"heidi"', '"heidj"')::json WHERE tenant_id = 'demo'`,
			`UPDATE tenant_snapshots SET rows = replace(rows::text, '"heidj"', '"heidi"')::json WHERE tenant_id = 'demo'`},
		{"a change's rows", `UPDATE change_log SET rows = replace(rows::text, '"read_only"', '"admin"')::json WHERE tenant_id = 'demo' AND rows IS NOT NULL`,
			`UPDATE change_log SET rows = replace(rows::text, '"admin"', '"read_only"')::json WHERE tenant_id = 'demo' AND rows IS NOT NULL`},
	} {
		exec(edit.sql)
		if code, reason, _ := errorInfo(t, explain()); code != codes.FailedPrecondition || reason != "HISTORY_ALTERED" {
			t.Errorf("after editing %s: %v %s, want FAILED_PRECONDITION HISTORY_ALTERED", edit.name, code, reason)
		}
		exec(edit.undo)
		if err := explain(); err != nil {
			t.Fatalf("after undoing the edit of %s: %v", edit.name, err)
		}
	}
}

// sameReasons reports whether two explanations give the same reasons, in
// the same order, field for field.
func sameReasons(a, b []*pb.Reason) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.Reason) bool { return proto.Equal(x, y) })
}

// TestExplainRecordSharesInOneOrder: a record shared with a user along
// several paths is explained with its shares in one order whatever order
// they were written in, so the reasons of a decision made by the live
// server equal those given after the fact by a policy rebuilt from the
// change log (and those of a restarted server or a replica).
func TestExplainRecordSharesInOneOrder(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		// Written against the order of their reasons' messages.
		for _, p := range []*pb.Principal{
			{Kind: &pb.Principal_UserId{UserId: "bob"}},
			{Kind: &pb.Principal_RoleId{RoleId: "sales_rep"}},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales_east"}},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales"}, IncludeSubdepartments: true},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "hq"}, IncludeSubdepartments: true},
		} {
			if _, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover",
				Share:         &pb.RecordShare{Module: "account", RecordId: "acc-9", Principal: p, Access: pb.RecordAccess_RECORD_ACCESS_READ},
				RecordOwnerId: "peggy", RecordDepartmentId: "marketing"}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
			Permission: recordPerm("account", "read", "acc-9", "peggy", "marketing"), Explain: true})
		if err != nil || !resp.GetAllowed() {
			t.Fatalf("bob reads acc-9: %v, %v", resp, err)
		}
		var shares []string
		for _, r := range resp.GetReasons() {
			if r.GetKind() == pb.ReasonKind_REASON_KIND_RECORD_SHARE {
				shares = append(shares, r.GetMessage())
			}
		}
		if len(shares) != 5 || !slices.IsSorted(shares) {
			t.Errorf("the shares reaching acc-9 are explained as %q, want all five in the order of their messages", shares)
		}
		e.waitDecision(t, "demo", resp.GetDecisionId())
		got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()})
		if err != nil {
			t.Fatal(err)
		}
		if !sameReasons(got.GetReasons(), resp.GetReasons()) {
			t.Errorf("explained after the fact as %v, at the time as %v", got.GetReasons(), resp.GetReasons())
		}
	})
}
