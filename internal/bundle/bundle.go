// Package bundle reads the policy bundle the service runs with: the Casbin
// model, the permission catalog, the role templates and the demo tenant,
// from policies/ (embedded in the binary) or from a directory with the same
// layout.
package bundle

import (
	"bytes"
	"cmp"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/policies"
)

// Bundle is the parsed policy data.
type Bundle struct {
	ModelText string
	Catalog   *model.Catalog
	Templates map[string]model.Role
	Demo      Tenant
}

// Tenant is a tenant described in a bundle file (policies/demo/tenant.yaml).
// Everything but the id is optional.
type Tenant struct {
	ID        string       `yaml:"id"`
	Name      string       `yaml:"name"`
	Templates []string     `yaml:"templates"`
	Roles     []model.Role `yaml:"roles"`
	Users     []User       `yaml:"users"`
	Grants    []struct {
		User      string    `yaml:"user"`
		Role      string    `yaml:"role"`
		ExpiresAt time.Time `yaml:"expires_at"`
	} `yaml:"grants"`

	Settings     Settings      `yaml:"settings"`
	Departments  []Department  `yaml:"departments"`
	Members      []Member      `yaml:"members"`
	SharingRules []SharingRule `yaml:"sharing_rules"`
	RecordShares []RecordShare `yaml:"record_shares"`
}

// Settings are a bundle tenant's data-permission settings.
type Settings struct {
	// ManagerDepth replaces model.DefaultManagerDepth when set.
	ManagerDepth *int `yaml:"manager_depth"`
	// ActionAliases name actions for the tenant's callers (AuthZEN).
	ActionAliases map[string]string `yaml:"action_aliases"`
}

// Department is a node of a bundle tenant's department tree. A parent must
// be listed before its children.
type Department struct {
	ID     string `yaml:"id"`
	Name   string `yaml:"name"`
	Parent string `yaml:"parent"`
}

// Member places a user in departments and under a manager. A manager must
// be a member or hold a grant.
type Member struct {
	User    string   `yaml:"user"`
	Primary string   `yaml:"primary"`
	Others  []string `yaml:"others"`
	Manager string   `yaml:"manager"`
}

// Principal names a user, a department (with include_subs, also the
// departments below it) or a role: kind is user, department or role.
type Principal struct {
	Kind        string `yaml:"kind"`
	ID          string `yaml:"id"`
	IncludeSubs bool   `yaml:"include_subs"`
}

// SharingRule shares the records of a module owned by one principal with
// another; access is read or read_write.
type SharingRule struct {
	ID         string    `yaml:"id"`
	Module     string    `yaml:"module"`
	OwnedBy    Principal `yaml:"owned_by"`
	SharedWith Principal `yaml:"shared_with"`
	Access     string    `yaml:"access"`
}

// RecordShare shares one record with one principal, optionally until
// expires_at; a bundle may list shares that have already expired.
type RecordShare struct {
	Module    string    `yaml:"module"`
	RecordID  string    `yaml:"record_id"`
	Principal Principal `yaml:"principal"`
	Access    string    `yaml:"access"`
	ExpiresAt time.Time `yaml:"expires_at"`
}

func (p Principal) model() model.Principal {
	return model.Principal{Kind: model.PrincipalKind(p.Kind), ID: p.ID, IncludeSubs: p.IncludeSubs}
}

// User is a user of a bundle tenant: grants, memberships and shares may
// name only listed users. Status is active (the default) or inactive.
type User struct {
	ID     string `yaml:"id"`
	Name   string `yaml:"name"`
	Status string `yaml:"status"`
}

// Default reads the bundle embedded in the binary.
func Default() (*Bundle, error) { return Load(policies.FS) }

