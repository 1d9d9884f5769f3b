package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/auth"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// pageSize is the records of one list page.
const pageSize = 500

// target is one server under load, through its client connections.
type target struct {
	conns []*grpc.ClientConn
	authz []pb.AuthorizationServiceClient
	admin []pb.AdminServiceClient
}

func dial(addr, key string, n int) (*target, error) {
	t := &target{}
	for range n {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
		if err != nil {
			t.close()
			return nil, err
		}
		t.conns = append(t.conns, conn)
		t.authz = append(t.authz, pb.NewAuthorizationServiceClient(conn))
		t.admin = append(t.admin, pb.NewAdminServiceClient(conn))
	}
	return t, nil
}

func (t *target) close() {
	for _, c := range t.conns {
		_ = c.Close()
	}
}

// sample is one measurement of one run on one server.
type sample struct {
	rate     float64 // checks a second
	p50, p99 time.Duration
	calls    int
	cpu      time.Duration // the server's CPU time per call
}

// workload is what each caller of a run does: a call, and the checks it
// answers.
type workload struct {
	name    string
	callers int
	checks  int // per call
	mixed   bool
	// newCaller returns one caller's call, which it makes over and over.
	newCaller func(t *target, caller int, r *rand.Rand) func(ctx context.Context) error
}

// questions picks the tenants, users and permissions of the calls.
type questions struct {
	tenants, users int
	perms          []*pb.Permission
}

func (q questions) tenant(r *rand.Rand) string { return fmt.Sprintf("load-%04d", r.IntN(q.tenants)+1) }
func (q questions) user(r *rand.Rand) string   { return fmt.Sprintf("u%06d", r.IntN(q.users)+1) }

func modulePerm(module, verb string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: module, Verb: verb}}}
}

func newQuestions(tenants, users int) questions {
	return questions{tenants: tenants, users: users, perms: []*pb.Permission{
		modulePerm("account", "read"), modulePerm("account", "update"), modulePerm("account", "delete"),
		modulePerm("lead", "list"), modulePerm("opportunity", "read"),
		{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: "report.export"}}},
		{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: "account", Field: "phone"}}},
	}}
}

// records returns a list page: records owned by random users of random
// departments.
func (q questions) records(r *rand.Rand) []*pb.Record {
	out := make([]*pb.Record, pageSize)
	for i := range out {
		out[i] = &pb.Record{Id: fmt.Sprintf("account-%06d", r.IntN(1000000)), OwnerId: q.user(r), DepartmentId: fmt.Sprintf("dept_%04d", r.IntN(5)+1)}
	}
	return out
}

func workloads(q questions) []workload {
	check := func(t *target, caller int, r *rand.Rand) func(ctx context.Context) error {
		c := t.authz[caller%len(t.authz)]
		return func(ctx context.Context) error {
			_, err := c.Check(ctx, &pb.CheckRequest{TenantId: q.tenant(r), SubjectId: q.user(r), Permission: q.perms[r.IntN(len(q.perms))]})
			return err
		}
	}
	page := func(t *target, caller int, r *rand.Rand) func(ctx context.Context) error {
		c := t.authz[caller%len(t.authz)]
		req := &pb.CheckPageRequest{RecordPermission: modulePerm("account", "read"), Records: q.records(r)}
		return func(ctx context.Context) error {
			req.TenantId, req.SubjectId = q.tenant(r), q.user(r)
			_, err := c.CheckPage(ctx, req)
			return err
		}
	}
	batch := func(t *target, caller int, r *rand.Rand) func(ctx context.Context) error {
		c := t.authz[caller%len(t.authz)]
		req := &pb.BatchCheckRequest{Items: make([]*pb.BatchCheckItem, pageSize)}
		for i, rec := range q.records(r) {
			p := modulePerm("account", "read")
			p.GetModule().Record = rec
			req.Items[i] = &pb.BatchCheckItem{Permission: p}
		}
		return func(ctx context.Context) error {
			tenant, user := q.tenant(r), q.user(r)
			for _, it := range req.Items {
				it.TenantId, it.SubjectId = tenant, user
			}
			_, err := c.BatchCheck(ctx, req)
			return err
		}
	}
	return []workload{
		{name: "check-8", callers: 8, checks: 1, newCaller: check},
		{name: "check-50", callers: 50, checks: 1, newCaller: check},
		{name: "page-8", callers: 8, checks: pageSize, newCaller: page},
		{name: "batch-8", callers: 8, checks: pageSize, newCaller: batch},
		{name: "mixed-50", callers: 50, checks: 1, mixed: true, newCaller: check},
	}
}

