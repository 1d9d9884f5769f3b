package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"
)

// This file holds the writes to a tenant's organisation (departments,
// memberships and managers, settings) and sharing (sharing rules, record
// shares). Like the role and grant writes they run on a private copy of the
// tenant inside the store's transaction: each checks its input, checks it
// against the tenant, applies it and describes the change for the change
// log. Bad input is an *InvalidError naming the request field (the paths of
// the AdminService requests, e.g. "department.parent_id"); a reference to
// something the tenant lacks is an *InvalidError on the field that names
// it; a target that does not exist is a *NotFoundError; a write the current
// state forbids (a cycle, a department still in use) is a *ConflictError.

// MaxOtherDepartments bounds the departments a user belongs to besides the
// primary one.
const MaxOtherDepartments = 16

// String renders the principal for messages and change-log targets, e.g.
// "user:alice" or "department:sales+subs".
func (p Principal) String() string {
	s := string(p.Kind) + ":" + p.ID
	if p.IncludeSubs {
		s += "+subs"
	}
	return s
}

// principalField is the request field of a principal's id: the member of
// the Principal oneof its kind sets.
func principalField(prefix string, k PrincipalKind) string {
	switch k {
	case PrincipalUser:
		return prefix + ".user_id"
	case PrincipalDepartment:
		return prefix + ".department_id"
	case PrincipalRole:
		return prefix + ".role_id"
	}
	return prefix
}

// ValidatePrincipal checks a principal's own fields; prefix is its request
// path, e.g. "rule.owned_by".
func ValidatePrincipal(prefix string, p Principal) error {
	field := principalField(prefix, p.Kind)
	switch p.Kind {
	case PrincipalUser:
		if err := ValidateSubjectID(field, p.ID); err != nil {
			return err
		}
	case PrincipalDepartment, PrincipalRole:
		if err := ValidateName(field, p.ID); err != nil {
			return err
		}
	case "":
		return Invalid(prefix, ReasonMissingField, "is required: set one of user_id, department_id or role_id")
	default:
		return Invalid(prefix, ReasonInvalidValue, fmt.Sprintf("principal kind must be user, department or role, got %q", p.Kind))
	}
	if p.IncludeSubs && p.Kind != PrincipalDepartment {
		return Invalid(prefix+".include_subdepartments", ReasonInvalidValue, "only a department has sub-departments")
	}
	return nil
}

// validateAccess checks a sharing rule's or record share's access level.
func validateAccess(field string, a Access) error {
	switch a {
	case AccessRead, AccessReadWrite:
		return nil
	case "":
		return Invalid(field, ReasonMissingField, "is required: read or read_write")
	}
	return Invalid(field, ReasonInvalidValue, fmt.Sprintf("access must be read or read_write, got %q", a))
}

// ValidateDepartment checks a department's own fields (paths under
// "department").
func ValidateDepartment(d Department) error {
	if err := ValidateName("department.department_id", d.ID); err != nil {
		return err
	}
	if err := ValidateText("department.name", d.Name, MaxDisplayLength, true); err != nil {
		return err
	}
	if d.Parent != "" {
		return ValidateName("department.parent_id", d.Parent)
	}
	return nil
}

// ValidateMembership checks a membership's own fields (paths under
// "membership"): the user, a primary department, at most
// MaxOtherDepartments others without repeats, and a manager who is not the
// user.
func ValidateMembership(m Membership) error {
	if err := ValidateSubjectID("membership.user_id", m.UserID); err != nil {
		return err
	}
	if err := ValidateName("membership.primary_department_id", m.Primary); err != nil {
		return err
	}
	if len(m.Others) > MaxOtherDepartments {
		return Invalid("membership.other_department_ids", ReasonTooMany, fmt.Sprintf("a user belongs to at most %d departments besides the primary one, got %d", MaxOtherDepartments, len(m.Others)))
	}
	for i, id := range m.Others {
		field := fmt.Sprintf("membership.other_department_ids[%d]", i)
		if err := ValidateName(field, id); err != nil {
			return err
		}
		if id == m.Primary {
			return Invalid(field, ReasonDuplicate, fmt.Sprintf("department %q is already the primary department", id))
		}
		if slices.Index(m.Others, id) != i {
			return Invalid(field, ReasonDuplicate, fmt.Sprintf("department %q is listed twice", id))
		}
	}
	if m.Manager != "" {
		if err := ValidateSubjectID("membership.manager_id", m.Manager); err != nil {
			return err
		}
		if m.Manager == m.UserID {
			return Invalid("membership.manager_id", ReasonInvalidValue, fmt.Sprintf("user %q cannot be their own manager", m.UserID))
		}
	}
	return nil
}

