package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// followBound is how long a replica may take to decide a write made on
// another before the test fails. Replicas take milliseconds (the README's
// propagation figures); the bound only has to tell following from not
// following on a loaded CI machine: a replica that missed the notification
// would wait for its next comparison with the database (10s here).
const followBound = 3 * time.Second

// TestReplicasFollowEachOther runs three authzd processes on one database
// and shows that a write on any of them is decided by the others: at once
// for a read naming the write's revision, within milliseconds without;
// tenants created and deleted on one appear and vanish on the others; a
// listening connection killed by the database, or cut for longer than
// --replica-stale-after, heals by itself (and health says NOT_SERVING
// meanwhile); a replica stopped and started again catches up.
func TestReplicasFollowEachOther(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ops := firstKey(t, dbURL)
	db := pgtest.Open(t, dbURL)
	// b listens through a proxy the test can cut.
	proxy := newPGProxy(t, dbURL)
	common := []string{"--auth-refresh", "200ms", "--replica-stale-after", "1s", "--max-revision-wait", "500ms"}
	a := startReplica(t, withAppName(dbURL, "replica_a"), ops, append(common, "--seed-demo", "true")...)
	b := startReplica(t, withAppName(dbURL, "replica_b"), ops, append(common, "--listen-database-url", proxy.url)...)
	c := startReplica(t, withAppName(dbURL, "replica_c"), ops, common...)
	ctx := t.Context()

	t.Run("read your writes on every replica", func(t *testing.T) {
		g := grant(t, a, "peggy", "sales_rep")
		for _, r := range []*replica{b, c} {
			resp, err := r.authz.Check(ctx, peggyReadsAccounts(g))
			if err != nil || !resp.GetAllowed() || resp.GetRevision() < g {
				t.Errorf("%s: Check at_least_revision %d = %v, %v; want allowed at revision %d or later", r.addr, g, resp, err, g)
			}
			lg, err := r.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", ActorId: "oscar",
				Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}, AtLeastRevision: g})
			if err != nil || len(lg.GetGrants()) != 1 || lg.GetRevision() < g {
				t.Errorf("%s: ListGrants at_least_revision %d = %v, %v; want peggy's grant", r.addr, g, lg, err)
			}
		}
		// A revision no write has reached yet is UNAVAILABLE, for decisions
		// (after --max-revision-wait) and for admin reads.
		_, err := b.authz.Check(ctx, peggyReadsAccounts(g+100))
		if status.Code(err) != codes.Unavailable || errorReason(err) != "REPLICA_BEHIND" {
			t.Errorf("Check at a revision not written: %v; want UNAVAILABLE REPLICA_BEHIND", err)
		}
		_, err = c.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", ActorId: "oscar",
			Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}, AtLeastRevision: g + 100})
		if status.Code(err) != codes.Unavailable || errorReason(err) != "REPLICA_BEHIND" {
			t.Errorf("ListGrants at a revision not written: %v; want UNAVAILABLE REPLICA_BEHIND", err)
		}
		_, err = c.authz.Check(ctx, peggyReadsAccounts(-1))
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "at_least_revision") {
			t.Errorf("Check at_least_revision -1: %v; want INVALID_ARGUMENT naming at_least_revision", err)
		}
	})

	t.Run("a revoke is denied by every replica", func(t *testing.T) {
		// Each round writes on one replica and times, without
		// at_least_revision, how long each other one takes to decide it.
		var delays []time.Duration
		all := []*replica{a, b, c}
		for i := range 12 {
			w := all[i%3]
			allowed := i%2 == 1
			if allowed {
				grant(t, w, "peggy", "sales_rep")
			} else {
				revoke(t, w, "peggy", "sales_rep")
			}
			for _, r := range all {
				if r != w {
					delays = append(delays, decided(t, r, allowed))
				}
			}
		}
		slices.Sort(delays)
		t.Logf("a write decided by the other replicas after %s (median), %s (slowest) of %d", delays[len(delays)/2], delays[len(delays)-1], len(delays))
	})

	t.Run("tenants created and deleted across replicas", func(t *testing.T) {
		created, err := c.plat.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "acme", Name: "Acme", Templates: []string{"admin"},
			AdminUserId: "root", Reason: "onboard Acme"})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range []*replica{a, b} {
			resp, err := r.authz.Check(ctx, &pb.CheckRequest{TenantId: "acme", SubjectId: "root", Permission: function("admin.roles.manage"),
				AtLeastRevision: created.GetRevision()})
			if err != nil || !resp.GetAllowed() {
				t.Errorf("%s: Acme's admin at the creation's revision: %v, %v", r.addr, resp, err)
			}
		}
		deleted, err := a.plat.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: "acme", ConfirmTenantId: "acme", Reason: "offboard Acme"})
		if err != nil {
			t.Fatal(err)
		}
		// A read naming the deletion is NOT_FOUND at once; one naming
		// nothing becomes NOT_FOUND as the replica follows.
		_, err = b.authz.Check(ctx, &pb.CheckRequest{TenantId: "acme", SubjectId: "root", Permission: function("admin.roles.manage"),
			AtLeastRevision: deleted.GetRevision()})
		if status.Code(err) != codes.NotFound {
			t.Errorf("b: Check of the deleted tenant at the deletion's revision: %v; want NOT_FOUND", err)
		}
		eventually(t, c, "c answers NOT_FOUND for the deleted tenant", func() bool {
			_, err := c.authz.Check(ctx, &pb.CheckRequest{TenantId: "acme", SubjectId: "root", Permission: function("admin.roles.manage")})
			return status.Code(err) == codes.NotFound
		})
	})

	t.Run("a listening connection killed by the database heals", func(t *testing.T) {
		before := replicaStatus(t, c).GetReconnects()
		tag, err := db.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'replica_c listener' AND datname = current_database()")
		if err != nil || tag.RowsAffected() != 1 {
			t.Fatalf("terminate c's listening connection: %v, %v", tag, err)
		}
		eventually(t, c, "c listens again", func() bool {
			st := replicaStatus(t, c)
			return st.GetFollowing() && st.GetReconnects() > before
		})
		grant(t, a, "peggy", "sales_rep")
		decided(t, c, true)
	})

	t.Run("notifications lost while cut off are caught up", func(t *testing.T) {
		proxy.cut()
		eventually(t, b, "b sees its listening connection lost", func() bool { return !replicaStatus(t, b).GetFollowing() })
		revoke(t, a, "peggy", "sales_rep")
		// b could not hear of the revoke, and reports it is not following:
		// after --replica-stale-after its authorization service is
		// NOT_SERVING, so a load balancer stops sending it checks.
		if resp, err := b.authz.Check(ctx, peggyReadsAccounts(0)); err != nil || !resp.GetAllowed() {
			t.Fatalf("b, cut off, decided %v, %v; want the answer from before the revoke", resp, err)
		}
		eventually(t, b, "b reports NOT_SERVING", func() bool { return authzHealth(b) == healthpb.HealthCheckResponse_NOT_SERVING })
		if st := replicaStatus(t, b); st.GetLag().AsDuration() <= 0 || st.GetDisconnectedTime() == nil {
			t.Errorf("b's status while cut off: %v; want a lag and when it was disconnected", st)
		}
		proxy.restore()
		// No notification of the revoke will come: b finds it by comparing
		// revisions with the database after reconnecting.
		decided(t, b, false)
		eventually(t, b, "b reports SERVING again", func() bool { return authzHealth(b) == healthpb.HealthCheckResponse_SERVING })
		if st := replicaStatus(t, b); !st.GetFollowing() || st.GetReconnects() == 0 || st.GetLag().AsDuration() != 0 {
			t.Errorf("b's status after catching up: %v; want following, reconnected, no lag", st)
		}

		// Cut off again, b still reads its callers' writes: a read naming
		// a revision b lacks reads the tenant from the database.
		proxy.cut()
		g := grant(t, a, "peggy", "sales_rep")
		if resp, err := b.authz.Check(ctx, peggyReadsAccounts(g)); err != nil || !resp.GetAllowed() {
			t.Errorf("b, cut off, Check at_least_revision %d = %v, %v; want allowed", g, resp, err)
		}
		proxy.restore()
	})

	t.Run("a replica stopped and started again catches up", func(t *testing.T) {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := c.cmd.Wait(); err != nil {
			t.Fatalf("c stopped with %v", err)
		}
		revoke(t, b, "peggy", "sales_rep")
		c = startReplica(t, withAppName(dbURL, "replica_c"), ops, common...)
		if resp, err := c.authz.Check(ctx, peggyReadsAccounts(0)); err != nil || resp.GetAllowed() {
			t.Errorf("c, started again, decided %v, %v; want the revoke made while it was down", resp, err)
		}
		g := grant(t, c, "peggy", "sales_rep")
		for _, r := range []*replica{a, b} {
			if resp, err := r.authz.Check(ctx, peggyReadsAccounts(g)); err != nil || !resp.GetAllowed() {
				t.Errorf("%s: a write on the restarted c: %v, %v", r.addr, resp, err)
			}
		}
	})
}

