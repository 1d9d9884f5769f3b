package app_test

import (
	"context"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// BenchmarkLargeTenant measures the service around one large tenant on
// PostgreSQL: datagen's large preset (50,000 users, 200 roles, 75,000
// grants, 2,000 departments, 20,000 record shares) and the largest tenant
// the service accepts (its limits preset: 100,000 users, 500 roles,
// 200,000 grants, 10,000 departments, 100,000 record shares). Each run
// reports:
//
//   - start-s, heap-MiB: start-up to SERVING, and the live heap after it;
//
//   - write-p50-ms, write-p99-ms: one write at a time;
//
//   - check-ratio, check-p99-ratio: unary Check throughput and p99 at 50
//     callers while 10 writes/s arrive, over the same without writes
//     (medians of three alternating rounds of each), and check-quiet-per-s;
//
//   - sustained-wps, sustained-p99-ms: what an offered 50 writes/s achieves;
//
//   - heap-growth-MiB: the live heap after 10,000 writes less after the
//     first 1,000;
//
//   - replica-p50-ms, replica-p99-ms: how long after a write on one
//     replica another (in the same process) decides by it, and the same
//     for a tenant of the demo's size (replica-small-p50-ms, -p99-ms),
//     as the baseline of the run.
//
//     go test -run '^$' -bench LargeTenant -benchtime 1x -timeout 60m ./internal/app/
func BenchmarkLargeTenant(b *testing.B) {
	for _, size := range []struct {
		name string
		opts datagen.Options
	}{{"users=50000", datagen.Large()}, {"limits", datagen.Limits()}} {
		b.Run(size.name, func(b *testing.B) { benchLargeTenant(b, size.opts) })
	}
}

func benchLargeTenant(b *testing.B, opts datagen.Options) {
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	st, err := datagen.Tenant("large", bun, opts, 1, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	users := make([]string, 0, len(st.Users))
	for id, u := range st.Users {
		if u.Active() {
			users = append(users, id)
		}
	}
	slices.Sort(users)
	url := pgtest.NewDatabase(b)
	storeTenant(b, url, st)
	small, err := datagen.Tenant("small", bun, datagen.Small(), 2, time.Now())
	if err != nil {
		b.Fatal(err)
	}
	storeTenant(b, url, small)
	var smallUsers []string
	for id, u := range small.Users {
		if u.Active() {
			smallUsers = append(smallUsers, id)
		}
	}
	slices.Sort(smallUsers)
	st = nil // the server reads its own

	start := time.Now()
	a := startLoopback(b, replicaConfig(b, url, false))
	b.ReportMetric(time.Since(start).Seconds(), "start-s")
	b.ReportMetric(liveHeapMiB(), "heap-MiB")
	admin, authz := pb.NewAdminServiceClient(a), pb.NewAuthorizationServiceClient(a)
	w := &writer{tenant: "large", admin: admin, users: users, r: rand.New(rand.NewPCG(1, 1))}
	for range 200 {
		w.write(b)
	}
	b.ReportMetric(quantileMs(w.lat, 0.5), "write-p50-ms")
	b.ReportMetric(quantileMs(w.lat, 0.99), "write-p99-ms")

	// Check alone and while 10 writes/s arrive, in alternating rounds.
	var quiet, busy []checkRound
	for range 3 {
		quiet = append(quiet, checkLoad(b, authz, users, 3*time.Second, nil))
		busy = append(busy, checkLoad(b, authz, users, 3*time.Second, func(stop <-chan struct{}) { w.offer(b, 10, stop) }))
	}
	b.ReportMetric(median(busy, func(r checkRound) float64 { return r.rate })/median(quiet, func(r checkRound) float64 { return r.rate }), "check-ratio")
	b.ReportMetric(median(busy, func(r checkRound) float64 { return r.p99 })/median(quiet, func(r checkRound) float64 { return r.p99 }), "check-p99-ratio")
	b.ReportMetric(median(quiet, func(r checkRound) float64 { return r.rate }), "check-quiet-per-s")

	// 50 writes/s offered for 10 s.
	stop := make(chan struct{})
	time.AfterFunc(10*time.Second, func() { close(stop) })
	began, n0 := time.Now(), len(w.lat)
	w.offer(b, 50, stop)
	b.ReportMetric(float64(len(w.lat)-n0)/time.Since(began).Seconds(), "sustained-wps")
	b.ReportMetric(quantileMs(w.lat[n0:], 0.99), "sustained-p99-ms")

	// The live heap over 10,000 writes.
	var heap1k float64
	for i := range 10000 {
		w.write(b)
		if i == 999 {
			heap1k = liveHeapMiB()
		}
	}
	b.ReportMetric(liveHeapMiB()-heap1k, "heap-growth-MiB")

	// A second replica, and how long writes take to reach it: to the large
	// tenant, and as the baseline of the same run to a small one (of the
	// demo's size) that the replica reads whole.
	other := pb.NewAuthorizationServiceClient(startLoopback(b, replicaConfig(b, url, false)))
	p50, p99 := propagation(b, w, other)
	b.ReportMetric(p50, "replica-p50-ms")
	b.ReportMetric(p99, "replica-p99-ms")
	p50, p99 = propagation(b, &writer{tenant: "small", admin: admin, users: smallUsers, r: rand.New(rand.NewPCG(2, 2))}, other)
	b.ReportMetric(p50, "replica-small-p50-ms")
	b.ReportMetric(p99, "replica-small-p99-ms")
}

// propagation makes 200 writes through w and returns how long, at the
// median and p99 in milliseconds, the other replica takes to decide by
// each after it returned.
func propagation(b *testing.B, w *writer, other pb.AuthorizationServiceClient) (p50, p99 float64) {
	var delays []time.Duration
	for range 200 {
		user, role, granted := w.write(b)
		written := time.Now()
		req := &pb.ListEffectivePermissionsRequest{TenantId: w.tenant, SubjectId: user}
		for {
			resp, err := other.ListEffectivePermissions(context.Background(), req)
			if err != nil {
				b.Fatal(err)
			}
			if slices.ContainsFunc(resp.GetRoles(), func(r *pb.ActiveRole) bool { return r.GetRoleId() == role }) == granted {
				break
			}
			if time.Since(written) > 10*time.Second {
				b.Fatalf("a write of %s's %s never reached the other replica", user, role)
			}
			time.Sleep(100 * time.Microsecond)
		}
		delays = append(delays, time.Since(written))
	}
	return quantileMs(delays, 0.5), quantileMs(delays, 0.99)
}

// writer grants and revokes template roles of random users in turn.
type writer struct {
	mu      sync.Mutex
	tenant  string
	admin   pb.AdminServiceClient
	users   []string
	r       *rand.Rand
	pending []string // users granted sales_rep, revoked next
	lat     []time.Duration
}

// write grants sales_rep to a random user, or revokes an earlier grant,
// and returns the user, the role and whether it was granted.
func (w *writer) write(b *testing.B) (string, string, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx := context.Background()
	start := time.Now()
	var user string
	granted := len(w.pending) == 0 || (len(w.pending) < len(w.users)/2 && w.r.IntN(2) == 0)
	if granted {
		for {
			user = w.users[w.r.IntN(len(w.users))]
			if !slices.Contains(w.pending, user) {
				break
			}
		}
		if _, err := w.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: w.tenant, Reason: "bench", UserId: user, RoleId: "sales_rep"}); err != nil {
			b.Fatal(err)
		}
		w.pending = append(w.pending, user)
	} else {
		user, w.pending = w.pending[0], w.pending[1:]
		if _, err := w.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: w.tenant, Reason: "bench", UserId: user, RoleId: "sales_rep"}); err != nil {
			b.Fatal(err)
		}
	}
	w.lat = append(w.lat, time.Since(start))
	return user, "sales_rep", granted
}