// Load reads a bundle from fsys.
func Load(fsys fs.FS) (*Bundle, error) {
	modelText, err := fs.ReadFile(fsys, "model.conf")
	if err != nil {
		return nil, fmt.Errorf("read model: %w", err)
	}
	b := &Bundle{ModelText: string(modelText), Catalog: &model.Catalog{}, Templates: map[string]model.Role{}}
	if err := readYAML(fsys, "catalog.yaml", b.Catalog); err != nil {
		return nil, err
	}
	if err := b.Catalog.Init(); err != nil {
		return nil, fmt.Errorf("catalog.yaml: %w", err)
	}
	files, err := fs.Glob(fsys, "templates/*.yaml")
	if err != nil {
		return nil, fmt.Errorf("list templates: %w", err)
	}
	for _, f := range files {
		var r model.Role
		if err := readYAML(fsys, f, &r); err != nil {
			return nil, err
		}
		if want := strings.TrimSuffix(path.Base(f), ".yaml"); r.ID != want {
			return nil, fmt.Errorf("%s: id %q must match the file name", f, r.ID)
		}
		if len(r.Inherits) > 0 || r.Template != "" || r.Request != nil {
			return nil, fmt.Errorf("%s: templates carry their own permissions only (no inherits, no template, no request policy)", f)
		}
		if err := model.ValidateRoleFields(b.Catalog, r); err != nil {
			return nil, fmt.Errorf("%s: %w", f, err)
		}
		b.Templates[r.ID] = r
	}
	if err := readYAML(fsys, "demo/tenant.yaml", &b.Demo); err != nil {
		return nil, err
	}
	if _, err := b.TenantState(b.Demo, time.Time{}); err != nil {
		return nil, fmt.Errorf("demo/tenant.yaml: %w", err)
	}
	return b, nil
}

// SortedTemplates returns the templates ordered by id.
func (b *Bundle) SortedTemplates() []model.Role {
	return slices.SortedFunc(maps.Values(b.Templates), func(x, y model.Role) int { return cmp.Compare(x.ID, y.ID) })
}

// FromTemplate returns a tenant role instantiated from a template.
func (b *Bundle) FromTemplate(id string) (model.Role, bool) {
	t, ok := b.Templates[id]
	if !ok {
		return model.Role{}, false
	}
	t.Template = id
	return t, true
}

// TenantState builds a tenant's initial state from its description, checking
// every role, user, grant, department, membership, sharing rule and record
// share as an admin write would. Grants and record shares are stamped as made by
// "system" at grantedAt. Unlike admin writes, grants and record shares may
// have expired already (the demo shows what an expired one decides).
func (b *Bundle) TenantState(t Tenant, grantedAt time.Time) (*model.TenantState, error) {
	if err := model.ValidateTenantID("id", t.ID); err != nil {
		return nil, err
	}
	st := model.NewTenantState(t.ID, t.Name)
	for _, id := range t.Templates {
		r, ok := b.FromTemplate(id)
		if !ok {
			return nil, fmt.Errorf("unknown template %q", id)
		}
		if _, err := st.CreateRole(r); err != nil {
			return nil, err
		}
	}
	for _, r := range t.Roles {
		if err := model.ValidateRoleFields(b.Catalog, r); err != nil {
			return nil, fmt.Errorf("role %q: %w", r.ID, err)
		}
		if _, err := st.CreateRole(r); err != nil {
			return nil, fmt.Errorf("role %q: %w", r.ID, err)
		}
	}
	for _, r := range t.Roles {
		if r.Request != nil {
			if err := st.ValidateRequestPolicy(b.Catalog, "request", *r.Request); err != nil {
				return nil, fmt.Errorf("role %q: %w", r.ID, err)
			}
		}
	}
	for i, u := range t.Users {
		if _, dup := st.Users[u.ID]; dup {
			return nil, fmt.Errorf("users[%d]: user %q is listed twice", i, u.ID)
		}
		if _, err := st.UpsertUser(model.User{ID: u.ID, Name: u.Name, Status: model.UserStatus(u.Status)}); err != nil {
			return nil, fmt.Errorf("users[%d]: %w", i, err)
		}
	}
	for i, g := range t.Grants {
		if err := model.ValidateSubjectID("user", g.User); err != nil {
			return nil, fmt.Errorf("grants[%d]: %w", i, err)
		}
		if _, dup := st.Grants[model.GrantKey{UserID: g.User, RoleID: g.Role}]; dup {
			return nil, fmt.Errorf("grants[%d]: role %q is granted to user %q twice", i, g.Role, g.User)
		}
		// The zero time as "now" lets a grant that has already expired in;
		// everything else is checked as GrantRole would.
		grant := model.Grant{UserID: g.User, RoleID: g.Role, ExpiresAt: g.ExpiresAt.UTC(), GrantedBy: "system", GrantedAt: grantedAt.UTC()}
		if _, err := st.GrantRole(grant, time.Time{}); err != nil {
			return nil, fmt.Errorf("grants[%d]: %w", i, err)
		}
	}
	if err := b.addOrg(st, t, grantedAt); err != nil {
		return nil, err
	}
	return st, nil
}