// grant grants a role in the demo tenant through r and returns the write's
// revision.
func grant(t *testing.T, r *replica, user, role string) int64 {
	t.Helper()
	resp, err := r.admin.GrantRole(context.Background(), &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", UserId: user, RoleId: role,
		Reason: "replica test"})
	if err != nil {
		t.Fatalf("grant %s to %s on %s: %v", role, user, r.addr, err)
	}
	return resp.GetRevision()
}

// revoke revokes a role in the demo tenant through r and returns the
// write's revision.
func revoke(t *testing.T, r *replica, user, role string) int64 {
	t.Helper()
	resp, err := r.admin.RevokeRole(context.Background(), &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", UserId: user, RoleId: role,
		Reason: "replica test"})
	if err != nil {
		t.Fatalf("revoke %s from %s on %s: %v", role, user, r.addr, err)
	}
	return resp.GetRevision()
}

// peggyReadsAccounts asks whether peggy may read accounts, which only a
// grant of sales_rep gives her, at revision rev or later.
func peggyReadsAccounts(rev int64) *pb.CheckRequest {
	return &pb.CheckRequest{TenantId: "demo", SubjectId: "peggy", AtLeastRevision: rev,
		Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}}
}

func function(name string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: name}}}
}

// decided waits until r decides peggy's account read as allowed, without
// naming a revision, and returns how long that took.
func decided(t *testing.T, r *replica, allowed bool) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		resp, err := r.authz.Check(context.Background(), peggyReadsAccounts(0))
		if err != nil {
			t.Fatalf("%s: %v", r.addr, err)
		}
		if resp.GetAllowed() == allowed {
			return time.Since(start)
		}
		if time.Since(start) > followBound {
			t.Fatalf("%s still decides allowed=%v %s after the write", r.addr, !allowed, followBound)
		}
		time.Sleep(time.Millisecond)
	}
}

