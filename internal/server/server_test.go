package server_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"

	"github.com/crmauthz/crmauthz/internal/server"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// authz is a stub AuthorizationService: Check runs check.
type authz struct {
	pb.UnimplementedAuthorizationServiceServer
	check func(context.Context) (*pb.CheckResponse, error)
}

func (a *authz) Check(ctx context.Context, _ *pb.CheckRequest) (*pb.CheckResponse, error) {
	return a.check(ctx)
}

// auditor is a stub AuditService: ExportDecisions runs export,
// GetLogStatus answers.
type auditor struct {
	pb.UnimplementedAuditServiceServer
	export func(pb.AuditService_ExportDecisionsServer) error
}

func (a *auditor) GetLogStatus(context.Context, *pb.GetLogStatusRequest) (*pb.GetLogStatusResponse, error) {
	return &pb.GetLogStatusResponse{Mode: "async"}, nil
}

func (a *auditor) ExportDecisions(_ *pb.ExportDecisionsRequest, stream pb.AuditService_ExportDecisionsServer) error {
	return a.export(stream)
}

// harness is a server.Server on an in-memory listener, its client
// connection and the log lines it wrote.
type harness struct {
	srv    *server.Server
	conn   *grpc.ClientConn
	logs   *observer.ObservedLogs
	served chan error
}

func newHarness(t *testing.T, a *authz, au *auditor) *harness {
	t.Helper()
	core, logs := observer.New(zap.DebugLevel)
	if a == nil {
		a = &authz{check: func(context.Context) (*pb.CheckResponse, error) { return &pb.CheckResponse{Allowed: true}, nil }}
	}
	if au == nil {
		au = &auditor{}
	}
	srv := server.New(server.Options{Logger: zap.New(core), MaxRecvBytes: 1 << 20},
		server.Services{Authorization: a, Admin: pb.UnimplementedAdminServiceServer{}, Audit: au})
	lis := bufconn.Listen(1 << 20)
	h := &harness{srv: srv, logs: logs, served: make(chan error, 1)}
	go func() { h.served <- srv.Serve(lis) }()
	conn, err := grpc.NewClient("passthrough:///authzd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.conn = conn
	t.Cleanup(func() {
		_ = conn.Close()
		srv.Shutdown(time.Second)
		if err := <-h.served; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return h
}

func (h *harness) health(t *testing.T) healthpb.HealthCheckResponse_ServingStatus {
	t.Helper()
	resp, err := healthpb.NewHealthClient(h.conn).Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatalf("health: %v", err)
	}
	return resp.GetStatus()
}

// TestReadiness: health is NOT_SERVING and the services UNAVAILABLE until
// SetReady.
func TestReadiness(t *testing.T) {
	h := newHarness(t, nil, nil)
	if st := h.health(t); st != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("before SetReady: health %v", st)
	}
	_, err := pb.NewAuthorizationServiceClient(h.conn).Check(context.Background(), &pb.CheckRequest{})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("before SetReady: Check %v, want UNAVAILABLE", err)
	}
	h.srv.SetReady()
	if st := h.health(t); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("after SetReady: health %v", st)
	}
	if _, err := pb.NewAuthorizationServiceClient(h.conn).Check(context.Background(), &pb.CheckRequest{}); err != nil {
		t.Fatalf("after SetReady: Check %v", err)
	}
}

// TestHealthOfEachService: a decision log degraded, or a replica not
// following, before the server is ready still shows once it is; each turns
// its own services NOT_SERVING and back, whatever the other says.
func TestHealthOfEachService(t *testing.T) {
	h := newHarness(t, nil, nil)
	const (
		whole = ""
		authz = "crmauthz.v1.AuthorizationService"
		admin = "crmauthz.v1.AdminService"
		audit = "crmauthz.v1.AuditService"
	)
	want := func(when string, states map[string]healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		for name, st := range states {
			resp, err := healthpb.NewHealthClient(h.conn).Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
			if err != nil || resp.GetStatus() != st {
				t.Errorf("%s: health of %q: %v, %v; want %s", when, name, resp, err, st)
			}
		}
	}
	const up, down = healthpb.HealthCheckResponse_SERVING, healthpb.HealthCheckResponse_NOT_SERVING
	h.srv.SetLogDegraded(true)
	h.srv.SetFollowing(false)
	want("before SetReady", map[string]healthpb.HealthCheckResponse_ServingStatus{whole: down, authz: down, admin: down, audit: down})
	h.srv.SetReady()
	want("ready, degraded and not following", map[string]healthpb.HealthCheckResponse_ServingStatus{whole: down, authz: down, admin: up, audit: down})
	h.srv.SetFollowing(true)
	want("following again", map[string]healthpb.HealthCheckResponse_ServingStatus{whole: up, authz: up, admin: up, audit: down})
	h.srv.SetLogDegraded(false)
	want("recovered", map[string]healthpb.HealthCheckResponse_ServingStatus{whole: up, authz: up, admin: up, audit: up})
	h.srv.SetLogDegraded(true)
	want("degraded again", map[string]healthpb.HealthCheckResponse_ServingStatus{whole: up, authz: up, admin: up, audit: down})
}

