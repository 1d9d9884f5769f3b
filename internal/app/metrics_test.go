package app_test

import (
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestMetricsEndpoint scrapes the operator endpoint of a server on
// PostgreSQL: the calls by method and code with their durations, the
// decisions by kind and result, the refused calls, the tenants'
// revisions, the replica's following, the decision log and its spool, and
// the Go runtime are there, and they move with what the server does;
// pprof answers beside them.
func TestMetricsEndpoint(t *testing.T) {
	cfg := pgConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	e := startAudit(t, cfg)
	base := "http://" + e.app.MetricsAddr().String()
	get := func(path string) string {
		t.Helper()
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d %v", path, resp.StatusCode, err)
		}
		return string(b)
	}
	// sample returns the value of the series that starts with series
	// (a name and its labels, in the exposition's order); -1 when absent.
	sample := func(body, series string) float64 {
		for line := range strings.Lines(body) {
			if rest, ok := strings.CutPrefix(line, series+" "); ok {
				v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
				if err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				return v
			}
		}
		return -1
	}
	checks := func(n int) {
		for range n {
			e.check(t, "demo", "bob", modulePerm("account", "read"))
		}
	}
	checks(3)
	e.check(t, "demo", "frank", functionPerm("data.export"))
	if _, err := pb.NewAuthorizationServiceClient(e.dial(t, "")).Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")}); err == nil {
		t.Fatal("a call without a credential was answered")
	}
	const (
		handled  = `crmauthz_grpc_server_handled_total{grpc_code="OK",grpc_method="Check",grpc_service="crmauthz.v1.AuthorizationService"}`
		seconds  = `crmauthz_grpc_server_handling_seconds_count{grpc_method="Check",grpc_service="crmauthz.v1.AuthorizationService"}`
		allowed  = `crmauthz_decisions_total{kind="module",result="allow"}`
		denied   = `crmauthz_decisions_total{kind="function",result="deny"}`
		refused  = `crmauthz_auth_failures_total{grpc_code="Unauthenticated",reason="MISSING_CREDENTIAL"}`
		revision = `crmauthz_tenant_policy_revision{tenant="demo"}`
	)
	first := get("/metrics")
	for _, s := range []string{handled, seconds, allowed, denied, refused, revision, "crmauthz_tenants_loaded", "crmauthz_replica_following",
		"crmauthz_replica_lag_seconds", "crmauthz_decision_log_queue_entries", "crmauthz_decision_log_written_total",
		`crmauthz_decision_log_dropped_total{result="deny"}`, "crmauthz_decision_log_write_errors_total", "crmauthz_decision_spool_capacity_bytes",
		"go_goroutines", "process_resident_memory_bytes"} {
		if sample(first, s) < 0 {
			t.Errorf("no series %s in:\n%s", s, first)
		}
	}
	if sample(first, handled) < 4 || sample(first, allowed) < 3 || sample(first, denied) < 1 || sample(first, refused) < 1 ||
		sample(first, revision) != 1 || sample(first, "crmauthz_replica_following") != 1 {
		t.Errorf("first scrape:\n%s", first)
	}
	checks(5)
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "read_only"}); err != nil {
		t.Fatal(err)
	}
	var second string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		second = get("/metrics")
		if sample(second, "crmauthz_decision_log_written_total") >= 9 || time.Now().After(deadline) {
			break
		}
	}
	if sample(second, handled)-sample(first, handled) != 5 || sample(second, allowed)-sample(first, allowed) != 5 || sample(second, revision) != 2 ||
		sample(second, "crmauthz_decision_log_written_total") < 9 {
		t.Errorf("the metrics did not move with five checks and a grant:\n%s", second)
	}
	if !strings.Contains(get("/debug/pprof/"), "goroutine") {
		t.Error("pprof does not list its profiles")
	}
}