// eventually waits up to 10s for cond.
func eventually(t *testing.T, r *replica, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("%s: waited 10s for: %s", r.addr, what)
		}
	}
}

func replicaStatus(t *testing.T, r *replica) *pb.ReplicaStatus {
	t.Helper()
	resp, err := r.audit.GetLogStatus(context.Background(), &pb.GetLogStatusRequest{})
	if err != nil {
		t.Fatalf("%s: GetLogStatus: %v", r.addr, err)
	}
	if resp.GetReplica() == nil {
		t.Fatalf("%s: GetLogStatus reports no replica status", r.addr)
	}
	return resp.GetReplica()
}

func authzHealth(r *replica) healthpb.HealthCheckResponse_ServingStatus {
	resp, err := r.health.Check(context.Background(), &healthpb.HealthCheckRequest{Service: pb.AuthorizationService_ServiceDesc.ServiceName})
	if err != nil {
		return healthpb.HealthCheckResponse_UNKNOWN
	}
	return resp.GetStatus()
}

// errorReason returns the ErrorInfo reason of a status error.
func errorReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

// withAppName names a replica's connections in pg_stat_activity; its
// listening connection is "<name> listener".
func withAppName(dbURL, name string) string {
	u, err := url.Parse(dbURL)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return dbURL + " application_name=" + name
	}
	q := u.Query()
	q.Set("application_name", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgProxy forwards TCP connections to PostgreSQL until cut: then it
// closes the connections it carries and refuses new ones until restored.
type pgProxy struct {
	url    string // dbURL with the proxy's address
	target func() (net.Conn, error)

	mu      sync.Mutex
	cutOff  bool
	carried map[net.Conn]struct{}
}

func newPGProxy(t *testing.T, dbURL string) *pgProxy {
	t.Helper()
	cfg, err := pgconn.ParseConfig(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	network, addr := "tcp", net.JoinHostPort(cfg.Host, fmt.Sprint(cfg.Port))
	if strings.HasPrefix(cfg.Host, "/") {
		network, addr = "unix", filepath.Join(cfg.Host, fmt.Sprintf(".s.PGSQL.%d", cfg.Port))
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{carried: map[net.Conn]struct{}{}, target: func() (net.Conn, error) { return net.Dial(network, addr) }}
	host, port, _ := net.SplitHostPort(lis.Addr().String())
	if u, err := url.Parse(dbURL); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") {
		u.Host = lis.Addr().String()
		p.url = u.String()
	} else {
		p.url = dbURL + " host=" + host + " port=" + port
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = lis.Close()
		p.cut()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			conn, err := lis.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { p.carry(conn) })
		}
	})
	return p
}

// carry forwards one connection until either side closes or the proxy
// is cut.
func (p *pgProxy) carry(client net.Conn) {
	server, err := p.target()
	if err != nil {
		_ = client.Close()
		return
	}
	p.mu.Lock()
	if p.cutOff {
		p.mu.Unlock()
		_ = client.Close()
		_ = server.Close()
		return
	}
	p.carried[client], p.carried[server] = struct{}{}, struct{}{}
	p.mu.Unlock()
	// When either side goes away, both are closed.
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		_ = dst.Close()
		_ = src.Close()
	}
	var wg sync.WaitGroup
	wg.Go(func() { pipe(server, client) })
	wg.Go(func() { pipe(client, server) })
	wg.Wait()
	p.mu.Lock()
	delete(p.carried, client)
	delete(p.carried, server)
	p.mu.Unlock()
}

func (p *pgProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cutOff = true
	for c := range p.carried {
		_ = c.Close()
	}
}

func (p *pgProxy) restore() {
	p.mu.Lock()
	p.cutOff = false
	p.mu.Unlock()
}
