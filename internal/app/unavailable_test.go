package app_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestLostDatabaseConnection cuts the server's database connection in the
// middle of a call, as a failover or an administrator's
// pg_terminate_backend does: the call answers UNAVAILABLE
// (DATABASE_UNAVAILABLE), which clients retry, never INTERNAL, and the same
// call then succeeds on a new connection. Each call is held on a lock this
// test takes, so that the connection is cut while its query runs rather
// than while it idles in the pool, which pgxpool would replace unseen.
func TestLostDatabaseConnection(t *testing.T) {
	cfg := pgConfig(t)
	e := startAudit(t, cfg)
	var conns [2]*pgx.Conn // one holds the lock, one cuts the connection off
	for i := range conns {
		c, err := pgx.Connect(ctx, cfg.DatabaseURL)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close(ctx) })
		conns[i] = c
	}

	tests := []struct {
		name  string
		table string // the table the call reads, locked while it waits
		call  func() error
	}{
		{"ListRoles reads the store", "tenants", func() error {
			_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo"})
			return err
		}},
		{"GrantRole writes the store", "tenants", func() error {
			_, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "covers the north region", UserId: "peggy", RoleId: "sales_rep"})
			return err
		}},
		{"ListDecisions reads the decision log", "decision_batches", func() error {
			_, err := e.audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "demo"})
			return err
		}},
		{"ListChanges reads the change log", "change_log", func() error {
			_, err := e.audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: "demo"})
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := cutOffWhileWaiting(t, conns[0], conns[1], tt.table, tt.call)
			code, reason, _ := errorInfo(t, err)
			if code != codes.Unavailable || reason != "DATABASE_UNAVAILABLE" {
				t.Fatalf("cut off: %v (reason %q), want UNAVAILABLE DATABASE_UNAVAILABLE", err, reason)
			}
			if msg := status.Convert(err).Message(); msg != "the database is unavailable; retry" {
				t.Errorf("message %q", msg)
			}
			if err := tt.call(); err != nil {
				t.Fatalf("retried: %v", err)
			}
		})
	}
}

// cutOffWhileWaiting runs call while locker holds an exclusive lock on
// table, terminates through killer the server's backend of this database
// that waits for the lock, and returns call's error. The killer polls
// outside any transaction: a transaction sees pg_stat_activity as it first
// read it.
func cutOffWhileWaiting(t *testing.T, locker, killer *pgx.Conn, table string, call func() error) error {
	t.Helper()
	tx, err := locker.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "LOCK TABLE "+pgx.Identifier{table}.Sanitize()+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- call() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var cut int
		// Only this test's database: other tests share the server.
		if err := killer.QueryRow(ctx, `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock'`).Scan(&cut); err != nil {
			t.Fatal(err)
		}
		if cut > 0 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("the call ended before it waited for the lock on %s: %v", table, err)
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("no backend waited for the lock on %s", table)
		}
	}
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatal("the call did not end after its connection was cut")
		return nil
	}
}

