package app_test

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// auditEnv is a running authzd with an AuditService client.
type auditEnv struct {
	*env
	audit pb.AuditServiceClient
}

func startAudit(t *testing.T, cfg config.Config) *auditEnv {
	t.Helper()
	e := start(t, cfg)
	return &auditEnv{env: e, audit: pb.NewAuditServiceClient(e.conn)}
}

// startClock is start with a given clock.
func startClock(t testing.TB, cfg config.Config, clk *clock) *auditEnv {
	t.Helper()
	e := startWith(t, cfg, clk)
	return &auditEnv{env: e, audit: pb.NewAuditServiceClient(e.conn)}
}

// backends runs f against the memory store and against PostgreSQL.
func backends(t *testing.T, f func(t *testing.T, cfg config.Config)) {
	t.Run("memory", func(t *testing.T) { f(t, config.Default()) })
	t.Run("postgres", func(t *testing.T) { f(t, pgConfig(t)) })
}

// waitDecision polls until the decision log holds id (the async mode
// writes within the flush interval).
func (e *auditEnv) waitDecision(t *testing.T, tenant, id string) *pb.Decision {
	t.Helper()
	if id == "" {
		t.Fatal("empty decision id")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: tenant, DecisionId: id})
		if err == nil {
			return resp.GetDecision()
		}
		if status.Code(err) != codes.NotFound || time.Now().After(deadline) {
			t.Fatalf("decision %s: %v", id, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// listAll pages through ListDecisions.
func (e *auditEnv) listAll(t *testing.T, req *pb.ListDecisionsRequest) []*pb.Decision {
	t.Helper()
	var out []*pb.Decision
	for {
		resp, err := e.audit.ListDecisions(ctx, req)
		if err != nil {
			t.Fatalf("list decisions %v: %v", req, err)
		}
		out = append(out, resp.GetDecisions()...)
		if resp.GetNextPageToken() == "" {
			return out
		}
		req.PageToken = resp.GetNextPageToken()
	}
}

func ids(ds []*pb.Decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.GetDecisionId()
	}
	return out
}

func (e *auditEnv) verify(t *testing.T, req *pb.VerifyLogRequest) *pb.VerifyLogResponse {
	t.Helper()
	resp, err := e.audit.VerifyLog(ctx, req)
	if err != nil {
		t.Fatalf("verify %v: %v", req, err)
	}
	return resp
}

// TestDecisionLogRecordsEveryDecision makes one decision of every kind and
// finds each by the decision_id of its response, with what was decided.
func TestDecisionLogRecordsEveryDecision(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		rctx := metadata.AppendToOutgoingContext(ctx, "x-request-id", "req-audit-1")
		before := time.Now()

		check, err := e.authz.Check(rctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "frank", Permission: functionPerm("data.export"), Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		batch, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
			{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")},
			{TenantId: "demo", SubjectId: "bob", Permission: fieldPerm("account", "credit_limit", true)},
		}})
		if err != nil {
			t.Fatal(err)
		}
		rec := &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "update",
			Record: &pb.Record{Id: "acc-17", OwnerId: "bob", DepartmentId: "sales_east"}}}}
		recCheck, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: rec})
		if err != nil {
			t.Fatal(err)
		}
		fields, err := e.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "bob", Module: "account"})
		if err != nil {
			t.Fatal(err)
		}
		plan, err := e.authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{TenantId: "demo", SubjectId: "bob", Module: "lead", Verb: "list"})
		if err != nil {
			t.Fatal(err)
		}

		d := e.waitDecision(t, "demo", check.GetDecisionId())
		if d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_CHECK || d.GetTenantId() != "demo" || d.GetSubjectId() != "frank" ||
			d.GetPermission() != "function data.export" || d.GetAllowed() || d.GetRevision() != check.GetRevision() ||
			d.GetRequestId() != "req-audit-1" || d.GetCaller() == "" || len(d.GetReasons()) != 2 ||
			!strings.Contains(d.GetReasons()[0], "restricted_export") || d.GetLatency().AsDuration() <= 0 ||
			d.GetDecisionTime().AsTime().Before(before.Truncate(time.Microsecond)) || d.GetLoggedTime().AsTime().Before(d.GetDecisionTime().AsTime()) ||
			len(d.GetHash()) != 64 || d.GetChainPosition() < 1 || !strings.HasPrefix(d.GetDecisionId(), d.GetChainId()+"-") {
			t.Errorf("check entry %v", d)
		}
		for i, want := range []string{"module account read", "field account.credit_limit write"} {
			d := e.waitDecision(t, "demo", batch.GetResults()[i].GetDecisionId())
			if d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_BATCH_CHECK || d.GetPermission() != want || d.GetAllowed() != batch.GetResults()[i].GetAllowed() {
				t.Errorf("batch item %d entry %v", i, d)
			}
		}
		d = e.waitDecision(t, "demo", recCheck.GetDecisionId())
		if d.GetPermission() != "module account update" || d.GetModule() != "account" || d.GetRecord().GetId() != "acc-17" ||
			d.GetRecord().GetOwnerId() != "bob" || d.GetRecord().GetDepartmentId() != "sales_east" || d.GetAllowed() != recCheck.GetAllowed() {
			t.Errorf("record check entry %v", d)
		}
		d = e.waitDecision(t, "demo", fields.GetDecisionId())
		if d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_GET_FIELD_ACCESS || d.GetPermission() != "module account read" || !d.GetAllowed() {
			t.Errorf("field access entry %v", d)
		}
		d = e.waitDecision(t, "demo", plan.GetDecisionId())
		if d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_PLAN_RECORD_FILTER || d.GetPermission() != "module lead list" || d.GetRevision() != plan.GetRevision() {
			t.Errorf("plan entry %v", d)
		}

		// Filters, each matching what it names.
		all := e.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo"})
		if len(all) != 6 {
			t.Fatalf("listed %d decisions, want 6: %v", len(all), ids(all))
		}
		want := []string{check.GetDecisionId(), batch.GetResults()[0].GetDecisionId(), batch.GetResults()[1].GetDecisionId(),
			recCheck.GetDecisionId(), fields.GetDecisionId(), plan.GetDecisionId()}
		if !slices.Equal(ids(all), want) {
			t.Errorf("oldest first: %v, want %v", ids(all), want)
		}
		newest := e.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo", NewestFirst: true, PageSize: 4})
		slices.Reverse(want)
		if !slices.Equal(ids(newest), want) {
			t.Errorf("newest first: %v, want %v", ids(newest), want)
		}
		filters := []struct {
			name string
			req  *pb.ListDecisionsRequest
			want int
		}{
			{"subject", &pb.ListDecisionsRequest{SubjectId: "frank"}, 1},
			{"permission", &pb.ListDecisionsRequest{Permission: modulePerm("account", "read")}, 2},
			{"module", &pb.ListDecisionsRequest{Module: "account"}, 4},
			{"denied", &pb.ListDecisionsRequest{Result: pb.DecisionResult_DECISION_RESULT_DENIED}, countAllowed(all, false)},
			{"allowed", &pb.ListDecisionsRequest{Result: pb.DecisionResult_DECISION_RESULT_ALLOWED}, countAllowed(all, true)},
			{"method", &pb.ListDecisionsRequest{Method: pb.DecisionMethod_DECISION_METHOD_BATCH_CHECK}, 2},
			{"request id", &pb.ListDecisionsRequest{RequestId: "req-audit-1"}, 1},
			{"record", &pb.ListDecisionsRequest{RecordId: "acc-17"}, 1},
			{"caller", &pb.ListDecisionsRequest{Caller: all[0].GetCaller()}, 6},
			{"time range", &pb.ListDecisionsRequest{StartTime: all[1].GetDecisionTime(), EndTime: timestamppb.New(all[3].GetDecisionTime().AsTime())}, 2},
			{"nothing before", &pb.ListDecisionsRequest{EndTime: timestamppb.New(before.Add(-time.Hour))}, 0},
		}
		for _, f := range filters {
			if f.req.TenantId == "" {
				f.req.TenantId = "demo"
			}
			f.req.PageSize = 2
			if got := e.listAll(t, f.req); len(got) != f.want {
				t.Errorf("filter %s: %d decisions, want %d: %v", f.name, len(got), f.want, got)
			}
		}

		// Streaming export: the same entries.
		stream, err := e.audit.ExportDecisions(ctx, &pb.ExportDecisionsRequest{TenantId: "demo"})
		if err != nil {
			t.Fatal(err)
		}
		var exported []*pb.Decision
		for {
			msg, err := stream.Recv()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			exported = append(exported, msg.GetDecisions()...)
		}
		slices.Reverse(want)
		if !slices.Equal(ids(exported), want) {
			t.Errorf("export: %v, want %v", ids(exported), want)
		}

		v := e.verify(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
		if !v.GetIntact() || len(v.GetChains()) != 1 || v.GetChains()[0].GetEntriesChecked() != 6 || v.GetChains()[0].GetHeadHash() != all[5].GetHash() {
			t.Errorf("verify: %v", v)
		}
		st, err := e.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		wantStorage := "postgres"
		if cfg.DatabaseURL == "" {
			wantStorage = "memory"
		}
		if st.GetMode() != "async" || st.GetStorage() != wantStorage || st.GetRecorded() != 6 || st.GetWritten() != 6 ||
			st.GetDroppedAllowed()+st.GetDroppedDenied() != 0 || st.GetChainId() != all[0].GetChainId() {
			t.Errorf("status %v", st)
		}
		if wantStorage == "memory" && st.GetMemoryCapacity() != 100000 {
			t.Errorf("memory status %v", st)
		}
	})
}

