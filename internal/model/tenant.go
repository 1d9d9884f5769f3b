package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// TenantState is everything the service knows about one tenant (one Casbin
// domain): its roles and grants, its organisation (departments, memberships,
// managers) and its sharing, at one revision.
type TenantState struct {
	ID       string
	Name     string
	Revision int64
	Settings Settings
	Roles    map[string]Role
	Grants   map[GrantKey]Grant

	Users        map[string]User
	Departments  map[string]Department
	Members      map[string]Membership // by user id
	SharingRules map[string]SharingRule
	RecordShares map[ShareKey]RecordShare

	AccessRequests map[string]AccessRequest // by request id
	AccessReviews  map[string]AccessReview  // by review id
	ReviewItems    map[ReviewItemKey]ReviewItem

	// journal records a write in progress (Begin); nil otherwise.
	journal *journal
}

// GrantKey identifies a grant: one user holds one role at most once.
type GrantKey struct{ UserID, RoleID string }

// NewTenantState returns an empty tenant at revision 0.
func NewTenantState(id, name string) *TenantState {
	return &TenantState{
		ID: id, Name: name, Settings: Settings{ManagerDepth: DefaultManagerDepth},
		Roles: map[string]Role{}, Grants: map[GrantKey]Grant{}, Users: map[string]User{},
		Departments: map[string]Department{}, Members: map[string]Membership{},
		SharingRules: map[string]SharingRule{}, RecordShares: map[ShareKey]RecordShare{},
		AccessRequests: map[string]AccessRequest{}, AccessReviews: map[string]AccessReview{}, ReviewItems: map[ReviewItemKey]ReviewItem{},
	}
}

// Clone returns a copy that writers may change without affecting s. The
// values in its maps are never edited in place (writers replace them), so
// copying the maps is enough.
func (s *TenantState) Clone() *TenantState {
	c := *s
	c.journal = nil
	c.Roles = cloneMap(s.Roles)
	c.Grants = cloneMap(s.Grants)
	c.Users = cloneMap(s.Users)
	c.Departments = cloneMap(s.Departments)
	c.Members = cloneMap(s.Members)
	c.SharingRules = cloneMap(s.SharingRules)
	c.RecordShares = cloneMap(s.RecordShares)
	c.AccessRequests = cloneMap(s.AccessRequests)
	c.AccessReviews = cloneMap(s.AccessReviews)
	c.ReviewItems = cloneMap(s.ReviewItems)
	return &c
}

func cloneMap[K comparable, V any](m map[K]V) map[K]V {
	if m == nil {
		return map[K]V{}
	}
	return maps.Clone(m)
}

// SortedRoles returns the roles ordered by id.
func (s *TenantState) SortedRoles() []Role {
	return slices.SortedFunc(maps.Values(s.Roles), func(a, b Role) int { return cmp.Compare(a.ID, b.ID) })
}

// SortedGrants returns the grants ordered by user, then role.
//
// Large tenants sort tens of thousands of grants on every write: the keys
// (two strings) are sorted rather than the grants, each pair of keys is
// compared once per field and only as far as needed, and the grants are
// looked up in key order.
func (s *TenantState) SortedGrants() []Grant {
	return inKeyOrder(s.Grants, slices.SortedFunc(maps.Keys(s.Grants), CompareGrantKeys))
}

// CompareGrantKeys orders grant keys by user, then role.
func CompareGrantKeys(a, b GrantKey) int {
	if c := strings.Compare(a.UserID, b.UserID); c != 0 {
		return c
	}
	return strings.Compare(a.RoleID, b.RoleID)
}

// Change describes one admin write for the change log: what kind, on what,
// and the state of that thing before and after (nil when absent).
type Change struct {
	Action string // e.g. "role.create", "grant.revoke"
	Target string // e.g. "role/sales_rep", "grant/alice/sales_rep"
	Before any
	After  any
}

// CreateRole adds a role. The role's own fields must already be valid
// (ValidateRoleFields); this checks it against the tenant.
func (s *TenantState) CreateRole(r Role) (Change, error) {
	if _, ok := s.Roles[r.ID]; ok {
		return Change{}, &ConflictError{Reason: ReasonRoleExists, Message: fmt.Sprintf("role %q already exists in tenant %q", r.ID, s.ID), Exists: true}
	}
	if err := s.room("roles", len(s.Roles), MaxTenantRoles); err != nil {
		return Change{}, err
	}
	if err := s.checkInherits(r); err != nil {
		return Change{}, err
	}
	SetRow(s, s.Roles, r.ID, &r)
	return Change{Action: "role.create", Target: "role/" + r.ID, After: r}, nil
}

// ReplaceRole replaces an existing role's description and permissions.
func (s *TenantState) ReplaceRole(r Role) (Change, error) {
	before, ok := s.Roles[r.ID]
	if !ok {
		return Change{}, RoleNotFound(s.ID, r.ID)
	}
	if err := s.checkInherits(r); err != nil {
		return Change{}, err
	}
	SetRow(s, s.Roles, r.ID, &r)
	return Change{Action: "role.update", Target: "role/" + r.ID, Before: before, After: r}, nil
}

