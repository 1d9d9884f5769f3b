package app_test

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestFailedBatchLogsNoDecisions: a BatchCheck that fails (an item names a
// tenant that does not exist) answers nothing, so the decision log must not
// claim that its other items were decided for the caller.
func TestFailedBatchLogsNoDecisions(t *testing.T) {
	cfg := config.Default()
	cfg.DecisionLog = "sync"
	e := startAudit(t, cfg)
	rctx := metadata.AppendToOutgoingContext(ctx, "x-request-id", "req-failed-batch")
	_, err := e.authz.BatchCheck(rctx, &pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
		{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")},
		{TenantId: "demo", SubjectId: "frank", Permission: functionPerm("data.export")},
		{TenantId: "nowhere", SubjectId: "bob", Permission: modulePerm("account", "read")},
	}})
	if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "TENANT_NOT_FOUND" {
		t.Fatalf("batch with an unknown tenant: %v", err)
	}
	// A later decision in sync mode is durable when answered; the log is
	// ordered, so anything the failed batch wrote is there by now.
	ok := e.check(t, "demo", "bob", modulePerm("account", "read"))
	e.waitDecision(t, "demo", ok.GetDecisionId())
	if got := e.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo", RequestId: "req-failed-batch"}); len(got) != 0 {
		t.Fatalf("the failed batch left %d decisions in the log: %v", len(got), ids(got))
	}
}
