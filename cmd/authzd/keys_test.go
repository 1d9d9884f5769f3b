package main

import (
	"context"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// replica is one authzd process of a test.
type replica struct {
	addr   string
	cmd    *exec.Cmd // nil when the test did not start the process
	authz  pb.AuthorizationServiceClient
	admin  pb.AdminServiceClient
	audit  pb.AuditServiceClient
	plat   pb.PlatformServiceClient
	health healthpb.HealthClient
}

// startReplica starts an authzd process on the database at url and waits
// until it serves; it is killed when the test ends.
func startReplica(t *testing.T, url string, key string, args ...string) *replica {
	t.Helper()
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], append([]string{"serve", "--database-url", url, "--listen-addr", addr, "--log-level", "error",
		"--decision-spool-dir", t.TempDir(), "--audit-key-file", pgtest.AuditKeyFile(url)}, args...)...)
	launch(t, cmd, os.Environ())
	r := startWait(t, addr, key)
	r.cmd = cmd
	return r
}

// launch starts cmd, an authzd run by the test binary, with env and its
// standard error the test's, and kills it when the test ends.
func launch(t *testing.T, cmd *exec.Cmd, env []string) {
	t.Helper()
	cmd.Env = append(env, runMainEnv+"=1")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// startWait waits until the authzd at addr serves and returns its clients.
func startWait(t *testing.T, addr, key string) *replica {
	t.Helper()
	conn := dialKey(t, addr, key)
	health := healthpb.NewHealthClient(conn)
	for range 800 {
		resp, err := health.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return &replica{addr: addr, authz: pb.NewAuthorizationServiceClient(conn), admin: pb.NewAdminServiceClient(conn),
				audit: pb.NewAuditServiceClient(conn), plat: pb.NewPlatformServiceClient(conn), health: health}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("authzd never reported SERVING")
	return nil
}

func dialKey(t *testing.T, addr, key string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func checkWith(t *testing.T, addr, key string) error {
	t.Helper()
	_, err := pb.NewAuthorizationServiceClient(dialKey(t, addr, key)).Check(context.Background(), &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
		Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}})
	return err
}

// TestKeysAcrossReplicas runs two authzd processes on one database: a key
// created on one, or by `authzd keys create` beside both, works on both at
// once; a key revoked on one is refused there at once and on the other
// within its --auth-refresh.
func TestKeysAcrossReplicas(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ops := firstKey(t, url)
	a := startReplica(t, url, ops, "--seed-demo", "true", "--auth-refresh", "200ms")
	b := startReplica(t, url, ops, "--auth-refresh", "200ms")

	resp, err := a.plat.CreateKey(context.Background(), &pb.CreateKeyRequest{Name: "orders", Scopes: []string{"check"}, TenantIds: []string{"demo"}})
	if err != nil {
		t.Fatal(err)
	}
	key := resp.GetSecret()
	for _, r := range []*replica{a, b} {
		if err := checkWith(t, r.addr, key); err != nil {
			t.Errorf("a key created on replica a, at once on %s: %v", r.addr, err)
		}
	}
	var out strings.Builder
	if err := run(context.Background(), []string{"keys", "create", "--database-url", url, "--name", "billing", "--scopes", "check", "--tenants", "demo"},
		noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	offline := lines[len(lines)-1]
	for _, r := range []*replica{a, b} {
		if err := checkWith(t, r.addr, offline); err != nil {
			t.Errorf("a key from authzd keys create, at once on %s: %v", r.addr, err)
		}
	}

	if _, err := a.plat.RevokeKey(context.Background(), &pb.RevokeKeyRequest{KeyId: resp.GetKey().GetKeyId(), Reason: "retired"}); err != nil {
		t.Fatal(err)
	}
	if err := checkWith(t, a.addr, key); status.Code(err) != codes.Unauthenticated {
		t.Errorf("revoked on a, a answers %v", err)
	}
	start := time.Now()
	for status.Code(checkWith(t, b.addr, key)) != codes.Unauthenticated {
		if time.Since(start) > 10*time.Second {
			t.Fatal("replica b still accepts the revoked key")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("replica b refused the revoked key after %s", time.Since(start).Round(time.Millisecond))
}

// TestRequireAuthFromMemory: serving from memory with --require-auth, the
// first start logs a platform key, the one way in; without it nothing
// answers but health.
func TestRequireAuthFromMemory(t *testing.T) {
	addr := freeAddr(t)
	cmd := exec.Command(os.Args[0], "serve", "--require-auth", "--listen-addr", addr, "--log-level", "warn")
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	keys := make(chan string, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var seen strings.Builder
		for {
			n, err := stderr.Read(buf)
			seen.Write(buf[:n])
			if i := strings.Index(seen.String(), `"key":"crmz_`); i >= 0 {
				rest := seen.String()[i+len(`"key":"`):]
				if j := strings.IndexByte(rest, '"'); j > 0 {
					keys <- rest[:j]
					_, _ = io.Copy(io.Discard, stderr)
					return
				}
			}
			if err != nil {
				close(keys)
				return
			}
		}
	}()
	var key string
	select {
	case key = <-keys:
	case <-time.After(20 * time.Second):
		t.Fatal("no platform key logged")
	}
	if key == "" {
		t.Fatal("authzd ended without logging a key")
	}
	r := startWait(t, addr, key)
	if _, err := r.plat.ListKeys(context.Background(), &pb.ListKeysRequest{}); err != nil {
		t.Errorf("the logged key: %v", err)
	}
	if err := checkWith(t, addr, key[:len(key)-2]+"AA"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("another key: %v", err)
	}
}
