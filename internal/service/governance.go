package service

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Governance implements pb.GovernanceServiceServer: access requests, who
// holds a permission, and what is about to expire. Its writes and reads go
// through the admin service's, so they are guarded, logged and read at a
// revision the same way.
type Governance struct {
	pb.UnimplementedGovernanceServiceServer
	admin *Admin
	log   *audit.Log // the evidence of use of reviewed grants
}

var _ pb.GovernanceServiceServer = (*Governance)(nil)

// NewGovernance returns the handlers of GovernanceService.
func NewGovernance(admin *Admin, log *audit.Log) *Governance {
	return &Governance{admin: admin, log: log}
}

// SetRequestPolicy implements pb.GovernanceServiceServer.
func (s *Governance) SetRequestPolicy(ctx context.Context, req *pb.SetRequestPolicyRequest) (*pb.SetRequestPolicyResponse, error) {
	role := req.GetRoleId()
	if err := model.ValidateName("role_id", role); err != nil {
		return nil, err
	}
	policy, err := requestPolicy(req.GetPolicy())
	if err != nil {
		return nil, err
	}
	cat := s.admin.eng.Catalog()
	st, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnRoles); err != nil {
			return model.Change{}, err
		}
		if _, ok := st.Roles[role]; !ok {
			return model.Change{}, model.RoleNotFound(st.ID, role)
		}
		// Offering a role for request is for an actor who could grant it.
		if err := g.WithinRole(fmt.Sprintf("making role %q requestable", role), role); err != nil {
			return model.Change{}, err
		}
		if policy != nil {
			if err := st.ValidateRequestPolicy(cat, "policy", *policy); err != nil {
				return model.Change{}, err
			}
		}
		return st.SetRequestPolicy(role, policy)
	})
	if err != nil {
		return nil, err
	}
	return &pb.SetRequestPolicyResponse{Role: roleToProto(st.Roles[role]), Revision: st.Revision}, nil
}

// requestPolicy converts a policy from a request; nil stays nil (not
// requestable). The tenant-dependent checks come in the write.
func requestPolicy(p *pb.RequestPolicy) (*model.RequestPolicy, error) {
	if p == nil {
		return nil, nil
	}
	out := &model.RequestPolicy{MaxDays: int(p.GetMaxDays()), PendingDays: int(p.GetPendingDays())}
	if out.PendingDays == 0 {
		out.PendingDays = model.DefaultPendingDays
	}
	for i, a := range p.GetApprovers() {
		field := fmt.Sprintf("policy.approvers[%d]", i)
		m := model.Approver{ID: a.GetId()}
		switch a.GetKind() {
		case pb.ApproverKind_APPROVER_KIND_FUNCTION:
			m.Kind = model.ApproverFunction
			if err := model.ValidateFunctionID(field+".id", m.ID); err != nil {
				return nil, err
			}
		case pb.ApproverKind_APPROVER_KIND_ROLE:
			m.Kind = model.ApproverRole
			if err := model.ValidateName(field+".id", m.ID); err != nil {
				return nil, err
			}
		case pb.ApproverKind_APPROVER_KIND_MANAGER:
			m.Kind = model.ApproverManager
		default:
			return nil, model.Invalid(field+".kind", model.ReasonMissingField, "is required: function, role or manager")
		}
		out.Approvers = append(out.Approvers, m)
	}
	return out, nil
}

func requestPolicyToProto(p *model.RequestPolicy) *pb.RequestPolicy {
	if p == nil {
		return nil
	}
	out := &pb.RequestPolicy{MaxDays: int32(p.MaxDays), PendingDays: int32(p.PendingDays)}
	for _, a := range p.Approvers {
		k := pb.ApproverKind_APPROVER_KIND_FUNCTION
		switch a.Kind {
		case model.ApproverRole:
			k = pb.ApproverKind_APPROVER_KIND_ROLE
		case model.ApproverManager:
			k = pb.ApproverKind_APPROVER_KIND_MANAGER
		}
		out.Approvers = append(out.Approvers, &pb.Approver{Kind: k, Id: a.ID})
	}
	return out
}

