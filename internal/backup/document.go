// Package backup turns a tenant's settings into one versioned document and
// back: everything the tenant's decisions depend on (settings, users,
// roles, grants with expiry, departments, memberships, sharing rules,
// record shares), in YAML or JSON, canonically ordered so that two exports
// of the same state are byte-identical and a diff between two reads well.
// A document read back is checked as admin writes check their input, and
// an error names the path inside the document (roles[3].permissions...).
package backup

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Version names the document format; a document of another version is
// refused.
const Version = "crmauthz.dev/tenant/v1"

// Format is how a document is encoded.
type Format string

// Formats.
const (
	YAML Format = "yaml"
	JSON Format = "json"
)

// Document is a tenant's settings as exported.
type Document struct {
	Version      string        `yaml:"version" json:"version"`
	Tenant       string        `yaml:"tenant" json:"tenant"`
	Name         string        `yaml:"name,omitempty" json:"name,omitempty"`
	Settings     Settings      `yaml:"settings" json:"settings"`
	Roles        []Role        `yaml:"roles,omitempty" json:"roles,omitempty"`
	Users        []User        `yaml:"users,omitempty" json:"users,omitempty"`
	Grants       []Grant       `yaml:"grants,omitempty" json:"grants,omitempty"`
	Departments  []Department  `yaml:"departments,omitempty" json:"departments,omitempty"`
	Members      []Member      `yaml:"members,omitempty" json:"members,omitempty"`
	SharingRules []SharingRule `yaml:"sharing_rules,omitempty" json:"sharing_rules,omitempty"`
	RecordShares []RecordShare `yaml:"record_shares,omitempty" json:"record_shares,omitempty"`
}

// Settings are the tenant-wide settings.
type Settings struct {
	ManagerDepth int `yaml:"manager_depth" json:"manager_depth"`
	// ActionAliases maps action names callers use to a function id or
	// <module>.<verb> (AuthZEN, README).
	ActionAliases map[string]string `yaml:"action_aliases,omitempty" json:"action_aliases,omitempty"`
}

// Role is a role with its permissions.
type Role struct {
	ID          string      `yaml:"id" json:"id"`
	DisplayName string      `yaml:"display_name,omitempty" json:"display_name,omitempty"`
	Description string      `yaml:"description,omitempty" json:"description,omitempty"`
	Template    string      `yaml:"template,omitempty" json:"template,omitempty"`
	Inherits    []string    `yaml:"inherits,omitempty" json:"inherits,omitempty"`
	Permissions Permissions `yaml:"permissions" json:"permissions"`
	// Request makes the role requestable (access requests).
	Request *model.RequestPolicy `yaml:"request,omitempty" json:"request,omitempty"`
}

// Permissions are a role's grants and denies.
type Permissions struct {
	Modules       []ModuleVerbs `yaml:"modules,omitempty" json:"modules,omitempty"`
	Fields        []FieldRule   `yaml:"fields,omitempty" json:"fields,omitempty"`
	Functions     []string      `yaml:"functions,omitempty" json:"functions,omitempty"`
	DenyModules   []ModuleVerbs `yaml:"deny_modules,omitempty" json:"deny_modules,omitempty"`
	DenyFunctions []string      `yaml:"deny_functions,omitempty" json:"deny_functions,omitempty"`
}

// ModuleVerbs are verbs on a module at a data scope.
type ModuleVerbs struct {
	Module string   `yaml:"module" json:"module"`
	Verbs  []string `yaml:"verbs,flow" json:"verbs"`
	Scope  string   `yaml:"scope,omitempty" json:"scope,omitempty"`
}

// FieldRule is one field's state under a role.
type FieldRule struct {
	Module string `yaml:"module" json:"module"`
	Field  string `yaml:"field" json:"field"`
	State  string `yaml:"state" json:"state"`
}

// User is a user of the tenant.
type User struct {
	ID     string `yaml:"id" json:"id"`
	Name   string `yaml:"name,omitempty" json:"name,omitempty"`
	Status string `yaml:"status" json:"status"`
}

// Grant gives a user a role, maybe until a time.
type Grant struct {
	User      string     `yaml:"user" json:"user"`
	Role      string     `yaml:"role" json:"role"`
	ExpiresAt *time.Time `yaml:"expires_at,omitempty" json:"expires_at,omitempty"`
	GrantedBy string     `yaml:"granted_by,omitempty" json:"granted_by,omitempty"`
	GrantedAt *time.Time `yaml:"granted_at,omitempty" json:"granted_at,omitempty"`
}

// Department is a node of the department tree.
type Department struct {
	ID     string `yaml:"id" json:"id"`
	Name   string `yaml:"name" json:"name"`
	Parent string `yaml:"parent,omitempty" json:"parent,omitempty"`
}

