package app_test

import (
	"context"
	"math/rand/v2"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// benchCallers is the number of concurrent callers, as in SPEC 8.
const benchCallers = 50

// startLoopback runs authzd on a loopback TCP port, logging only errors,
// and returns a client connection; both stop when tb ends. When callers
// authenticate, the client calls with a platform key.
func startLoopback(tb testing.TB, cfg config.Config) *grpc.ClientConn {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zap.NewNop())
	if err != nil {
		tb.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	if cfg.AuthEnabled() {
		key := createKey(tb, a.Store(), "bench", []string{"platform"}, nil, "")
		dial = append(dial, grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, lis) }()
	conn, err := grpc.NewClient(lis.Addr().String(), dial...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		_ = conn.Close()
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	hc := healthpb.NewHealthClient(conn)
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return conn
		}
		if time.Now().After(deadline) {
			tb.Fatal("server never reported SERVING")
		}
	}
}

// benchRequests are demo-tenant checks of every kind, for random users.
func benchRequests() []*pb.CheckRequest {
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy"}
	perms := []*pb.Permission{
		modulePerm("account", "read"), modulePerm("account", "delete"), modulePerm("lead", "update"),
		modulePerm("opportunity", "export"), functionPerm("data.export"), functionPerm("report.view"),
		fieldPerm("account", "credit_limit", true), fieldPerm("account", "annual_revenue", false),
	}
	r := rand.New(rand.NewPCG(1, 2))
	out := make([]*pb.CheckRequest, 4096)
	for i := range out {
		out[i] = &pb.CheckRequest{TenantId: "demo", SubjectId: users[r.IntN(len(users))], Permission: perms[r.IntN(len(perms))]}
	}
	return out
}

// BenchmarkCheckDecisionLog measures Check throughput through the real gRPC
// stack over loopback TCP with 50 concurrent callers, with the decision log
// off, async and sync, in one run: three servers run side by side (memory
// store, or PostgreSQL with a database each) and take turns in short
// rounds, so machine noise hits every mode alike. It reports each mode's
// median checks/s and allocations per check (client and server together)
// and the cost of the async and sync modes against off; on PostgreSQL also
// async through the decision spool ("spooled"), the default there:
//
//	go test -run '^$' -bench CheckDecisionLog -benchtime 200000x ./internal/app/
func BenchmarkCheckDecisionLog(b *testing.B) {
	reqs := benchRequests()
	for _, storage := range []string{"memory", "postgres"} {
		b.Run(storage, func(b *testing.B) {
			modes := []string{"off", "async", "sync"}
			if storage == "postgres" {
				// async without the spool (the queue in memory), and with it.
				modes = []string{"off", "async", "spooled", "sync"}
			}
			clients := map[string]pb.AuthorizationServiceClient{}
			for _, mode := range modes {
				cfg := config.Default()
				cfg.LogLevel = "error"
				cfg.DecisionLog = mode
				if storage == "postgres" {
					cfg.DatabaseURL = pgtest.NewDatabase(b)
					cfg.AuditKeyFile = pgtest.AuditKeyFile(cfg.DatabaseURL)
					cfg.SeedDemo = "true"
					// What the log costs, apart from authentication's cost
					// (BenchmarkCheckAuthentication).
					cfg.InsecureNoAuth = true
					cfg.DecisionSpoolDir = "off"
					if mode == "spooled" {
						cfg.DecisionLog, cfg.DecisionSpoolDir = "async", b.TempDir()
					}
				}
				clients[mode] = pb.NewAuthorizationServiceClient(startLoopback(b, cfg))
				drive(b, clients[mode], reqs, 2000) // warm up connections and caches
			}
			const rounds = 11
			per := max(b.N/(rounds*len(modes)), 1)
			rates := map[string][]float64{}
			allocs := map[string]float64{}
			b.ResetTimer()
			for r := range rounds {
				for i := range modes {
					mode := modes[(r+i)%len(modes)] // each mode takes each turn
					var before, after runtime.MemStats
					runtime.ReadMemStats(&before)
					d := drive(b, clients[mode], reqs, per)
					runtime.ReadMemStats(&after)
					rates[mode] = append(rates[mode], float64(per)/d.Seconds())
					allocs[mode] += float64(after.Mallocs-before.Mallocs) / float64(per*rounds)
				}
			}
			b.StopTimer()
			med := map[string]float64{}
			for _, mode := range modes {
				slices.Sort(rates[mode])
				med[mode] = rates[mode][rounds/2]
				b.ReportMetric(med[mode], mode+"-checks/s")
				b.ReportMetric(allocs[mode], mode+"-allocs/check")
			}
			b.ReportMetric(100*(1-med["async"]/med["off"]), "async-cost-%")
			b.ReportMetric(100*(1-med["sync"]/med["off"]), "sync-cost-%")
			if _, ok := med["spooled"]; ok {
				b.ReportMetric(100*(1-med["spooled"]/med["off"]), "spooled-cost-%")
			}
		})
	}
}

// BenchmarkCheckAuthentication measures what authenticating callers costs
// Check through the real gRPC stack over loopback TCP with 50 concurrent
// callers: two servers (memory store, decision log async) side by side,
// one without authentication and one whose callers send an API key, take
// turns in short rounds; it reports each one's median checks/s and the
// cost of authentication:
//
//	go test -run '^$' -bench CheckAuthentication -benchtime 220000x ./internal/app/
func BenchmarkCheckAuthentication(b *testing.B) {
	reqs := benchRequests()
	modes := []string{"off", "api_key"}
	clients := map[string]pb.AuthorizationServiceClient{}
	for _, mode := range modes {
		cfg := config.Default()
		cfg.LogLevel = "error"
		cfg.RequireAuth = mode == "api_key"
		clients[mode] = pb.NewAuthorizationServiceClient(startLoopback(b, cfg))
		drive(b, clients[mode], reqs, 2000)
	}
	const rounds = 11
	per := max(b.N/(rounds*len(modes)), 1)
	rates := map[string][]float64{}
	b.ResetTimer()
	for r := range rounds {
		for i := range modes {
			mode := modes[(r+i)%len(modes)]
			d := drive(b, clients[mode], reqs, per)
			rates[mode] = append(rates[mode], float64(per)/d.Seconds())
		}
	}
	b.StopTimer()
	med := map[string]float64{}
	for _, mode := range modes {
		slices.Sort(rates[mode])
		med[mode] = rates[mode][rounds/2]
		b.ReportMetric(med[mode], mode+"-checks/s")
	}
	b.ReportMetric(100*(1-med["api_key"]/med["off"]), "auth-cost-%")
}

// drive makes n checks with benchCallers concurrent callers and returns
// how long they took.
func drive(b *testing.B, client pb.AuthorizationServiceClient, reqs []*pb.CheckRequest, n int) time.Duration {
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range benchCallers {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				if _, err := client.Check(context.Background(), reqs[int(i)%len(reqs)]); err != nil {
					b.Errorf("check: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(start)
}
