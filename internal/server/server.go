// Package server assembles the gRPC server: interceptors, the crm-authz
// services, health and reflection, and graceful shutdown.
package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/metrics"
	"github.com/crmauthz/crmauthz/internal/service"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// RequestIDHeader is the metadata key of the request id: taken from the
// caller when it sends a valid one, generated otherwise, and returned in the
// response header (by a decision only when it fails, see idOnFailure).
const RequestIDHeader = "x-request-id"

// Server is the gRPC server of authzd.
type Server struct {
	grpc   *grpc.Server
	health *health.Server
	log    *zap.Logger
	ready  atomic.Bool
	// healthMu orders the changes of health; the states it guards are
	// kept from before SetReady, which applies them.
	healthMu     sync.Mutex
	notFollowing bool
	logDegraded  bool
	// stopping ends when Shutdown starts; it ends the health watches.
	stopping context.Context
	stop     context.CancelFunc
	// metrics counts the calls and their refusals; nil counts nothing.
	metrics *metrics.Metrics
	// authn admits the unary calls (unary calls it); streams chain it.
	authn *auth.Authenticator
}

// Options configures New.
type Options struct {
	Logger       *zap.Logger
	MaxRecvBytes int
	// Auth authenticates callers; nil serves without authentication.
	Auth *auth.Authenticator
	// Creds secures connections (TLS, mTLS); nil serves plaintext.
	Creds credentials.TransportCredentials
	// Metrics counts every call by method and code, with its duration,
	// and the calls refused as unauthenticated or denied; nil counts
	// nothing.
	Metrics *metrics.Metrics
	// Tracing, when set, gives every call a span (and follows a caller's
	// trace context); nil traces nothing.
	Tracing trace.TracerProvider
}

// Services are the crm-authz services the server registers.
type Services struct {
	Authorization pb.AuthorizationServiceServer
	Admin         pb.AdminServiceServer
	Governance    pb.GovernanceServiceServer
	Audit         pb.AuditServiceServer
	Platform      pb.PlatformServiceServer
}

// New builds the gRPC server with the services registered. Health reports
// NOT_SERVING and the services answer UNAVAILABLE until SetReady.
//
// Interceptors, outermost first, and why in that order:
//  1. recovery: a panic anywhere below becomes INTERNAL and is logged, so
//     it must wrap everything;
//  2. request id + logger fields: every later log line carries the id, and
//     so does recovery's (the request logger is handed back to it);
//  3. readiness: until the policy is loaded, answer UNAVAILABLE rather than
//     a wrong NOT_FOUND (health and reflection pass);
//  4. errors: domain errors become canonical status codes in one place, and
//     internal causes are logged, never sent;
//  5. authentication: the caller's credential, its scope, tenants and bound
//     subject are checked before any handler runs; it sits inside the
//     errors interceptor so its refusals map like every other error, and
//     it records refused calls, including those the handlers refuse (an
//     actor's missing permission, an escalation). Health and reflection
//     pass without a credential.
//
// For unary calls 1-5 are one function (unary), which calls the
// authenticator itself: a chain of interceptors costs a closure per call.
// Streams
// (AuditService.ExportDecisions, health watches) pass the same
// interceptors; health watches end when Shutdown starts (endWatch), since
// they would otherwise hold the graceful stop until its timeout.
//
// Metrics take place 3 when they exist; request validation happens in the
// handlers, which know the field paths.
// streamWorkers is how many goroutines serve calls, see New.
const streamWorkers = 64

func New(opts Options, svc Services) *Server {
	s := &Server{health: health.NewServer(), log: opts.Logger, metrics: opts.Metrics}
	s.stopping, s.stop = context.WithCancel(context.Background())
	authn := opts.Auth
	if authn == nil {
		authn = auth.NewAuthenticator(auth.Options{Logger: opts.Logger})
	}
	s.authn = authn
	sopts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(opts.MaxRecvBytes),
		// Calls run on long-lived workers, which keep the stack a call
		// grows to. A goroutine per call (gRPC's default) started small and
		// copied its stack on every Check: 8-11% of the server's CPU in a
		// profile at 50 callers, against 1.5% with workers. Beyond 64
		// calls in flight gRPC starts goroutines as before.
		grpc.NumStreamWorkers(streamWorkers),
		// Generated code, not reflection, encodes and decodes the Check
		// family's messages (codec.go).
		grpc.ForceServerCodecV2(newCodec()),
		grpc.UnaryInterceptor(s.unary),
		grpc.ChainStreamInterceptor(s.recoverStream, s.requestIDStream, s.readyStream, s.errorsStream, authn.StreamInterceptor, s.endWatch),
	}
	if opts.Creds != nil {
		sopts = append(sopts, grpc.Creds(opts.Creds))
	}
	if opts.Tracing != nil {
		sopts = append(sopts, grpc.StatsHandler(otelgrpc.NewServerHandler(otelgrpc.WithTracerProvider(opts.Tracing))))
	}
	s.grpc = grpc.NewServer(sopts...)
	pb.RegisterAuthorizationServiceServer(s.grpc, svc.Authorization)
	pb.RegisterAdminServiceServer(s.grpc, svc.Admin)
	if svc.Governance != nil {
		pb.RegisterGovernanceServiceServer(s.grpc, svc.Governance)
	}
	pb.RegisterAuditServiceServer(s.grpc, svc.Audit)
	if svc.Platform != nil {
		pb.RegisterPlatformServiceServer(s.grpc, svc.Platform)
	}
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	s.setHealth(healthpb.HealthCheckResponse_NOT_SERVING)
	return s
}

