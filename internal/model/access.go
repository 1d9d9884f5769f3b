package model

import (
	"cmp"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Access requests are how people get rights in a CRM: a user asks for a
// role the tenant offers as requestable, with a reason and how long they
// need it; one of the approvers the role's request policy names approves
// (an ordinary grant with an expiry follows) or denies it; a request
// nobody decides lapses. A narrower right is offered as a small role (one
// function, one module verb) made requestable.

// ApproverKind says who an approver rule names.
type ApproverKind string

// Approver kinds.
const (
	ApproverFunction ApproverKind = "function" // the users holding a function
	ApproverRole     ApproverKind = "role"     // the users holding a role (directly or through inheritance)
	ApproverManager  ApproverKind = "manager"  // the requesting user's manager
)

// Approver is one rule of who may decide a request.
type Approver struct {
	Kind ApproverKind `yaml:"kind" json:"kind"`
	ID   string       `yaml:"id" json:"id,omitempty"` // the function or role; empty for the manager
}

// RequestPolicy makes a role requestable and says who decides.
type RequestPolicy struct {
	// Approvers: any one of them may decide; at least one, at most
	// MaxApprovers.
	Approvers []Approver `yaml:"approvers" json:"approvers"`
	// MaxDays is the longest grant an approval gives (1-MaxRequestDays).
	MaxDays int `yaml:"max_days" json:"max_days"`
	// PendingDays is how long a request waits for a decision before it
	// lapses (1-MaxPendingDays).
	PendingDays int `yaml:"pending_days" json:"pending_days"`
}

// Limits of request policies and requests.
const (
	MaxApprovers       = 8
	MaxRequestDays     = 365
	MaxPendingDays     = 90
	DefaultPendingDays = 14
	// MaxTenantRequests bounds the requests a tenant keeps; a new request
	// beyond it pushes out the oldest closed one (the change log keeps
	// every step), and is refused when all are pending.
	MaxTenantRequests = 10_000
	// MaxPendingPerUser bounds one user's pending requests.
	MaxPendingPerUser = 20
)

// RequestState is where a request stands.
type RequestState string

// Request states. A pending request past its PendingUntil reads as
// lapsed; nothing needs to run for that.
const (
	RequestPending   RequestState = "pending"
	RequestApproved  RequestState = "approved"
	RequestDenied    RequestState = "denied"
	RequestCancelled RequestState = "cancelled"
	RequestLapsed    RequestState = "lapsed"
)

// AccessRequest is one request for a role.
type AccessRequest struct {
	ID           string        `json:"id"`
	UserID       string        `json:"user_id"` // who would hold the role
	RoleID       string        `json:"role_id"`
	Reason       string        `json:"reason"`
	Duration     time.Duration `json:"duration"`     // how long the grant is wanted for
	RequestedBy  string        `json:"requested_by"` // the actor: the user, or who asked for them
	RequestedAt  time.Time     `json:"requested_at"`
	PendingUntil time.Time     `json:"pending_until"` // it lapses then if undecided
	State        RequestState  `json:"state"`         // pending, approved, denied or cancelled as stored
	DecidedBy    string        `json:"decided_by,omitempty"`
	DecidedAt    time.Time     `json:"decided_at,omitzero"`
	Decision     string        `json:"decision,omitempty"`     // the decider's reason
	GrantExpires time.Time     `json:"grant_expires,omitzero"` // the expiry an approval gave
}

// StateAt is the request's state at now: a pending request past its
// PendingUntil is lapsed.
func (r AccessRequest) StateAt(now time.Time) RequestState {
	if r.State == RequestPending && !now.Before(r.PendingUntil) {
		return RequestLapsed
	}
	return r.State
}

// NewRequestID returns a random request id: "req_" and 16 hex digits.
func NewRequestID() string { return newID("req_") }

// ValidRequestID reports whether id is shaped like NewRequestID's.
func ValidRequestID(id string) bool { return validID("req_", id) }

// newID returns prefix and 16 random hex digits.
func newID(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// validID reports whether id is prefix and 16 lowercase hex digits.
func validID(prefix, id string) bool {
	if len(id) != len(prefix)+16 || id[:len(prefix)] != prefix {
		return false
	}
	for i := len(prefix); i < len(id); i++ {
		if c := id[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// ValidateRequestPolicy checks a policy against the catalog and the
// tenant's roles; field prefixes the error's field path.
func (s *TenantState) ValidateRequestPolicy(cat *Catalog, field string, p RequestPolicy) error {
	if len(p.Approvers) == 0 {
		return Invalid(field+".approvers", ReasonMissingField, "name at least one approver")
	}
	if len(p.Approvers) > MaxApprovers {
		return Invalid(field+".approvers", ReasonTooMany, fmt.Sprintf("at most %d approvers, got %d", MaxApprovers, len(p.Approvers)))
	}
	for i, a := range p.Approvers {
		f := fmt.Sprintf("%s.approvers[%d]", field, i)
		if slices.Index(p.Approvers, a) < i {
			return Invalid(f, ReasonDuplicate, "is listed twice")
		}
		switch a.Kind {
		case ApproverFunction:
			if !cat.HasFunction(a.ID) {
				return Invalid(f+".id", ReasonUnknownFunction, fmt.Sprintf("function %q is not in the catalog", a.ID))
			}
		case ApproverRole:
			if _, ok := s.Roles[a.ID]; !ok {
				return Invalid(f+".id", ReasonRoleNotFound, fmt.Sprintf("role %q does not exist in tenant %q", a.ID, s.ID))
			}
		case ApproverManager:
			if a.ID != "" {
				return Invalid(f+".id", ReasonInvalidValue, "must be empty for the manager")
			}
		default:
			return Invalid(f+".kind", ReasonInvalidValue, fmt.Sprintf("must be function, role or manager, got %q", a.Kind))
		}
	}
	if p.MaxDays < 1 || p.MaxDays > MaxRequestDays {
		return Invalid(field+".max_days", ReasonInvalidValue, fmt.Sprintf("must be 1-%d, got %d", MaxRequestDays, p.MaxDays))
	}
	if p.PendingDays < 1 || p.PendingDays > MaxPendingDays {
		return Invalid(field+".pending_days", ReasonInvalidValue, fmt.Sprintf("must be 1-%d, got %d", MaxPendingDays, p.PendingDays))
	}
	return nil
}

// SetRequestPolicy makes a role requestable under p, or not requestable
// when p is nil. The policy must have been validated.
func (s *TenantState) SetRequestPolicy(roleID string, p *RequestPolicy) (Change, error) {
	before, ok := s.Roles[roleID]
	if !ok {
		return Change{}, RoleNotFound(s.ID, roleID)
	}
	after := before
	after.Request = p
	SetRow(s, s.Roles, roleID, &after)
	return Change{Action: "role.request_policy", Target: "role/" + roleID, Before: before, After: after}, nil
}

// RequestAccess stores a new pending request. The role must be
// requestable, the user known, the duration within the policy, and the
// user must not have a pending request for the role already.
func (s *TenantState) RequestAccess(r AccessRequest, now time.Time) (Change, error) {
	role, ok := s.Roles[r.RoleID]
	if !ok {
		return Change{}, RoleNotFound(s.ID, r.RoleID)
	}
	if role.Request == nil {
		return Change{}, &ConflictError{Reason: ReasonNotRequestable, Message: fmt.Sprintf("role %q of tenant %q is not requestable", r.RoleID, s.ID)}
	}
	if !s.KnowsUser(r.UserID) {
		return Change{}, UserNotFound(s.ID, r.UserID)
	}
	if u, ok := s.Users[r.UserID]; ok && !u.Active() {
		return Change{}, &ConflictError{Reason: ReasonUserInactive, Message: fmt.Sprintf("user %q of tenant %q is inactive", r.UserID, s.ID)}
	}
	if max := time.Duration(role.Request.MaxDays) * 24 * time.Hour; r.Duration <= 0 || r.Duration > max {
		return Change{}, Invalid("duration", ReasonInvalidValue, fmt.Sprintf("must be more than 0 and at most %d days (the role's policy), got %s", role.Request.MaxDays, r.Duration))
	}
	pending := 0
	for _, o := range s.AccessRequests {
		if o.UserID != r.UserID || o.StateAt(now) != RequestPending {
			continue
		}
		if o.RoleID == r.RoleID {
			return Change{}, &ConflictError{Reason: ReasonRequestPending, Exists: true,
				Message: fmt.Sprintf("user %q already has request %s for role %q pending", r.UserID, o.ID, r.RoleID)}
		}
		pending++
	}
	if pending >= MaxPendingPerUser {
		return Change{}, &LimitError{Tenant: s.ID, What: "pending requests of user " + r.UserID, Max: MaxPendingPerUser}
	}
	if len(s.AccessRequests) >= MaxTenantRequests {
		oldest, ok := s.oldestClosedRequest(now)
		if !ok {
			return Change{}, &LimitError{Tenant: s.ID, What: "access requests", Max: MaxTenantRequests}
		}
		dropRow(s, s.AccessRequests, oldest)
	}
	r.State = RequestPending
	r.RequestedAt = now.UTC()
	r.PendingUntil = r.RequestedAt.Add(time.Duration(role.Request.PendingDays) * 24 * time.Hour)
	SetRow(s, s.AccessRequests, r.ID, &r)
	return Change{Action: "request.create", Target: "request/" + r.ID, After: r}, nil
}

func (s *TenantState) oldestClosedRequest(now time.Time) (string, bool) {
	var oldest *AccessRequest
	for _, r := range s.AccessRequests {
		if r.StateAt(now) == RequestPending {
			continue
		}
		if oldest == nil || r.RequestedAt.Before(oldest.RequestedAt) ||
			(r.RequestedAt.Equal(oldest.RequestedAt) && r.ID < oldest.ID) {
			oldest = &r
		}
	}
	if oldest == nil {
		return "", false
	}
	return oldest.ID, true
}

// PendingRequest returns a request that is still pending at now, or the
// error saying why it cannot be decided.
func (s *TenantState) PendingRequest(id string, now time.Time) (AccessRequest, error) {
	r, ok := s.AccessRequests[id]
	if !ok {
		return r, &NotFoundError{Reason: ReasonRequestNotFound, What: fmt.Sprintf("access request %q in tenant %q", id, s.ID)}
	}
	if st := r.StateAt(now); st != RequestPending {
		return r, &ConflictError{Reason: ReasonRequestClosed, Message: fmt.Sprintf("access request %s is %s, not pending", id, st)}
	}
	return r, nil
}

// ApproveRequest approves a pending request: the user gets the role until
// grantExpires (an ordinary grant), unless a grant they hold already lasts
// at least as long, which stays as it is.
func (s *TenantState) ApproveRequest(id, by, reason string, grantExpires, now time.Time) (Change, error) {
	r, err := s.PendingRequest(id, now)
	if err != nil {
		return Change{}, err
	}
	before := r
	g := Grant{UserID: r.UserID, RoleID: r.RoleID, ExpiresAt: grantExpires.UTC(), GrantedBy: by, GrantedAt: now.UTC()}
	held, holds := s.Grants[GrantKey{r.UserID, r.RoleID}]
	if !holds || !held.ActiveAt(now) || (!held.ExpiresAt.IsZero() && held.ExpiresAt.Before(g.ExpiresAt)) {
		if _, err := s.GrantRole(g, now); err != nil {
			return Change{}, err
		}
	}
	r.State, r.DecidedBy, r.DecidedAt, r.Decision, r.GrantExpires = RequestApproved, by, now.UTC(), reason, g.ExpiresAt
	SetRow(s, s.AccessRequests, id, &r)
	return Change{Action: "request.approve", Target: "request/" + id, Before: before, After: r}, nil
}

// CloseRequest denies or cancels a pending request (state RequestDenied
// or RequestCancelled).
func (s *TenantState) CloseRequest(id string, state RequestState, by, reason string, now time.Time) (Change, error) {
	r, err := s.PendingRequest(id, now)
	if err != nil {
		return Change{}, err
	}
	before := r
	r.State, r.DecidedBy, r.DecidedAt, r.Decision = state, by, now.UTC(), reason
	SetRow(s, s.AccessRequests, id, &r)
	action := "request.deny"
	if state == RequestCancelled {
		action = "request.cancel"
	}
	return Change{Action: action, Target: "request/" + id, Before: before, After: r}, nil
}

// SortedRequests returns the tenant's requests, newest first (ties by id).
func (s *TenantState) SortedRequests() []AccessRequest {
	out := make([]AccessRequest, 0, len(s.AccessRequests))
	for _, r := range s.AccessRequests {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b AccessRequest) int {
		if c := b.RequestedAt.Compare(a.RequestedAt); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	return out
}