// drive runs w against t for d and measures it.
func drive(ctx context.Context, t *target, w workload, d time.Duration, seed uint64) (sample, error) {
	start := time.Now()
	deadline := start.Add(d)
	// A server that stops answering fails the run instead of hanging it.
	ctx, stop := context.WithDeadline(ctx, deadline.Add(30*time.Second))
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	lats := make([][]time.Duration, w.callers)
	var wg sync.WaitGroup
	for i := range w.callers {
		call := w.newCaller(t, i, rand.New(rand.NewPCG(seed, uint64(i)))) //nolint:gosec // load, not secrets
		wg.Go(func() {
			l := make([]time.Duration, 0, 1<<12)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err := call(ctx); err != nil {
					cancel(fmt.Errorf("%s: %w", w.name, err))
					return
				}
				l = append(l, time.Since(t0))
			}
			lats[i] = l
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return sample{}, err
	}
	elapsed := time.Since(start)
	all := slices.Concat(lats...)
	if len(all) == 0 {
		return sample{}, fmt.Errorf("%s: no call completed", w.name)
	}
	slices.Sort(all)
	return sample{rate: float64(len(all)*w.checks) / elapsed.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100],
		calls: len(all)}, nil
}

// writer grants and revokes a role 20 times a second until stop, and
// returns the writes' latencies. A grant the user holds already, or a
// revoke of one they do not, is still a write the server answers.
func writer(ctx context.Context, t *target, q questions, seed uint64, stop <-chan struct{}) ([]time.Duration, error) {
	r := rand.New(rand.NewPCG(seed, 7)) //nolint:gosec // load, not secrets
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var lats []time.Duration
	var grant bool
	var tenant, user string
	for {
		select {
		case <-stop:
			return lats, nil
		case <-ctx.Done():
			return lats, ctx.Err()
		case <-tick.C:
		}
		grant = !grant
		if grant {
			tenant, user = q.tenant(r), q.user(r)
		}
		t0 := time.Now()
		wctx, done := context.WithTimeout(ctx, 30*time.Second)
		var err error
		if grant {
			_, err = t.admin[0].GrantRole(wctx, &pb.GrantRoleRequest{TenantId: tenant, UserId: user, RoleId: "sales_rep", Reason: "authzload"})
		} else {
			_, err = t.admin[0].RevokeRole(wctx, &pb.RevokeRoleRequest{TenantId: tenant, UserId: user, RoleId: "sales_rep", Reason: "authzload"})
		}
		done()
		switch status.Code(err) {
		case codes.OK, codes.AlreadyExists, codes.NotFound, codes.FailedPrecondition:
			lats = append(lats, time.Since(t0))
		default:
			return lats, fmt.Errorf("write: %w", err)
		}
	}
}

// result is the measurements of one workload.
type result struct {
	name         string
	authzd, noop []sample
	writes       []time.Duration
}

// report is what one tenant count measured.
type report struct {
	tenants          int
	startup          time.Duration
	rssStart, rssEnd float64
	runs             []*result
}