func countAllowed(ds []*pb.Decision, allowed bool) int {
	n := 0
	for _, d := range ds {
		if d.GetAllowed() == allowed {
			n++
		}
	}
	return n
}

// TestDecisionLogSyncMode: in the sync mode an entry is durable when the
// response arrives.
func TestDecisionLogSyncMode(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		cfg.DecisionLog = "sync"
		e := startAudit(t, cfg)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for i := range 64 {
			wg.Go(func() {
				resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("lead", "read")})
				if err == nil {
					_, err = e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()})
				}
				if err != nil {
					errs <- fmt.Errorf("check %d: %w", i, err)
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
	})
}

// TestDecisionLogPagesNeitherSkipNorRepeat lists the log page by page while
// callers keep deciding, then resumes until it has seen every decision
// exactly once.
func TestDecisionLogPagesNeitherSkipNorRepeat(t *testing.T) {
	for _, mode := range []string{"async", "sync"} {
		t.Run(mode, func(t *testing.T) {
			backends(t, func(t *testing.T, cfg config.Config) {
				cfg.DecisionLog = mode
				cfg.DecisionLogFlushInterval = 5 * time.Millisecond
				cfg.DecisionLogBatchSize = 7
				e := startAudit(t, cfg)
				var (
					mu     sync.Mutex
					issued []string
					wg     sync.WaitGroup
				)
				stop := make(chan struct{})
				for w := range 4 {
					wg.Go(func() {
						for i := 0; ; i++ {
							select {
							case <-stop:
								return
							default:
							}
							resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "alice", Permission: modulePerm("lead", "read")})
							if err != nil {
								t.Errorf("writer %d: %v", w, err)
								return
							}
							mu.Lock()
							issued = append(issued, resp.GetDecisionId())
							mu.Unlock()
						}
					})
				}
				seen := map[string]int{}
				req := &pb.ListDecisionsRequest{TenantId: "demo", SubjectId: "alice", PageSize: 5}
				resume := ""
				// List at least 40 pages, and on until the writers have made
				// 20 decisions: a loaded machine can stall them for a while.
				issuedN := func() int { mu.Lock(); defer mu.Unlock(); return len(issued) }
				busy := time.Now().Add(10 * time.Second)
				for pages := 0; pages < 40 || issuedN() < 20 && time.Now().Before(busy); pages++ {
					resp, err := e.audit.ListDecisions(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					for _, d := range resp.GetDecisions() {
						seen[d.GetDecisionId()]++
					}
					resume = resp.GetResumeToken()
					req.PageToken = resp.GetNextPageToken()
					if req.PageToken == "" {
						req.PageToken = resume
						time.Sleep(2 * time.Millisecond)
					}
				}
				close(stop)
				wg.Wait()
				// Everything issued is written within the flush interval;
				// resume until it is all seen.
				deadline := time.Now().Add(10 * time.Second)
				for len(seen) < len(issued) && time.Now().Before(deadline) {
					resp, err := e.audit.ListDecisions(ctx, req)
					if err != nil {
						t.Fatal(err)
					}
					for _, d := range resp.GetDecisions() {
						seen[d.GetDecisionId()]++
					}
					if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
						req.PageToken = resp.GetResumeToken()
						time.Sleep(5 * time.Millisecond)
					}
				}
				for id, n := range seen {
					if n != 1 {
						t.Errorf("decision %s listed %d times", id, n)
					}
				}
				for _, id := range issued {
					if seen[id] != 1 {
						t.Errorf("decision %s never listed", id)
					}
				}
				if len(seen) != len(issued) || len(issued) < 20 {
					t.Errorf("listed %d decisions, issued %d", len(seen), len(issued))
				}
			})
		})
	}
}

