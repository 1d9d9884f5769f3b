package app_test

import (
	"slices"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/tracing"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestTracing records the spans of a server on PostgreSQL in memory: a
// Check and a GrantRole get a span each, the grant's store transaction a
// span inside the grant's trace, and the decision log's write a span of
// its own, with the number of decisions it wrote.
func TestTracing(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	t.Cleanup(func() { tracing.Use(noop.NewTracerProvider()) })
	cfg := pgConfig(t)
	clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	base := startSetup(t, cfg, clk, nil, app.WithTracerProvider(tp))
	e := &auditEnv{env: base, audit: pb.NewAuditServiceClient(base.conn)}
	id := e.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId()
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "read_only"}); err != nil {
		t.Fatal(err)
	}
	e.waitDecision(t, "demo", id)
	spans := func() map[string][]sdktrace.ReadOnlySpan {
		out := map[string][]sdktrace.ReadOnlySpan{}
		for _, s := range rec.Ended() {
			out[s.Name()] = append(out[s.Name()], s)
		}
		return out
	}
	var got map[string][]sdktrace.ReadOnlySpan
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		got = spans()
		if len(got["decisionlog.write"]) > 0 || time.Now().After(deadline) {
			break
		}
	}
	for _, name := range []string{"crmauthz.v1.AuthorizationService/Check", "crmauthz.v1.AdminService/GrantRole", "store.Update", "decisionlog.write"} {
		if len(got[name]) == 0 {
			t.Errorf("no span %s among %v", name, slices.Collect(func(yield func(string) bool) {
				for n := range got {
					if !yield(n) {
						return
					}
				}
			}))
		}
	}
	if t.Failed() {
		return
	}
	grant, update := got["crmauthz.v1.AdminService/GrantRole"][0], got["store.Update"]
	if !slices.ContainsFunc(update, func(s sdktrace.ReadOnlySpan) bool {
		return s.SpanContext().TraceID() == grant.SpanContext().TraceID() && s.Parent().SpanID() == grant.SpanContext().SpanID()
	}) {
		t.Error("the grant's store transaction is not a child of the grant's span")
	}
	write := got["decisionlog.write"][0]
	for _, a := range write.Attributes() {
		if a.Key == "crmauthz.decisions" && a.Value.AsInt64() < 1 {
			t.Errorf("decision log write of %d decisions", a.Value.AsInt64())
		}
	}
}