// TestShutdownEndsHealthWatches: a client watching health (as gRPC's
// client-side health checking does) sees NOT_SERVING and its stream ends, so
// that the graceful stop finishes at once instead of waiting out the
// shutdown timeout for a stream that never ends by itself.
func TestShutdownEndsHealthWatches(t *testing.T) {
	h := newHarness(t, nil, nil)
	h.srv.SetReady()
	watch, err := healthpb.NewHealthClient(h.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", resp, err)
	}
	const timeout = 10 * time.Second
	start := time.Now()
	done := make(chan struct{})
	go func() {
		h.srv.Shutdown(timeout)
		close(done)
	}()
	for {
		resp, err := watch.Recv()
		if err != nil {
			break
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Errorf("watch during shutdown: %v", resp.GetStatus())
		}
	}
	select {
	case <-done:
	case <-time.After(timeout / 2):
		t.Fatal("Shutdown waits for the health watch until its timeout")
	}
	if d := time.Since(start); d > timeout/2 {
		t.Fatalf("Shutdown took %v", d)
	}
}

// TestShutdownFinishesRunningCalls: a call running when Shutdown starts
// completes normally; new calls are refused.
func TestShutdownFinishesRunningCalls(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := newHarness(t, &authz{check: func(ctx context.Context) (*pb.CheckResponse, error) {
		close(entered)
		<-release
		return &pb.CheckResponse{Allowed: true, Revision: 7}, nil
	}}, nil)
	h.srv.SetReady()
	type result struct {
		resp *pb.CheckResponse
		err  error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := pb.NewAuthorizationServiceClient(h.conn).Check(context.Background(), &pb.CheckRequest{})
		got <- result{resp, err}
	}()
	<-entered
	done := make(chan struct{})
	go func() {
		h.srv.Shutdown(10 * time.Second)
		close(done)
	}()
	time.Sleep(50 * time.Millisecond)
	select {
	case <-done:
		t.Fatal("Shutdown returned while a call was running")
	default:
	}
	close(release)
	r := <-got
	if r.err != nil || r.resp.GetRevision() != 7 {
		t.Fatalf("running call: %v %v", r.resp, r.err)
	}
	<-done
}

// TestPanicLogCarriesRequestID: a panicking handler answers INTERNAL with no
// detail, and the panic's log line carries the request id the caller got
// back, so the two can be matched.
func TestPanicLogCarriesRequestID(t *testing.T) {
	h := newHarness(t, &authz{check: func(context.Context) (*pb.CheckResponse, error) {
		panic("secret internal state")
	}}, nil)
	h.srv.SetReady()
	ctx := metadata.AppendToOutgoingContext(context.Background(), server.RequestIDHeader, "req-panic-1")
	var header metadata.MD
	_, err := pb.NewAuthorizationServiceClient(h.conn).Check(ctx, &pb.CheckRequest{}, grpc.Header(&header))
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "secret") {
		t.Fatalf("panic answered %v", err)
	}
	if got := header.Get(server.RequestIDHeader); len(got) != 1 || got[0] != "req-panic-1" {
		t.Fatalf("response header %s = %v", server.RequestIDHeader, got)
	}
	entries := h.logs.FilterMessage("panic in handler").All()
	if len(entries) != 1 {
		t.Fatalf("%d panic log lines", len(entries))
	}
	if id := entries[0].ContextMap()["request_id"]; id != "req-panic-1" {
		t.Fatalf("panic log line has request_id %v, want req-panic-1: %v", id, entries[0].ContextMap())
	}
}