// TestDecisionLogShutdownFlushes: entries still queued when the server
// stops are written before it exits, and a restart finds them.
func TestDecisionLogShutdownFlushes(t *testing.T) {
	cfg := pgConfig(t)
	cfg.DecisionLogFlushInterval = time.Minute // nothing is written before the stop
	cfg.DecisionLogBatchSize = 10000
	cfg.DecisionLogQueueSize = 10000
	first := startAudit(t, cfg)
	var want []string
	for range 300 {
		want = append(want, first.check(t, "demo", "carol", modulePerm("case", "read")).GetDecisionId())
	}
	first.stop()
	second := startAudit(t, cfg)
	got := second.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo", PageSize: 1000})
	if !slices.Equal(ids(got), want) {
		t.Fatalf("after restart %d entries, want the %d made before the stop", len(got), len(want))
	}
	v := second.verify(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
	if !v.GetIntact() || len(v.GetChains()) != 2 || v.GetChains()[0].GetEntriesChecked()+v.GetChains()[1].GetEntriesChecked() != 300 {
		t.Fatalf("verify after restart: %v", v)
	}
}

// TestDecisionLogMasksAttributes: masked attributes are stored as keyed
// hashes, and filters by the plain value still find them.
func TestDecisionLogMasksAttributes(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		cfg.DecisionLogMask = []string{"subject", "record_id", "record_owner"}
		cfg.DecisionLogMaskKey = "a-test-key-of-32-bytes-for-hmac!"
		cfg.DecisionLog = "sync"
		e := startAudit(t, cfg)
		rec := &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read",
			Record: &pb.Record{Id: "acc-9", OwnerId: "bob"}}}}
		resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: rec})
		if err != nil {
			t.Fatal(err)
		}
		d := e.waitDecision(t, "demo", resp.GetDecisionId())
		if !strings.HasPrefix(d.GetSubjectId(), "~") || len(d.GetSubjectId()) != 33 || d.GetRecord().GetOwnerId() != d.GetSubjectId() ||
			!strings.HasPrefix(d.GetRecord().GetId(), "~") || d.GetPermission() != "module account read" {
			t.Fatalf("masked entry %v", d)
		}
		for _, req := range []*pb.ListDecisionsRequest{{TenantId: "demo", SubjectId: "bob"}, {TenantId: "demo", RecordId: "acc-9"}} {
			if got := e.listAll(t, req); len(got) != 1 || got[0].GetDecisionId() != d.GetDecisionId() {
				t.Errorf("filter %v: %v", req, got)
			}
		}
		// A page names its denied records in the reasons: masked too.
		page, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob",
			RecordPermission: modulePerm("account", "delete"), Records: []*pb.Record{{Id: "acc-secret-77", OwnerId: "alice"}}})
		if err != nil || page.GetRecordsAllowed()[0] {
			t.Fatalf("page %v %v", page, err)
		}
		pd := e.waitDecision(t, "demo", page.GetDecisionId())
		if len(pd.GetReasons()) != 2 || strings.Contains(strings.Join(pd.GetReasons(), " "), "acc-secret-77") ||
			!strings.HasPrefix(pd.GetReasons()[1], "denied: record ~") {
			t.Fatalf("masked page entry %v", pd.GetReasons())
		}
		st, err := e.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
		if err != nil || !slices.Equal(st.GetMaskedAttributes(), cfg.DecisionLogMask) {
			t.Errorf("status %v %v", st, err)
		}
	})
}

