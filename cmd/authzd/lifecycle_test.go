package main

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// runMainEnv makes the test binary run main() instead of the tests, so a
// test can signal a real authzd process.
const runMainEnv = "AUTHZD_TEST_RUN_MAIN"

func init() {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
}

// waitLocked waits until a session of the database at pool waits for a
// lock in a statement starting with prefix.
func waitLocked(t *testing.T, pool *pgxpool.Pool, prefix string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		var n int
		err := pool.QueryRow(context.Background(), `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE $1 || '%'`, prefix).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no session waits for a lock in %q", prefix)
}

// lockTable locks table in a transaction kept open until the test ends.
func lockTable(t *testing.T, pool *pgxpool.Pool, table string) {
	t.Helper()
	tx, err := pool.Begin(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
	if _, err := tx.Exec(context.Background(), "LOCK TABLE "+table+" IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
}

// TestStopWhileLoadingTenants: a stop requested while the tenants load is a
// clean exit, and leaves nothing running.
func TestStopWhileLoadingTenants(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pool := pgtest.Open(t, url)
	lockTable(t, pool, "tenants")
	ignore := goleak.IgnoreCurrent()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--database-url", url, "--listen-addr", "127.0.0.1:0", "--log-level", "error"}, noEnv, io.Discard, io.Discard)
	}()
	waitLocked(t, pool, "SELECT id FROM tenants")
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stopped while loading tenants: %v, want a clean stop", err)
	}
	goleak.VerifyNone(t, ignore)
}

// TestStopWhileConnecting: a stop requested before the store is open is a
// clean exit too.
func TestStopWhileConnecting(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ignore := goleak.IgnoreCurrent()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := run(ctx, []string{"--database-url", url, "--listen-addr", "127.0.0.1:0", "--log-level", "error"}, noEnv, io.Discard, io.Discard); err != nil {
		t.Fatalf("stopped while connecting: %v, want a clean stop", err)
	}
	goleak.VerifyNone(t, ignore)
}

// TestListenFailureClosesStore: when the port is taken, run reports it and
// closes the store and its pool first.
func TestListenFailureClosesStore(t *testing.T) {
	url := pgtest.NewDatabase(t)
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = taken.Close() }()
	ignore := goleak.IgnoreCurrent()
	err = run(context.Background(), []string{"--database-url", url, "--listen-addr", taken.Addr().String(), "--log-level", "error"}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("serve on a taken port: %v", err)
	}
	goleak.VerifyNone(t, ignore)
}

// TestSecondSignalForcesExit: the first SIGTERM starts the graceful stop;
// a second one ends the process at once, even while the stop waits (here
// for a decision log write held by a table lock, up to a minute).
func TestSecondSignalForcesExit(t *testing.T) {
	url := pgtest.NewDatabase(t)
	pool := pgtest.Open(t, url)
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--database-url", url, "--listen-addr", addr, "--log-level", "error",
		"--seed-demo", "true", "--shutdown-timeout", "1m", "--decision-log-flush-interval", "10ms")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan struct{})
	var waitErr error
	go func() { waitErr = cmd.Wait(); close(waited) }()
	defer func() {
		_ = cmd.Process.Kill()
		<-waited
	}()

	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(firstKey(t, url), true)))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	ctx := context.Background()
	serving := false
	for range 800 {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if serving = err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING; serving {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	if !serving {
		t.Fatal("authzd never reported SERVING")
	}
	lockTable(t, pool, "decision_batches")
	_, err = pb.NewAuthorizationServiceClient(conn).Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
		Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}})
	if err != nil {
		t.Fatal(err)
	}
	waitLocked(t, pool, "") // the decision log's write waits for the lock

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
		t.Fatalf("exited before the held write was given up: %v", waitErr)
	case <-time.After(500 * time.Millisecond): // stopping, and waiting for the write
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waited:
		var ee *exec.ExitError
		if !errors.As(waitErr, &ee) || ee.Success() {
			t.Fatalf("second SIGTERM: exit %v, want a failure", waitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a second SIGTERM did not end the process")
	}
}
