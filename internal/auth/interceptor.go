package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/peer"

	"github.com/crmauthz/crmauthz/internal/audit"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// DeniedError is a call the caller may not make: a scope, a tenant, a
// permission it lacks, or a right wider than the actor's own. It maps to
// PERMISSION_DENIED with the reason.
type DeniedError struct {
	Reason  string // MISSING_SCOPE, TENANT_NOT_ALLOWED, SUBJECT_NOT_ALLOWED, ACTOR_MISMATCH, MISSING_PERMISSION, ESCALATION
	Message string
	// Missing names what the caller lacks: a scope, a tenant, a function
	// or the first permission of an escalation.
	Missing string
	Tenant  string
	Actor   string
}

func (e *DeniedError) Error() string { return e.Message }

// Reasons of DeniedError.
const (
	ReasonMissingScope      = "MISSING_SCOPE"
	ReasonTenantNotAllowed  = "TENANT_NOT_ALLOWED"
	ReasonSubjectNotAllowed = "SUBJECT_NOT_ALLOWED"
	ReasonActorMismatch     = "ACTOR_MISMATCH"
	ReasonMissingPermission = "MISSING_PERMISSION"
	ReasonEscalation        = "ESCALATION"
)

// scopes maps each service to the scope its calls need.
var scopes = map[string]Scope{
	pb.AuthorizationService_ServiceDesc.ServiceName: ScopeCheck,
	pb.AdminService_ServiceDesc.ServiceName:         ScopeAdmin,
	pb.GovernanceService_ServiceDesc.ServiceName:    ScopeAdmin,
	pb.AuditService_ServiceDesc.ServiceName:         ScopeAudit,
	pb.PlatformService_ServiceDesc.ServiceName:      ScopePlatform,
}

// Open reports whether a method is served without a credential: health,
// so that load balancers and orchestrators can probe, and reflection,
// which shows the API, not data.
func Open(method string) bool {
	return strings.HasPrefix(method, "/grpc.health.v1.") || strings.HasPrefix(method, "/grpc.reflection.")
}

// UnaryInterceptor authenticates each call, checks its scope, its tenants
// and (for a credential bound to a user) its subject before the handler
// runs, passes the principal on in the context, and records refusals as
// security events.
func (a *Authenticator) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if Open(info.FullMethod) {
		return h(ctx, req)
	}
	ctx, err := a.admit(ctx, info.FullMethod, req)
	if err != nil {
		return nil, err
	}
	resp, err := h(ctx, req)
	a.recordDenied(ctx, info.FullMethod, err)
	return resp, err
}

// StreamInterceptor is UnaryInterceptor for streams: the request message
// is checked when the handler receives it.
func (a *Authenticator) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	if Open(info.FullMethod) {
		return h(srv, ss)
	}
	ctx, err := a.admit(ss.Context(), info.FullMethod, nil)
	if err != nil {
		return err
	}
	w := &checkedStream{ServerStream: ss, ctx: ctx, a: a, method: info.FullMethod}
	err = h(srv, w)
	a.recordDenied(ctx, info.FullMethod, err)
	return err
}

// checkedStream checks each received request as the unary path does.
type checkedStream struct {
	grpc.ServerStream
	ctx    context.Context
	a      *Authenticator
	method string
}

func (s *checkedStream) Context() context.Context { return s.ctx }

func (s *checkedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	return authorizeCall(FromContext(s.ctx), s.method, m)
}

// admit authenticates the call and checks its scope and, for a unary call,
// its request.
func (a *Authenticator) admit(ctx context.Context, method string, req any) (context.Context, error) {
	p, err := a.Authenticate(ctx)
	if err != nil {
		var un *UnauthenticatedError
		if errors.As(err, &un) {
			ev := a.event(ctx, audit.EventAuthnRefused, method)
			ev.Reason, ev.Message, ev.Credential = un.cause, un.Message, un.credential
			if ev.Reason == "" {
				ev.Reason = un.Reason
			}
			a.refused.add(ev)
		}
		return ctx, err
	}
	ctx = WithPrincipal(ctx, p)
	if err := authorizeCall(p, method, req); err != nil {
		a.recordDenied(ctx, method, err)
		return ctx, err
	}
	return ctx, nil
}

// authorizeCall checks what can be checked of a request before its
// handler runs: the service's scope, the tenants it names, and for a
// credential bound to a user, that decisions are asked about that user.
// With no request (a stream not yet read) it checks the scope alone.
func authorizeCall(p *Principal, method string, req any) error {
	svc := serviceOf(method)
	need, ok := scopes[svc]
	if !ok {
		return &DeniedError{Reason: ReasonMissingScope, Message: fmt.Sprintf("%s may not call %s", p.describe(), method)}
	}
	if !p.Has(need) {
		return &DeniedError{Reason: ReasonMissingScope, Missing: string(need),
			Message: fmt.Sprintf("%s lacks the %q scope that %s needs", p.describe(), need, svc)}
	}
	if req == nil {
		return nil
	}
	return eachTarget(req, func(tenant, subject string) error {
		if tenant != "" && !p.InTenant(tenant) {
			return &DeniedError{Reason: ReasonTenantNotAllowed, Missing: tenant, Tenant: tenant,
				Message: fmt.Sprintf("%s may not act in tenant %q", p.describe(), tenant)}
		}
		if p.User != "" && need == ScopeCheck && subject != p.User {
			return &DeniedError{Reason: ReasonSubjectNotAllowed, Missing: subject, Tenant: tenant,
				Message: fmt.Sprintf("%s is bound to user %q and may ask only about that user, not %q", p.describe(), p.User, subject)}
		}
		return nil
	})
}

func serviceOf(method string) string {
	method = strings.TrimPrefix(method, "/")
	svc, _, _ := strings.Cut(method, "/")
	return svc
}

// eachTarget calls fn with the tenant and subject of each question a
// request asks (one, or a batch's items); either is empty where the
// request names none.
func eachTarget(req any, fn func(tenant, subject string) error) error {
	if b, ok := req.(*pb.BatchCheckRequest); ok {
		for _, it := range b.GetItems() {
			if err := fn(it.GetTenantId(), it.GetSubjectId()); err != nil {
				return err
			}
		}
		return nil
	}
	var tenant, subject string
	if r, ok := req.(interface{ GetTenantId() string }); ok {
		tenant = r.GetTenantId()
	}
	if r, ok := req.(interface{ GetSubjectId() string }); ok {
		subject = r.GetSubjectId()
	}
	return fn(tenant, subject)
}

// recordDenied records a refused call as a security event.
func (a *Authenticator) recordDenied(ctx context.Context, method string, err error) {
	if err == nil {
		return // before d, which errors.As moves to the heap
	}
	var d *DeniedError
	if !errors.As(err, &d) {
		return
	}
	ev := a.event(ctx, audit.EventCallRefused, method)
	ev.Tenant, ev.Actor, ev.Reason, ev.Message, ev.Count = d.Tenant, d.Actor, d.Reason, d.Message, 1
	a.refused.emit(ev)
}

func (a *Authenticator) event(ctx context.Context, kind, method string) audit.SecurityEvent {
	ev := audit.SecurityEvent{Kind: kind, Method: method, RequestID: audit.Request(ctx).ID, Time: a.now()}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		ev.Peer = p.Addr.String()
	}
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		ev.Credential = p.Credential
	}
	return ev
}