// ValidateSharingRule checks a sharing rule's own fields (paths under
// "rule") and its module against the catalog.
func ValidateSharingRule(cat *Catalog, r SharingRule) error {
	return validateSharingRule(cat, r)
}

// validateSharingRule checks a rule's fields; with a nil catalog the module
// is checked as an identifier only.
func validateSharingRule(cat *Catalog, r SharingRule) error {
	if err := ValidateName("rule.rule_id", r.ID); err != nil {
		return err
	}
	if err := checkModule(cat, "rule.module", r.Module); err != nil {
		return err
	}
	if err := ValidatePrincipal("rule.owned_by", r.OwnedBy); err != nil {
		return err
	}
	if err := ValidatePrincipal("rule.shared_with", r.SharedWith); err != nil {
		return err
	}
	return validateAccess("rule.access", r.Access)
}

// ValidateRecordShare checks a record share's own fields (paths under
// "share") and its module against the catalog. The expiry is checked
// against the clock by ShareRecord.
func ValidateRecordShare(cat *Catalog, sh RecordShare) error {
	return validateRecordShare(cat, sh)
}

func validateRecordShare(cat *Catalog, sh RecordShare) error {
	if err := checkModule(cat, "share.module", sh.Module); err != nil {
		return err
	}
	if err := ValidateSubjectID("share.record_id", sh.RecordID); err != nil {
		return err
	}
	if err := ValidatePrincipal("share.principal", sh.Principal); err != nil {
		return err
	}
	return validateAccess("share.access", sh.Access)
}

func checkModule(cat *Catalog, field, id string) error {
	if cat == nil {
		return ValidateName(field, id)
	}
	return cat.CheckModule(field, id)
}

// SortedDepartments returns the departments ordered by id.
func (s *TenantState) SortedDepartments() []Department {
	return slices.SortedFunc(maps.Values(s.Departments), func(a, b Department) int { return cmp.Compare(a.ID, b.ID) })
}

// SortedMembers returns the memberships ordered by user id.
func (s *TenantState) SortedMembers() []Membership {
	return inKeyOrder(s.Members, slices.Sorted(maps.Keys(s.Members)))
}

// SortedSharingRules returns the sharing rules ordered by id.
func (s *TenantState) SortedSharingRules() []SharingRule {
	return slices.SortedFunc(maps.Values(s.SharingRules), func(a, b SharingRule) int { return cmp.Compare(a.ID, b.ID) })
}

// SortedRecordShares returns the record shares ordered by module, record
// id and principal.
func (s *TenantState) SortedRecordShares() []RecordShare {
	return inKeyOrder(s.RecordShares, slices.SortedFunc(maps.Keys(s.RecordShares), CompareShareKeys))
}

// inKeyOrder returns m's values in the order of keys. Sorting the keys of
// a large tenant's maps, rather than their values, moves less memory.
func inKeyOrder[K comparable, V any](m map[K]V, keys []K) []V {
	out := make([]V, len(keys))
	for i, k := range keys {
		out[i] = m[k]
	}
	return out
}

// Key returns the key the share is filed under.
func (sh RecordShare) Key() ShareKey {
	return ShareKey{Module: sh.Module, RecordID: sh.RecordID, Principal: sh.Principal}
}

// CompareShareKeys orders share keys by module, record id, principal kind,
// principal id, and the share without sub-departments first.
// Each field is compared only when the ones before are equal.
func CompareShareKeys(a, b ShareKey) int {
	if c := strings.Compare(a.Module, b.Module); c != 0 {
		return c
	}
	if c := strings.Compare(a.RecordID, b.RecordID); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Principal.Kind, b.Principal.Kind); c != 0 {
		return c
	}
	if c := strings.Compare(a.Principal.ID, b.Principal.ID); c != 0 {
		return c
	}
	return compareBool(a.Principal.IncludeSubs, b.Principal.IncludeSubs)
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

// DepartmentNotFound returns the not-found error for a department of a
// tenant.
func DepartmentNotFound(tenant, id string) error {
	return &NotFoundError{Reason: ReasonDepartmentNotFound, What: fmt.Sprintf("department %q in tenant %q", id, tenant)}
}