// TestChangeLogQueries lists the change log with filters and pages, and
// verifies its hash chain on PostgreSQL.
func TestChangeLogQueries(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		for _, u := range []string{"peggy", "mallory", "judy"} {
			e.clock.Advance(time.Minute)
			if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "review " + u, UserId: u, RoleId: "read_only"}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "left", UserId: "mallory", RoleId: "read_only"}); err != nil {
			t.Fatal(err)
		}
		list := func(req *pb.ListChangesRequest) []*pb.Change {
			t.Helper()
			var out []*pb.Change
			for {
				resp, err := e.audit.ListChanges(ctx, req)
				if err != nil {
					t.Fatalf("list changes %v: %v", req, err)
				}
				out = append(out, resp.GetChanges()...)
				if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
					return out
				}
			}
		}
		all := list(&pb.ListChangesRequest{TenantId: "demo", PageSize: 2})
		if len(all) != 5 || all[0].GetAction() != "tenant.create" || all[4].GetAction() != "grant.revoke" || all[4].GetRevision() != 5 {
			t.Fatalf("changes %v", all)
		}
		for i, c := range all {
			if c.GetRevision() != int64(i+1) {
				t.Errorf("change %d has revision %d", i, c.GetRevision())
			}
			if pg := cfg.DatabaseURL != ""; pg != (len(c.GetHash()) == 64) {
				t.Errorf("change %d hash %q", i, c.GetHash())
			}
		}
		if got := list(&pb.ListChangesRequest{TenantId: "demo", ActorId: "oscar"}); len(got) != 4 {
			t.Errorf("by actor: %v", got)
		}
		if got := list(&pb.ListChangesRequest{TenantId: "demo", ActorId: "system"}); len(got) != 1 || got[0].GetAction() != "tenant.create" {
			t.Errorf("by the seeding actor: %v", got)
		}
		if got := list(&pb.ListChangesRequest{TenantId: "demo", TargetPrefix: "grant/mallory/"}); len(got) != 2 || got[1].GetBeforeJson() == "" || got[1].GetAfterJson() != "" {
			t.Errorf("by target: %v", got)
		}
		if got := list(&pb.ListChangesRequest{TenantId: "demo", Action: "grant.create", StartTime: all[2].GetChangeTime()}); len(got) != 2 {
			t.Errorf("by action and time: %v", got)
		}
		_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "nope"})
		if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "TENANT_NOT_FOUND" {
			t.Errorf("unknown tenant: %v", err)
		}
		resp, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: "demo"})
		if cfg.DatabaseURL == "" {
			if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "CHANGE_LOG_NOT_HASHED" {
				t.Errorf("verify changes in memory: %v", err)
			}
			return
		}
		if err != nil || !resp.GetIntact() || resp.GetChains()[0].GetEntriesChecked() != 5 || resp.GetChains()[0].GetHeadHash() != all[4].GetHash() {
			t.Errorf("verify changes: %v %v", resp, err)
		}
	})
}

