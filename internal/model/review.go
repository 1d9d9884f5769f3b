package model

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Access reviews: administrators regularly confirm who holds what. A review
// of a tenant (or of some of its roles) turns each active grant into an
// item for a reviewer, with the evidence of its use from the decision log;
// the reviewer keeps or revokes it (a revoke takes the grant away at once).
// When the review is closed, by hand or at its deadline, the items left
// undecided follow the review's default (keep or revoke).

// ReviewDecision is what a reviewer decided for an item.
type ReviewDecision string

// Review decisions; an undecided item has none.
const (
	ReviewKeep   ReviewDecision = "keep"
	ReviewRevoke ReviewDecision = "revoke"
)

// ReviewState is where a review stands.
type ReviewState string

// Review states.
const (
	ReviewOpen   ReviewState = "open"
	ReviewClosed ReviewState = "closed"
)

// Limits of access reviews.
const (
	// MaxReviewItems bounds one review: a larger tenant is reviewed role
	// by role.
	MaxReviewItems = 50_000
	// MaxTenantReviewItems bounds the items a tenant keeps across its
	// reviews; a new review pushes out the oldest closed ones (their
	// history stays in the change log).
	MaxTenantReviewItems = 200_000
	// MaxOpenReviews bounds a tenant's open reviews.
	MaxOpenReviews = 20
	// MaxReviewDays bounds a review's deadline and its evidence window.
	MaxReviewDays = 365
	// ReviewerByDeadline is the actor that closes a review at its deadline.
	ReviewerByDeadline = "system:review-deadline"
)

// AccessReview is one review of a tenant's grants.
type AccessReview struct {
	ID            string         `json:"id"`
	Name          string         `json:"name"`
	Roles         []string       `json:"roles,omitempty"`    // the roles reviewed; empty: every role
	Reviewer      string         `json:"reviewer,omitempty"` // the named reviewer; empty: each user's manager
	Default       ReviewDecision `json:"default"`            // what undecided items get when the review closes
	Deadline      time.Time      `json:"deadline"`
	UnusedDays    int            `json:"unused_days"`    // the evidence window
	EvidenceSince time.Time      `json:"evidence_since"` // from when the decision log held every decision
	CreatedBy     string         `json:"created_by"`
	CreatedAt     time.Time      `json:"created_at"`
	State         ReviewState    `json:"state"`
	ClosedBy      string         `json:"closed_by,omitempty"`
	ClosedAt      time.Time      `json:"closed_at,omitzero"`
}

// ReviewItemKey identifies an item: one grant in one review.
type ReviewItemKey struct{ Review, UserID, RoleID string }

// ReviewItem is one grant under review.
type ReviewItem struct {
	Review       string    `json:"review"`
	UserID       string    `json:"user_id"`
	RoleID       string    `json:"role_id"`
	GrantExpires time.Time `json:"grant_expires,omitzero"`
	// GrantedAt is when the grant under review was given: a grant of the
	// same role given (or changed) again after the review started is
	// another grant, which a revoke of this item does not take away.
	// Zero for items of reviews started before it was kept.
	GrantedAt time.Time `json:"granted_at,omitzero"`
	Reviewer  string    `json:"reviewer"`           // who decides it
	LastUsed  time.Time `json:"last_used,omitzero"` // the latest allowed decision the grant gave in the window; zero: none
	// UserInactive records that the user was offboarded when the review
	// started: the grant decides nothing while they are, and comes back
	// with them unless revoked.
	UserInactive bool           `json:"user_inactive,omitempty"`
	Decision     ReviewDecision `json:"decision,omitempty"`
	DecidedBy    string         `json:"decided_by,omitempty"`
	DecidedAt    time.Time      `json:"decided_at,omitzero"`
	Comment      string         `json:"comment,omitempty"`
}

// Key returns the item's key.
func (i ReviewItem) Key() ReviewItemKey { return ReviewItemKey{i.Review, i.UserID, i.RoleID} }

// CompareReviewItemKeys orders items by review, user, role.
func CompareReviewItemKeys(a, b ReviewItemKey) int {
	if c := cmp.Compare(a.Review, b.Review); c != 0 {
		return c
	}
	if c := cmp.Compare(a.UserID, b.UserID); c != 0 {
		return c
	}
	return cmp.Compare(a.RoleID, b.RoleID)
}

// NewReviewID returns a random review id: "rvw_" and 16 hex digits.
func NewReviewID() string { return newID("rvw_") }

// ValidReviewID reports whether id is shaped like NewReviewID's.
func ValidReviewID(id string) bool { return validID("rvw_", id) }

// ValidateReviewRoles checks the roles a review names (paths
// role_ids[i]): each a role id, none listed twice. Whether the tenant has
// them is StartReview's to check.
func ValidateReviewRoles(roles []string) error {
	for i, id := range roles {
		f := fmt.Sprintf("role_ids[%d]", i)
		if err := ValidateName(f, id); err != nil {
			return err
		}
		if j := slices.Index(roles, id); j < i {
			return Invalid(f, ReasonDuplicate, fmt.Sprintf("role %q is listed twice, also as role_ids[%d]", id, j))
		}
	}
	return nil
}

