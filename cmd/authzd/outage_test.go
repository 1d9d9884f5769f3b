package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Bounds of the outage test. They tell working from broken on a loaded
// CI machine; the figures themselves are logged.
const (
	// slowestCheck is the sanity bound on one Check during the outage:
	// decisions never wait for the database, so even a loaded machine
	// answers in milliseconds.
	slowestCheck = 2 * time.Second
	// recoverBound is how long after PostgreSQL accepts connections again
	// the spool may take to be shipped whole.
	recoverBound = 15 * time.Second
)

// TestDatabaseOutage stops PostgreSQL under an authzd answering Checks
// from several callers and starts it again: every Check is answered
// meanwhile, without waiting for the database; the decision log says it is
// degraded (GetLogStatus, and the health of AuditService, while the
// server's own health stays SERVING) and the spool grows; once PostgreSQL
// is back the spool is shipped, and every decision answered during the
// outage is in the log, whose chains are intact.
func TestDatabaseOutage(t *testing.T) {
	pg := pgtest.NewCluster(t)
	url := pg.NewDatabase(t)
	ops := firstKey(t, url)
	// A replica given --replica-outage-grace stays SERVING that long when
	// it cannot reach the database at all, past --replica-stale-after; a
	// second replica, strict by default, turns NOT_SERVING after
	// stale-after.
	r := startReplica(t, url, ops, "--seed-demo", "true", "--replica-stale-after", "1s", "--replica-outage-grace", "10m")
	strict := startReplica(t, url, ops, "--replica-stale-after", "1s")
	ctx := t.Context()

	// Callers check until told to stop; each call is timed, and tagged
	// with whether PostgreSQL was stopped when it started.
	type call struct {
		id      string
		latency time.Duration
		outage  bool
		err     error
	}
	var (
		outage atomic.Bool
		mu     sync.Mutex
		calls  []call
		wg     sync.WaitGroup
	)
	checking, stopChecking := context.WithCancel(ctx)
	defer stopChecking()
	const callers, maxCalls = 4, 200_000
	for range callers {
		wg.Go(func() {
			for n := 0; n < maxCalls/callers && checking.Err() == nil; n++ {
				during := outage.Load()
				cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				start := time.Now()
				resp, err := r.authz.Check(cctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
					Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}})
				c := call{id: resp.GetDecisionId(), latency: time.Since(start), outage: during, err: err}
				cancel()
				mu.Lock()
				calls = append(calls, c)
				mu.Unlock()
			}
		})
	}
	time.Sleep(500 * time.Millisecond)

	outage.Store(true)
	stopped := time.Now()
	pg.Stop(t)
	t.Logf("PostgreSQL stopped in %s", time.Since(stopped).Round(time.Millisecond))
	st := waitLogStatus(t, r, "the log degraded", func(st *pb.GetLogStatusResponse) bool { return st.GetDegraded() })
	t.Logf("degraded %s after the stop began: %q", time.Since(stopped).Round(time.Millisecond), st.GetDegradedTime().AsTime())
	waitLogStatus(t, r, "the replica not following", func(st *pb.GetLogStatusResponse) bool { return !st.GetReplica().GetFollowing() })
	eventually(t, r, "AuditService health NOT_SERVING", func() bool {
		return health(r, pb.AuditService_ServiceDesc.ServiceName) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	waitLogStatus(t, r, "the database unreachable", func(st *pb.GetLogStatusResponse) bool { return st.GetReplica().GetDatabaseUnreachable() })
	eventually(t, strict, "the strict replica NOT_SERVING", func() bool {
		return health(strict, pb.AuthorizationService_ServiceDesc.ServiceName) == healthpb.HealthCheckResponse_NOT_SERVING
	})
	time.Sleep(500 * time.Millisecond) // past stale-after for r too
	for _, name := range []string{"", pb.AuthorizationService_ServiceDesc.ServiceName} {
		if h := health(r, name); h != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q during the outage: %s; want SERVING within the outage grace", name, h)
		}
	}
	// The spool holds what cannot ship, and grows with every decision.
	first := st.GetSpoolEntries()
	time.Sleep(time.Second)
	st = logStatus(t, r)
	if !st.GetDegraded() || st.GetSpoolEntries() <= first || st.GetSpoolBytes() <= 0 {
		t.Errorf("a second into the outage: degraded %v, spool %d entries (from %d), %d bytes; want degraded and a growing spool",
			st.GetDegraded(), st.GetSpoolEntries(), first, st.GetSpoolBytes())
	}
	time.Sleep(time.Second)
	stopChecking()
	wg.Wait()
	outageTime := time.Since(stopped)

	mu.Lock()
	done := slices.Clone(calls)
	mu.Unlock()
	var (
		before, during []time.Duration
		ids            []string
		failed         int
	)
	for _, c := range done {
		if c.err != nil {
			if failed++; failed <= 5 {
				t.Errorf("a Check failed (during the outage: %v): %v", c.outage, c.err)
			}
			continue
		}
		ids = append(ids, c.id)
		if c.outage {
			during = append(during, c.latency)
		} else {
			before = append(before, c.latency)
		}
	}
	if failed > 0 {
		t.Fatalf("%d of %d Checks failed", failed, len(done))
	}
	if len(during) < 100 {
		t.Fatalf("only %d Checks answered during the %s outage", len(during), outageTime.Round(time.Millisecond))
	}
	b50, b99, bmax := percentiles(before)
	p50, p99, slowest := percentiles(during)
	t.Logf("%d Checks before the outage: p50 %s, p99 %s, max %s", len(before), b50, b99, bmax)
	t.Logf("%d Checks during the %s outage (%.0f/s from %d callers): p50 %s, p99 %s, max %s", len(during),
		outageTime.Round(time.Millisecond), float64(len(during))/outageTime.Seconds(), callers, p50, p99, slowest)
	if slowest > slowestCheck {
		t.Errorf("a Check during the outage took %s; decisions must not wait for the database", slowest)
	}
	st = logStatus(t, r)
	spooled := st.GetSpoolEntries()
	t.Logf("spooled while PostgreSQL was stopped: %d entries, %d bytes", spooled, st.GetSpoolBytes())

	starting := time.Now()
	pg.Start(t)
	up := time.Now()
	t.Logf("PostgreSQL started in %s", up.Sub(starting).Round(time.Millisecond))
	var resumed, drained time.Duration
	for resumed == 0 || drained == 0 {
		st := logStatus(t, r)
		if resumed == 0 && !st.GetDegraded() {
			resumed = time.Since(up)
		}
		if drained == 0 && !st.GetDegraded() && st.GetSpoolEntries() == 0 {
			drained = time.Since(up)
		}
		if time.Since(up) > recoverBound {
			t.Fatalf("%s after PostgreSQL accepted connections again: degraded %v, %d entries in the spool", recoverBound, st.GetDegraded(), st.GetSpoolEntries())
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("after PostgreSQL accepted connections again: shipping resumed in %s, the %d spooled entries shipped in %s",
		resumed.Round(time.Millisecond), spooled, drained.Round(time.Millisecond))
	eventually(t, r, "AuditService health SERVING again", func() bool {
		return health(r, pb.AuditService_ServiceDesc.ServiceName) == healthpb.HealthCheckResponse_SERVING
	})
	waitLogStatus(t, r, "following the database again", func(st *pb.GetLogStatusResponse) bool { return st.GetReplica().GetFollowing() })
	t.Logf("following other replicas' writes again %s after PostgreSQL accepted connections", time.Since(up).Round(time.Millisecond))

	logged := loggedDecisions(t, r, "demo")
	missing := 0
	for _, id := range ids {
		if !logged[id] {
			if missing++; missing <= 5 {
				t.Errorf("decision %s was answered but is not in the log", id)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of the %d decisions answered are not in the log", missing, len(ids))
	}
	resp, err := r.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetIntact() {
		t.Fatalf("the log after the outage is not intact: %v", resp)
	}
}

// logStatus returns r's GetLogStatus.
func logStatus(t *testing.T, r *replica) *pb.GetLogStatusResponse {
	t.Helper()
	st, err := r.audit.GetLogStatus(t.Context(), &pb.GetLogStatusRequest{})
	if err != nil {
		t.Fatalf("%s: GetLogStatus: %v", r.addr, err)
	}
	return st
}

// waitLogStatus waits up to 10s until r's GetLogStatus satisfies cond.
func waitLogStatus(t *testing.T, r *replica, what string, cond func(*pb.GetLogStatusResponse) bool) *pb.GetLogStatusResponse {
	t.Helper()
	var st *pb.GetLogStatusResponse
	eventually(t, r, what, func() bool {
		st = logStatus(t, r)
		return cond(st)
	})
	return st
}

// health returns the health r reports for service ("" the server's).
func health(r *replica, service string) healthpb.HealthCheckResponse_ServingStatus {
	resp, err := r.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// loggedDecisions returns the ids of every decision of tenant in r's log.
func loggedDecisions(t *testing.T, r *replica, tenant string) map[string]bool {
	t.Helper()
	logged := map[string]bool{}
	token := ""
	for {
		page, err := r.audit.ListDecisions(t.Context(), &pb.ListDecisionsRequest{TenantId: tenant, PageSize: 1000, PageToken: token})
		if err != nil {
			t.Fatalf("%s: ListDecisions: %v", r.addr, err)
		}
		for _, d := range page.GetDecisions() {
			logged[d.GetDecisionId()] = true
		}
		if token = page.GetNextPageToken(); token == "" {
			return logged
		}
	}
}

// percentiles returns the median, the 99th percentile and the largest of
// ds, which it sorts.
func percentiles(ds []time.Duration) (p50, p99, largest time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	return ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1]
}
