package service

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Audit implements pb.AuditServiceServer over the decision log and the
// store's change log.
type Audit struct {
	pb.UnimplementedAuditServiceServer
	log    *audit.Log
	events *audit.SecurityLog
	store  store.Store
	eng    *engine.Engine
	// follower reports the replica's following (nil: none runs).
	follower Follower
	now      func() time.Time
	// authentication says how callers authenticate, for GetLogStatus.
	authentication string
}

var (
	_ pb.AuditServiceServer = (*Audit)(nil)
	_ DecisionLog           = (*audit.Log)(nil)
)

// NewAudit returns the handlers of AuditService. follower reports the
// replica's following (nil when none runs); now is the clock of the access
// review's window; authentication says how callers authenticate.
func NewAudit(log *audit.Log, events *audit.SecurityLog, st store.Store, eng *engine.Engine, follower Follower, now func() time.Time, authentication string) *Audit {
	return &Audit{log: log, events: events, store: st, eng: eng, follower: follower, now: now, authentication: authentication}
}

// maxEventKindLength bounds the kind filter of ListSecurityEvents.
const maxEventKindLength = 64

// ListSecurityEvents implements pb.AuditServiceServer. A caller sees the
// events of the tenants its credential may act in; only a caller with
// every tenant also sees the events of no tenant (refused
// authentications before any credential was known).
func (s *Audit) ListSecurityEvents(ctx context.Context, req *pb.ListSecurityEventsRequest) (*pb.ListSecurityEventsResponse, error) {
	q := audit.SecurityQuery{Kind: req.GetKind(), NewestFirst: req.GetNewestFirst()}
	if t := req.GetTenantId(); t != "" {
		if err := model.ValidateTenantID("tenant_id", t); err != nil {
			return nil, err
		}
		q.Tenants = []string{t}
	}
	if err := model.ValidateText("kind", q.Kind, maxEventKindLength, false); err != nil {
		return nil, err
	}
	var err error
	if q.From, q.To, err = timeRange(req.GetStartTime(), req.GetEndTime()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, req.GetTenantId()); err != nil {
		return nil, err
	}
	if p := auth.FromContext(ctx); q.Tenants == nil && p.Tenants != nil {
		q.Tenants = p.Tenants
	}
	page, err := s.events.List(ctx, q, size, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &pb.ListSecurityEventsResponse{NextPageToken: page.Next}
	for _, ev := range page.Events {
		out.Events = append(out.Events, &pb.SecurityEvent{
			EventId: ev.ID, EventTime: timestamp(ev.Time), Kind: ev.Kind, TenantId: ev.Tenant, Credential: ev.Credential,
			ActorId: ev.Actor, Method: ev.Method, Reason: ev.Reason, Message: ev.Message, RequestId: ev.RequestID,
			Peer: ev.Peer, Count: ev.Count,
		})
	}
	return out, nil
}

// fnAuditView is the function a user needs to read the audit logs.
const fnAuditView = "audit.view"

// mayAudit refuses a credential bound to a user unless the user holds
// audit.view in the tenant (the credential's one tenant when the call names
// none). An audit credential without a bound user is an auditors' tool and
// needs nothing more; the interceptor checked its scope and tenants.
func (s *Audit) mayAudit(ctx context.Context, tenant string) error {
	p := auth.FromContext(ctx)
	if p.User == "" {
		return nil
	}
	if tenant == "" && len(p.Tenants) == 1 {
		tenant = p.Tenants[0]
	}
	d, err := s.eng.Check(tenant, p.User, model.FunctionPerm(fnAuditView), false)
	if err != nil {
		return err
	}
	if !d.Allowed {
		return &auth.DeniedError{Reason: auth.ReasonMissingPermission, Missing: fnAuditView, Tenant: tenant, Actor: p.User,
			Message: fmt.Sprintf("user %q lacks the function %s in tenant %q", p.User, fnAuditView, tenant)}
	}
	return nil
}

// knownTenant answers NOT_FOUND (TENANT_NOT_FOUND) for a tenant this
// server has not loaded, as every other call naming a tenant does, rather
// than an empty listing or a missing decision. The engine knows the loaded
// tenants; the store is read only for a tenant the engine does not know,
// which may have been deleted: its logs stay readable for auditors. When
// the store cannot say (the database is away), neither can this.
// Callers check their request first.
func (s *Audit) knownTenant(ctx context.Context, id string) error {
	_, err := s.eng.Revision(id)
	if !errors.Is(err, model.ErrTenantNotFound) {
		return err
	}
	info, ierr := s.store.TenantInfo(ctx, id)
	switch {
	case ierr == nil && info.Deleted():
		return nil
	case ierr != nil && !errors.Is(ierr, model.ErrTenantNotFound):
		return ierr
	}
	return err
}

// Limits of the audit filters.
const (
	maxCallerLength    = 256
	maxRequestIDLength = 64
	maxActionLength    = 64
	maxTargetLength    = 512
	maxUnusedDays      = 3650
	defaultUnusedDays  = 90
)

var methods = map[pb.DecisionMethod]string{
	pb.DecisionMethod_DECISION_METHOD_CHECK:              audit.MethodCheck,
	pb.DecisionMethod_DECISION_METHOD_BATCH_CHECK:        audit.MethodBatchCheck,
	pb.DecisionMethod_DECISION_METHOD_GET_FIELD_ACCESS:   audit.MethodGetFieldAccess,
	pb.DecisionMethod_DECISION_METHOD_PLAN_RECORD_FILTER: audit.MethodPlanRecordFilter,
	pb.DecisionMethod_DECISION_METHOD_DROPPED_MARKER:     audit.MethodDropped,
	pb.DecisionMethod_DECISION_METHOD_CHECK_PAGE:         audit.MethodCheckPage,
}

var methodsByName = func() map[string]pb.DecisionMethod {
	out := map[string]pb.DecisionMethod{}
	for k, v := range methods {
		out[v] = k
	}
	return out
}()

// decisionFilters is what ListDecisionsRequest and ExportDecisionsRequest
// share.
type decisionFilters interface {
	GetTenantId() string
	GetSubjectId() string
	GetPermission() *pb.Permission
	GetModule() string
	GetResult() pb.DecisionResult
	GetMethod() pb.DecisionMethod
	GetCaller() string
	GetRequestId() string
	GetRecordId() string
	GetStartTime() *timestamppb.Timestamp
	GetEndTime() *timestamppb.Timestamp
}

// decisionQuery validates the filters of a decision query.
func (s *Audit) decisionQuery(r decisionFilters) (audit.Query, error) {
	q := audit.Query{Tenant: r.GetTenantId(), Subject: r.GetSubjectId(), Module: r.GetModule(), Caller: r.GetCaller(),
		RequestID: r.GetRequestId(), RecordID: r.GetRecordId()}
	if err := model.ValidateTenantID("tenant_id", q.Tenant); err != nil {
		return q, err
	}
	if q.Subject != "" {
		if err := model.ValidateSubjectID("subject_id", q.Subject); err != nil {
			return q, err
		}
	}
	if r.GetPermission() != nil {
		p, err := permission(s.eng.Catalog(), r.GetPermission(), "permission")
		if err != nil {
			return q, err
		}
		q.Permission = audit.PermissionText(p)
	}
	if q.Module != "" {
		if err := model.ValidateName("module", q.Module); err != nil {
			return q, err
		}
	}
	switch r.GetResult() {
	case pb.DecisionResult_DECISION_RESULT_UNSPECIFIED:
	case pb.DecisionResult_DECISION_RESULT_ALLOWED:
		q.Result = audit.ResultAllow
	case pb.DecisionResult_DECISION_RESULT_DENIED:
		q.Result = audit.ResultDeny
	default:
		return q, model.Invalid("result", model.ReasonInvalidValue, "unknown decision result")
	}
	if m := r.GetMethod(); m != pb.DecisionMethod_DECISION_METHOD_UNSPECIFIED {
		var ok bool
		if q.Method, ok = methods[m]; !ok {
			return q, model.Invalid("method", model.ReasonInvalidValue, "unknown decision method")
		}
	}
	if err := model.ValidateText("caller", q.Caller, maxCallerLength, false); err != nil {
		return q, err
	}
	if err := model.ValidateText("request_id", q.RequestID, maxRequestIDLength, false); err != nil {
		return q, err
	}
	if q.RecordID != "" {
		if err := model.ValidateSubjectID("record_id", q.RecordID); err != nil {
			return q, err
		}
	}
	var err error
	q.From, q.To, err = timeRange(r.GetStartTime(), r.GetEndTime())
	return q, err
}

// timeRange validates an optional [start, end) range.
func timeRange(start, end *timestamppb.Timestamp) (from, to time.Time, err error) {
	if start != nil {
		if err := start.CheckValid(); err != nil {
			return from, to, model.Invalid("start_time", model.ReasonInvalidValue, "is not a valid timestamp")
		}
		from = start.AsTime()
	}
	if end != nil {
		if err := end.CheckValid(); err != nil {
			return from, to, model.Invalid("end_time", model.ReasonInvalidValue, "is not a valid timestamp")
		}
		to = end.AsTime()
	}
	if start != nil && end != nil && !to.After(from) {
		return from, to, model.Invalid("end_time", model.ReasonInvalidValue, "must be after start_time")
	}
	return from, to, nil
}

// ListDecisions implements pb.AuditServiceServer.
func (s *Audit) ListDecisions(ctx context.Context, req *pb.ListDecisionsRequest) (*pb.ListDecisionsResponse, error) {
	q, err := s.decisionQuery(req)
	if err != nil {
		return nil, err
	}
	q.NewestFirst = req.GetNewestFirst()
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := q.CheckToken(req.GetPageToken()); err != nil {
		return nil, err
	}
	if err := s.knownTenant(ctx, q.Tenant); err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, q.Tenant); err != nil {
		return nil, err
	}
	page, err := s.log.ListDecisions(ctx, q, size, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	return &pb.ListDecisionsResponse{Decisions: decisionsToProto(page.Decisions), NextPageToken: page.Next, ResumeToken: page.Resume}, nil
}

// GetDecision implements pb.AuditServiceServer.
func (s *Audit) GetDecision(ctx context.Context, req *pb.GetDecisionRequest) (*pb.GetDecisionResponse, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	if err := audit.CheckDecisionID(req.GetDecisionId()); err != nil {
		return nil, err
	}
	if err := s.knownTenant(ctx, req.GetTenantId()); err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, req.GetTenantId()); err != nil {
		return nil, err
	}
	d, err := s.log.Decision(ctx, req.GetTenantId(), req.GetDecisionId())
	if err != nil {
		return nil, err
	}
	return &pb.GetDecisionResponse{Decision: decisionToProto(&d)}, nil
}

