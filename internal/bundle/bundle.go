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
}

// User is a demo user. The CRM owns its users; the bundle lists them for
// people reading the demo data.
type User struct {
	ID         string `yaml:"id"`
	Name       string `yaml:"name"`
	Department string `yaml:"department"`
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
		if len(r.Inherits) > 0 || r.Template != "" {
			return nil, fmt.Errorf("%s: templates carry their own permissions only (no inherits, no template)", f)
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
// every role and grant as an admin write would. Grants are stamped as made
// by "system" at grantedAt.
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
	for _, g := range t.Grants {
		if err := model.ValidateSubjectID("user", g.User); err != nil {
			return nil, err
		}
		if _, ok := st.Roles[g.Role]; !ok {
			return nil, fmt.Errorf("grant to %q: unknown role %q", g.User, g.Role)
		}
		st.Grants[model.GrantKey{UserID: g.User, RoleID: g.Role}] = model.Grant{
			UserID: g.User, RoleID: g.Role, ExpiresAt: g.ExpiresAt.UTC(), GrantedBy: "system", GrantedAt: grantedAt.UTC(),
		}
	}
	return st, nil
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