// offer writes at rate per second until stop, each write on its own
// goroutine so that a slow one does not hold back the offer.
func (w *writer) offer(b *testing.B, rate int, stop <-chan struct{}) {
	t := time.NewTicker(time.Second / time.Duration(rate))
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			wg.Go(func() { w.write(b) })
		}
	}
}

type checkRound struct{ rate, p99 float64 }

// checkLoad runs unary Checks of random users from 50 callers for d, with
// background running beside it until then, and returns their rate and
// p99 in milliseconds.
func checkLoad(b *testing.B, authz pb.AuthorizationServiceClient, users []string, d time.Duration, background func(stop <-chan struct{})) checkRound {
	stop := make(chan struct{})
	var bg sync.WaitGroup
	if background != nil {
		bg.Go(func() { background(stop) })
	}
	var mu sync.Mutex
	var lat []time.Duration
	var wg sync.WaitGroup
	deadline := time.Now().Add(d)
	for c := range 50 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(c), 3))
			var mine []time.Duration
			for time.Now().Before(deadline) {
				req := &pb.CheckRequest{TenantId: "large", SubjectId: users[r.IntN(len(users))], Permission: modulePerm("account", "read")}
				t0 := time.Now()
				if _, err := authz.Check(context.Background(), req); err != nil {
					b.Error(err)
					return
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	close(stop)
	bg.Wait()
	return checkRound{rate: float64(len(lat)) / d.Seconds(), p99: quantileMs(lat, 0.99)}
}

func median(rs []checkRound, f func(checkRound) float64) float64 {
	vs := make([]float64, len(rs))
	for i, r := range rs {
		vs[i] = f(r)
	}
	slices.Sort(vs)
	return vs[len(vs)/2]
}

func quantileMs(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[min(int(q*float64(len(s))), len(s)-1)]) / float64(time.Millisecond)
}

// liveHeapMiB returns the heap in use after a collection.
func liveHeapMiB() float64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return float64(m.HeapInuse) / (1 << 20)
}