// healthNames are the names health answers for: the server's own ("")
// and each service's.
var healthNames = []string{"", pb.AuthorizationService_ServiceDesc.ServiceName, pb.AdminService_ServiceDesc.ServiceName,
	pb.GovernanceService_ServiceDesc.ServiceName, pb.AuditService_ServiceDesc.ServiceName, pb.PlatformService_ServiceDesc.ServiceName}

func (s *Server) setHealth(st healthpb.HealthCheckResponse_ServingStatus) {
	for _, name := range healthNames {
		s.health.SetServingStatus(name, st)
	}
}

// SetReady marks the policy loaded: health turns SERVING, but for what
// SetFollowing and SetLogDegraded reported meanwhile.
func (s *Server) SetReady() {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.ready.Store(true)
	s.applyHealth()
}

// SetFollowing reports whether the replica follows the other replicas'
// writes: a replica that does not answers NOT_SERVING for the server as a
// whole and for the authorization service, whose decisions may be stale,
// so that load balancers route around it; writes, which go to the
// database, stay served.
func (s *Server) SetFollowing(following bool) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.notFollowing = !following
	s.applyHealth()
}

// SetLogDegraded reports whether the decision log's writes fail (the
// database is away): AuditService, whose answers come from the database,
// is NOT_SERVING meanwhile. Decisions are still answered: they wait in the
// decision spool.
func (s *Server) SetLogDegraded(degraded bool) {
	s.healthMu.Lock()
	defer s.healthMu.Unlock()
	s.logDegraded = degraded
	s.applyHealth()
}

// applyHealth sets the health of every service from the states reported,
// once the server is ready and until it stops. The caller holds healthMu.
func (s *Server) applyHealth() {
	if !s.ready.Load() || s.stopping.Err() != nil {
		return
	}
	serving := func(ok bool) healthpb.HealthCheckResponse_ServingStatus {
		if ok {
			return healthpb.HealthCheckResponse_SERVING
		}
		return healthpb.HealthCheckResponse_NOT_SERVING
	}
	for _, name := range healthNames {
		ok := true
		switch name {
		case "", pb.AuthorizationService_ServiceDesc.ServiceName:
			ok = !s.notFollowing
		case pb.AuditService_ServiceDesc.ServiceName:
			ok = !s.logDegraded
		}
		s.health.SetServingStatus(name, serving(ok))
	}
}

// Serve serves on lis until Shutdown.
func (s *Server) Serve(lis net.Listener) error {
	if err := s.grpc.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

// Shutdown turns health NOT_SERVING so load balancers drain, ends the
// health watches, lets running calls finish within timeout, then cuts the
// rest.
func (s *Server) Shutdown(timeout time.Duration) {
	s.health.Shutdown()
	s.stop()
	done := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		s.log.Warn("graceful stop timed out; closing remaining calls", zap.Duration("timeout", timeout))
		s.grpc.Stop()
		<-done
	}
}

// Stop cuts every call and ends the stream workers New started; Shutdown
// stops gracefully first. Stopping again does nothing.
func (s *Server) Stop() { s.grpc.Stop() }

// call is what the interceptors know of one call: its method, request id
// and peer, and the logger carrying them, made only when something logs:
// a decision logs nothing, and a logger with fields costs more than the
// decision itself.
type call struct {
	base   *zap.Logger
	method string
	id     string
	peer   net.Addr
	once   sync.Once
	log    *zap.Logger
	// req is what the decision log reads of the call (audit.WithRequestRef):
	// kept here, it costs no allocation of its own.
	req   audit.RequestInfo
	start time.Time
}