// checkDepartment reports, on field, a department the tenant lacks.
func (s *TenantState) checkDepartment(field, id string) error {
	if _, ok := s.Departments[id]; !ok {
		return Invalid(field, ReasonDepartmentNotFound, fmt.Sprintf("department %q does not exist in tenant %q", id, s.ID))
	}
	return nil
}

// checkPrincipal verifies that the tenant knows what a principal names: an
// existing department or role, or a known user (else NOT_FOUND).
func (s *TenantState) checkPrincipal(prefix string, p Principal) error {
	field := principalField(prefix, p.Kind)
	switch p.Kind {
	case PrincipalUser:
		if !s.KnowsUser(p.ID) {
			return UserNotFound(s.ID, p.ID)
		}
	case PrincipalDepartment:
		return s.checkDepartment(field, p.ID)
	case PrincipalRole:
		if _, ok := s.Roles[p.ID]; !ok {
			return Invalid(field, ReasonRoleNotFound, fmt.Sprintf("role %q does not exist in tenant %q", p.ID, s.ID))
		}
	}
	return nil
}

// sharingUse describes the first sharing rule or record share (in id
// order) naming a principal of kind k with id, or returns "".
func (s *TenantState) sharingUse(k PrincipalKind, id string) string {
	names := func(p Principal) bool { return p.Kind == k && p.ID == id }
	for _, r := range s.SortedSharingRules() {
		if names(r.OwnedBy) || names(r.SharedWith) {
			return fmt.Sprintf("named by sharing rule %q", r.ID)
		}
	}
	for _, sh := range s.SortedRecordShares() {
		if names(sh.Principal) {
			return fmt.Sprintf("shared record %s/%s", sh.Module, sh.RecordID)
		}
	}
	return ""
}

// CreateDepartment adds a department, at the top (no parent) or below an
// existing parent.
func (s *TenantState) CreateDepartment(d Department) (Change, error) {
	if err := ValidateDepartment(d); err != nil {
		return Change{}, err
	}
	if _, ok := s.Departments[d.ID]; ok {
		return Change{}, &ConflictError{Reason: ReasonDepartmentExists, Message: fmt.Sprintf("department %q already exists in tenant %q", d.ID, s.ID), Exists: true}
	}
	if d.Parent != "" {
		if err := s.checkDepartment("department.parent_id", d.Parent); err != nil {
			return Change{}, err
		}
	}
	if err := s.room("departments", len(s.Departments), MaxTenantDepartments); err != nil {
		return Change{}, err
	}
	SetRow(s, s.Departments, d.ID, &d)
	return Change{Action: "department.create", Target: "department/" + d.ID, After: d}, nil
}

// UpdateDepartment renames a department and moves it under another parent
// (or to the top); d's name and parent replace the stored ones. A move
// under the department itself or one of its descendants is refused with
// ReasonDepartmentCycle.
func (s *TenantState) UpdateDepartment(d Department) (Change, error) {
	if err := ValidateDepartment(d); err != nil {
		return Change{}, err
	}
	before, ok := s.Departments[d.ID]
	if !ok {
		return Change{}, DepartmentNotFound(s.ID, d.ID)
	}
	if d.Parent == d.ID {
		return Change{}, &ConflictError{Reason: ReasonDepartmentCycle, Message: fmt.Sprintf("department %q cannot be its own parent", d.ID)}
	}
	if d.Parent != "" {
		if err := s.checkDepartment("department.parent_id", d.Parent); err != nil {
			return Change{}, err
		}
		// Walking up from the new parent must not meet the department. The
		// tree is acyclic, so the walk ends within len(Departments) steps.
		for cur, steps := d.Parent, 0; cur != "" && steps <= len(s.Departments); cur, steps = s.Departments[cur].Parent, steps+1 {
			if cur == d.ID {
				return Change{}, &ConflictError{Reason: ReasonDepartmentCycle, Message: fmt.Sprintf("department %q cannot move under %q, which lies below it", d.ID, d.Parent)}
			}
		}
	}
	SetRow(s, s.Departments, d.ID, &d)
	return Change{Action: "department.update", Target: "department/" + d.ID, Before: before, After: d}, nil
}

