package service

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Access reviews (GovernanceService): the handlers, and closing the reviews
// whose deadline passed.

const (
	defaultUnusedReviewDays = 90
	maxReviewRoles          = 64
)

// StartAccessReview implements pb.GovernanceServiceServer.
func (s *Governance) StartAccessReview(ctx context.Context, req *pb.StartAccessReviewRequest) (*pb.StartAccessReviewResponse, error) {
	r := model.AccessReview{ID: model.NewReviewID(), Name: req.GetName(), Roles: req.GetRoleIds(), Reviewer: req.GetReviewerId(),
		UnusedDays: int(req.GetUnusedDays())}
	if err := model.ValidateText("name", r.Name, model.MaxDisplayLength, false); err != nil {
		return nil, err
	}
	if len(r.Roles) > maxReviewRoles {
		return nil, model.Invalid("role_ids", model.ReasonTooMany, fmt.Sprintf("at most %d roles, got %d", maxReviewRoles, len(r.Roles)))
	}
	if err := model.ValidateReviewRoles(r.Roles); err != nil {
		return nil, err
	}
	if r.Reviewer != "" {
		if err := model.ValidateSubjectID("reviewer_id", r.Reviewer); err != nil {
			return nil, err
		}
	}
	d, ok := reviewDecisions[req.GetDefaultDecision()]
	if !ok {
		return nil, model.Invalid("default_decision", model.ReasonMissingField, "is required: keep or revoke")
	}
	r.Default = d
	switch {
	case r.UnusedDays == 0:
		r.UnusedDays = defaultUnusedReviewDays
	case r.UnusedDays < 0 || r.UnusedDays > model.MaxReviewDays:
		return nil, model.Invalid("unused_days", model.ReasonInvalidValue, fmt.Sprintf("must be 1-%d, got %d", model.MaxReviewDays, r.UnusedDays))
	}
	now := s.admin.now()
	if req.GetDeadline() == nil {
		return nil, model.Invalid("deadline", model.ReasonMissingField, "is required")
	}
	deadline, err := expiry("deadline", req.GetDeadline(), now)
	if err != nil {
		return nil, err
	}
	if deadline.After(now.Add(model.MaxReviewDays * 24 * time.Hour)) {
		return nil, model.Invalid("deadline", model.ReasonInvalidValue, fmt.Sprintf("must lie at most %d days ahead", model.MaxReviewDays))
	}
	r.Deadline = deadline
	// The evidence is read before the write: the decision log is not the
	// store, and a grant made meanwhile is reviewed without it.
	st, g, err := s.admin.read(ctx, writeAsRead{req}, fnUsers, nil)
	if err != nil {
		return nil, err
	}
	since := now.Add(-time.Duration(r.UnusedDays) * 24 * time.Hour)
	use, err := s.log.GrantUse(ctx, st, since, now)
	var off *model.ConflictError
	switch {
	case errors.As(err, &off) && off.Reason == audit.ReasonDecisionLogOff:
		use = audit.GrantUse{EvidenceSince: now} // no evidence: every item reads as unused
	case err != nil:
		return nil, err
	}
	r.EvidenceSince, r.CreatedBy = use.EvidenceSince.UTC(), g.Actor().ID
	view, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		return st.StartReview(r, use.LastUsed, now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.StartAccessReviewResponse{Review: reviewToProto(view, view.AccessReviews[r.ID]), Revision: view.Revision}, nil
}

// writeAsRead reads before a write: at the latest revision.
type writeAsRead struct{ writeRequest }

func (writeAsRead) GetAtLeastRevision() int64 { return 0 }

var reviewDecisions = map[pb.ReviewDecision]model.ReviewDecision{
	pb.ReviewDecision_REVIEW_DECISION_KEEP:   model.ReviewKeep,
	pb.ReviewDecision_REVIEW_DECISION_REVOKE: model.ReviewRevoke,
}

func reviewDecisionToProto(d model.ReviewDecision) pb.ReviewDecision {
	for p, m := range reviewDecisions {
		if m == d {
			return p
		}
	}
	return pb.ReviewDecision_REVIEW_DECISION_UNSPECIFIED
}

// reviewToProto converts a review of st, counting its items there.
func reviewToProto(st *model.TenantState, r model.AccessReview) *pb.AccessReview {
	out := &pb.AccessReview{
		ReviewId: r.ID, Name: r.Name, RoleIds: r.Roles, ReviewerId: r.Reviewer, DefaultDecision: reviewDecisionToProto(r.Default),
		Deadline: timestamp(r.Deadline), UnusedDays: int32(r.UnusedDays), EvidenceSince: timestamp(r.EvidenceSince),
		CreatedBy: r.CreatedBy, CreatedAt: timestamp(r.CreatedAt), ClosedBy: r.ClosedBy, ClosedAt: timestamp(r.ClosedAt),
		State: pb.AccessReviewState_ACCESS_REVIEW_STATE_OPEN, Progress: &pb.ReviewProgress{},
	}
	if r.State == model.ReviewClosed {
		out.State = pb.AccessReviewState_ACCESS_REVIEW_STATE_CLOSED
	}
	p := out.Progress
	for k, it := range st.ReviewItems {
		if k.Review != r.ID {
			continue
		}
		p.Items++
		switch it.Decision {
		case model.ReviewKeep:
			p.Kept++
		case model.ReviewRevoke:
			p.Revoked++
		default:
			p.Undecided++
		}
		if it.LastUsed.IsZero() {
			p.Unused++
		}
	}
	return out
}

func reviewItemToProto(it model.ReviewItem) *pb.ReviewItem {
	return &pb.ReviewItem{
		ReviewId: it.Review, UserId: it.UserID, RoleId: it.RoleID, GrantExpiresAt: timestamp(it.GrantExpires), ReviewerId: it.Reviewer,
		LastUsedAt: timestamp(it.LastUsed), Unused: it.LastUsed.IsZero(), Decision: reviewDecisionToProto(it.Decision),
		DecidedBy: it.DecidedBy, DecidedAt: timestamp(it.DecidedAt), Comment: it.Comment, UserInactive: it.UserInactive,
	}
}

func reviewID(field, id string) error {
	if !model.ValidReviewID(id) {
		return model.Invalid(field, model.ReasonInvalidIdentifier, fmt.Sprintf("must be rvw_ and 16 hex digits, got %q", id))
	}
	return nil
}

// reviewOf returns review id of st, or NOT_FOUND.
func reviewOf(st *model.TenantState, id string) (model.AccessReview, error) {
	r, ok := st.AccessReviews[id]
	if !ok {
		return r, &model.NotFoundError{Reason: model.ReasonReviewNotFound, What: fmt.Sprintf("access review %q in tenant %q", id, st.ID)}
	}
	return r, nil
}

// reviews reports whether actor reviews an item of review id.
func reviews(st *model.TenantState, id, actor string) bool {
	for k, it := range st.ReviewItems {
		if k.Review == id && it.Reviewer == actor {
			return true
		}
	}
	return false
}

// GetAccessReview implements pb.GovernanceServiceServer.
func (s *Governance) GetAccessReview(ctx context.Context, req *pb.GetAccessReviewRequest) (*pb.GetAccessReviewResponse, error) {
	if err := reviewID("review_id", req.GetReviewId()); err != nil {
		return nil, err
	}
	st, g, err := s.admin.read(ctx, req, "", anyone)
	if err != nil {
		return nil, err
	}
	r, err := reviewOf(st, req.GetReviewId())
	if err != nil {
		return nil, err
	}
	if !reviews(st, r.ID, g.Actor().ID) {
		if err := g.Require(fnUsers); err != nil {
			return nil, err
		}
	}
	return &pb.GetAccessReviewResponse{Review: reviewToProto(st, r), Revision: st.Revision}, nil
}

// ListAccessReviews implements pb.GovernanceServiceServer.
func (s *Governance) ListAccessReviews(ctx context.Context, req *pb.ListAccessReviewsRequest) (*pb.ListAccessReviewsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	afterAt, afterID, paged, err := decodeReviewToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	st, _, err := s.admin.read(ctx, req, fnUsers, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListAccessReviewsResponse{Revision: st.Revision}
	var last model.AccessReview
	for _, r := range st.SortedReviews() {
		// Newest first, then by id: a later page holds what is older, or
		// as old with a greater id.
		later := r.CreatedAt.Before(afterAt) || (r.CreatedAt.Equal(afterAt) && r.ID > afterID)
		if paged && !later {
			continue
		}
		if len(out.Reviews) == size {
			out.NextPageToken = reviewToken(last)
			break
		}
		out.Reviews = append(out.Reviews, reviewToProto(st, r))
		last = r
	}
	return out, nil
}

// ListReviewItems implements pb.GovernanceServiceServer.
func (s *Governance) ListReviewItems(ctx context.Context, req *pb.ListReviewItemsRequest) (*pb.ListReviewItemsResponse, error) {
	if err := reviewID("review_id", req.GetReviewId()); err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeGrantToken(reviewItemsToken, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	reviewer := req.GetReviewerId()
	if reviewer != "" {
		if err := model.ValidateSubjectID("reviewer_id", reviewer); err != nil {
			return nil, err
		}
	}
	st, _, err := s.admin.read(ctx, req, fnUsers, func(actor string) bool { return reviewer != "" && reviewer == actor })
	if err != nil {
		return nil, err
	}
	if _, err := reviewOf(st, req.GetReviewId()); err != nil {
		return nil, err
	}
	out := &pb.ListReviewItemsResponse{Revision: st.Revision}
	for _, it := range st.SortedReviewItems(req.GetReviewId()) {
		if (after != "" && grantKey(it.UserID, it.RoleID) <= after) || (reviewer != "" && it.Reviewer != reviewer) ||
			(req.GetUndecidedOnly() && it.Decision != "") {
			continue
		}
		if len(out.Items) == size {
			last := out.Items[size-1]
			out.NextPageToken = grantToken(reviewItemsToken, last.UserId, last.RoleId)
			break
		}
		out.Items = append(out.Items, reviewItemToProto(it))
	}
	return out, nil
}

// DecideReviewItem implements pb.GovernanceServiceServer.
func (s *Governance) DecideReviewItem(ctx context.Context, req *pb.DecideReviewItemRequest) (*pb.DecideReviewItemResponse, error) {
	if err := reviewID("review_id", req.GetReviewId()); err != nil {
		return nil, err
	}
	if err := model.ValidateSubjectID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	if err := model.ValidateName("role_id", req.GetRoleId()); err != nil {
		return nil, err
	}
	d, ok := reviewDecisions[req.GetDecision()]
	if !ok {
		return nil, model.Invalid("decision", model.ReasonMissingField, "is required: keep or revoke")
	}
	k := model.ReviewItemKey{Review: req.GetReviewId(), UserID: req.GetUserId(), RoleID: req.GetRoleId()}
	now := s.admin.now()
	view, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		it, err := st.ReviewItemOf(k)
		if err != nil {
			return model.Change{}, err
		}
		if err := g.Reviewer(it, fnUsers); err != nil {
			return model.Change{}, err
		}
		return st.DecideReviewItem(k, d, g.Actor().ID, req.GetReason(), now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.DecideReviewItemResponse{Item: reviewItemToProto(view.ReviewItems[k]), Revision: view.Revision}, nil
}

// CloseAccessReview implements pb.GovernanceServiceServer.
func (s *Governance) CloseAccessReview(ctx context.Context, req *pb.CloseAccessReviewRequest) (*pb.CloseAccessReviewResponse, error) {
	if err := reviewID("review_id", req.GetReviewId()); err != nil {
		return nil, err
	}
	id, now := req.GetReviewId(), s.admin.now()
	view, err := s.admin.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		return st.CloseReview(id, g.Actor().ID, now, lastSuperAdmin(s.admin.eng.Catalog(), st, now))
	})
	if err != nil {
		return nil, err
	}
	return &pb.CloseAccessReviewResponse{Review: s.closedReview(ctx, view, id), Revision: view.Revision}, nil
}

// closedReview converts a review a write closed; the write's view holds
// the items it decided, the store all of them.
func (s *Governance) closedReview(ctx context.Context, view *model.TenantState, id string) *pb.AccessReview {
	if st, err := s.admin.store.Tenant(ctx, view.ID); err == nil && st.Revision >= view.Revision {
		return reviewToProto(st, view.AccessReviews[id])
	}
	return reviewToProto(view, view.AccessReviews[id])
}

// CloseDueReviews closes the open reviews whose deadline has passed, as
// ReviewerByDeadline, and returns those it closed. Every replica may run
// it: a review another closed first is skipped. As with a close by hand,
// an undecided item whose revoke would take admin.super from the tenant's
// last holder is kept, saying why; the other items follow the default.
func (s *Governance) CloseDueReviews(ctx context.Context) ([]store.ReviewRef, error) {
	now := s.admin.now()
	due, err := s.admin.store.DueReviews(ctx, now, 100)
	if err != nil {
		return nil, err
	}
	var closed []store.ReviewRef
	for _, ref := range due {
		err := s.closeAtDeadline(ctx, ref, now)
		var conflict *model.ConflictError
		var notFound *model.NotFoundError
		switch {
		case err == nil:
			closed = append(closed, ref)
		case errors.As(err, &conflict) && conflict.Reason == model.ReasonReviewClosed, errors.As(err, &notFound):
			// Another replica closed it first, or the tenant or the review is gone.
		default:
			return closed, err
		}
	}
	return closed, nil
}

func (s *Governance) closeAtDeadline(ctx context.Context, ref store.ReviewRef, now time.Time) error {
	w := store.Write{Tenant: ref.Tenant, Actor: model.ReviewerByDeadline, Reason: "the review's deadline passed",
		Applied: func(st *model.TenantState, d model.Delta) error { return s.admin.eng.Apply(st, d) }}
	cat := s.admin.eng.Catalog()
	_, err := s.admin.store.Update(ctx, w, func(st *model.TenantState) (model.Change, error) {
		g := auth.NewWriteGuard(cat, st, auth.Actor{ID: model.ReviewerByDeadline, Operator: true}, now)
		c, err := st.CloseReview(ref.Review, model.ReviewerByDeadline, now, lastSuperAdmin(cat, st, now))
		if err != nil {
			return c, err
		}
		return c, g.KeepSuperAdmin(st)
	})
	return err
}

// lastSuperAdmin is what a review's close keeps against its default: the
// grant whose revoke would leave the tenant without a holder of
// admin.super. Only that item is kept; a close that took it would be
// refused whole.
func lastSuperAdmin(cat *model.Catalog, st *model.TenantState, now time.Time) func(model.ReviewItem) string {
	return func(it model.ReviewItem) string {
		if st.TakesLastHolder(cat, auth.FunctionSuper, model.GrantKey{UserID: it.UserID, RoleID: it.RoleID}, now) {
			return fmt.Sprintf("kept: revoking it would leave the tenant without a holder of %s", auth.FunctionSuper)
		}
		return ""
	}
}
