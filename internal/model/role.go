package model

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Record verbs the model itself relies on; the catalog lists the rest.
const (
	VerbRead   = "read"
	VerbUpdate = "update"
)

// FieldState is how visible a field is: hidden, read-only or read-write.
type FieldState string

// Field states, from least to most visible.
const (
	FieldHidden    FieldState = "hidden"
	FieldReadOnly  FieldState = "read_only"
	FieldReadWrite FieldState = "read_write"
)

// Limits on the size of one role.
const (
	MaxRuleCount      = 2000 // module grants + field rules + functions + denies
	MaxInherits       = 16
	MaxInheritDepth   = 8 // casbin's role manager follows at most 10 levels
	MaxGrantsPerQuery = 1000
	// MaxRoles bounds a tenant's roles: the engine numbers them in 16 bits
	// and refuses to load a tenant with more.
	MaxRoles = 1<<16 - 1
)

// MaxExpiry is the latest expiry a grant may carry. The engine judges
// expiry in Unix nanoseconds, which end here (2262-04-11); a later time
// would wrap to one in the past there.
var MaxExpiry = time.Unix(0, math.MaxInt64).UTC()

// Role is a named set of permissions inside one tenant. Role values are
// immutable once stored: writers replace a role, never edit its slices.
type Role struct {
	ID          string      `yaml:"id" json:"id"`
	DisplayName string      `yaml:"display_name" json:"display_name,omitempty"`
	Description string      `yaml:"description" json:"description,omitempty"`
	Template    string      `yaml:"template" json:"template,omitempty"`
	Inherits    []string    `yaml:"inherits" json:"inherits,omitempty"`
	Permissions Permissions `yaml:"permissions" json:"permissions"`
	// Request, when set, makes the role requestable (access requests).
	Request *RequestPolicy `yaml:"request" json:"request,omitempty"`
}

// Permissions are the grants a role carries. Roles are additive: across a
// user's roles the most permissive grant wins. Denies narrow: a denied module
// verb or function is refused whatever other roles allow.
type Permissions struct {
	Modules       []ModuleGrant `yaml:"modules" json:"modules,omitempty"`
	Fields        []FieldRule   `yaml:"fields" json:"fields,omitempty"`
	Functions     []string      `yaml:"functions" json:"functions,omitempty"`
	DenyModules   []ModuleGrant `yaml:"deny_modules" json:"deny_modules,omitempty"`
	DenyFunctions []string      `yaml:"deny_functions" json:"deny_functions,omitempty"`
}

// ModuleGrant grants (or, in DenyModules, denies) record verbs on a module.
// In grants, Scope says how far the verbs reach in records (empty: the whole
// tenant); a module may be granted once per scope, no verb twice.
type ModuleGrant struct {
	Module string   `yaml:"module" json:"module"`
	Verbs  []string `yaml:"verbs" json:"verbs"`
	Scope  Scope    `yaml:"scope" json:"scope,omitempty"`
}

// FieldRule overrides, for one role, the state a field would get from the
// role's module verbs (read gives read-only, update gives read-write).
type FieldRule struct {
	Module string     `yaml:"module" json:"module"`
	Field  string     `yaml:"field" json:"field"`
	State  FieldState `yaml:"state" json:"state"`
}

// Grant gives a user a role in a tenant, optionally until ExpiresAt. An
// expired grant decides nothing; it stays listed until revoked.
type Grant struct {
	UserID    string    `json:"user_id"`
	RoleID    string    `json:"role_id"`
	ExpiresAt time.Time `json:"expires_at,omitzero"` // zero: never expires
	GrantedBy string    `json:"granted_by,omitempty"`
	GrantedAt time.Time `json:"granted_at,omitzero"`
}

// ActiveAt reports whether the grant decides anything at t.
func (g Grant) ActiveAt(t time.Time) bool { return g.ExpiresAt.IsZero() || t.Before(g.ExpiresAt) }