// Member places a user in departments and under a manager.
type Member struct {
	User    string   `yaml:"user" json:"user"`
	Primary string   `yaml:"primary" json:"primary"`
	Others  []string `yaml:"others,omitempty,flow" json:"others,omitempty"`
	Manager string   `yaml:"manager,omitempty" json:"manager,omitempty"`
}

// Principal names a user, a department (maybe with those below) or a role.
type Principal struct {
	Kind        string `yaml:"kind" json:"kind"`
	ID          string `yaml:"id" json:"id"`
	IncludeSubs bool   `yaml:"include_subs,omitempty" json:"include_subs,omitempty"`
}

// SharingRule shares the records one principal owns with another.
type SharingRule struct {
	ID         string    `yaml:"id" json:"id"`
	Module     string    `yaml:"module" json:"module"`
	OwnedBy    Principal `yaml:"owned_by,flow" json:"owned_by"`
	SharedWith Principal `yaml:"shared_with,flow" json:"shared_with"`
	Access     string    `yaml:"access" json:"access"`
}

// RecordShare shares one record with one principal.
type RecordShare struct {
	Module    string     `yaml:"module" json:"module"`
	RecordID  string     `yaml:"record_id" json:"record_id"`
	Principal Principal  `yaml:"principal,flow" json:"principal"`
	Access    string     `yaml:"access" json:"access"`
	ExpiresAt *time.Time `yaml:"expires_at,omitempty" json:"expires_at,omitempty"`
	SharedBy  string     `yaml:"shared_by,omitempty" json:"shared_by,omitempty"`
	SharedAt  *time.Time `yaml:"shared_at,omitempty" json:"shared_at,omitempty"`
}

// Times are kept in UTC to the microsecond, as PostgreSQL keeps them, so a
// document means the same whichever store it came from or goes to.
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC().Truncate(time.Microsecond)
	return &u
}