// TestUnusedGrants: the access review lists the grants whose permissions no
// allowed decision used within the window.
func TestUnusedGrants(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		// The demo grants are made a month ago; the decisions now.
		cfg.DecisionLog = "sync"
		clk := &clock{t: time.Now().Add(-30 * 24 * time.Hour)}
		e := startClock(t, cfg, clk)
		clk.Advance(30*24*time.Hour + time.Hour)
		for _, c := range []struct {
			user string
			p    *pb.Permission
		}{
			{"bob", modulePerm("account", "read")},                  // sales_rep: used
			{"carol", fieldPerm("case", "subject", false)},          // customer_service: a field read uses it
			{"erin", functionPerm("data.export")},                   // denied by restricted_export: uses nothing
			{"grace", modulePerm("account", "delete")},              // denied: finance_readonly stays unused
			{"dave", modulePerm("account", "read")},                 // key_account_manager, through inherited sales_rep
			{"heidi", modulePerm("no_such_module_is_fine", "read")}, // refused as bad input: no decision
		} {
			_, _ = e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: c.user, Permission: c.p})
		}
		e.waitDecision(t, "demo", e.check(t, "demo", "oscar", functionPerm("admin.roles.manage")).GetDecisionId())
		var got []string
		req := &pb.ListUnusedGrantsRequest{TenantId: "demo", UnusedDays: 7, PageSize: 3}
		var last *pb.ListUnusedGrantsResponse
		for {
			resp, err := e.audit.ListUnusedGrants(ctx, req)
			if err != nil {
				t.Fatal(err)
			}
			for _, g := range resp.GetGrants() {
				got = append(got, g.GetUserId()+"/"+g.GetRoleId())
			}
			last = resp
			if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
				break
			}
		}
		for _, used := range []string{"bob/sales_rep", "carol/customer_service", "dave/key_account_manager", "oscar/admin"} {
			if slices.Contains(got, used) {
				t.Errorf("%s was used but is listed: %v", used, got)
			}
		}
		for _, unused := range []string{"alice/sales_manager", "erin/sales_rep", "erin/restricted_export", "grace/finance_readonly", "heidi/read_only"} {
			if !slices.Contains(got, unused) {
				t.Errorf("%s is unused but not listed: %v", unused, got)
			}
		}
		if slices.ContainsFunc(got, func(s string) bool { return strings.HasPrefix(s, "ivan/") }) {
			t.Errorf("ivan's expired grant is listed: %v", got)
		}
		if !slices.IsSorted(got) {
			t.Errorf("not ordered by user and role: %v", got)
		}
		if !last.GetEvidenceSince().AsTime().Equal(last.GetWindowStart().AsTime()) {
			t.Errorf("the log covers the window, yet evidence since %v, window %v", last.GetEvidenceSince().AsTime(), last.GetWindowStart().AsTime())
		}
	})
}

