package model

import (
	"maps"
	"time"
)

// Scope is how far a role's grant of a record verb reaches, from none to the
// whole tenant. Across a user's roles the widest scope wins.
type Scope string

// Data scopes, narrowest first. An empty scope in a role means ScopeOrg.
const (
	ScopeNone     Scope = "none"
	ScopeSelf     Scope = "self"
	ScopeDept     Scope = "dept"
	ScopeDeptTree Scope = "dept_tree"
	ScopeOrg      Scope = "org"
)

// Rank orders scopes: none < self < dept < dept_tree < org. An unknown
// scope ranks -1.
func (s Scope) Rank() int {
	switch s {
	case ScopeNone:
		return 0
	case ScopeSelf:
		return 1
	case ScopeDept:
		return 2
	case ScopeDeptTree:
		return 3
	case ScopeOrg, "":
		return 4
	}
	return -1
}

// Scopes lists the scopes by rank.
var Scopes = []Scope{ScopeNone, ScopeSelf, ScopeDept, ScopeDeptTree, ScopeOrg}

// Access is what a sharing rule or record share gives: read (the list and
// read verbs) or read_write (also update).
type Access string

// Record access levels.
const (
	AccessRead      Access = "read"
	AccessReadWrite Access = "read_write"
)

// Record verbs that sharing, shares and managers can widen.
const (
	VerbList = "list"
)

// Settings are a tenant's data-permission settings.
type Settings struct {
	// ManagerDepth is how many levels of managers above a record's owner
	// may read it (0: none). The direct manager may also update.
	ManagerDepth int `json:"manager_depth"`
	// ActionAliases maps the action names the tenant's callers use (an
	// API gateway's can_update_todo) to what each stands for: a module
	// verb as <module>.<verb>, or a function id. The map is replaced on
	// change, never edited in place.
	ActionAliases map[string]string `json:"action_aliases,omitempty"`
}

// Equal reports whether s and o are the same settings.
func (s Settings) Equal(o Settings) bool {
	return s.ManagerDepth == o.ManagerDepth && maps.Equal(s.ActionAliases, o.ActionAliases)
}

// DefaultManagerDepth is the manager depth of a new tenant.
const DefaultManagerDepth = 2

// MaxManagerDepth bounds Settings.ManagerDepth.
const MaxManagerDepth = 16

// Department is one node of a tenant's department tree.
type Department struct {
	ID     string `json:"id"`
	Name   string `json:"name"`
	Parent string `json:"parent,omitempty"` // empty at the top
}

// Membership is where a user sits: a primary department, maybe others, and
// a manager.
type Membership struct {
	UserID  string   `json:"user_id"`
	Primary string   `json:"primary"`
	Others  []string `json:"others,omitempty"`
	Manager string   `json:"manager,omitempty"`
}

// PrincipalKind says what a principal names.
type PrincipalKind string

// Principal kinds.
const (
	PrincipalUser       PrincipalKind = "user"
	PrincipalDepartment PrincipalKind = "department"
	PrincipalRole       PrincipalKind = "role"
)

// Principal is a user, a department (optionally with the departments below
// it) or the holders of a role.
type Principal struct {
	Kind        PrincipalKind `json:"kind"`
	ID          string        `json:"id"`
	IncludeSubs bool          `json:"include_subs,omitempty"`
}

// SharingRule shares the records of a module owned by one principal (an
// owner, an owner holding a role, an owning department) with another, at
// read or read_write.
type SharingRule struct {
	ID         string    `json:"id"`
	Module     string    `json:"module"`
	OwnedBy    Principal `json:"owned_by"`
	SharedWith Principal `json:"shared_with"`
	Access     Access    `json:"access"`
}

// RecordShare shares one record with one principal, optionally until
// ExpiresAt. An expired share decides nothing.
type RecordShare struct {
	Module    string    `json:"module"`
	RecordID  string    `json:"record_id"`
	Principal Principal `json:"principal"`
	Access    Access    `json:"access"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	SharedBy  string    `json:"shared_by,omitempty"`
	SharedAt  time.Time `json:"shared_at,omitzero"`
}

// ShareKey identifies a record share: one record, one principal.
type ShareKey struct {
	Module, RecordID string
	Principal        Principal
}

// ActiveAt reports whether the share decides anything at t.
func (s RecordShare) ActiveAt(t time.Time) bool { return s.ExpiresAt.IsZero() || t.Before(s.ExpiresAt) }

// Record is one record as a check describes it.
type Record struct {
	ID         string
	Owner      string
	Department string // empty when the record has none
}

// Validate checks a record's identifiers; prefix is its request path.
func (r *Record) Validate(prefix string) error {
	if field, err := r.Check(); err != nil {
		return Invalid(prefix+"."+field, ReasonInvalidIdentifier, err.Error())
	}
	return nil
}

// Check is Validate for many records: it names the field that is wrong
// (id, owner_id or department_id) without the record's place, which the
// caller adds only for an error.
func (r *Record) Check() (field string, err error) {
	if err := subjectClass.check(r.ID); err != nil {
		return "id", err
	}
	if err := subjectClass.check(r.Owner); err != nil {
		return "owner_id", err
	}
	if r.Department == "" {
		return "", nil
	}
	return "department_id", nameClass.check(r.Department)
}