// TestStreamRequestID: a streaming call gets the request id like a unary
// one: returned in the response header and on the log line of an internal
// error, whose cause is not sent.
func TestStreamRequestID(t *testing.T) {
	h := newHarness(t, nil, &auditor{export: func(pb.AuditService_ExportDecisionsServer) error {
		return errors.New("read decisions: connection to 10.0.0.7 refused")
	}})
	h.srv.SetReady()
	ctx := metadata.AppendToOutgoingContext(context.Background(), server.RequestIDHeader, "req-stream-1")
	stream, err := pb.NewAuditServiceClient(h.conn).ExportDecisions(ctx, &pb.ExportDecisionsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = stream.Recv()
	if st := status.Convert(err); st.Code() != codes.Internal || strings.Contains(st.Message(), "10.0.0.7") {
		t.Fatalf("stream answered %v", err)
	}
	header, err := stream.Header()
	if err != nil {
		t.Fatal(err)
	}
	if got := header.Get(server.RequestIDHeader); len(got) != 1 || got[0] != "req-stream-1" {
		t.Fatalf("response header %s = %v", server.RequestIDHeader, got)
	}
	entries := h.logs.FilterMessage("internal error").All()
	if len(entries) != 1 {
		t.Fatalf("%d internal error log lines", len(entries))
	}
	if id := entries[0].ContextMap()["request_id"]; id != "req-stream-1" {
		t.Fatalf("internal error log line has request_id %v, want req-stream-1: %v", id, entries[0].ContextMap())
	}
}

// TestRequestIDsOfConcurrentCalls: calls made at once each get back their
// own request id (given or made), never another call's, in the header (of
// a failed Check: a decision returns it only when it fails).
func TestRequestIDsOfConcurrentCalls(t *testing.T) {
	h := newHarness(t, &authz{check: func(context.Context) (*pb.CheckResponse, error) {
		return nil, status.Error(codes.InvalidArgument, "tenant_id: required")
	}}, nil)
	h.srv.SetReady()
	client := pb.NewAuthorizationServiceClient(h.conn)
	const callers, calls = 8, 200
	var mu sync.Mutex
	made := map[string]bool{}
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for i := range calls {
				ctx, want := context.Background(), ""
				if i%2 == 0 {
					want = fmt.Sprintf("req-%d-%d", c, i)
					ctx = metadata.AppendToOutgoingContext(ctx, server.RequestIDHeader, want)
				}
				var header metadata.MD
				if _, err := client.Check(ctx, &pb.CheckRequest{}, grpc.Header(&header)); status.Code(err) != codes.InvalidArgument {
					t.Error(err)
					return
				}
				got := header.Get(server.RequestIDHeader)
				if len(got) != 1 || got[0] == "" || (want != "" && got[0] != want) {
					t.Errorf("call %d-%d: header %s = %v, want %q", c, i, server.RequestIDHeader, got, want)
					return
				}
				if want == "" {
					mu.Lock()
					if made[got[0]] {
						t.Errorf("request id %s made twice", got[0])
					}
					made[got[0]] = true
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
}

// TestDecisionsReturnRequestIDOnlyOnFailure: an answered decision carries
// no request id in its header (its decision_id names its audit entry), a
// failed one does, and other services return it on success too; the
// request id the caller gave is on the call's log line either way.
func TestDecisionsReturnRequestIDOnlyOnFailure(t *testing.T) {
	var fail atomic.Bool
	h := newHarness(t, &authz{check: func(context.Context) (*pb.CheckResponse, error) {
		if fail.Load() {
			return nil, status.Error(codes.InvalidArgument, "tenant_id: required")
		}
		return &pb.CheckResponse{Allowed: true, DecisionId: "d-1"}, nil
	}}, nil)
	h.srv.SetReady()
	authz, audit := pb.NewAuthorizationServiceClient(h.conn), pb.NewAuditServiceClient(h.conn)
	headerOf := func(id string, call func(context.Context, grpc.CallOption) error) []string {
		t.Helper()
		ctx := context.Background()
		if id != "" {
			ctx = metadata.AppendToOutgoingContext(ctx, server.RequestIDHeader, id)
		}
		var header metadata.MD
		if err := call(ctx, grpc.Header(&header)); err != nil && !fail.Load() {
			t.Fatal(err)
		}
		return header.Get(server.RequestIDHeader)
	}
	check := func(ctx context.Context, o grpc.CallOption) error {
		_, err := authz.Check(ctx, &pb.CheckRequest{}, o)
		return err
	}
	if got := headerOf("req-ok-1", check); len(got) != 0 {
		t.Errorf("an answered Check returned request id %v", got)
	}
	if got := headerOf("", check); len(got) != 0 {
		t.Errorf("an answered Check returned request id %v", got)
	}
	logged := false
	for _, e := range h.logs.FilterMessage("rpc").All() {
		logged = logged || e.ContextMap()["request_id"] == "req-ok-1"
	}
	if !logged {
		t.Error("the answered Check's log line lacks the request id the caller gave")
	}
	if got := headerOf("req-status-1", func(ctx context.Context, o grpc.CallOption) error {
		_, err := audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{}, o)
		return err
	}); len(got) != 1 || got[0] != "req-status-1" {
		t.Errorf("GetLogStatus returned request id %v, want req-status-1", got)
	}
	fail.Store(true)
	if got := headerOf("req-bad-1", check); len(got) != 1 || got[0] != "req-bad-1" {
		t.Errorf("a failed Check returned request id %v, want req-bad-1", got)
	}
	if got := headerOf("", check); len(got) != 1 || len(got[0]) != 24 {
		t.Errorf("a failed Check returned request id %v, want one made", got)
	}
}