// ExportDecisions implements pb.AuditServiceServer.
func (s *Audit) ExportDecisions(req *pb.ExportDecisionsRequest, stream pb.AuditService_ExportDecisionsServer) error {
	q, err := s.decisionQuery(req)
	if err != nil {
		return err
	}
	if err := s.knownTenant(stream.Context(), q.Tenant); err != nil {
		return err
	}
	if err := s.mayAudit(stream.Context(), q.Tenant); err != nil {
		return err
	}
	return s.log.ExportDecisions(stream.Context(), q, func(ds []audit.Decision) error {
		return stream.Send(&pb.ExportDecisionsResponse{Decisions: decisionsToProto(ds)})
	})
}

// ListChanges implements pb.AuditServiceServer.
func (s *Audit) ListChanges(ctx context.Context, req *pb.ListChangesRequest) (*pb.ListChangesResponse, error) {
	q := audit.ChangeQuery{Tenant: req.GetTenantId(), Actor: req.GetActorId(), Action: req.GetAction(), TargetPrefix: req.GetTargetPrefix()}
	if err := model.ValidateTenantID("tenant_id", q.Tenant); err != nil {
		return nil, err
	}
	if q.Actor != "" {
		if err := model.ValidateSubjectID("actor_id", q.Actor); err != nil {
			return nil, err
		}
	}
	if err := model.ValidateText("action", q.Action, maxActionLength, false); err != nil {
		return nil, err
	}
	if err := model.ValidateText("target_prefix", q.TargetPrefix, maxTargetLength, false); err != nil {
		return nil, err
	}
	var err error
	if q.From, q.To, err = timeRange(req.GetStartTime(), req.GetEndTime()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	if err := q.CheckToken(req.GetPageToken()); err != nil {
		return nil, err
	}
	if err := s.knownTenant(ctx, q.Tenant); err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, q.Tenant); err != nil {
		return nil, err
	}
	page, err := s.log.ListChanges(ctx, q, size, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	out := &pb.ListChangesResponse{NextPageToken: page.Next, Changes: make([]*pb.Change, len(page.Changes))}
	for i, c := range page.Changes {
		out.Changes[i] = &pb.Change{
			TenantId: c.Tenant, Revision: c.Revision, ChangeTime: timestamp(c.Time), ActorId: c.Actor, Reason: c.Reason,
			Action: c.Action, Target: c.Target, BeforeJson: string(c.Before), AfterJson: string(c.After), Hash: hex.EncodeToString(c.Hash),
			Credential: c.Credential, RelatedTargets: c.Related,
		}
	}
	return out, nil
}

// ListUnusedGrants implements pb.AuditServiceServer.
func (s *Audit) ListUnusedGrants(ctx context.Context, req *pb.ListUnusedGrantsRequest) (*pb.ListUnusedGrantsResponse, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	days := int(req.GetUnusedDays())
	switch {
	case days == 0:
		days = defaultUnusedDays
	case days < 0 || days > maxUnusedDays:
		return nil, model.Invalid("unused_days", model.ReasonInvalidValue, fmt.Sprintf("must be between 1 and %d", maxUnusedDays))
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeGrantToken(unusedGrantsToken, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, req.GetTenantId()); err != nil {
		return nil, err
	}
	st, err := s.store.Tenant(ctx, req.GetTenantId())
	if err != nil {
		return nil, err
	}
	if err := stored("at_least_revision", st, req.GetAtLeastRevision()); err != nil {
		return nil, err
	}
	now := s.now()
	r, err := s.log.UnusedGrants(ctx, st, now.Add(-time.Duration(days)*24*time.Hour), now)
	if err != nil {
		return nil, err
	}
	out := &pb.ListUnusedGrantsResponse{Revision: st.Revision, WindowStart: timestamppb.New(r.WindowStart), EvidenceSince: timestamppb.New(r.EvidenceSince)}
	for _, g := range r.Grants {
		if after != "" && grantKey(g.UserID, g.RoleID) <= after {
			continue
		}
		if len(out.Grants) == size {
			last := out.Grants[size-1]
			out.NextPageToken = grantToken(unusedGrantsToken, last.UserId, last.RoleId)
			break
		}
		out.Grants = append(out.Grants, &pb.UnusedGrant{UserId: g.UserID, RoleId: g.RoleID, GrantedBy: g.GrantedBy,
			GrantedAt: timestamp(g.GrantedAt), ExpiresAt: timestamp(g.ExpiresAt)})
	}
	return out, nil
}

var chainID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// VerifyLog implements pb.AuditServiceServer.
func (s *Audit) VerifyLog(ctx context.Context, req *pb.VerifyLogRequest) (*pb.VerifyLogResponse, error) {
	from, to := req.GetFromPosition(), req.GetToPosition()
	if from < 0 {
		return nil, model.Invalid("from_position", model.ReasonInvalidValue, "must not be negative")
	}
	if to < 0 || (to > 0 && to < from) {
		return nil, model.Invalid("to_position", model.ReasonInvalidValue, "must be 0 (the end) or at least from_position")
	}
	cp, err := s.openCheckpoint(req)
	if err != nil {
		return nil, err
	}
	var (
		reports []audit.ChainReport
		scope   audit.CheckpointScope
	)
	switch req.GetLog() {
	case pb.LogKind_LOG_KIND_DECISIONS:
		if c := req.GetChainId(); c != "" && !chainID.MatchString(c) {
			return nil, model.Invalid("chain_id", model.ReasonInvalidValue, "must be 16 lowercase hex digits")
		}
		if err := s.mayAudit(ctx, req.GetTenantId()); err != nil {
			return nil, err
		}
		if reports, err = s.log.Verify(ctx, req.GetChainId(), from, to); err != nil {
			return nil, err
		}
		scope.Decisions = true
	case pb.LogKind_LOG_KIND_CHANGES:
		if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
			return nil, err
		}
		if err := s.mayAudit(ctx, req.GetTenantId()); err != nil {
			return nil, err
		}
		if err := s.knownTenant(ctx, req.GetTenantId()); err != nil {
			return nil, err
		}
		r, err := s.log.VerifyChanges(ctx, req.GetTenantId(), from, to)
		if err != nil {
			return nil, err
		}
		reports, scope.Tenant = []audit.ChainReport{r}, req.GetTenantId()
	case pb.LogKind_LOG_KIND_ALL:
		if from != 0 || to != 0 {
			return nil, model.Invalid("from_position", model.ReasonInvalidValue, "must be 0 with LOG_KIND_ALL, which verifies every chain whole")
		}
		if err := s.mayAuditAll(ctx, "verifying both logs whole"); err != nil {
			return nil, err
		}
		if reports, err = s.verifyAll(ctx); err != nil {
			return nil, err
		}
		scope = audit.CheckpointScope{Decisions: true, AllTenants: true}
	default:
		return nil, model.Invalid("log", model.ReasonMissingField, "must be LOG_KIND_DECISIONS, LOG_KIND_CHANGES or LOG_KIND_ALL")
	}
	var cpReport *pb.CheckpointReport
	if cp != nil {
		compared, n, err := s.log.VerifyCheckpoint(ctx, cp, scope)
		if err != nil {
			return nil, err
		}
		if c := req.GetChainId(); c != "" {
			compared = slices.DeleteFunc(compared, func(r audit.ChainReport) bool { return r.Chain != c })
			n = len(compared)
		}
		reports = mergeCheckpoint(reports, compared)
		cpReport = &pb.CheckpointReport{KeyId: cp.KeyID, IssuedTime: timestamppb.New(cp.Issued), HeadsChecked: int64(n)}
	}
	out := &pb.VerifyLogResponse{Intact: true, Checkpoint: cpReport}
	for _, r := range reports {
		cr := &pb.ChainReport{ChainId: r.Chain, FirstPosition: r.First, LastPosition: r.Last, EntriesChecked: r.Checked,
			RetainedAfter: r.RetainedAfter, HeadHash: hex.EncodeToString(r.HeadHash), Log: pb.LogKind_LOG_KIND_DECISIONS}
		if r.Changes {
			cr.Log = pb.LogKind_LOG_KIND_CHANGES
		}
		if b := r.Broken; b != nil {
			out.Intact = false
			cr.Broken = &pb.BrokenLink{Position: b.Position, DecisionId: b.DecisionID, Kind: breakKinds[b.Kind], Message: b.Message}
			if !r.Changes && !s.ownsDecision(ctx, b.DecisionID) {
				cr.Broken.DecisionId = ""
				cr.Broken.Message = "the link at this position is broken; its entry belongs to a tenant this credential may not see"
			}
		}
		out.Chains = append(out.Chains, cr)
	}
	return out, nil
}

var breakKinds = map[audit.BreakKind]pb.BreakKind{
	audit.BreakHashMismatch:       pb.BreakKind_BREAK_KIND_HASH_MISMATCH,
	audit.BreakMissing:            pb.BreakKind_BREAK_KIND_MISSING,
	audit.BreakHeadMismatch:       pb.BreakKind_BREAK_KIND_HEAD_MISMATCH,
	audit.BreakUnhashed:           pb.BreakKind_BREAK_KIND_UNHASHED,
	audit.BreakIndexMismatch:      pb.BreakKind_BREAK_KIND_INDEX_MISMATCH,
	audit.BreakUnkeyed:            pb.BreakKind_BREAK_KIND_UNKEYED,
	audit.BreakKeyUnknown:         pb.BreakKind_BREAK_KIND_KEY_UNKNOWN,
	audit.BreakChainMissing:       pb.BreakKind_BREAK_KIND_CHAIN_MISSING,
	audit.BreakTruncated:          pb.BreakKind_BREAK_KIND_TRUNCATED,
	audit.BreakCheckpointMismatch: pb.BreakKind_BREAK_KIND_CHECKPOINT_MISMATCH,
}

// verifyAll verifies the decision log and the change log of every tenant,
// deleted tenants included.
func (s *Audit) verifyAll(ctx context.Context) ([]audit.ChainReport, error) {
	reports, err := s.log.Verify(ctx, "", 0, 0)
	if err != nil {
		return nil, err
	}
	after := ""
	for {
		ts, err := s.store.Tenants(ctx, after, 1000, true)
		if err != nil {
			return nil, err
		}
		for _, t := range ts {
			r, err := s.log.VerifyChanges(ctx, t.ID, 0, 0)
			if err != nil {
				return nil, err
			}
			reports = append(reports, r)
		}
		if len(ts) < 1000 {
			return reports, nil
		}
		after = ts[len(ts)-1].ID
	}
}

// ownsDecision reports whether the caller may see the decision a broken
// link names: every caller with every tenant may; a caller limited to
// some tenants only when the decision belongs to one of them.
func (s *Audit) ownsDecision(ctx context.Context, id string) bool {
	p := auth.FromContext(ctx)
	if p.Tenants == nil || id == "" {
		return p.Tenants == nil
	}
	for _, t := range p.Tenants {
		if _, err := s.log.Decision(ctx, t, id); err == nil {
			return true
		}
	}
	return false
}

// GetLogStatus implements pb.AuditServiceServer. It reports the replica's
// decision log as a whole: its counters hold no tenant's data.
func (s *Audit) GetLogStatus(ctx context.Context, _ *pb.GetLogStatusRequest) (*pb.GetLogStatusResponse, error) {
	if err := s.mayAudit(ctx, ""); err != nil {
		return nil, err
	}
	st := s.log.Status()
	return &pb.GetLogStatusResponse{
		Mode: string(st.Mode), Storage: st.Storage, ChainId: st.ChainID, QueueCapacity: int64(st.QueueCapacity),
		Queued: int64(st.Queued), Recorded: st.Recorded, Written: st.Written, DroppedAllowed: st.DroppedAllowed,
		DroppedDenied: st.DroppedDenied, WriteErrors: st.WriteErrors, OverflowPolicy: string(st.Overflow),
		RetentionDays: int32(st.RetentionDays), MaskedAttributes: st.Masked, MemoryCapacity: int64(st.MemoryCapacity),
		MemoryEvicted: st.MemoryEvicted, Waited: st.Waited, Authentication: s.authentication,
		Replica: s.replicaStatus(), SpoolDir: st.SpoolDir, SpoolEntries: st.SpoolEntries, SpoolBytes: st.SpoolBytes,
		SpoolCapacityBytes: st.SpoolCapacity, SpoolErrors: st.SpoolErrors, Degraded: !st.DegradedSince.IsZero(),
		DegradedTime: timestamp(st.DegradedSince),
	}, nil
}

// replicaStatus reports the replica's following, nil when none runs.
func (s *Audit) replicaStatus() *pb.ReplicaStatus {
	if s.follower == nil {
		return nil
	}
	st := s.follower.Status()
	var lag time.Duration
	if !st.Following || st.TenantsBehind > 0 {
		lag = max(s.now().Sub(st.LastSync), 0)
	}
	return &pb.ReplicaStatus{
		Following: st.Following, ConnectedTime: timestamp(st.ConnectedSince), DisconnectedTime: timestamp(st.DisconnectedSince),
		Reconnects: st.Reconnects, LastSyncTime: timestamp(st.LastSync), TenantsBehind: int32(st.TenantsBehind),
		Applied: st.Applied, Lag: durationpb.New(lag), DatabaseUnreachable: st.Unreachable, AppliedAsDeltas: st.Deltas,
	}
}

func decisionsToProto(ds []audit.Decision) []*pb.Decision {
	out := make([]*pb.Decision, len(ds))
	for i := range ds {
		out[i] = decisionToProto(&ds[i])
	}
	return out
}

func decisionToProto(d *audit.Decision) *pb.Decision {
	out := &pb.Decision{
		DecisionId: d.ID, DecisionTime: timestamp(d.Time), Method: methodsByName[d.Method], Caller: d.Caller, RequestId: d.RequestID,
		TenantId: d.Tenant, SubjectId: d.Subject, Permission: d.Permission, Module: d.Module, Allowed: d.Allowed,
		Reasons: d.Reasons, Revision: d.Revision, Latency: durationpb.New(d.Latency), LoggedTime: timestamp(d.LoggedAt),
		ChainId: d.Chain, ChainPosition: d.Position, Hash: hex.EncodeToString(d.Hash),
	}
	if d.RecordID != "" || d.RecordOwner != "" {
		out.Record = &pb.Record{Id: d.RecordID, OwnerId: d.RecordOwner, DepartmentId: d.RecordDepartment}
	}
	return out
}

// ExplainDecision implements pb.AuditServiceServer.
func (s *Audit) ExplainDecision(ctx context.Context, req *pb.ExplainDecisionRequest) (*pb.ExplainDecisionResponse, error) {
	tenant := req.GetTenantId()
	if err := model.ValidateTenantID("tenant_id", tenant); err != nil {
		return nil, err
	}
	if err := audit.CheckDecisionID(req.GetDecisionId()); err != nil {
		return nil, err
	}
	if err := s.knownTenant(ctx, tenant); err != nil {
		return nil, err
	}
	if err := s.mayAudit(ctx, tenant); err != nil {
		return nil, err
	}
	d, err := s.log.Decision(ctx, tenant, req.GetDecisionId())
	if err != nil {
		return nil, err
	}
	p, err := audit.LoggedPermission(&d)
	if err != nil {
		return nil, err
	}
	st, err := s.store.StateAt(ctx, tenant, d.Revision)
	if err != nil {
		return nil, err
	}
	// Decided again as then: the policy of its revision, the clock of its
	// time (grants and shares expire by it).
	then := s.eng.Detached(func() time.Time { return d.Time })
	if err := then.Load(st); err != nil {
		return nil, err
	}
	again, err := then.Check(tenant, d.Subject, p, true)
	if err != nil {
		return nil, err
	}
	return &pb.ExplainDecisionResponse{Decision: decisionToProto(&d), Allowed: again.Allowed, Reasons: reasonsToProto(again.Reasons),
		Revision: st.Revision, AgreesWithLog: again.Allowed == d.Allowed}, nil
}