// TestAuditBadInput: bad filters, page sizes and tokens are INVALID_ARGUMENT
// naming the field.
func TestAuditBadInput(t *testing.T) {
	e := startAudit(t, cfgDefault())
	now := time.Now()
	first, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", PageSize: 1})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"missing tenant", func() error { _, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{}); return err }, "tenant_id"},
		{"inverted range", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.Add(-time.Hour))})
			return err
		}, "end_time"},
		{"empty range", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", StartTime: timestamppb.New(now), EndTime: timestamppb.New(now)})
			return err
		}, "end_time"},
		{"invalid start", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", StartTime: &timestamppb.Timestamp{Nanos: -1}})
			return err
		}, "start_time"},
		{"page too large", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", PageSize: 1001})
			return err
		}, "page_size"},
		{"negative page", func() error {
			_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", PageSize: -1})
			return err
		}, "page_size"},
		{"malformed token", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", PageToken: "not-a-token!"})
			return err
		}, "page_token"},
		{"truncated token", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", PageToken: first.GetResumeToken()[:20]})
			return err
		}, "page_token"},
		{"token of other filters", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", SubjectId: "bob", PageToken: first.GetResumeToken()})
			return err
		}, "page_token"},
		{"token of other order", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", NewestFirst: true, PageToken: first.GetResumeToken()})
			return err
		}, "page_token"},
		{"changes token", func() error {
			_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", PageToken: "AAAA"})
			return err
		}, "page_token"},
		{"changes inverted range", func() error {
			_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo", StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.Add(-time.Second))})
			return err
		}, "end_time"},
		{"bad subject", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", SubjectId: "*"})
			return err
		}, "subject_id"},
		{"bad permission", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", Permission: modulePerm("account", "fly")})
			return err
		}, "permission.module.verb"},
		{"bad result", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo", Result: 9})
			return err
		}, "result"},
		{"bad decision id", func() error {
			_, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: "12-x"})
			return err
		}, "decision_id"},
		{"export inverted range", func() error {
			s, err := e.audit.ExportDecisions(ctx, &pb.ExportDecisionsRequest{TenantId: "demo", StartTime: timestamppb.New(now), EndTime: timestamppb.New(now.Add(-time.Second))})
			if err != nil {
				return err
			}
			_, err = s.Recv()
			return err
		}, "end_time"},
		{"unused days", func() error {
			_, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "demo", UnusedDays: 5000})
			return err
		}, "unused_days"},
		{"verify without log", func() error { _, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{}); return err }, "log"},
		{"verify bad chain", func() error {
			_, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, ChainId: "XYZ"})
			return err
		}, "chain_id"},
		{"verify inverted range", func() error {
			_, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, FromPosition: 5, ToPosition: 2})
			return err
		}, "to_position"},
		{"verify changes without tenant", func() error {
			_, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES})
			return err
		}, "tenant_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, field := errorInfo(t, tt.call())
			if code != codes.InvalidArgument || field != tt.field {
				t.Fatalf("got %v field %q, want INVALID_ARGUMENT naming %q", code, field, tt.field)
			}
		})
	}
	_, err = e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: "0123456789abcdef-42"})
	if code, reason, _ := errorInfo(t, err); code != codes.NotFound || reason != "DECISION_NOT_FOUND" {
		t.Errorf("unknown decision: %v", err)
	}
}

