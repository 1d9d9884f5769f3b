package app_test

import (
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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
