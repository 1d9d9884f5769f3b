// Package service holds the gRPC handlers. They are thin: validate the
// request, call one engine or store method, convert the answer. Errors are
// returned as the domain produced them; the server maps them to status codes
// in one place (ToStatus).
package service

import (
	"context"
	"fmt"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/metrics"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Authorization implements pb.AuthorizationServiceServer.
type Authorization struct {
	pb.UnimplementedAuthorizationServiceServer
	eng      *engine.Engine
	maxBatch int
	log      DecisionLog
	fresh    *Freshness
	// metrics counts decisions by kind and result; nil counts nothing.
	metrics *metrics.Metrics
	// clock, when set, is the engine's clock, which is not the wall clock
	// (tests): a decision's time is then read from it, so that it is the
	// time the engine decided at, which an explanation after the fact
	// decides at again. Unset, the time is the call's start.
	clock func() time.Time
}

var _ pb.AuthorizationServiceServer = (*Authorization)(nil)

// DecisionLog records decisions; *audit.Log implements it. Record returns
// the entry's id (empty when the overflow policy dropped it). In the
// asynchronous mode it does not wait on I/O, only for room in a full queue
// under the block policy; an error (the synchronous mode could not make the
// entry durable, or the caller's context ended while waiting) fails the
// call.
type DecisionLog interface {
	Record(ctx context.Context, d audit.Decision) (id string, err error)
}

// NewAuthorization returns the handlers of AuthorizationService. maxBatch
// bounds the items of one BatchCheck; log records every decision (nil: the
// decision log is off); fresh waits for the revisions reads ask for.
func NewAuthorization(eng *engine.Engine, maxBatch int, log DecisionLog, fresh *Freshness) *Authorization {
	return &Authorization{eng: eng, maxBatch: maxBatch, log: log, fresh: fresh}
}

// WithMetrics makes the service count its decisions in m.
func (s *Authorization) WithMetrics(m *metrics.Metrics) *Authorization {
	s.metrics = m
	return s
}

// metricKind is the metrics' kind of a permission.
func metricKind(p model.Permission) int {
	switch {
	case p.Record != nil:
		return metrics.KindRecord
	case p.Kind == model.KindField:
		return metrics.KindField
	case p.Kind == model.KindFunction:
		return metrics.KindFunction
	}
	return metrics.KindModule
}

// WithClock makes decisions logged at now's time: the engine's clock, when
// it is not the wall clock.
func (s *Authorization) WithClock(now func() time.Time) *Authorization {
	s.clock = now
	return s
}

// record writes one decision to the decision log.
func (s *Authorization) record(ctx context.Context, method, tenant, subject string, p model.Permission, d engine.Decision, start time.Time) (string, error) {
	if s.metrics != nil {
		s.metrics.Decision(metricKind(p), d.Allowed)
	}
	if s.log == nil {
		return "", nil
	}
	// The hot path formats nothing: the log derives the stored permission
	// text, module and record from p in its batcher.
	e := s.decision(ctx, method, tenant, subject, start)
	e.Perm, e.Allowed, e.Revision, e.Latency = p, d.Allowed, d.Revision, time.Since(start)
	if len(d.Reasons) > 0 {
		e.Reasons = make([]string, len(d.Reasons))
		for i, r := range d.Reasons {
			e.Reasons[i] = r.Message
		}
	}
	return s.log.Record(ctx, e)
}

// decision returns the decision-log entry of a call: who asked whom about
// whom, and when.
func (s *Authorization) decision(ctx context.Context, method, tenant, subject string, start time.Time) audit.Decision {
	req := audit.Request(ctx)
	var caller string
	if p := auth.FromContext(ctx); p.Credential != "" {
		caller = p.Credential
	} else if req.Peer != nil {
		caller = req.Peer.String()
	}
	at := start
	if s.clock != nil {
		at = s.clock()
	}
	return audit.Decision{Time: at, Method: method, Caller: caller, RequestID: req.ID, Tenant: tenant, Subject: subject}
}

// Check implements pb.AuthorizationServiceServer.
func (s *Authorization) Check(ctx context.Context, req *pb.CheckRequest) (*pb.CheckResponse, error) {
	start := time.Now()
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	p, err := permission(s.eng.Catalog(), req.GetPermission(), "permission")
	if err != nil {
		return nil, err
	}
	if rev := req.GetAtLeastRevision(); rev != 0 {
		if err := s.fresh.atLeast(ctx, "at_least_revision", req.GetTenantId(), rev); err != nil {
			return nil, err
		}
	}
	d, err := s.eng.Check(req.GetTenantId(), req.GetSubjectId(), p, req.GetExplain())
	if err != nil {
		return nil, err
	}
	id, err := s.record(ctx, "Check", req.GetTenantId(), req.GetSubjectId(), p, d, start)
	if err != nil {
		return nil, err
	}
	return &pb.CheckResponse{Allowed: d.Allowed, Revision: d.Revision, Reasons: reasonsToProto(d.Reasons), DecisionId: id}, nil
}

// BatchCheck implements pb.AuthorizationServiceServer. The whole batch is
// validated before anything is decided, so a bad item fails the call.
func (s *Authorization) BatchCheck(ctx context.Context, req *pb.BatchCheckRequest) (*pb.BatchCheckResponse, error) {
	start := time.Now()
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
	for i, it := range items {
		if rev := it.GetAtLeastRevision(); rev != 0 {
			if err := s.fresh.atLeast(ctx, fmt.Sprintf("items[%d].at_least_revision", i), it.GetTenantId(), rev); err != nil {
				return nil, err
			}
		}
	}
	// Every item is decided before any is recorded: a batch that fails (an
	// unknown tenant) answers nothing, so it logs no decision either.
	ds := make([]engine.Decision, len(items))
	for i, it := range items {
		d, err := s.eng.Check(it.GetTenantId(), it.GetSubjectId(), perms[i], req.GetExplain())
		if err != nil {
			return nil, fmt.Errorf("items[%d]: %w", i, err)
		}
		ds[i] = d
	}
	// In the decision log's sync mode the items' entries are awaited
	// together, so a batch shares group commits instead of taking one each.
	ctx, wait := audit.WithDeferred(ctx)
	results := make([]pb.BatchCheckResult, len(items))
	out := &pb.BatchCheckResponse{Results: make([]*pb.BatchCheckResult, len(items))}
	for i, it := range items {
		d := ds[i]
		id, err := s.record(ctx, "BatchCheck", it.GetTenantId(), it.GetSubjectId(), perms[i], d, start)
		if err != nil {
			return nil, err
		}
		r := &results[i]
		r.Allowed, r.Revision, r.Reasons, r.DecisionId = d.Allowed, d.Revision, reasonsToProto(d.Reasons), id
		out.Results[i] = r
	}
	if err := wait.Wait(ctx); err != nil {
		return nil, err
	}
	return out, nil
}

// CheckPage implements pb.AuthorizationServiceServer.
func (s *Authorization) CheckPage(ctx context.Context, req *pb.CheckPageRequest) (*pb.CheckPageResponse, error) {
	start := time.Now()
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	nperm, nrec := len(req.GetPermissions()), len(req.GetRecords())
	switch {
	case nperm+nrec == 0:
		return nil, model.Invalid("permissions", model.ReasonMissingField, "a page must ask about at least one permission or record")
	case nperm+nrec > s.maxBatch:
		field := "records"
		if nrec == 0 {
			field = "permissions"
		}
		return nil, model.Invalid(field, model.ReasonTooMany, fmt.Sprintf("permissions and records must be at most %d together, got %d", s.maxBatch, nperm+nrec))
	}
	cat := s.eng.Catalog()
	perms := make([]model.Permission, nperm+nrec)
	for i, p := range req.GetPermissions() {
		mp, err := permission(cat, p, fmt.Sprintf("permissions[%d]", i))
		if err != nil {
			return nil, err
		}
		perms[i] = mp
	}
	var onRecords model.Permission
	if nrec > 0 {
		rp := req.GetRecordPermission()
		if rp == nil {
			return nil, model.Invalid("record_permission", model.ReasonMissingField, "is required with records")
		}
		if rp.GetModule() == nil || rp.GetModule().GetRecord() != nil {
			return nil, model.Invalid("record_permission", model.ReasonInvalidValue, "must be a module permission naming no record")
		}
		var err error
		if onRecords, err = permission(cat, rp, "record_permission"); err != nil {
			return nil, err
		}
		recs := make([]model.Record, nrec)
		for i, r := range req.GetRecords() {
			recs[i] = model.Record{ID: r.GetId(), Owner: r.GetOwnerId(), Department: r.GetDepartmentId()}
			if field, err := recs[i].Check(); err != nil {
				return nil, model.Invalid(fmt.Sprintf("records[%d].%s", i, field), model.ReasonInvalidIdentifier, err.Error())
			}
			p := onRecords
			p.Record = &recs[i]
			perms[nperm+i] = p
		}
	}
	if err := s.fresh.atLeast(ctx, "at_least_revision", req.GetTenantId(), req.GetAtLeastRevision()); err != nil {
		return nil, err
	}
	allowed := make([]bool, len(perms))
	rev, err := s.eng.CheckPage(req.GetTenantId(), req.GetSubjectId(), perms, allowed)
	if err != nil {
		return nil, err
	}
	out := &pb.CheckPageResponse{PermissionsAllowed: allowed[:nperm:nperm], RecordsAllowed: allowed[nperm:], Revision: rev}
	if s.metrics != nil {
		var n [metrics.Kinds][2]int
		for i, ok := range allowed {
			n[metricKind(perms[i])][b2i(ok)]++
		}
		s.metrics.Decisions(&n)
	}
	if s.log == nil {
		return out, nil
	}
	// One entry per page: the page's permission (the records' when it has
	// records), allowed when every item is, and which items were not.
	e := s.decision(ctx, "CheckPage", req.GetTenantId(), req.GetSubjectId(), start)
	e.Perm, e.Revision = perms[0], rev
	if nrec > 0 {
		e.Perm = onRecords
	}
	var denied []model.Permission
	for i, ok := range allowed {
		if !ok {
			denied = append(denied, perms[i])
		}
	}
	e.Allowed = len(denied) == 0
	e.Reasons = audit.PageReasons(nperm, nrec, denied)
	e.Latency = time.Since(start)
	if out.DecisionId, err = s.log.Record(ctx, e); err != nil {
		return nil, err
	}
	return out, nil
}

// GetFieldAccess implements pb.AuthorizationServiceServer.
func (s *Authorization) GetFieldAccess(ctx context.Context, req *pb.GetFieldAccessRequest) (*pb.GetFieldAccessResponse, error) {
	start := time.Now()
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	cat := s.eng.Catalog()
	if err := cat.CheckModule("module", req.GetModule()); err != nil {
		return nil, err
	}
	rec := record(req.GetRecord())
	if rec != nil {
		if err := rec.Validate("record"); err != nil {
			return nil, err
		}
	}
	if err := s.fresh.atLeast(ctx, "at_least_revision", req.GetTenantId(), req.GetAtLeastRevision()); err != nil {
		return nil, err
	}
	states, rev, err := s.eng.FieldAccess(req.GetTenantId(), req.GetSubjectId(), req.GetModule(), rec)
	if err != nil {
		return nil, err
	}
	fields := cat.Module(req.GetModule()).Fields
	out := &pb.GetFieldAccessResponse{Revision: rev, Fields: make([]*pb.FieldAccess, len(fields))}
	visible := false
	for i, f := range fields {
		out.Fields[i] = &pb.FieldAccess{Field: f, State: fieldStates[states[i]]}
		visible = visible || states[i] != model.FieldHidden
	}
	p := model.Permission{Kind: model.KindModule, Module: req.GetModule(), Verb: model.VerbRead, Record: rec}
	out.DecisionId, err = s.record(ctx, "GetFieldAccess", req.GetTenantId(), req.GetSubjectId(), p, engine.Decision{Allowed: visible, Revision: rev}, start)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// PlanRecordFilter implements pb.AuthorizationServiceServer.
func (s *Authorization) PlanRecordFilter(ctx context.Context, req *pb.PlanRecordFilterRequest) (*pb.PlanRecordFilterResponse, error) {
	start := time.Now()
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	cat := s.eng.Catalog()
	if err := cat.CheckModule("module", req.GetModule()); err != nil {
		return nil, err
	}
	if err := cat.CheckVerb("verb", req.GetVerb()); err != nil {
		return nil, err
	}
	cols, first, err := sqlOptions(req.GetColumns(), req.GetFirstParameter())
	if err != nil {
		return nil, err
	}
	if err := s.fresh.atLeast(ctx, "at_least_revision", req.GetTenantId(), req.GetAtLeastRevision()); err != nil {
		return nil, err
	}
	f, err := s.eng.PlanFilter(req.GetTenantId(), req.GetSubjectId(), req.GetModule(), req.GetVerb())
	if err != nil {
		return nil, err
	}
	out := filterToProto(f, cols, first)
	p := model.ModulePerm(req.GetModule(), req.GetVerb())
	out.DecisionId, err = s.record(ctx, "PlanRecordFilter", req.GetTenantId(), req.GetSubjectId(), p, engine.Decision{Allowed: f.Kind != engine.FilterNone, Revision: f.Revision}, start)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ListEffectivePermissions implements pb.AuthorizationServiceServer.
func (s *Authorization) ListEffectivePermissions(ctx context.Context, req *pb.ListEffectivePermissionsRequest) (*pb.ListEffectivePermissionsResponse, error) {
	if err := subject("tenant_id", req.GetTenantId(), "subject_id", req.GetSubjectId()); err != nil {
		return nil, err
	}
	if err := s.fresh.atLeast(ctx, "at_least_revision", req.GetTenantId(), req.GetAtLeastRevision()); err != nil {
		return nil, err
	}
	eff, err := s.eng.EffectivePermissions(req.GetTenantId(), req.GetSubjectId())
	if err != nil {
		return nil, err
	}
	out := &pb.ListEffectivePermissionsResponse{Modules: moduleGrantsToProto(eff.Modules, true), Functions: eff.Functions, Revision: eff.Revision}
	for _, r := range eff.Roles {
		out.Roles = append(out.Roles, &pb.ActiveRole{RoleId: r.Role, ExpiresAt: timestamp(r.ExpiresAt)})
	}
	return out, nil
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