// addOrg adds a bundle tenant's settings, departments, memberships,
// sharing rules and record shares to st through the model's mutations.
func (b *Bundle) addOrg(st *model.TenantState, t Tenant, sharedAt time.Time) error {
	if n := t.Settings.ManagerDepth; n != nil {
		if _, err := st.SetManagerDepth(*n); err != nil {
			return fmt.Errorf("settings: %w", err)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Settings.ActionAliases)) {
		target := t.Settings.ActionAliases[name]
		if _, err := model.ValidateActionAlias(b.Catalog, "name", name, "target", target); err != nil {
			return fmt.Errorf("settings.action_aliases[%q]: %w", name, err)
		}
		if _, err := st.SetActionAlias(name, target); err != nil {
			return fmt.Errorf("settings.action_aliases[%q]: %w", name, err)
		}
	}
	for i, d := range t.Departments {
		if _, err := st.CreateDepartment(model.Department{ID: d.ID, Name: d.Name, Parent: d.Parent}); err != nil {
			return fmt.Errorf("departments[%d]: %w", i, err)
		}
	}
	// Managers are linked once every member is in, so that the list may
	// name a manager before the manager's own entry.
	for pass := range 2 {
		for i, m := range t.Members {
			mm := model.Membership{UserID: m.User, Primary: m.Primary, Others: m.Others}
			if _, dup := st.Members[m.User]; dup && pass == 0 {
				return fmt.Errorf("members[%d]: user %q is listed twice", i, m.User)
			}
			if pass == 1 {
				if m.Manager == "" {
					continue
				}
				mm.Manager = m.Manager
			}
			if _, err := st.SetMembership(mm); err != nil {
				return fmt.Errorf("members[%d]: %w", i, err)
			}
		}
	}
	for i, r := range t.SharingRules {
		rule := model.SharingRule{
			ID: r.ID, Module: r.Module, OwnedBy: r.OwnedBy.model(), SharedWith: r.SharedWith.model(), Access: model.Access(r.Access),
		}
		if err := model.ValidateSharingRule(b.Catalog, rule); err != nil {
			return fmt.Errorf("sharing_rules[%d]: %w", i, err)
		}
		if _, err := st.CreateSharingRule(rule); err != nil {
			return fmt.Errorf("sharing_rules[%d]: %w", i, err)
		}
	}
	for i, sh := range t.RecordShares {
		share := model.RecordShare{
			Module: sh.Module, RecordID: sh.RecordID, Principal: sh.Principal.model(), Access: model.Access(sh.Access),
			ExpiresAt: sh.ExpiresAt.UTC(), SharedBy: "system", SharedAt: sharedAt.UTC(),
		}
		if err := model.ValidateRecordShare(b.Catalog, share); err != nil {
			return fmt.Errorf("record_shares[%d]: %w", i, err)
		}
		if _, dup := st.RecordShares[share.Key()]; dup {
			return fmt.Errorf("record_shares[%d]: %s record %q is shared with %s twice", i, sh.Module, sh.RecordID, share.Principal)
		}
		// The zero time as "now" lets a share that has already expired in,
		// as grants are; everything else is checked as ShareRecord would.
		if _, err := st.ShareRecord(share, time.Time{}); err != nil {
			return fmt.Errorf("record_shares[%d]: %w", i, err)
		}
	}
	return nil
}

func readYAML(fsys fs.FS, name string, v any) error {
	data, err := fs.ReadFile(fsys, name)
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("parse %s: %w", name, err)
	}
	return nil
}