type callKey struct{}

// logger returns the call's logger.
func (c *call) logger() *zap.Logger {
	c.once.Do(func() { c.log = c.base.With(c.fields()...) })
	return c.log
}

// fields are the call's log fields.
func (c *call) fields() []zap.Field {
	fields := make([]zap.Field, 0, 5)
	if c.id != "" {
		fields = append(fields, zap.String("request_id", c.id))
	}
	fields = append(fields, zap.String("method", c.method))
	if c.peer != nil {
		fields = append(fields, zap.Stringer("peer", c.peer))
	}
	return fields
}

// Logger returns the request's logger (with request id and method), or
// fallback outside a request.
func Logger(ctx context.Context, fallback *zap.Logger) *zap.Logger {
	if c, ok := ctx.Value(callKey{}).(*call); ok {
		return c.logger()
	}
	return fallback
}

// stream is a grpc.ServerStream with another context.
type stream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *stream) Context() context.Context { return s.ctx }

// unary is the unary interceptors 1-4 above in one: on the hot path every
// interceptor of a chain is another closure and frame per call.
func (s *Server) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	c := &call{base: s.log, method: info.FullMethod}
	// A decision's answer carries no request id: see idOnFailure.
	setHeader, onFailure := grpc.SetHeader, idOnFailure(info.FullMethod)
	if onFailure {
		setHeader = nil
	}
	started := false
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error("panic in handler", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			resp, err = nil, status.Error(codes.Internal, "internal error")
		}
		if started {
			if onFailure && err != nil {
				returnRequestID(ctx, c.id, grpc.SetHeader)
			}
			s.endRequest(c, err) // the call's end, with the code it ended with
		}
	}()
	ctx = context.WithValue(ctx, callKey{}, c)
	ctx = s.startRequest(ctx, c, setHeader)
	started = true
	if !s.ready.Load() && !alwaysAvailable(info.FullMethod) {
		return nil, status.Error(codes.Unavailable, "policy is still loading")
	}
	resp, err = s.authn.UnaryInterceptor(ctx, req, info, h)
	if err == nil {
		return resp, nil
	}
	st, internal := service.ToStatus(err)
	if internal {
		c.logger().Error("internal error", zap.Error(err))
	}
	return nil, st.Err()
}

func (s *Server) recoverStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) (err error) {
	c := &call{base: s.log, method: info.FullMethod}
	defer func() {
		if r := recover(); r != nil {
			c.logger().Error("panic in stream handler", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
			err = status.Error(codes.Internal, "internal error")
		}
	}()
	return h(srv, &stream{ServerStream: ss, ctx: context.WithValue(ss.Context(), callKey{}, c)})
}

func (s *Server) requestIDStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx := ss.Context()
	c := ctx.Value(callKey{}).(*call) // recoverStream, first in the chain, made it
	ctx = s.startRequest(ctx, c, func(_ context.Context, md metadata.MD) error { return ss.SetHeader(md) })
	err := h(srv, &stream{ServerStream: ss, ctx: ctx})
	s.endRequest(c, err)
	return err
}

// startRequest takes or makes the request id of the call c (whose context
// ctx carries it: the recovery step made it), returns it in the response
// header with setHeader unless that is nil, and returns the request's
// context, carrying audit.RequestInfo. endRequest logs the call's end.
func (s *Server) startRequest(ctx context.Context, c *call, setHeader func(context.Context, metadata.MD) error) context.Context {
	id := ""
	if v := metadata.ValueFromIncomingContext(ctx, RequestIDHeader); len(v) > 0 && validRequestID(v[0]) {
		id = v[0]
	}
	if id == "" {
		id = newRequestID()
	}
	if setHeader != nil {
		returnRequestID(ctx, id, setHeader)
	}
	c.id, c.req.ID = id, id
	if p, ok := peer.FromContext(ctx); ok {
		c.peer, c.req.Peer = p.Addr, p.Addr
	}
	c.start = time.Now()
	return audit.WithRequestRef(ctx, &c.req)
}

// returnRequestID returns the request id in the response header with
// setHeader.
func returnRequestID(ctx context.Context, id string, setHeader func(context.Context, metadata.MD) error) {
	md := headerMDs.Get().(metadata.MD)
	md[RequestIDHeader][0] = id
	_ = setHeader(ctx, md)
	md[RequestIDHeader][0] = ""
	headerMDs.Put(md)
}

