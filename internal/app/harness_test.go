package app_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// clock is a settable clock for grant expiry.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is a running authzd reached through the real gRPC stack.
type env struct {
	stop  func() // stops the server gracefully; also run at the end of the test
	conn  *grpc.ClientConn
	authz pb.AuthorizationServiceClient
	admin pb.AdminServiceClient
	clock *clock
	lis   *bufconn.Listener
	app   *app.App
	key   string // the platform key conn calls with, when callers authenticate
}

// start runs authzd with cfg (the embedded default when zero) over an
// in-memory listener and waits until health reports SERVING. The server is
// stopped gracefully at the end of the test.
func start(t *testing.T, cfg config.Config) *env {
	t.Helper()
	if cfg.LogLevel == "" { // the zero Config: the embedded default
		cfg = config.Default()
	}
	return startWith(t, cfg, &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)})
}

// startWith is start with a given clock; benchmarks use it too.
func startWith(t testing.TB, cfg config.Config, clk *clock) *env {
	t.Helper()
	return startSetup(t, cfg, clk, nil)
}

// startSetup is startWith that runs setup on the store before the server
// starts (and loads what setup stored).
func startSetup(t testing.TB, cfg config.Config, clk *clock, setup func(st store.Store), opts ...app.Option) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	opts = append([]app.Option{app.WithClock(clk.Now), app.WithReviewInterval(100 * time.Millisecond)}, opts...)
	a, err := app.New(ctx, cfg, zaptest.NewLogger(t), opts...)
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(a.Store())
	}
	dial := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	var key string
	if cfg.AuthEnabled() {
		// The client calls as the platform operator; tests of the trust
		// boundary make narrower credentials of their own.
		key = createKey(t, a.Store(), "tests", []string{"platform"}, nil, "")
		dial = append(dial, grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
	}
	lis := bufconn.Listen(1 << 20)
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, lis) }()
	conn, err := grpc.NewClient("passthrough:///authzd",
		append(dial, grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }))...)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = conn.Close()
			cancel()
			if err := <-done; err != nil {
				t.Errorf("run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	waitServing(t, conn)
	return &env{stop: stop, conn: conn, authz: pb.NewAuthorizationServiceClient(conn), admin: pb.NewAdminServiceClient(conn), clock: clk,
		lis: lis, app: a, key: key}
}

// createKey stores an API key straight in st, as `authzd keys create`
// does, and returns it.
func createKey(t testing.TB, st store.Store, name string, scopes, tenants []string, user string) string {
	t.Helper()
	id, key, hash, err := auth.NewKey()
	if err != nil {
		t.Fatal(err)
	}
	c := store.Credential{ID: id, Name: name, SecretHash: hash, Scopes: scopes, Tenants: tenants, User: user,
		CreatedAt: time.Now(), CreatedBy: "tests"}
	if err := st.CreateCredential(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	return key
}

// dial returns a connection to the running server calling with key (none
// when empty).
func (e *env) dial(t testing.TB, key string) *grpc.ClientConn {
	t.Helper()
	opts := []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return e.lis.DialContext(ctx) })}
	if key != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
	}
	conn, err := grpc.NewClient("passthrough:///authzd", opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func waitServing(t testing.TB, conn *grpc.ClientConn) {
	t.Helper()
	hc := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("server never reported SERVING")
}

// errorInfo returns the status code and the ErrorInfo reason and field of err.
func errorInfo(t *testing.T, err error) (codes.Code, string, string) {
	t.Helper()
	st, ok := status.FromError(err)
	if !ok || err == nil {
		t.Fatalf("want a gRPC status error, got %v", err)
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return st.Code(), info.GetReason(), info.GetMetadata()["field"]
		}
	}
	return st.Code(), "", ""
}

func cfgDefault() config.Config { return config.Default() }

// modulePerm, functionPerm and fieldPerm build request permissions.
func modulePerm(module, verb string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: module, Verb: verb}}}
}

func functionPerm(fn string) *pb.Permission {
	return &pb.Permission{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: fn}}}
}

func fieldPerm(module, field string, write bool) *pb.Permission {
	mode := pb.FieldAccessMode_FIELD_ACCESS_MODE_READ
	if write {
		mode = pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE
	}
	return &pb.Permission{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: module, Field: field, Access: mode}}}
}

func (e *env) check(t *testing.T, tenant, user string, p *pb.Permission) *pb.CheckResponse {
	t.Helper()
	resp, err := e.authz.Check(context.Background(), &pb.CheckRequest{TenantId: tenant, SubjectId: user, Permission: p, Explain: true})
	if err != nil {
		t.Fatalf("check %s %s %v: %v", tenant, user, p, err)
	}
	return resp
}