func timeOf(t *time.Time) time.Time {
	if t == nil {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// FromState returns the document of a tenant's state, canonically ordered:
// every list by its key, departments parents first (siblings by id).
func FromState(st *model.TenantState) Document {
	d := Document{Version: Version, Tenant: st.ID, Name: st.Name, Settings: Settings{ManagerDepth: st.Settings.ManagerDepth, ActionAliases: maps.Clone(st.Settings.ActionAliases)}}
	for _, r := range st.SortedRoles() {
		d.Roles = append(d.Roles, roleOf(r))
	}
	for _, u := range st.SortedUsers() {
		d.Users = append(d.Users, User{ID: u.ID, Name: u.Name, Status: string(statusOf(u.Status))})
	}
	for _, g := range st.SortedGrants() {
		d.Grants = append(d.Grants, Grant{User: g.UserID, Role: g.RoleID, ExpiresAt: timePtr(g.ExpiresAt), GrantedBy: g.GrantedBy, GrantedAt: timePtr(g.GrantedAt)})
	}
	d.Departments = treeOrder(st.Departments)
	for _, m := range st.SortedMembers() {
		d.Members = append(d.Members, Member{User: m.UserID, Primary: m.Primary, Others: m.Others, Manager: m.Manager})
	}
	for _, r := range st.SortedSharingRules() {
		d.SharingRules = append(d.SharingRules, SharingRule{ID: r.ID, Module: r.Module, OwnedBy: principalOf(r.OwnedBy),
			SharedWith: principalOf(r.SharedWith), Access: string(r.Access)})
	}
	for _, sh := range st.SortedRecordShares() {
		d.RecordShares = append(d.RecordShares, RecordShare{Module: sh.Module, RecordID: sh.RecordID, Principal: principalOf(sh.Principal),
			Access: string(sh.Access), ExpiresAt: timePtr(sh.ExpiresAt), SharedBy: sh.SharedBy, SharedAt: timePtr(sh.SharedAt)})
	}
	return d
}

func statusOf(s model.UserStatus) model.UserStatus {
	if s == "" {
		return model.UserActive
	}
	return s
}

func roleOf(r model.Role) Role {
	mv := func(gs []model.ModuleGrant) []ModuleVerbs {
		var out []ModuleVerbs
		for _, g := range gs {
			out = append(out, ModuleVerbs{Module: g.Module, Verbs: g.Verbs, Scope: string(g.Scope)})
		}
		return out
	}
	out := Role{ID: r.ID, DisplayName: r.DisplayName, Description: r.Description, Template: r.Template, Inherits: r.Inherits,
		Permissions: Permissions{Modules: mv(r.Permissions.Modules), Functions: r.Permissions.Functions,
			DenyModules: mv(r.Permissions.DenyModules), DenyFunctions: r.Permissions.DenyFunctions}, Request: r.Request}
	for _, f := range r.Permissions.Fields {
		out.Permissions.Fields = append(out.Permissions.Fields, FieldRule{Module: f.Module, Field: f.Field, State: string(f.State)})
	}
	return out
}

func principalOf(p model.Principal) Principal {
	return Principal{Kind: string(p.Kind), ID: p.ID, IncludeSubs: p.IncludeSubs}
}

// treeOrder lists departments parents first, siblings by id.
func treeOrder(depts map[string]model.Department) []Department {
	children := map[string][]string{}
	for _, d := range depts {
		children[d.Parent] = append(children[d.Parent], d.ID)
	}
	var out []Department
	var walk func(parent string)
	walk = func(parent string) {
		ids := children[parent]
		slices.Sort(ids)
		for _, id := range ids {
			d := depts[id]
			out = append(out, Department{ID: d.ID, Name: d.Name, Parent: d.Parent})
			walk(id)
		}
	}
	walk("")
	return out
}

// Encode writes the document in the format: the same document always
// encodes to the same bytes.
func (d Document) Encode(f Format) ([]byte, error) {
	switch f {
	case JSON:
		b, err := json.MarshalIndent(d, "", "  ")
		if err != nil {
			return nil, fmt.Errorf("encode document: %w", err)
		}
		return append(b, '\n'), nil
	case YAML, "":
		return d.encodeYAML()
	}
	return nil, fmt.Errorf("unknown document format %q", f)
}

// encodeYAML writes the document as one YAML encoder would, but encodes
// each list in batches and indents them itself: the YAML encoder's time
// grows with the square of a document's size (a tenant of 50,000 users took
// 13 s), the batches' with its size.
func (d Document) encodeYAML() ([]byte, error) {
	var buf bytes.Buffer
	head := Document{Version: d.Version, Tenant: d.Tenant, Name: d.Name, Settings: d.Settings}
	if err := encodeYAMLTo(&buf, head, ""); err != nil {
		return nil, err
	}
	sections := []struct {
		key   string
		items any
		n     int
	}{
		{"roles", d.Roles, len(d.Roles)}, {"users", d.Users, len(d.Users)}, {"grants", d.Grants, len(d.Grants)},
		{"departments", d.Departments, len(d.Departments)}, {"members", d.Members, len(d.Members)},
		{"sharing_rules", d.SharingRules, len(d.SharingRules)}, {"record_shares", d.RecordShares, len(d.RecordShares)},
	}
	const batch = 64
	for _, sec := range sections {
		if sec.n == 0 {
			continue
		}
		buf.WriteString(sec.key + ":\n")
		v := reflect.ValueOf(sec.items)
		for off := 0; off < sec.n; off += batch {
			if err := encodeYAMLTo(&buf, v.Slice(off, min(off+batch, sec.n)).Interface(), "  "); err != nil {
				return nil, err
			}
		}
	}
	return buf.Bytes(), nil
}

// encodeYAMLTo appends v as YAML to buf, every line indented by indent.
func encodeYAMLTo(buf *bytes.Buffer, v any, indent string) error {
	var out bytes.Buffer
	enc := yaml.NewEncoder(&out)
	enc.SetIndent(2)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode document: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode document: %w", err)
	}
	for line := range bytes.Lines(out.Bytes()) {
		buf.WriteString(indent)
		buf.Write(line)
	}
	return nil
}

// Hash is the SHA-256 of the document's canonical JSON encoding, in hex: the
// same whether the document came as YAML or JSON.
func (d Document) Hash() (string, error) {
	b, err := d.Encode(JSON)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// Decode reads a document in YAML or JSON (JSON is YAML too), refusing
// unknown keys, a second document, and a version other than Version, with
// the path of what is wrong.
func Decode(data []byte) (Document, error) {
	var d Document
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&d); err != nil {
		if errors.Is(err, io.EOF) {
			return d, model.Invalid("document", model.ReasonMissingField, "is empty")
		}
		return d, model.Invalid("document", model.ReasonInvalidValue, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if err := dec.Decode(new(yaml.Node)); !errors.Is(err, io.EOF) {
		return d, model.Invalid("document", model.ReasonInvalidValue, "must hold one document")
	}
	if d.Version != Version {
		return d, model.Invalid("version", model.ReasonInvalidValue, fmt.Sprintf("must be %q, got %q", Version, d.Version))
	}
	return d, nil
}

// sortedKeys returns a map's keys in order.
func sortedKeys[K cmp.Ordered, V any](m map[K]V) []K { return slices.Sorted(maps.Keys(m)) }