// TestDecisionLogOff: with the log off, decisions carry no id and the
// decision queries say why they cannot answer.
func TestDecisionLogOff(t *testing.T) {
	cfg := cfgDefault()
	cfg.DecisionLog = "off"
	e := startAudit(t, cfg)
	if id := e.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId(); id != "" {
		t.Fatalf("decision id %q with the log off", id)
	}
	_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"})
	if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "DECISION_LOG_OFF" {
		t.Fatalf("list with the log off: %v", err)
	}
	if _, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo"}); err != nil {
		t.Fatalf("the change log stays readable: %v", err)
	}
}

// TestAuditUnknownTenant: every audit call naming a tenant the server does
// not know is NOT_FOUND (TENANT_NOT_FOUND), as the admin and check calls
// are, rather than an empty listing or a missing decision; a malformed
// request is still INVALID_ARGUMENT naming its field first.
func TestAuditUnknownTenant(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		id := e.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId()
		e.waitDecision(t, "demo", id)
		export := func(req *pb.ExportDecisionsRequest) error {
			s, err := e.audit.ExportDecisions(ctx, req)
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err != nil {
					if errors.Is(err, io.EOF) {
						return nil
					}
					return err
				}
			}
		}
		tests := []struct {
			name   string
			call   func() error
			code   codes.Code
			reason string
			field  string
		}{
			{"list decisions", func() error {
				_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "nope"})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"list decisions newest first", func() error {
				_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "nope", NewestFirst: true, SubjectId: "bob"})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"export decisions", func() error {
				return export(&pb.ExportDecisionsRequest{TenantId: "nope"})
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"get decision", func() error {
				_, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "nope", DecisionId: id})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"list changes", func() error {
				_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "nope"})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"list unused grants", func() error {
				_, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "nope"})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},
			{"verify changes", func() error {
				_, err := e.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: "nope"})
				return err
			}, codes.NotFound, "TENANT_NOT_FOUND", ""},

			{"list decisions, bad token", func() error {
				_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "nope", PageToken: "not-a-token!"})
				return err
			}, codes.InvalidArgument, "INVALID_VALUE", "page_token"},
			{"export decisions, bad subject", func() error {
				return export(&pb.ExportDecisionsRequest{TenantId: "nope", SubjectId: "*"})
			}, codes.InvalidArgument, "INVALID_IDENTIFIER", "subject_id"},
			{"get decision, bad id", func() error {
				_, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "nope", DecisionId: "12-x"})
				return err
			}, codes.InvalidArgument, "INVALID_VALUE", "decision_id"},
			{"list changes, bad token", func() error {
				_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "nope", PageToken: "AAAA"})
				return err
			}, codes.InvalidArgument, "INVALID_VALUE", "page_token"},
			{"list unused grants, bad token", func() error {
				_, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "nope", PageToken: "AAAA"})
				return err
			}, codes.InvalidArgument, "INVALID_VALUE", "page_token"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, reason, field := errorInfo(t, tt.call())
				if code != tt.code || reason != tt.reason || field != tt.field {
					t.Fatalf("got %v reason=%q field=%q, want %v %s naming %q", code, reason, field, tt.code, tt.reason, tt.field)
				}
			})
		}
		// The known tenant still answers.
		if _, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"}); err != nil {
			t.Fatal(err)
		}
		if err := export(&pb.ExportDecisionsRequest{TenantId: "demo"}); err != nil {
			t.Fatal(err)
		}
	})
}