// Validate checks a role's own fields against the catalog; prefix is the
// request path of the role's permissions (e.g. "permissions"). References to
// other roles are checked by TenantState.
func (p Permissions) Validate(cat *Catalog, prefix string) error {
	n := len(p.Modules) + len(p.Fields) + len(p.Functions) + len(p.DenyModules) + len(p.DenyFunctions)
	if n > MaxRuleCount {
		return Invalid(prefix, ReasonTooMany, fmt.Sprintf("a role holds at most %d rules, got %d", MaxRuleCount, n))
	}
	if err := validateModuleGrants(cat, prefix+".modules", p.Modules, true); err != nil {
		return err
	}
	if err := validateModuleGrants(cat, prefix+".deny_modules", p.DenyModules, false); err != nil {
		return err
	}
	seen := map[[2]string]bool{}
	for i, r := range p.Fields {
		path := fmt.Sprintf("%s.fields[%d]", prefix, i)
		if err := cat.CheckModule(path+".module", r.Module); err != nil {
			return err
		}
		if err := cat.CheckField(path+".field", r.Module, r.Field); err != nil {
			return err
		}
		switch r.State {
		case FieldHidden, FieldReadOnly, FieldReadWrite:
		default:
			return Invalid(path+".state", ReasonInvalidValue, fmt.Sprintf("field state must be hidden, read_only or read_write, got %q", r.State))
		}
		k := [2]string{r.Module, r.Field}
		if seen[k] {
			return Invalid(path, ReasonDuplicate, fmt.Sprintf("field %s.%s has two rules", r.Module, r.Field))
		}
		seen[k] = true
	}
	if err := validateFunctions(cat, prefix+".functions", p.Functions); err != nil {
		return err
	}
	return validateFunctions(cat, prefix+".deny_functions", p.DenyFunctions)
}

func validateModuleGrants(cat *Catalog, prefix string, grants []ModuleGrant, scoped bool) error {
	seen := map[[2]string]bool{}
	for i, g := range grants {
		path := fmt.Sprintf("%s[%d]", prefix, i)
		if err := cat.CheckModule(path+".module", g.Module); err != nil {
			return err
		}
		switch {
		case !scoped && g.Scope != "":
			return Invalid(path+".scope", ReasonInvalidValue, "a deny has no scope: it denies the verb on every record")
		case g.Scope.Rank() < 0:
			return Invalid(path+".scope", ReasonInvalidValue, fmt.Sprintf("scope must be none, self, dept, dept_tree or org, got %q", g.Scope))
		}
		if len(g.Verbs) == 0 {
			return Invalid(path+".verbs", ReasonMissingField, "must name at least one verb")
		}
		for j, v := range g.Verbs {
			vpath := fmt.Sprintf("%s.verbs[%d]", path, j)
			if err := cat.CheckVerb(vpath, v); err != nil {
				return err
			}
			k := [2]string{g.Module, v}
			if seen[k] {
				return Invalid(vpath, ReasonDuplicate, fmt.Sprintf("verb %q of module %q is listed twice", v, g.Module))
			}
			seen[k] = true
		}
	}
	return nil
}

func validateFunctions(cat *Catalog, prefix string, fns []string) error {
	for i, f := range fns {
		path := fmt.Sprintf("%s[%d]", prefix, i)
		if err := cat.CheckFunction(path, f); err != nil {
			return err
		}
		if slices.Index(fns, f) != i {
			return Invalid(path, ReasonDuplicate, fmt.Sprintf("function %q is listed twice", f))
		}
	}
	return nil
}

// ValidateRoleFields checks a role's identifier, texts and permissions.
func ValidateRoleFields(cat *Catalog, r Role) error {
	if err := ValidateName("role_id", r.ID); err != nil {
		return err
	}
	if err := ValidateText("display_name", r.DisplayName, MaxDisplayLength, false); err != nil {
		return err
	}
	if err := ValidateText("description", r.Description, MaxDisplayLength, false); err != nil {
		return err
	}
	if len(r.Inherits) > MaxInherits {
		return Invalid("inherits", ReasonTooMany, fmt.Sprintf("a role inherits at most %d roles", MaxInherits))
	}
	for i, id := range r.Inherits {
		path := fmt.Sprintf("inherits[%d]", i)
		if err := ValidateName(path, id); err != nil {
			return err
		}
		if slices.Index(r.Inherits, id) != i {
			return Invalid(path, ReasonDuplicate, fmt.Sprintf("role %q is listed twice", id))
		}
	}
	return r.Permissions.Validate(cat, "permissions")
}