// StartReview stores a new open review with an item for each grant of the
// reviewed roles active at now, offboarded users' included (marked
// UserInactive: their grants return with them, and are what a review is
// for); lastUsed is the evidence of use of each grant (absent: unused in
// the window). An item's reviewer is the review's named reviewer, else the
// user's manager, else whoever started the review.
func (s *TenantState) StartReview(r AccessReview, lastUsed map[GrantKey]time.Time, now time.Time) (Change, error) {
	for i, role := range r.Roles {
		if _, ok := s.Roles[role]; !ok {
			return Change{}, Invalid(fmt.Sprintf("role_ids[%d]", i), ReasonRoleNotFound, fmt.Sprintf("role %q does not exist in tenant %q", role, s.ID))
		}
	}
	if r.Reviewer != "" && !s.KnowsUser(r.Reviewer) {
		return Change{}, Invalid("reviewer_id", ReasonUserNotFound, fmt.Sprintf("user %q is not a user of tenant %q", r.Reviewer, s.ID))
	}
	open := 0
	for _, o := range s.AccessReviews {
		if o.State == ReviewOpen {
			open++
		}
	}
	if open >= MaxOpenReviews {
		return Change{}, &LimitError{Tenant: s.ID, What: "open access reviews", Max: MaxOpenReviews}
	}
	var items []ReviewItem
	for k, g := range s.Grants {
		if !g.ActiveAt(now) || (len(r.Roles) > 0 && !slices.Contains(r.Roles, k.RoleID)) {
			continue
		}
		it := ReviewItem{Review: r.ID, UserID: k.UserID, RoleID: k.RoleID, GrantExpires: g.ExpiresAt, GrantedAt: g.GrantedAt, Reviewer: r.Reviewer,
			LastUsed: lastUsed[k], UserInactive: s.Inactive(k.UserID)}
		if it.Reviewer == "" {
			it.Reviewer = s.Members[k.UserID].Manager
		}
		if it.Reviewer == "" {
			it.Reviewer = r.CreatedBy
		}
		items = append(items, it)
	}
	if len(items) > MaxReviewItems {
		return Change{}, &LimitError{Tenant: s.ID, What: "grants in one access review (review some roles at a time)", Max: MaxReviewItems}
	}
	if err := s.makeReviewRoom(len(items)); err != nil {
		return Change{}, err
	}
	r.State, r.CreatedAt = ReviewOpen, now.UTC()
	SetRow(s, s.AccessReviews, r.ID, &r)
	for i := range items {
		SetRow(s, s.ReviewItems, items[i].Key(), &items[i])
	}
	return Change{Action: "review.start", Target: "review/" + r.ID, After: struct {
		AccessReview
		Items int `json:"items"`
	}{r, len(items)}}, nil
}

// makeReviewRoom removes the oldest closed reviews, with their items,
// until n more items fit the tenant's bound.
func (s *TenantState) makeReviewRoom(n int) error {
	for len(s.ReviewItems)+n > MaxTenantReviewItems {
		var oldest *AccessReview
		for _, r := range s.AccessReviews {
			if r.State == ReviewClosed && (oldest == nil || r.CreatedAt.Before(oldest.CreatedAt)) {
				oldest = &r
			}
		}
		if oldest == nil {
			return &LimitError{Tenant: s.ID, What: "access review items", Max: MaxTenantReviewItems}
		}
		for k := range s.ReviewItems {
			if k.Review == oldest.ID {
				dropRow(s, s.ReviewItems, k)
			}
		}
		dropRow(s, s.AccessReviews, oldest.ID)
	}
	return nil
}

// OpenReview returns a review that is still open, or the error saying why
// it cannot take decisions.
func (s *TenantState) OpenReview(id string) (AccessReview, error) {
	r, ok := s.AccessReviews[id]
	if !ok {
		return r, &NotFoundError{Reason: ReasonReviewNotFound, What: fmt.Sprintf("access review %q in tenant %q", id, s.ID)}
	}
	if r.State != ReviewOpen {
		return r, &ConflictError{Reason: ReasonReviewClosed, Message: fmt.Sprintf("access review %s is closed", id)}
	}
	return r, nil
}

// ReviewItemOf returns an item of an open review that is undecided.
func (s *TenantState) ReviewItemOf(k ReviewItemKey) (ReviewItem, error) {
	if _, err := s.OpenReview(k.Review); err != nil {
		return ReviewItem{}, err
	}
	it, ok := s.ReviewItems[k]
	if !ok {
		return it, &NotFoundError{Reason: ReasonReviewItemNotFound, What: fmt.Sprintf("item of user %q and role %q in access review %s", k.UserID, k.RoleID, k.Review)}
	}
	if it.Decision != "" {
		return it, &ConflictError{Reason: ReasonReviewItemDecided, Message: fmt.Sprintf("user %q's %s was already decided (%s by %s)", k.UserID, k.RoleID, it.Decision, it.DecidedBy)}
	}
	return it, nil
}

