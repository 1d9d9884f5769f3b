package main

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func noEnv(string) string { return "" }

// TestMigrateThenServe runs the binary's subcommands against a database with
// no schema: serve refuses with a message naming `authzd migrate`; migrate
// (twice) makes it servable.
func TestMigrateThenServe(t *testing.T) {
	url := pgtest.NewEmptyDatabase(t)
	err := run(context.Background(), []string{"serve", "--database-url", url, "--listen-addr", "127.0.0.1:0"}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "authzd migrate") {
		t.Fatalf("serve on an unmigrated database: %v", err)
	}
	for range 2 {
		if err := run(context.Background(), []string{"migrate", "--database-url", url, "--log-level", "warn"}, noEnv, io.Discard, io.Discard); err != nil {
			t.Fatalf("migrate: %v", err)
		}
	}
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"--database-url", url, "--listen-addr", addr, "--log-level", "warn", "--seed-demo", "true"}, noEnv, io.Discard, io.Discard)
	}()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	serving := false
	for range 200 {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if serving = err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING; serving {
			break
		}
		time.Sleep(25 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil || !serving {
		t.Fatalf("serve after migrate: serving=%v, run: %v", serving, err)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close() }()
	return l.Addr().String()
}

func TestMigrateNeedsDatabase(t *testing.T) {
	err := run(context.Background(), []string{"migrate"}, noEnv, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--database-url") {
		t.Fatalf("migrate without a database: %v", err)
	}
}

func TestBadFlag(t *testing.T) {
	if err := run(context.Background(), []string{"serve", "--log-level", "loud"}, noEnv, io.Discard, io.Discard); err == nil {
		t.Fatal("bad log level accepted")
	}
}

// TestHelp: -h and help list the subcommands, a subcommand's -h (or
// help <subcommand>) prints its flags; none is an error, so authzd exits 0.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"help"}, {"--help"}} {
		var out strings.Builder
		if err := run(context.Background(), args, noEnv, &out, io.Discard); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		for _, want := range []string{"serve ", "migrate ", "keys ", "audit-keys "} {
			if !strings.Contains(out.String(), "\n  "+want) {
				t.Errorf("%v does not list %q: %q", args, want, out.String())
			}
		}
	}
	for _, args := range [][]string{{"serve", "--help"}, {"migrate", "-h"}, {"help", "serve"}} {
		var out strings.Builder
		if err := run(context.Background(), args, noEnv, io.Discard, &out); err != nil {
			t.Errorf("%v: %v", args, err)
		}
		if !strings.Contains(out.String(), "-listen-addr") {
			t.Errorf("%v printed %q", args, out.String())
		}
	}
}

// firstKey creates a platform key in the database at url as an operator
// does before the first start, `authzd keys create`, and returns the key:
// the last line of what it prints.
func firstKey(t *testing.T, url string) string {
	t.Helper()
	var out strings.Builder
	args := []string{"keys", "create", "--database-url", url, "--name", "ops", "--scopes", "platform"}
	if err := run(context.Background(), args, noEnv, &out, io.Discard); err != nil {
		t.Fatalf("keys create: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	key := lines[len(lines)-1]
	if !strings.HasPrefix(key, "crmz_") || strings.ContainsAny(key, " \t") {
		t.Fatalf("keys create printed %q; want the key alone on the last line", out.String())
	}
	return key
}