// measure sets up the database of n tenants, starts both servers and runs
// every workload on them, round by round.
func measure(ctx context.Context, c config, n int, progress io.Writer) (*report, error) {
	dbURL, err := database(ctx, c, n, progress)
	if err != nil {
		return nil, err
	}
	key, err := platformKey(ctx, c, dbURL)
	if err != nil {
		return nil, err
	}
	logFile := filepath.Join(os.TempDir(), fmt.Sprintf("authzload-authzd-%d.log", n))
	_, _ = fmt.Fprintf(progress, "authzload: %d tenants: starting authzd (log: %s)\n", n, logFile)
	srv, startup, err := startAuthzd(ctx, c, dbURL, key, logFile)
	if err != nil {
		return nil, err
	}
	defer srv.stop()
	rep := &report{tenants: n, startup: startup, rssStart: srv.rssMiB()}
	noop, err := startNoop()
	if err != nil {
		return nil, err
	}
	defer noop.stop()
	real, err := dial(srv.addr, key, c.connections)
	if err != nil {
		return nil, err
	}
	defer real.close()
	fake, err := dial(noop.addr, key, c.connections)
	if err != nil {
		return nil, err
	}
	defer fake.close()

	q := newQuestions(n, c.users)
	var seed atomic.Uint64
	if c.settle > 0 {
		// What start-up leaves behind settles under load before anything
		// is measured: the heap it handed back to the system is faulted in
		// again by the first seconds of calls (some 50,000 page faults at
		// 10,000 tenants), which a first round would otherwise pay.
		_, _ = fmt.Fprintf(progress, "authzload: %d tenants: settling for %s under check-8\n", n, c.settle)
		if _, err := drive(ctx, real, workloads(q)[0], c.settle, seed.Add(1)); err != nil {
			return nil, err
		}
	}
	for _, w := range workloads(q) {
		if !slices.Contains(c.runs, w.name) {
			continue
		}
		r := &result{name: w.name}
		_, _ = fmt.Fprintf(progress, "authzload: %d tenants: %s\n", n, w.name)
		for _, t := range []*target{real, fake} {
			if _, err := drive(ctx, t, w, c.warmup, seed.Add(1)); err != nil {
				return nil, err
			}
		}
		for round := range c.rounds {
			// The servers take turns going first, so that neither always
			// runs right after the other (whose leftover work, or a cold
			// start after idling, would then always fall on the same one).
			order := []*target{real, fake}
			if round%2 == 1 {
				order = []*target{fake, real}
			}
			for _, t := range order {
				proc := srv
				if t == fake {
					proc = noop
				}
				before := proc.cpu()
				s, writes, err := driveRound(ctx, t, w, q, c.duration, seed.Add(1))
				if err != nil {
					return nil, err
				}
				s.cpu = (proc.cpu() - before) / time.Duration(s.calls)
				if t == real {
					r.authzd = append(r.authzd, s)
					r.writes = append(r.writes, writes...)
				} else {
					r.noop = append(r.noop, s)
				}
			}
			a, o := r.authzd[round], r.noop[round]
			_, _ = fmt.Fprintf(progress, "authzload: %d tenants: %s round %d: authzd %.0f/s p99 %s ms, no-op %.0f/s p99 %s ms: %.2f, p99 %.2f\n",
				n, w.name, round+1, a.rate, ms(a.p99), o.rate, ms(o.p99), a.rate/o.rate, float64(a.p99)/float64(o.p99))
		}
		rep.runs = append(rep.runs, r)
	}
	rep.rssEnd = srv.rssMiB()
	return rep, nil
}

// driveRound is drive, with the writer beside it for a mixed workload.
func driveRound(ctx context.Context, t *target, w workload, q questions, d time.Duration, seed uint64) (sample, []time.Duration, error) {
	if !w.mixed {
		s, err := drive(ctx, t, w, d, seed)
		return s, nil, err
	}
	stop := make(chan struct{})
	var writes []time.Duration
	var werr error
	var wg sync.WaitGroup
	wg.Go(func() { writes, werr = writer(ctx, t, q, seed, stop) })
	s, err := drive(ctx, t, w, d, seed)
	close(stop)
	wg.Wait()
	if err == nil {
		err = werr
	}
	return s, writes, err
}