// DecideReviewItem records a reviewer's decision on an undecided item of
// an open review; revoke takes the grant away now (a grant gone already
// stays gone). A revoke of a grant given again since the review started
// is refused: that grant is not the one reviewed.
func (s *TenantState) DecideReviewItem(k ReviewItemKey, d ReviewDecision, by, comment string, now time.Time) (Change, error) {
	it, err := s.ReviewItemOf(k)
	if err != nil {
		return Change{}, err
	}
	if g, ok := s.regranted(it); ok && d == ReviewRevoke {
		return Change{}, &ConflictError{Reason: ReasonReviewGrantReplaced, Message: fmt.Sprintf(
			"user %q's %s was given again at %s, after the review started: it is not the grant under review (keep this item, and revoke the new grant with RevokeRole if it must go)",
			k.UserID, k.RoleID, g.GrantedAt.UTC().Format(time.RFC3339))}
	}
	before := it
	s.decide(&it, d, by, comment, now)
	return Change{Action: "review.decide", Target: fmt.Sprintf("review/%s/%s/%s", k.Review, k.UserID, k.RoleID), Before: before, After: it}, nil
}

// regranted returns the grant of an item's user and role when it is not
// the grant the item reviews: given (or changed) again since. Times are
// compared to the microsecond, which is what PostgreSQL keeps of a grant's
// (a replica that read the grant from its table holds no more).
func (s *TenantState) regranted(it ReviewItem) (Grant, bool) {
	g, ok := s.Grants[GrantKey{it.UserID, it.RoleID}]
	return g, ok && !it.GrantedAt.IsZero() && !g.GrantedAt.Truncate(time.Microsecond).Equal(it.GrantedAt.Truncate(time.Microsecond))
}

func (s *TenantState) decide(it *ReviewItem, d ReviewDecision, by, comment string, now time.Time) {
	it.Decision, it.DecidedBy, it.DecidedAt, it.Comment = d, by, now.UTC(), comment
	SetRow(s, s.ReviewItems, it.Key(), it)
	if d == ReviewRevoke { // never for a grant given again: DecideReviewItem refuses, CloseReview keeps
		if _, ok := s.Grants[GrantKey{it.UserID, it.RoleID}]; ok {
			dropRow(s, s.Grants, GrantKey{it.UserID, it.RoleID})
		}
	}
}

// CloseReview closes an open review: every undecided item gets the
// review's default, decided by `by` (an actor, or ReviewerByDeadline).
// keep, when set, is asked before each undecided item is revoked, with the
// state as the close has left it so far; a non-empty answer keeps that
// item instead, with the answer as its comment, counted in the outcome as
// OutcomeKeptNotRevocable. The items are closed in key order.
func (s *TenantState) CloseReview(id, by string, now time.Time, keep func(ReviewItem) string) (Change, error) {
	r, err := s.OpenReview(id)
	if err != nil {
		return Change{}, err
	}
	before := r
	counts := map[ReviewDecision]int{}
	for _, it := range s.SortedReviewItems(id) {
		if it.Decision == "" {
			d, comment, outcome := r.Default, "the review closed undecided", "default_"+r.Default
			if g, ok := s.regranted(it); ok && d == ReviewRevoke {
				d, outcome = ReviewKeep, OutcomeKeptNotRevocable
				comment = fmt.Sprintf("the grant was given again at %s, after the review started: it is not the grant under review",
					g.GrantedAt.UTC().Format(time.RFC3339))
			} else if d == ReviewRevoke && keep != nil {
				if why := keep(it); why != "" {
					d, comment, outcome = ReviewKeep, why, OutcomeKeptNotRevocable
				}
			}
			s.decide(&it, d, by, comment, now)
			counts[outcome]++
		}
		counts[it.Decision]++
	}
	r.State, r.ClosedBy, r.ClosedAt = ReviewClosed, by, now.UTC()
	SetRow(s, s.AccessReviews, id, &r)
	return Change{Action: "review.close", Target: "review/" + id, Before: before, After: struct {
		AccessReview
		Outcome map[ReviewDecision]int `json:"outcome"`
	}{r, counts}}, nil
}

// OutcomeKeptNotRevocable counts, in a closed review's outcome, the undecided items
// kept against a default of revoke because revoking them was not allowed
// (CloseReview's keep).
const OutcomeKeptNotRevocable ReviewDecision = "kept_not_revocable"

// SortedReviewItems returns a review's items ordered by user, then role.
func (s *TenantState) SortedReviewItems(review string) []ReviewItem {
	var out []ReviewItem
	for k, it := range s.ReviewItems {
		if k.Review == review {
			out = append(out, it)
		}
	}
	slices.SortFunc(out, func(a, b ReviewItem) int { return CompareReviewItemKeys(a.Key(), b.Key()) })
	return out
}

// SortedReviews returns the tenant's reviews, newest first.
func (s *TenantState) SortedReviews() []AccessReview {
	out := make([]AccessReview, 0, len(s.AccessReviews))
	for _, r := range s.AccessReviews {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b AccessReview) int {
		if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}