// ListRequestableRoles implements pb.GovernanceServiceServer.
func (s *Governance) ListRequestableRoles(ctx context.Context, req *pb.ListRequestableRolesRequest) (*pb.ListRequestableRolesResponse, error) {
	st, _, err := s.admin.read(ctx, req, "", anyone)
	if err != nil {
		return nil, err
	}
	out := &pb.ListRequestableRolesResponse{Revision: st.Revision}
	for _, r := range st.SortedRoles() {
		if r.Request != nil {
			out.Roles = append(out.Roles, roleToProto(r))
		}
	}
	return out, nil
}

// anyone is the self function of reads that need no function: each
// handler decides what the actor sees.
func anyone(string) bool { return true }

// RequestAccess implements pb.GovernanceServiceServer.
func (s *Governance) RequestAccess(ctx context.Context, req *pb.RequestAccessRequest) (*pb.RequestAccessResponse, error) {
	if err := model.ValidateName("role_id", req.GetRoleId()); err != nil {
		return nil, err
	}
	if u := req.GetUserId(); u != "" {
		if err := model.ValidateSubjectID("user_id", u); err != nil {
			return nil, err
		}
	}
	d, err := duration("duration", req.GetDuration(), true)
	if err != nil {
		return nil, err
	}
	r := model.AccessRequest{ID: model.NewRequestID(), RoleID: req.GetRoleId(), Reason: req.GetReason(), Duration: d}
	now := s.admin.now()
	st, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		r.RequestedBy, r.UserID = g.Actor().ID, req.GetUserId()
		if r.UserID == "" {
			r.UserID = r.RequestedBy
		}
		if r.UserID != r.RequestedBy {
			if err := g.Require(fnUsers); err != nil {
				return model.Change{}, err
			}
		}
		return st.RequestAccess(r, now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.RequestAccessResponse{Request: requestToProto(st.AccessRequests[r.ID], now), Revision: st.Revision}, nil
}

// duration reads a duration of a request: positive, at most a year and a
// bit (the policies' bound is checked where they are known).
func duration(field string, d *durationpb.Duration, required bool) (time.Duration, error) {
	if d == nil {
		if required {
			return 0, model.Invalid(field, model.ReasonMissingField, "is required, e.g. 720h")
		}
		return 0, nil
	}
	if err := d.CheckValid(); err != nil {
		return 0, model.Invalid(field, model.ReasonInvalidValue, err.Error())
	}
	v := d.AsDuration()
	if v <= 0 || v > time.Duration(model.MaxRequestDays)*24*time.Hour {
		return 0, model.Invalid(field, model.ReasonInvalidValue, fmt.Sprintf("must be more than 0 and at most %d days, got %s", model.MaxRequestDays, v))
	}
	return v, nil
}

// decideRequest is what ApproveAccessRequest, DenyAccessRequest and
// CancelAccessRequest name.
type decideRequest interface {
	writeRequest
	GetRequestId() string
}

func requestID(req decideRequest) error {
	if !model.ValidRequestID(req.GetRequestId()) {
		return model.Invalid("request_id", model.ReasonInvalidIdentifier, fmt.Sprintf("must be req_ and 16 hex digits, got %q", req.GetRequestId()))
	}
	return nil
}

// ApproveAccessRequest implements pb.GovernanceServiceServer.
func (s *Governance) ApproveAccessRequest(ctx context.Context, req *pb.ApproveAccessRequestRequest) (*pb.ApproveAccessRequestResponse, error) {
	if err := requestID(req); err != nil {
		return nil, err
	}
	shorter, err := duration("duration", req.GetDuration(), false)
	if err != nil {
		return nil, err
	}
	id, now := req.GetRequestId(), s.admin.now()
	var user, role string
	st, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		r, err := st.PendingRequest(id, now)
		if err != nil {
			return model.Change{}, err
		}
		if err := g.Decider(r); err != nil {
			return model.Change{}, err
		}
		if err := g.ApproveWithin(r); err != nil {
			return model.Change{}, err
		}
		d := r.Duration
		if shorter != 0 {
			if shorter > r.Duration {
				return model.Change{}, model.Invalid("duration", model.ReasonInvalidValue,
					fmt.Sprintf("may shorten the %s asked for, not lengthen it; got %s", r.Duration, shorter))
			}
			d = shorter
		}
		user, role = r.UserID, r.RoleID
		return st.ApproveRequest(id, g.Actor().ID, req.GetReason(), now.Add(d), now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.ApproveAccessRequestResponse{Request: requestToProto(st.AccessRequests[id], now),
		Grant: grantOf(st, user, role, now), Revision: st.Revision}, nil
}

// grantOf returns the user's grant of the role in a write's view, which
// holds it when the write changed it; nil when it left it alone.
func grantOf(st *model.TenantState, user, role string, now time.Time) *pb.Grant {
	g, ok := st.Grants[model.GrantKey{UserID: user, RoleID: role}]
	if !ok {
		return nil
	}
	return grantToProto(st, g, now)
}

// DenyAccessRequest implements pb.GovernanceServiceServer.
func (s *Governance) DenyAccessRequest(ctx context.Context, req *pb.DenyAccessRequestRequest) (*pb.DenyAccessRequestResponse, error) {
	r, rev, err := s.closeRequest(ctx, req, model.RequestDenied, func(g *auth.Guard, r model.AccessRequest) error { return g.Decider(r) })
	if err != nil {
		return nil, err
	}
	return &pb.DenyAccessRequestResponse{Request: r, Revision: rev}, nil
}

// CancelAccessRequest implements pb.GovernanceServiceServer.
func (s *Governance) CancelAccessRequest(ctx context.Context, req *pb.CancelAccessRequestRequest) (*pb.CancelAccessRequestResponse, error) {
	r, rev, err := s.closeRequest(ctx, req, model.RequestCancelled, func(g *auth.Guard, r model.AccessRequest) error {
		if actor := g.Actor().ID; actor == r.UserID || actor == r.RequestedBy {
			return nil
		}
		return g.Require(fnUsers)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CancelAccessRequestResponse{Request: r, Revision: rev}, nil
}

// closeRequest denies or cancels the pending request req names, when may
// lets the actor, and returns it as stored and the revision.
func (s *Governance) closeRequest(ctx context.Context, req decideRequest, state model.RequestState,
	may func(g *auth.Guard, r model.AccessRequest) error) (*pb.AccessRequest, int64, error) {
	if err := requestID(req); err != nil {
		return nil, 0, err
	}
	id, now := req.GetRequestId(), s.admin.now()
	st, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		r, err := st.PendingRequest(id, now)
		if err != nil {
			return model.Change{}, err
		}
		if err := may(g, r); err != nil {
			return model.Change{}, err
		}
		return st.CloseRequest(id, state, g.Actor().ID, req.GetReason(), now)
	})
	if err != nil {
		return nil, 0, err
	}
	return requestToProto(st.AccessRequests[id], now), st.Revision, nil
}

// GetAccessRequest implements pb.GovernanceServiceServer.
func (s *Governance) GetAccessRequest(ctx context.Context, req *pb.GetAccessRequestRequest) (*pb.GetAccessRequestResponse, error) {
	if !model.ValidRequestID(req.GetRequestId()) {
		return nil, model.Invalid("request_id", model.ReasonInvalidIdentifier, fmt.Sprintf("must be req_ and 16 hex digits, got %q", req.GetRequestId()))
	}
	st, g, err := s.admin.read(ctx, req, "", anyone)
	if err != nil {
		return nil, err
	}
	now := s.admin.now()
	r, ok := st.AccessRequests[req.GetRequestId()]
	if !ok {
		return nil, &model.NotFoundError{Reason: model.ReasonRequestNotFound, What: fmt.Sprintf("access request %q in tenant %q", req.GetRequestId(), st.ID)}
	}
	mayDecide := r.StateAt(now) == model.RequestPending && g.Decider(r) == nil
	if actor := g.Actor().ID; actor != r.UserID && actor != r.RequestedBy && !mayDecide {
		if err := g.Require(fnUsers); err != nil {
			return nil, err
		}
	}
	return &pb.GetAccessRequestResponse{Request: requestToProto(r, now), ActorMayDecide: mayDecide, Revision: st.Revision}, nil
}

// ListAccessRequests implements pb.GovernanceServiceServer.
func (s *Governance) ListAccessRequests(ctx context.Context, req *pb.ListAccessRequestsRequest) (*pb.ListAccessRequestsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeRequestToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	want, ok := requestStates[req.GetState()]
	if !ok && req.GetState() != pb.AccessRequestState_ACCESS_REQUEST_STATE_UNSPECIFIED {
		return nil, model.Invalid("state", model.ReasonInvalidValue, "unknown state")
	}
	view := req.GetView()
	switch view {
	case pb.AccessRequestView_ACCESS_REQUEST_VIEW_UNSPECIFIED, pb.AccessRequestView_ACCESS_REQUEST_VIEW_MINE,
		pb.AccessRequestView_ACCESS_REQUEST_VIEW_TO_DECIDE, pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL:
	default:
		return nil, model.Invalid("view", model.ReasonInvalidValue, "unknown view")
	}
	st, g, err := s.admin.read(ctx, req, "", anyone)
	if err != nil {
		return nil, err
	}
	if view == pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL {
		if err := g.Require(fnUsers); err != nil {
			return nil, err
		}
	}
	now, actor := s.admin.now(), g.Actor().ID
	out := &pb.ListAccessRequestsResponse{Revision: st.Revision}
	lastKey := ""
	for _, r := range st.SortedRequests() {
		key := requestKey(r)
		if after != "" && key <= after {
			continue
		}
		if want != "" && r.StateAt(now) != want {
			continue
		}
		switch view {
		case pb.AccessRequestView_ACCESS_REQUEST_VIEW_TO_DECIDE:
			if r.StateAt(now) != model.RequestPending || g.Decider(r) != nil {
				continue
			}
		case pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL:
		default:
			if r.UserID != actor && r.RequestedBy != actor {
				continue
			}
		}
		if len(out.Requests) == size {
			out.NextPageToken = encodeToken(requestsToken, lastKey)
			break
		}
		out.Requests, lastKey = append(out.Requests, requestToProto(r, now)), key
	}
	return out, nil
}

// requestKey orders requests as the listing does, newest first, as a
// string: the time counted down from the largest Unix nanosecond, fixed
// width, then the id.
func requestKey(r model.AccessRequest) string {
	return fmt.Sprintf("%019d:%s", int64(1<<63-1)-r.RequestedAt.UnixNano(), r.ID)
}

var requestStates = map[pb.AccessRequestState]model.RequestState{
	pb.AccessRequestState_ACCESS_REQUEST_STATE_PENDING:   model.RequestPending,
	pb.AccessRequestState_ACCESS_REQUEST_STATE_APPROVED:  model.RequestApproved,
	pb.AccessRequestState_ACCESS_REQUEST_STATE_DENIED:    model.RequestDenied,
	pb.AccessRequestState_ACCESS_REQUEST_STATE_CANCELLED: model.RequestCancelled,
	pb.AccessRequestState_ACCESS_REQUEST_STATE_LAPSED:    model.RequestLapsed,
}

func requestToProto(r model.AccessRequest, now time.Time) *pb.AccessRequest {
	out := &pb.AccessRequest{
		RequestId: r.ID, UserId: r.UserID, RoleId: r.RoleID, Reason: r.Reason, Duration: durationpb.New(r.Duration),
		RequestedBy: r.RequestedBy, RequestedAt: timestamp(r.RequestedAt), PendingUntil: timestamp(r.PendingUntil),
		DecidedBy: r.DecidedBy, DecidedAt: timestamp(r.DecidedAt), DecisionReason: r.Decision, GrantExpiresAt: timestamp(r.GrantExpires),
	}
	state := r.StateAt(now)
	for p, m := range requestStates {
		if m == state {
			out.State = p
		}
	}
	return out
}

// WhoCan implements pb.GovernanceServiceServer.
func (s *Governance) WhoCan(ctx context.Context, req *pb.WhoCanRequest) (*pb.WhoCanResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeWhoCanToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	if req.GetPermission() == nil {
		return nil, model.Invalid("permission", model.ReasonMissingField, "is required")
	}
	eng := s.admin.eng
	p, err := permission(eng.Catalog(), req.GetPermission(), "permission")
	if err != nil {
		return nil, err
	}
	if _, _, err := s.admin.read(ctx, whoCanRead{req}, fnUsers, nil); err != nil {
		return nil, err
	}
	holders, more, rev, err := eng.WhoCan(req.GetTenantId(), p, after, size)
	if err != nil {
		return nil, err
	}
	out := &pb.WhoCanResponse{Revision: rev}
	for _, h := range holders {
		u := &pb.WhoCanUser{UserId: h.User, Reasons: reasonsToProto(h.Reasons), ExpiresAt: timestamp(h.Until)}
		if h.Scope != "" {
			u.Scope = scopeToProto(h.Scope)
		}
		out.Users = append(out.Users, u)
	}
	if more {
		out.NextPageToken = encodeToken(whoCanToken, holders[len(holders)-1].User)
	}
	return out, nil
}

// whoCanRead is a WhoCan request as a read: it names no revision, as the
// engine answers it.
type whoCanRead struct{ *pb.WhoCanRequest }

func (whoCanRead) GetAtLeastRevision() int64 { return 0 }

// ListExpiring implements pb.GovernanceServiceServer.
func (s *Governance) ListExpiring(ctx context.Context, req *pb.ListExpiringRequest) (*pb.ListExpiringResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeExpiringToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	within := 7 * 24 * time.Hour
	if w := req.GetWithin(); w != nil {
		if err := w.CheckValid(); err != nil {
			return nil, model.Invalid("within", model.ReasonInvalidValue, err.Error())
		}
		if within = w.AsDuration(); within < time.Hour || within > 365*24*time.Hour {
			return nil, model.Invalid("within", model.ReasonInvalidValue, fmt.Sprintf("must be 1h to 365 days, got %s", within))
		}
	}
	user := req.GetUserId()
	if user != "" {
		if err := model.ValidateSubjectID("user_id", user); err != nil {
			return nil, err
		}
	}
	st, _, err := s.admin.read(ctx, req, fnUsers, func(actor string) bool { return user != "" && user == actor })
	if err != nil {
		return nil, err
	}
	now := s.admin.now()
	end := now.Add(within)
	soon := func(t time.Time) bool { return !t.IsZero() && t.After(now) && !t.After(end) }
	type item struct {
		key string
		pb  *pb.Expiring
	}
	var items []item
	for k, g := range st.Grants {
		if (user == "" || k.UserID == user) && soon(g.ExpiresAt) {
			items = append(items, item{expiringKey(g.ExpiresAt, "g", k.UserID, k.RoleID),
				&pb.Expiring{ExpiresAt: timestamp(g.ExpiresAt), What: &pb.Expiring_Grant{Grant: grantToProto(st, g, now)}}})
		}
	}
	reaches := func(model.Principal) bool { return true } // everyone's
	if user != "" {
		reaches = sharesReach(st, user, now)
	}
	for k, sh := range st.RecordShares {
		p := sh.Principal
		if reaches(p) && soon(sh.ExpiresAt) {
			items = append(items, item{expiringKey(sh.ExpiresAt, "s", p.ID, string(p.Kind), k.Module, k.RecordID, strconv.FormatBool(p.IncludeSubs)),
				&pb.Expiring{ExpiresAt: timestamp(sh.ExpiresAt), What: &pb.Expiring_RecordShare{RecordShare: recordShareToProto(sh, now)}}})
		}
	}
	slices.SortFunc(items, func(a, b item) int { return cmp.Compare(a.key, b.key) })
	out := &pb.ListExpiringResponse{Revision: st.Revision}
	lastKey := ""
	for _, it := range items {
		if after != "" && it.key <= after {
			continue
		}
		if len(out.Items) == size {
			out.NextPageToken = encodeToken(expiringToken, lastKey)
			break
		}
		out.Items, lastKey = append(out.Items, it.pb), it.key
	}
	return out, nil
}

// expiringKey orders what expires: soonest first, then by kind and the
// row's key.
func expiringKey(t time.Time, parts ...string) string {
	return fmt.Sprintf("%019d", t.UnixNano()) + "\x00" + strings.Join(parts, "\x00")
}

// sharesReach returns whether a record share's principal reaches user at
// now, as a decision matches it: the user, a role the user holds by an
// active grant (itself or by inheritance), or a department of the user's
// (or one above it, for a share with its sub-departments).
func sharesReach(st *model.TenantState, user string, now time.Time) func(model.Principal) bool {
	var roles []string
	for _, r := range st.RoleClosure(st.ActiveRoles(user, now)...) {
		roles = append(roles, r.ID)
	}
	m := st.Members[user]
	depts := append([]string{m.Primary}, m.Others...)
	return func(p model.Principal) bool {
		switch p.Kind {
		case model.PrincipalUser:
			return p.ID == user
		case model.PrincipalRole:
			return slices.Contains(roles, p.ID)
		case model.PrincipalDepartment:
			for _, d := range depts {
				for steps := 0; d != "" && steps <= len(st.Departments); steps++ {
					if d == p.ID {
						return true
					}
					if !p.IncludeSubs {
						break
					}
					d = st.Departments[d].Parent
				}
			}
		}
		return false
	}
}