// DeleteDepartment removes a department that has no sub-departments, no
// members (primary or other), and no sharing rule or record share naming
// it; otherwise it refuses with ReasonDepartmentInUse, naming what uses it.
func (s *TenantState) DeleteDepartment(id string) (Change, error) {
	before, ok := s.Departments[id]
	if !ok {
		return Change{}, DepartmentNotFound(s.ID, id)
	}
	inUse := func(format string, args ...any) error {
		return &ConflictError{Reason: ReasonDepartmentInUse, Message: fmt.Sprintf("department %q ", id) + fmt.Sprintf(format, args...)}
	}
	for _, d := range s.SortedDepartments() {
		if d.Parent == id {
			return Change{}, inUse("has sub-department %q; move or delete it first", d.ID)
		}
	}
	for _, m := range s.SortedMembers() {
		if m.Primary == id {
			return Change{}, inUse("is the primary department of user %q; change the membership first", m.UserID)
		}
		if slices.Contains(m.Others, id) {
			return Change{}, inUse("is a department of user %q; change the membership first", m.UserID)
		}
	}
	if use := s.sharingUse(PrincipalDepartment, id); use != "" {
		return Change{}, inUse("is %s; delete it first", use)
	}
	dropRow(s, s.Departments, id)
	return Change{Action: "department.delete", Target: "department/" + id, Before: before}, nil
}

// SetMembership sets a user's primary and other departments and manager,
// replacing their current membership. The user must be known, the
// departments must exist, the manager, when set, must be a known user, and
// manager chains must stay free of cycles (ReasonManagerCycle).
func (s *TenantState) SetMembership(m Membership) (Change, error) {
	if err := ValidateMembership(m); err != nil {
		return Change{}, err
	}
	if !s.KnowsUser(m.UserID) {
		return Change{}, UserNotFound(s.ID, m.UserID)
	}
	if err := s.checkDepartment("membership.primary_department_id", m.Primary); err != nil {
		return Change{}, err
	}
	for i, id := range m.Others {
		if err := s.checkDepartment(fmt.Sprintf("membership.other_department_ids[%d]", i), id); err != nil {
			return Change{}, err
		}
	}
	if m.Manager != "" {
		if !s.KnowsUser(m.Manager) {
			return Change{}, UserNotFound(s.ID, m.Manager)
		}
		// Walking up the manager chain from the new manager must not meet
		// the user. The chains are acyclic, so the walk ends within
		// len(Members) steps.
		chain := []string{m.UserID}
		for cur, steps := m.Manager, 0; cur != "" && steps <= len(s.Members); cur, steps = s.Members[cur].Manager, steps+1 {
			chain = append(chain, cur)
			if cur == m.UserID {
				return Change{}, &ConflictError{Reason: ReasonManagerCycle, Message: fmt.Sprintf("manager chain would form a cycle: %s", joinChain(chain))}
			}
		}
	}
	m.Others = slices.Clone(m.Others)
	if len(m.Others) == 0 {
		m.Others = nil
	}
	c := Change{Action: "membership.create", Target: "membership/" + m.UserID, After: m}
	if before, ok := s.Members[m.UserID]; ok {
		c.Action, c.Before = "membership.update", before
	}
	SetRow(s, s.Members, m.UserID, &m)
	return c, nil
}

// joinChain renders a manager chain as "a" -> "b" -> "a".
func joinChain(ids []string) string {
	quoted := make([]string, len(ids))
	for i, id := range ids {
		quoted[i] = strconv.Quote(id)
	}
	return strings.Join(quoted, " -> ")
}

// DeleteMembership removes a user's membership. Other users' manager links
// to the user stay: they name a user, who may come back.
func (s *TenantState) DeleteMembership(user string) (Change, error) {
	before, ok := s.Members[user]
	if !ok {
		return Change{}, &NotFoundError{Reason: ReasonMembershipNotFound, What: fmt.Sprintf("membership of user %q in tenant %q", user, s.ID)}
	}
	dropRow(s, s.Members, user)
	return Change{Action: "membership.delete", Target: "membership/" + user, Before: before}, nil
}

// ValidateManagerDepth checks a manager depth: 0 through MaxManagerDepth.
func ValidateManagerDepth(n int) error {
	if n < 0 || n > MaxManagerDepth {
		return Invalid("manager_depth", ReasonInvalidValue, fmt.Sprintf("must be between 0 and %d, got %d", MaxManagerDepth, n))
	}
	return nil
}

