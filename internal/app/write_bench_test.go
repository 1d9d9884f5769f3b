package app_test

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// BenchmarkWriteLatency measures one admin write, GrantRole and RevokeRole
// in turn, through the real gRPC stack on PostgreSQL, against the size of
// the tenant written: the demo (15 users), a generated tenant of 5,000
// users and one of 50,000 (datagen's large preset: 194 custom roles, 75,000
// grants, 2,000 departments, 20,000 record shares). Writes are sequential,
// so each is measured alone; the tenant is created through the store's own
// write path before the server starts, which loads it. It reports the
// median, p99 and slowest write:
//
//	go test -run '^$' -bench WriteLatency -benchtime 60x -timeout 30m ./internal/app/
func BenchmarkWriteLatency(b *testing.B) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	five, fifty := datagen.Medium(), datagen.Large()
	five.Users, five.Departments, five.Shares = 5000, 500, 5000
	for _, size := range []struct {
		name string
		opts *datagen.Options // nil: the demo tenant
	}{
		{"demo", nil},
		{"users=5000", &five},
		{"users=50000", &fifty},
	} {
		b.Run(size.name, func(b *testing.B) {
			url := pgtest.NewDatabase(b)
			tenant, user, role := "demo", "peggy", "sales_rep"
			if size.opts != nil {
				tenant = "gen"
				st, err := datagen.Tenant(tenant, bun, *size.opts, 1, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				user, role = ungranted(st)
				storeTenant(b, url, st)
			}
			cfg := replicaConfig(b, url, size.opts == nil)
			admin := pb.NewAdminServiceClient(startLoopback(b, cfg))
			ctx := context.Background()
			lat := make([]time.Duration, 0, b.N)
			cpu0 := processCPU(b)
			b.ResetTimer()
			for i := range b.N {
				start := time.Now()
				var err error
				if i%2 == 0 {
					_, err = admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: tenant, Reason: "bench", UserId: user, RoleId: role})
				} else {
					_, err = admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: tenant, Reason: "bench", UserId: user, RoleId: role})
				}
				if err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
			}
			b.StopTimer()
			// What a write costs the server's process (PostgreSQL's share
			// is its own), including what it does after answering.
			time.Sleep(200 * time.Millisecond)
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/write")
			slices.Sort(lat)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[min(len(lat)-1, len(lat)*99/100)]), "p99-ms")
			b.ReportMetric(ms(lat[len(lat)-1]), "max-ms")
		})
	}
}

// storeTenant stores st in the database at url through the store's write
// path, its change log linked under the keys the servers of the run use.
func storeTenant(b *testing.B, url string, st *model.TenantState) {
	keys, _, err := chain.OpenKeyring(pgtest.AuditKeyFile(url), time.Now())
	if err != nil {
		b.Fatal(err)
	}
	if _, err := postgres.New(pgtest.Open(b, url), time.Now).WithKeys(keys).CreateTenant(context.Background(),
		store.Write{Tenant: st.ID, Actor: "datagen", Reason: "bench"}, st); err != nil {
		b.Fatal(err)
	}
}

// processCPU returns the CPU time this process has used, user and system.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ungranted returns a user of st and a template role the user does not
// hold.
func ungranted(st *model.TenantState) (user, role string) {
	users := make([]string, 0, len(st.Users))
	for id := range st.Users {
		users = append(users, id)
	}
	slices.Sort(users)
	for _, u := range users {
		if _, held := st.Grants[model.GrantKey{UserID: u, RoleID: "sales_rep"}]; !held {
			return u, "sales_rep"
		}
	}
	return users[0], "sales_rep"
}