// DeleteRole removes a role that no grant, no other role, no sharing rule
// and no record share refers to.
func (s *TenantState) DeleteRole(id string) (Change, error) {
	before, ok := s.Roles[id]
	if !ok {
		return Change{}, RoleNotFound(s.ID, id)
	}
	for _, g := range s.SortedGrants() {
		if g.RoleID == id {
			return Change{}, &ConflictError{Reason: ReasonRoleInUse, Message: fmt.Sprintf("role %q is granted to user %q; revoke its grants first", id, g.UserID)}
		}
	}
	for _, r := range s.SortedRoles() {
		if slices.Contains(r.Inherits, id) {
			return Change{}, &ConflictError{Reason: ReasonRoleInUse, Message: fmt.Sprintf("role %q is inherited by role %q", id, r.ID)}
		}
		if r.Request != nil && slices.Contains(r.Request.Approvers, Approver{Kind: ApproverRole, ID: id}) {
			return Change{}, &ConflictError{Reason: ReasonRoleInUse, Message: fmt.Sprintf("role %q approves requests for role %q; change that policy first", id, r.ID)}
		}
	}
	if use := s.sharingUse(PrincipalRole, id); use != "" {
		return Change{}, &ConflictError{Reason: ReasonRoleInUse, Message: fmt.Sprintf("role %q is %s; delete it first", id, use)}
	}
	dropRow(s, s.Roles, id)
	return Change{Action: "role.delete", Target: "role/" + id, Before: before}, nil
}

// GrantRole gives a user a role, replacing the expiry of an existing grant
// of the same role. An expiry must lie after now and at or before
// MaxExpiry.
func (s *TenantState) GrantRole(g Grant, now time.Time) (Change, error) {
	if _, ok := s.Roles[g.RoleID]; !ok {
		return Change{}, RoleNotFound(s.ID, g.RoleID)
	}
	if !s.KnowsUser(g.UserID) {
		return Change{}, UserNotFound(s.ID, g.UserID)
	}
	if !g.ExpiresAt.IsZero() && !g.ExpiresAt.After(now) {
		return Change{}, Invalid("expires_at", ReasonExpiryInPast, fmt.Sprintf("must lie in the future, got %s", g.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if g.ExpiresAt.After(MaxExpiry) {
		return Change{}, Invalid("expires_at", ReasonInvalidValue, fmt.Sprintf("must lie at or before %s, got %s", MaxExpiry.Format(time.RFC3339), g.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	k := GrantKey{g.UserID, g.RoleID}
	c := Change{Action: "grant.create", Target: "grant/" + g.UserID + "/" + g.RoleID, After: g}
	if before, ok := s.Grants[k]; ok {
		c.Action, c.Before = "grant.update", before
	} else if err := s.room("grants", len(s.Grants), MaxTenantGrants); err != nil {
		return Change{}, err
	}
	SetRow(s, s.Grants, k, &g)
	return c, nil
}

// RevokeRole removes a user's grant of a role.
func (s *TenantState) RevokeRole(user, role string) (Change, error) {
	k := GrantKey{user, role}
	before, ok := s.Grants[k]
	if !ok {
		return Change{}, &NotFoundError{Reason: ReasonGrantNotFound, What: fmt.Sprintf("grant of role %q to user %q in tenant %q", role, user, s.ID)}
	}
	dropRow(s, s.Grants, k)
	return Change{Action: "grant.revoke", Target: "grant/" + user + "/" + role, Before: before}, nil
}

// checkInherits verifies that r's inherited roles exist and that adding r
// keeps the inheritance graph acyclic and at most MaxInheritDepth deep.
func (s *TenantState) checkInherits(r Role) error {
	for i, id := range r.Inherits {
		if id == r.ID {
			return &ConflictError{Reason: ReasonRoleCycle, Message: fmt.Sprintf("role %q cannot inherit itself", r.ID)}
		}
		if _, ok := s.Roles[id]; !ok {
			return Invalid(fmt.Sprintf("inherits[%d]", i), ReasonRoleNotFound, fmt.Sprintf("role %q does not exist in tenant %q", id, s.ID))
		}
	}
	roles := maps.Clone(s.Roles)
	roles[r.ID] = r
	// depth(id) is the longest inheritance chain below id; a grey node met
	// again closes a cycle.
	const white, grey, black = 0, 1, 2
	color := map[string]int{}
	depth := map[string]int{}
	var visit func(id string) error
	visit = func(id string) error {
		switch color[id] {
		case grey:
			return &ConflictError{Reason: ReasonRoleCycle, Message: fmt.Sprintf("role inheritance would form a cycle through %q", id)}
		case black:
			return nil
		}
		color[id] = grey
		d := 0
		for _, parent := range roles[id].Inherits {
			if err := visit(parent); err != nil {
				return err
			}
			d = max(d, depth[parent]+1)
		}
		color[id], depth[id] = black, d
		if d > MaxInheritDepth {
			return &ConflictError{Reason: ReasonRoleTooDeep, Message: fmt.Sprintf("role inheritance below %q is %d levels deep; the limit is %d", id, d, MaxInheritDepth)}
		}
		return nil
	}
	for _, id := range slices.Sorted(maps.Keys(roles)) {
		if err := visit(id); err != nil {
			return err
		}
	}
	return nil
}