// TestDatabaseStopped stops PostgreSQL under a running server: every call
// that needs the database answers UNAVAILABLE (DATABASE_UNAVAILABLE) at
// once, never INTERNAL and never after a wait: admin reads and writes,
// users, tenants, keys, backups, the audit logs, and the authentication of
// a key the server has not cached. Decisions, served from memory, are
// answered; GetLogStatus answers and says the decision log is degraded and
// the replica not following, and health says AuditService is NOT_SERVING.
// Once PostgreSQL is back, the same calls succeed.
func TestDatabaseStopped(t *testing.T) {
	pg := pgtest.NewCluster(t)
	cfg := pgConfigOn(t, pg.NewDatabase(t))
	// Credentials are read again rarely, so that a key created behind the
	// server's back stays unknown to it.
	cfg.AuthRefresh, cfg.ReplicaReconcile = time.Hour, time.Hour
	e := startAudit(t, cfg)
	plat := pb.NewPlatformServiceClient(e.conn)
	health := healthpb.NewHealthClient(e.conn)
	bob := e.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId()
	e.waitDecision(t, "demo", bob)
	doc, _ := exportDoc(t, e.admin, "demo", pb.DocumentFormat_DOCUMENT_FORMAT_YAML)
	uncached := pb.NewAuthorizationServiceClient(e.dial(t, createKey(t, e.app.Store(), "uncached", []string{"check"}, nil, "")))
	keys, err := plat.ListKeys(ctx, &pb.ListKeysRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keyID := keys.GetKeys()[0].GetKeyId()

	pg.Stop(t)

	admin, audit := e.admin, e.audit
	const demo, oscar, why = "demo", "oscar", "outage test"
	role := &pb.RolePermissions{Modules: []*pb.ModuleVerbs{{Module: "campaign", Verbs: []string{"read"}}}}
	needDatabase := []struct {
		name string
		call func(context.Context) error
	}{
		{"ListRoles", func(ctx context.Context) error {
			_, err := admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: demo, ActorId: oscar})
			return err
		}},
		{"GetRole", func(ctx context.Context) error {
			_, err := admin.GetRole(ctx, &pb.GetRoleRequest{TenantId: demo, ActorId: oscar, RoleId: "sales_rep"})
			return err
		}},
		{"CreateRole", func(ctx context.Context) error {
			_, err := admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: demo, ActorId: oscar, Reason: why, RoleId: "events", Permissions: role})
			return err
		}},
		{"UpdateRolePermissions", func(ctx context.Context) error {
			_, err := admin.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: demo, ActorId: oscar, Reason: why, RoleId: "sales_rep", Permissions: role})
			return err
		}},
		{"DeleteRole", func(ctx context.Context) error {
			_, err := admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: demo, ActorId: oscar, Reason: why, RoleId: "sales_rep"})
			return err
		}},
		{"GrantRole", func(ctx context.Context) error {
			_, err := admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: demo, ActorId: oscar, Reason: why, UserId: "peggy", RoleId: "sales_rep"})
			return err
		}},
		{"RevokeRole", func(ctx context.Context) error {
			_, err := admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: demo, ActorId: oscar, Reason: why, UserId: "bob", RoleId: "sales_rep"})
			return err
		}},
		{"ListGrants", func(ctx context.Context) error {
			_, err := admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: demo, ActorId: oscar, Filter: &pb.ListGrantsRequest_UserId{UserId: "bob"}})
			return err
		}},
		{"UpsertUser", func(ctx context.Context) error {
			_, err := admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: demo, ActorId: oscar, Reason: why, User: &pb.User{UserId: "quinn", DisplayName: "Quinn"}})
			return err
		}},
		{"GetUser", func(ctx context.Context) error {
			_, err := admin.GetUser(ctx, &pb.GetUserRequest{TenantId: demo, ActorId: oscar, UserId: "bob"})
			return err
		}},
		{"ListUsers", func(ctx context.Context) error {
			_, err := admin.ListUsers(ctx, &pb.ListUsersRequest{TenantId: demo, ActorId: oscar})
			return err
		}},
		{"DeactivateUser", func(ctx context.Context) error {
			_, err := admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: demo, ActorId: oscar, Reason: why, UserId: "bob"})
			return err
		}},
		{"ReactivateUser", func(ctx context.Context) error {
			_, err := admin.ReactivateUser(ctx, &pb.ReactivateUserRequest{TenantId: demo, ActorId: oscar, Reason: why, UserId: "bob"})
			return err
		}},
		{"ExportTenant", func(ctx context.Context) error {
			stream, err := admin.ExportTenant(ctx, &pb.ExportTenantRequest{TenantId: demo, ActorId: oscar})
			if err != nil {
				return err
			}
			_, err = stream.Recv()
			return err
		}},
		{"ImportTenant", func(ctx context.Context) error {
			stream, err := admin.ImportTenant(ctx)
			if err != nil {
				return err
			}
			if err := stream.Send(&pb.ImportTenantRequest{TenantId: demo, ActorId: oscar, Reason: why, Chunk: doc}); err != nil {
				return err
			}
			_, err = stream.CloseAndRecv()
			return err
		}},
		{"ExportCasbinPolicy", func(ctx context.Context) error {
			_, err := admin.ExportCasbinPolicy(ctx, &pb.ExportCasbinPolicyRequest{TenantId: demo, ActorId: oscar})
			return err
		}},
		{"CreateDepartment", func(ctx context.Context) error {
			_, err := admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: demo, ActorId: oscar, Reason: why, Department: dept("events", "Events", "")})
			return err
		}},
		{"UpdateDepartment", func(ctx context.Context) error {
			_, err := admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: demo, ActorId: oscar, Reason: why, Department: dept("sales", "Sales", "")})
			return err
		}},
		{"DeleteDepartment", func(ctx context.Context) error {
			_, err := admin.DeleteDepartment(ctx, &pb.DeleteDepartmentRequest{TenantId: demo, ActorId: oscar, Reason: why, DepartmentId: "sales"})
			return err
		}},
		{"ListDepartments", func(ctx context.Context) error {
			_, err := admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{TenantId: demo, ActorId: oscar})
			return err
		}},
		{"SetMembership", func(ctx context.Context) error {
			_, err := admin.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: demo, ActorId: oscar, Reason: why,
				Membership: &pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales"}})
			return err
		}},
		{"DeleteMembership", func(ctx context.Context) error {
			_, err := admin.DeleteMembership(ctx, &pb.DeleteMembershipRequest{TenantId: demo, ActorId: oscar, Reason: why, UserId: "bob"})
			return err
		}},
		{"ListMemberships", func(ctx context.Context) error {
			_, err := admin.ListMemberships(ctx, &pb.ListMembershipsRequest{TenantId: demo, ActorId: oscar, Filter: &pb.ListMembershipsRequest_UserId{UserId: "bob"}})
			return err
		}},
		{"UpdateTenantSettings", func(ctx context.Context) error {
			_, err := admin.UpdateTenantSettings(ctx, &pb.UpdateTenantSettingsRequest{TenantId: demo, ActorId: oscar, Reason: why, ManagerDepth: 2})
			return err
		}},
		{"CreateSharingRule", func(ctx context.Context) error {
			_, err := admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: demo, ActorId: oscar, Reason: why,
				Rule: &pb.SharingRule{RuleId: "sales_leads", Module: "lead", OwnedBy: deptP("sales", false), SharedWith: roleP("sales_rep"),
					Access: pb.RecordAccess_RECORD_ACCESS_READ}})
			return err
		}},
		{"DeleteSharingRule", func(ctx context.Context) error {
			_, err := admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: demo, ActorId: oscar, Reason: why, RuleId: "sales_leads"})
			return err
		}},
		{"ListSharingRules", func(ctx context.Context) error {
			_, err := admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{TenantId: demo, ActorId: oscar})
			return err
		}},
		{"ShareRecord", func(ctx context.Context) error {
			_, err := admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: demo, ActorId: oscar, Reason: why,
				Share: &pb.RecordShare{Module: "lead", RecordId: "L-1", Principal: userP("bob"), Access: pb.RecordAccess_RECORD_ACCESS_READ}})
			return err
		}},
		{"UnshareRecord", func(ctx context.Context) error {
			_, err := admin.UnshareRecord(ctx, &pb.UnshareRecordRequest{TenantId: demo, ActorId: oscar, Reason: why, Module: "lead", RecordId: "L-1", Principal: userP("bob")})
			return err
		}},
		{"ListRecordShares", func(ctx context.Context) error {
			_, err := admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{TenantId: demo, ActorId: oscar, Module: "lead", RecordId: "L-1"})
			return err
		}},
		{"CreateTenant", func(ctx context.Context) error {
			_, err := plat.CreateTenant(ctx, &pb.CreateTenantRequest{TenantId: "globex", Name: "Globex", Templates: []string{"admin"}, AdminUserId: "gina", Reason: why})
			return err
		}},
		{"GetTenant", func(ctx context.Context) error {
			_, err := plat.GetTenant(ctx, &pb.GetTenantRequest{TenantId: demo})
			return err
		}},
		{"ListTenants", func(ctx context.Context) error {
			_, err := plat.ListTenants(ctx, &pb.ListTenantsRequest{})
			return err
		}},
		{"DeleteTenant", func(ctx context.Context) error {
			_, err := plat.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: demo, ConfirmTenantId: demo, Reason: why})
			return err
		}},
		{"CreateKey", func(ctx context.Context) error {
			_, err := plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: "billing", Scopes: []string{"check"}, TenantIds: []string{demo}})
			return err
		}},
		{"ListKeys", func(ctx context.Context) error {
			_, err := plat.ListKeys(ctx, &pb.ListKeysRequest{})
			return err
		}},
		{"RevokeKey", func(ctx context.Context) error {
			_, err := plat.RevokeKey(ctx, &pb.RevokeKeyRequest{KeyId: keyID, Reason: why})
			return err
		}},
		{"ListDecisions", func(ctx context.Context) error {
			_, err := audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: demo})
			return err
		}},
		{"ListDecisions of a tenant not loaded, maybe deleted", func(ctx context.Context) error {
			_, err := audit.ListDecisions(ctx, &pb.ListDecisionsRequest{TenantId: "globex"})
			return err
		}},
		{"GetDecision", func(ctx context.Context) error {
			_, err := audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: demo, DecisionId: bob})
			return err
		}},
		{"ExportDecisions", func(ctx context.Context) error {
			stream, err := audit.ExportDecisions(ctx, &pb.ExportDecisionsRequest{TenantId: demo})
			if err != nil {
				return err
			}
			for {
				if _, err := stream.Recv(); err != nil {
					return err // io.EOF: the export ended without the database
				}
			}
		}},
		{"ListChanges", func(ctx context.Context) error {
			_, err := audit.ListChanges(ctx, &pb.ListChangesRequest{TenantId: demo})
			return err
		}},
		{"ListUnusedGrants", func(ctx context.Context) error {
			_, err := audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: demo})
			return err
		}},
		{"VerifyLog of decisions", func(ctx context.Context) error {
			_, err := audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
			return err
		}},
		{"VerifyLog of both logs", func(ctx context.Context) error {
			_, err := audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL})
			return err
		}},
		{"CreateCheckpoint", func(ctx context.Context) error {
			_, err := audit.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
			return err
		}},
		{"ListCheckpoints", func(ctx context.Context) error {
			_, err := audit.ListCheckpoints(ctx, &pb.ListCheckpointsRequest{})
			return err
		}},
		{"VerifyLog of changes", func(ctx context.Context) error {
			_, err := audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: demo})
			return err
		}},
		{"ListSecurityEvents", func(ctx context.Context) error {
			_, err := audit.ListSecurityEvents(ctx, &pb.ListSecurityEventsRequest{})
			return err
		}},
		{"Check with a key not cached", func(ctx context.Context) error {
			_, err := uncached.Check(ctx, &pb.CheckRequest{TenantId: demo, SubjectId: "bob", Permission: modulePerm("account", "read")})
			return err
		}},
	}
	for _, tt := range needDatabase {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			start := time.Now()
			err := tt.call(ctx)
			took := time.Since(start)
			code, reason, _ := errorInfo(t, err)
			if code != codes.Unavailable || reason != "DATABASE_UNAVAILABLE" {
				t.Errorf("with PostgreSQL stopped: %v (reason %q) after %s; want UNAVAILABLE DATABASE_UNAVAILABLE", err, reason, took)
			}
			if took > 2*time.Second {
				t.Errorf("with PostgreSQL stopped, the answer took %s; a refused connection is known at once", took)
			}
		})
	}

	// Decisions come from memory; the log keeps them in the spool.
	d := e.check(t, "demo", "bob", modulePerm("account", "read"))
	if !d.GetAllowed() || d.GetDecisionId() == "" {
		t.Errorf("Check with PostgreSQL stopped: %v; want bob allowed, with a decision id", d)
	}
	var st *pb.GetLogStatusResponse
	waitFor(t, "the decision log degraded and the replica not following", func() bool {
		if st, err = audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{}); err != nil {
			t.Fatalf("GetLogStatus with PostgreSQL stopped: %v", err)
		}
		return st.GetDegraded() && !st.GetReplica().GetFollowing()
	})
	if st.GetSpoolEntries() == 0 || st.GetDegradedTime() == nil || st.GetReplica().GetDisconnectedTime() == nil {
		t.Errorf("GetLogStatus with PostgreSQL stopped: %v; want the spooled decision, when the log degraded and when the replica lost the database", st)
	}
	for service, want := range map[string]healthpb.HealthCheckResponse_ServingStatus{
		pb.AuditService_ServiceDesc.ServiceName:         healthpb.HealthCheckResponse_NOT_SERVING,
		pb.AuthorizationService_ServiceDesc.ServiceName: healthpb.HealthCheckResponse_SERVING,
		"": healthpb.HealthCheckResponse_SERVING,
	} {
		if resp, err := health.Check(ctx, &healthpb.HealthCheckRequest{Service: service}); err != nil || resp.GetStatus() != want {
			t.Errorf("health of %q with PostgreSQL stopped: %v, %v; want %s", service, resp, err, want)
		}
	}

	pg.Start(t)
	waitFor(t, "the decision log shipped and the replica following", func() bool {
		st, err := audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
		return err == nil && !st.GetDegraded() && st.GetSpoolEntries() == 0 && st.GetReplica().GetFollowing()
	})
	e.waitDecision(t, "demo", d.GetDecisionId())
	for _, tt := range needDatabase[:1] {
		if err := tt.call(ctx); err != nil {
			t.Errorf("%s with PostgreSQL back: %v", tt.name, err)
		}
	}
}

// waitFor waits up to 20s for cond.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for start := time.Now(); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Since(start) > 20*time.Second {
			t.Fatalf("waited 20s for %s", what)
		}
	}
}