// SetManagerDepth sets how many levels of managers above a record's owner
// may read it: 0 through MaxManagerDepth.
func (s *TenantState) SetManagerDepth(n int) (Change, error) {
	if err := ValidateManagerDepth(n); err != nil {
		return Change{}, err
	}
	before := s.Settings
	s.Settings.ManagerDepth = n
	return Change{Action: "settings.update", Target: "settings", Before: before, After: s.Settings}, nil
}

// CreateSharingRule adds a sharing rule. Its fields must be valid
// (ValidateSharingRule also checks the module against the catalog); this
// checks that the tenant knows both principals and that the id is new.
func (s *TenantState) CreateSharingRule(r SharingRule) (Change, error) {
	if err := validateSharingRule(nil, r); err != nil {
		return Change{}, err
	}
	if _, ok := s.SharingRules[r.ID]; ok {
		return Change{}, &ConflictError{Reason: ReasonSharingRuleExists, Message: fmt.Sprintf("sharing rule %q already exists in tenant %q", r.ID, s.ID), Exists: true}
	}
	if err := s.checkPrincipal("rule.owned_by", r.OwnedBy); err != nil {
		return Change{}, err
	}
	if err := s.checkPrincipal("rule.shared_with", r.SharedWith); err != nil {
		return Change{}, err
	}
	if err := s.room("sharing rules", len(s.SharingRules), MaxTenantSharingRules); err != nil {
		return Change{}, err
	}
	SetRow(s, s.SharingRules, r.ID, &r)
	return Change{Action: "sharing_rule.create", Target: "sharing_rule/" + r.ID, After: r}, nil
}

// DeleteSharingRule removes a sharing rule.
func (s *TenantState) DeleteSharingRule(id string) (Change, error) {
	before, ok := s.SharingRules[id]
	if !ok {
		return Change{}, &NotFoundError{Reason: ReasonSharingRuleNotFound, What: fmt.Sprintf("sharing rule %q in tenant %q", id, s.ID)}
	}
	dropRow(s, s.SharingRules, id)
	return Change{Action: "sharing_rule.delete", Target: "sharing_rule/" + id, Before: before}, nil
}

// shareTarget is the change-log target of a record share.
func shareTarget(k ShareKey) string {
	return "record_share/" + k.Module + "/" + k.RecordID + "/" + k.Principal.String()
}

// ShareRecord shares one record with a principal the tenant knows,
// replacing an existing share of the record with the same principal. Its
// fields must be valid (ValidateRecordShare also checks the module against
// the catalog); an expiry must lie after now and at or before MaxExpiry.
func (s *TenantState) ShareRecord(sh RecordShare, now time.Time) (Change, error) {
	if err := validateRecordShare(nil, sh); err != nil {
		return Change{}, err
	}
	if !sh.ExpiresAt.IsZero() && !sh.ExpiresAt.After(now) {
		return Change{}, Invalid("share.expires_at", ReasonExpiryInPast, fmt.Sprintf("must lie in the future, got %s", sh.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if sh.ExpiresAt.After(MaxExpiry) {
		return Change{}, Invalid("share.expires_at", ReasonInvalidValue, fmt.Sprintf("must lie at or before %s, got %s", MaxExpiry.Format(time.RFC3339), sh.ExpiresAt.UTC().Format(time.RFC3339)))
	}
	if err := s.checkPrincipal("share.principal", sh.Principal); err != nil {
		return Change{}, err
	}
	k := sh.Key()
	c := Change{Action: "record_share.create", Target: shareTarget(k), After: sh}
	if before, ok := s.RecordShares[k]; ok {
		c.Action, c.Before = "record_share.update", before
	} else if err := s.room("record shares", len(s.RecordShares), MaxTenantRecordShares); err != nil {
		return Change{}, err
	}
	SetRow(s, s.RecordShares, k, &sh)
	return c, nil
}

// UnshareRecord removes a record share.
func (s *TenantState) UnshareRecord(k ShareKey) (Change, error) {
	before, ok := s.RecordShares[k]
	if !ok {
		return Change{}, &NotFoundError{Reason: ReasonRecordShareNotFound, What: fmt.Sprintf("share of %s record %q with %s in tenant %q", k.Module, k.RecordID, k.Principal, s.ID)}
	}
	dropRow(s, s.RecordShares, k)
	return Change{Action: "record_share.delete", Target: shareTarget(k), Before: before}, nil
}
