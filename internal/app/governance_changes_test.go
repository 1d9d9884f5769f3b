package app_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestChangeLogFindsGrantsOfApprovalsAndReviews: an auditor finds, by a
// grant target prefix in the change log, the grant an approval made and
// the grants an access review took away (by a reviewer's decision, at the
// deadline, and by a close by hand), each in the entry of the write that
// did it, on memory and PostgreSQL. Decisions made after those writes are
// explained after the fact as they were decided, so replaying the log
// applies each write once; on PostgreSQL the related targets are in the
// entry's hash, so removing one breaks the chain.
func TestChangeLogFindsGrantsOfApprovalsAndReviews(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
		base := startSetup(t, cfg, clk, nil, app.WithClockedDecisions())
		e := &auditEnv{env: base, audit: pb.NewAuditServiceClient(base.conn)}
		gov := pb.NewGovernanceServiceClient(e.conn)
		var decisions []*pb.CheckResponse
		check := func(user string, p *pb.Permission, allowed bool) {
			t.Helper()
			resp := e.check(t, "demo", user, p)
			if resp.GetAllowed() != allowed {
				t.Fatalf("%s %v: allowed %t, want %t", user, p, resp.GetAllowed(), allowed)
			}
			decisions = append(decisions, resp)
		}

		// bob asks for data_exporter, alice approves it for a day.
		asked, err := gov.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: "demo", ActorId: "bob", Reason: "churn analysis", RoleId: "data_exporter", Duration: days(3)})
		if err != nil {
			t.Fatal(err)
		}
		request := asked.GetRequest().GetRequestId()
		if _, err := gov.ApproveAccessRequest(ctx, &pb.ApproveAccessRequestRequest{TenantId: "demo", ActorId: "alice", Reason: "for the quarter",
			RequestId: request, Duration: days(1)}); err != nil {
			t.Fatal(err)
		}
		check("bob", functionPerm("data.export"), true)

		// A review of sales_rep and finance_readonly whose default is
		// revoke: frank revokes erin's sales_rep and keeps mallory's
		// finance_readonly; the rest is revoked at the deadline.
		started, err := gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", ActorId: "oscar", Reason: "quarterly", Name: "Q4",
			RoleIds: []string{"sales_rep", "finance_readonly"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_REVOKE,
			Deadline: timestamppb.New(clk.Now().Add(12 * time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		review := started.GetReview().GetReviewId()
		decide := func(user, role string, d pb.ReviewDecision) {
			t.Helper()
			if _, err := gov.DecideReviewItem(ctx, &pb.DecideReviewItemRequest{TenantId: "demo", ActorId: "frank", Reason: "reviewed", ReviewId: review,
				UserId: user, RoleId: role, Decision: d}); err != nil {
				t.Fatal(err)
			}
		}
		decide("erin", "sales_rep", pb.ReviewDecision_REVIEW_DECISION_REVOKE)
		decide("mallory", "finance_readonly", pb.ReviewDecision_REVIEW_DECISION_KEEP)
		check("erin", modulePerm("account", "read"), false)
		clk.Advance(12*time.Hour + time.Minute)
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			got, err := gov.GetAccessReview(ctx, &pb.GetAccessReviewRequest{TenantId: "demo", ActorId: "oscar", ReviewId: review})
			if err != nil {
				t.Fatal(err)
			}
			if got.GetReview().GetState() == pb.AccessReviewState_ACCESS_REVIEW_STATE_CLOSED {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the review was not closed at its deadline")
			}
		}
		check("judy", modulePerm("account", "read"), false)
		check("mallory", fieldPerm("account", "annual_revenue", false), true)

		// A review of customer_service, closed by hand.
		byHand, err := gov.StartAccessReview(ctx, &pb.StartAccessReviewRequest{TenantId: "demo", ActorId: "oscar", Reason: "yearly", Name: "service",
			RoleIds: []string{"customer_service"}, DefaultDecision: pb.ReviewDecision_REVIEW_DECISION_REVOKE,
			Deadline: timestamppb.New(clk.Now().Add(24 * time.Hour))})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := gov.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: "demo", ActorId: "oscar", Reason: "done",
			ReviewId: byHand.GetReview().GetReviewId()}); err != nil {
			t.Fatal(err)
		}
		check("carol", modulePerm("account", "read"), false)

		changes := func(prefix, action string) []string {
			t.Helper()
			resp, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", TargetPrefix: prefix, Action: action})
			if err != nil {
				t.Fatal(err)
			}
			var out []string
			for _, c := range resp.GetChanges() {
				out = append(out, c.GetAction()+" "+c.GetTarget()+" by "+c.GetActorId()+": "+strings.Join(c.GetRelatedTargets(), " "))
			}
			return out
		}
		closed := "review.close review/" + review + " by system:review-deadline: grant/bob/sales_rep grant/grace/finance_readonly " +
			"grant/judy/finance_readonly grant/mallory/sales_rep"
		for _, c := range []struct {
			prefix, action string
			want           []string
		}{
			{"grant/bob/", "", []string{"request.approve request/" + request + " by alice: grant/bob/data_exporter", closed}},
			{"grant/bob/data_exporter", "request.approve", []string{"request.approve request/" + request + " by alice: grant/bob/data_exporter"}},
			{"grant/erin/", "", []string{"review.decide review/" + review + "/erin/sales_rep by frank: grant/erin/sales_rep"}},
			{"grant/judy/", "review.close", []string{closed}},
			{"grant/mallory/finance_readonly", "", nil}, // kept: nothing happened to it
			{"grant/carol/", "", []string{"review.close review/" + byHand.GetReview().GetReviewId() + " by oscar: grant/carol/customer_service"}},
			{"request/" + request, "", []string{"request.create request/" + request + " by bob: ", "request.approve request/" + request + " by alice: grant/bob/data_exporter"}},
		} {
			if got := changes(c.prefix, c.action); !slices.Equal(got, c.want) {
				t.Errorf("changes under %q (action %q):\n got %q\nwant %q", c.prefix, c.action, got, c.want)
			}
		}

		// Every decision is explained after the fact as it was decided: the
		// history replays each of these writes once.
		e.waitDecision(t, "demo", decisions[len(decisions)-1].GetDecisionId())
		for _, d := range decisions {
			got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: d.GetDecisionId()})
			if err != nil {
				t.Fatal(err)
			}
			if !got.GetAgreesWithLog() || got.GetAllowed() != d.GetAllowed() || len(got.GetReasons()) != len(d.GetReasons()) {
				t.Errorf("decision %s explained after the fact as %v, decided as %v", d.GetDecisionId(), got, d)
			}
		}

		if cfg.DatabaseURL == "" {
			return
		}
		verify := func() *pb.VerifyLogResponse {
			t.Helper()
			return e.verify(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: "demo"})
		}
		if v := verify(); !v.GetIntact() {
			t.Fatalf("the change log does not verify: %v", v)
		}
		db := pgtest.Open(t, cfg.DatabaseURL)
		sqlExec(t, db, "UPDATE change_log SET related = NULL WHERE tenant_id = 'demo' AND action = 'request.approve'")
		if v := verify(); v.GetIntact() || v.GetChains()[0].GetBroken().GetKind() != pb.BreakKind_BREAK_KIND_HASH_MISMATCH {
			t.Errorf("with the approval's grant cut from the change log: %v", v)
		}
		sqlExec(t, db, "UPDATE change_log SET related = '{grant/bob/data_exporter}' WHERE tenant_id = 'demo' AND action = 'request.approve'")
		if v := verify(); !v.GetIntact() {
			t.Errorf("after undoing the edit: %v", v)
		}
	})
}
