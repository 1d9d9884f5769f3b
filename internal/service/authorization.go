// Package service holds the gRPC handlers. They are thin: validate the
// request, call one engine or store method, convert the answer. Errors are
// returned as the domain produced them; the server maps them to status codes
// in one place (ToStatus).
package service

import (
	"context"
	"fmt"

	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Authorization implements pb.AuthorizationServiceServer.
type Authorization struct {
	pb.UnimplementedAuthorizationServiceServer
	eng      *engine.Engine
	maxBatch int
}

var _ pb.AuthorizationServiceServer = (*Authorization)(nil)

// NewAuthorization returns the handlers of AuthorizationService. maxBatch
// bounds the items of one BatchCheck.
func NewAuthorization(eng *engine.Engine, maxBatch int) *Authorization {
	return &Authorization{eng: eng, maxBatch: maxBatch}
}

// Check implements pb.AuthorizationServiceServer.
func (s *Authorization) Check(_ context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	p, err := permission(s.eng.Catalog(), req.GetPermission(), "permission")
	if err != nil {
		return nil, err
	}
	d, err := s.eng.Check(req.GetTenantId(), req.GetSubjectId(), p, req.GetExplain())
	if err != nil {
		return nil, err
	}
	return &pb.CheckResponse{Allowed: d.Allowed, Revision: d.Revision, Reasons: reasonsToProto(d.Reasons)}, nil
}

// BatchCheck implements pb.AuthorizationServiceServer. The whole batch is
// validated before anything is decided, so a bad item fails the call.
func (s *Authorization) BatchCheck(_ context.Context, req *pb.BatchCheckRequest) (*pb.BatchCheckResponse, error) {
	items := req.GetItems()
	if len(items) == 0 {
		return nil, model.Invalid("items", model.ReasonMissingField, "must hold at least one check")
	}
	if len(items) > s.maxBatch {
		return nil, model.Invalid("items", model.ReasonTooMany, fmt.Sprintf("must hold at most %d checks, got %d", s.maxBatch, len(items)))
	}
	perms := make([]model.Permission, len(items))
	for i, it := range items {
		prefix := fmt.Sprintf("items[%d]", i)
		if err := subject(prefix+".tenant_id", it.GetTenantId(), prefix+".subject_id", it.GetSubjectId()); err != nil {
			return nil, err
		}
		p, err := permission(s.eng.Catalog(), it.GetPermission(), prefix+".permission")
		if err != nil {
			return nil, err
		}
		perms[i] = p
	}
	results := make([]pb.BatchCheckResult, len(items))
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(items))}
	for i, it := range items {
		d, err := s.eng.Check(it.GetTenantId(), it.GetSubjectId(), perms[i], req.GetExplain())
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		r := &results[i]
		r.Allowed, r.Revision, r.Reasons = d.Allowed, d.Revision, reasonsToProto(d.Reasons)
		out.Results[i] = r
	}
	return out, nil
}

// GetFieldAccess implements pb.AuthorizationServiceServer.
func (s *Authorization) GetFieldAccess(_ context.Context, req *pb.GetFieldAccessRequest) (*pb.GetFieldAccessResponse, error) {
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	cat := s.eng.Catalog()
	if err := cat.CheckModule("module", req.GetModule()); err != nil {
		return nil, err
	}
	states, rev, err := s.eng.FieldAccess(req.GetTenantId(), req.GetSubjectId(), req.GetModule())
	if err != nil {
		return nil, err
	}
	fields := cat.Module(req.GetModule()).Fields
	out := &pb.GetFieldAccessResponse{Revision: rev, Fields: make([]*pb.FieldAccess, len(fields))}
	for i, f := range fields {
		out.Fields[i] = &pb.FieldAccess{Field: f, State: fieldStates[states[i]]}
	}
	return out, nil
}

// ListEffectivePermissions implements pb.AuthorizationServiceServer.
func (s *Authorization) ListEffectivePermissions(_ context.Context, req *pb.ListEffectivePermissionsRequest) (*pb.ListEffectivePermissionsResponse, error) {
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	eff, err := s.eng.EffectivePermissions(req.GetTenantId(), req.GetSubjectId())
	if err != nil {
		return nil, err
	}
	out := &pb.ListEffectivePermissionsResponse{Modules: moduleGrantsToProto(eff.Modules), Functions: eff.Functions, Revision: eff.Revision}
	for _, r := range eff.Roles {
		out.Roles = append(out.Roles, &pb.ActiveRole{RoleId: r.Role, ExpiresAt: timestamp(r.ExpiresAt)})
	}
	return out, nil
}