// idOnFailure reports whether a unary method returns its request id only
// when it fails: the calls of AuthorizationService, the decisions. A
// request id is new with every call, so in the header it is a literal
// that both ends' HPACK tables take in and evict again, beside three
// allocations on the server and more on the caller: under check-8 load at
// 10,000 tenants a Check answered with it ran at 0.85-0.87 of the no-op,
// without it at 0.90-0.93, with 2-3 us less of authzd's CPU per call
// (four interleaved runs each). A decision's answer names its audit entry
// (decision_id), which holds the request id; a caller that wants the id
// in its own logs sends it (x-request-id), and a failed call returns it.
func idOnFailure(method string) bool { return strings.HasPrefix(method, authorizationPrefix) }

// headerMDs hold the metadata a call's request id is returned with:
// SetHeader copies what it is given (metadata.Join), so one serves call
// after call, where a map made per call was two objects more for the
// collector.
var headerMDs = sync.Pool{New: func() any { return metadata.MD{RequestIDHeader: make([]string, 1)} }}

// The method prefixes of the services whose calls log at info, made once
// rather than on every call's end.
var (
	adminPrefix         = "/" + pb.AdminService_ServiceDesc.ServiceName + "/"
	authorizationPrefix = "/" + pb.AuthorizationService_ServiceDesc.ServiceName + "/"
	governancePrefix    = "/" + pb.GovernanceService_ServiceDesc.ServiceName + "/"
)

// endRequest logs the end of the call c, which ended with err, and counts
// it.
func (s *Server) endRequest(c *call, err error) {
	code := status.Code(err)
	level := zap.DebugLevel
	if strings.HasPrefix(c.method, adminPrefix) || strings.HasPrefix(c.method, governancePrefix) {
		level = zap.InfoLevel // admin calls are rare and worth a line each
	}
	if code == codes.Internal || code == codes.Unknown {
		level = zap.ErrorLevel
	}
	ce := s.log.Check(level, "rpc")
	if ce == nil && s.metrics == nil {
		return // a Check at debug level with metrics off reads no clock
	}
	took := time.Since(c.start)
	if ce != nil {
		ce.Write(append(c.fields(), zap.String("code", code.String()), zap.Duration("duration", took))...)
	}
	if s.metrics != nil {
		s.metrics.Call(c.method, code, took)
		if code == codes.Unauthenticated || code == codes.PermissionDenied {
			s.metrics.Refused(code, errorReason(err))
		}
	}
}

// errorReason is the google.rpc.ErrorInfo reason of a status error.
func errorReason(err error) string {
	for _, d := range status.Convert(err).Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok {
			return info.GetReason()
		}
	}
	return ""
}

func (s *Server) readyStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if !s.ready.Load() && !alwaysAvailable(info.FullMethod) {
		return status.Error(codes.Unavailable, "policy is still loading")
	}
	return h(srv, ss)
}

// alwaysAvailable: health and reflection answer during start-up too.
func alwaysAvailable(method string) bool { return auth.Open(method) }

func (s *Server) errorsStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	if err == nil {
		return nil
	}
	st, internal := service.ToStatus(err)
	if internal {
		Logger(ss.Context(), s.log).Error("internal error", zap.Error(err))
	}
	return st.Err()
}

// endWatch ends a health watch when Shutdown starts: grpc's health server
// keeps a watch open until the client leaves, so GracefulStop would wait for
// it until the shutdown timeout. The watch ends CANCELLED, as a rule after
// health.Shutdown has sent it NOT_SERVING.
func (s *Server) endWatch(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if info.FullMethod != healthpb.Health_Watch_FullMethodName {
		return h(srv, ss)
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	defer context.AfterFunc(s.stopping, cancel)()
	return h(srv, &stream{ServerStream: ss, ctx: ctx})
}

// newRequestID makes a request id: 24 hex digits, a random prefix drawn
// once per process and a counter. Ids need to be unique, not secret, and a
// call should not cost a read of the system's random source.
func newRequestID() string {
	var b [24]byte
	hex.Encode(b[:8], requestIDPrefix[:])
	n := requestIDCounter.Add(1)
	const digits = "0123456789abcdef"
	for i := len(b) - 1; i >= 8; i-- {
		b[i] = digits[n&0xf]
		n >>= 4
	}
	return string(b[:])
}

var (
	requestIDPrefix = func() (p [4]byte) {
		_, _ = rand.Read(p[:])
		return p
	}()
	requestIDCounter atomic.Uint64
)

// validRequestID accepts caller ids of 1-64 printable ASCII characters
// without spaces, so they are safe in logs.
func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] <= ' ' || id[i] > '~' {
			return false
		}
	}
	return true
}
