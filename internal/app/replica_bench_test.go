package app_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// replicaConfig is a replica on the database at url, logging only errors;
// its callers send a platform key (startLoopback).
func replicaConfig(tb testing.TB, url string, seed bool) config.Config {
	cfg := config.Default()
	cfg.DatabaseURL = url
	cfg.DecisionSpoolDir = tb.TempDir()
	cfg.AuditKeyFile = pgtest.AuditKeyFile(url)
	cfg.LogLevel = "error"
	cfg.SeedDemo = fmt.Sprint(seed)
	return cfg
}

// BenchmarkReplicaPropagation measures how long a write made through one
// replica takes to be decided by another: two servers on one PostgreSQL
// database over loopback TCP; each iteration grants or revokes a role on
// replica A, then asks replica B, without at_least_revision, until B's
// answer changes. It reports the delay after the write returned (p50,
// p90, p99, the slowest) and the write's own latency:
//
//	go test -run '^$' -bench ReplicaPropagation -benchtime 1000x ./internal/app/
func BenchmarkReplicaPropagation(b *testing.B) {
	url := pgtest.NewDatabase(b)
	a := startLoopback(b, replicaConfig(b, url, true))
	other := startLoopback(b, replicaConfig(b, url, false))
	admin, authz := pb.NewAdminServiceClient(a), pb.NewAuthorizationServiceClient(other)
	check := &pb.CheckRequest{TenantId: "demo", SubjectId: "peggy", Permission: modulePerm("account", "read")}
	ctx := context.Background()
	delays := make([]time.Duration, 0, b.N)
	writes := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := range b.N {
		allowed := i%2 == 0
		start := time.Now()
		var err error
		if allowed {
			_, err = admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", UserId: "peggy", RoleId: "sales_rep", Reason: "bench"})
		} else {
			_, err = admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", UserId: "peggy", RoleId: "sales_rep", Reason: "bench"})
		}
		if err != nil {
			b.Fatal(err)
		}
		written := time.Now()
		for {
			resp, err := authz.Check(ctx, check)
			if err != nil {
				b.Fatal(err)
			}
			if resp.GetAllowed() == allowed {
				break
			}
			if time.Since(written) > 10*time.Second {
				b.Fatalf("write %d never reached replica B", i)
			}
			time.Sleep(100 * time.Microsecond)
		}
		delays = append(delays, time.Since(written))
		writes = append(writes, written.Sub(start))
	}
	b.StopTimer()
	slices.Sort(delays)
	slices.Sort(writes)
	q := func(ds []time.Duration, p float64) float64 {
		return float64(ds[min(int(p*float64(len(ds))), len(ds)-1)].Microseconds()) / 1000
	}
	b.ReportMetric(q(delays, 0.5), "p50-ms")
	b.ReportMetric(q(delays, 0.9), "p90-ms")
	b.ReportMetric(q(delays, 0.99), "p99-ms")
	b.ReportMetric(q(delays, 1), "max-ms")
	b.ReportMetric(q(writes, 0.5), "write-p50-ms")
}

// BenchmarkCheckWhileFollowing measures what following another replica's
// writes costs Check: replica B serves 50 concurrent callers while, in
// turns of short rounds, nothing is written ("quiet"), 20 writes/s go to
// replica A on B's database ("followed": B applies each), or 20 writes/s
// go to a replica on a database of its own ("elsewhere": the same work of
// writing on these shared cores, which B does not apply). The cost of
// following is followed against elsewhere. The writes change a user of
// the demo tenant, which the checks ask about, or of a generated tenant
// of 1,000 users ("medium"), which B reads whole on every write:
//
//	go test -run '^$' -bench CheckWhileFollowing -benchtime 220000x ./internal/app/
func BenchmarkCheckWhileFollowing(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	medium, err := datagen.Tenant("medium", bun, datagen.Medium(), 1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	for _, written := range []string{"demo", "medium"} {
		b.Run(written, func(b *testing.B) {
			url, own := pgtest.NewDatabase(b), pgtest.NewDatabase(b)
			for _, u := range []string{url, own} {
				st := postgres.New(pgtest.Open(b, u), time.Now)
				if _, err := st.CreateTenant(context.Background(), store.Write{Tenant: "medium", Actor: "datagen", Reason: "bench"}, medium); err != nil {
					b.Fatal(err)
				}
			}
			writers := map[string]pb.AdminServiceClient{
				"followed":  pb.NewAdminServiceClient(startLoopback(b, replicaConfig(b, url, true))),
				"elsewhere": pb.NewAdminServiceClient(startLoopback(b, replicaConfig(b, own, true))),
			}
			bcfg := replicaConfig(b, url, false)
			// What following costs, apart from authentication's cost.
			bcfg.InsecureNoAuth = true
			client := pb.NewAuthorizationServiceClient(startLoopback(b, bcfg))
			reqs := benchRequests()
			drive(b, client, reqs, 2000)

			modes := []string{"quiet", "elsewhere", "followed"}
			const rounds = 11
			per := max(b.N/(rounds*len(modes)), 1)
			rates := map[string][]float64{}
			applied := 0
			b.ResetTimer()
			for r := range rounds {
				for i := range modes {
					mode := modes[(r+i)%len(modes)]
					stop := make(chan struct{})
					var wg sync.WaitGroup
					if w := writers[mode]; w != nil {
						wg.Go(func() { applied += writeEvery(b, w, written, 50*time.Millisecond, stop) })
					}
					d := drive(b, client, reqs, per)
					close(stop)
					wg.Wait()
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
			b.ReportMetric(100*(1-med["followed"]/med["elsewhere"]), "follow-cost-%")
			b.ReportMetric(100*(1-med["elsewhere"]/med["quiet"]), "writes-elsewhere-cost-%")
			b.ReportMetric(float64(applied), "writes")
		})
	}
}

// writeEvery changes a user of tenant through admin every interval until
// stop is closed, and returns how many writes it made.
func writeEvery(b *testing.B, admin pb.AdminServiceClient, tenant string, interval time.Duration, stop <-chan struct{}) int {
	t := time.NewTicker(interval)
	defer t.Stop()
	n := 0
	for {
		select {
		case <-stop:
			return n
		case <-t.C:
		}
		n++
		_, err := admin.UpsertUser(context.Background(), &pb.UpsertUserRequest{TenantId: tenant, Reason: "bench",
			User: &pb.User{UserId: "bench_writer", DisplayName: fmt.Sprintf("Writer %d", n)}})
		if err != nil {
			b.Errorf("write: %v", err)
			return n
		}
	}
}
