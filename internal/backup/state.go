package backup

import (
	"errors"
	"fmt"
	"reflect"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// State builds the state of tenant id the document describes, checking
// every entry as an admin write would (grants and shares may have expired
// already, as a backup may hold them). An error is a *model.InvalidError
// whose field is the path inside the document.
func (d Document) State(cat *model.Catalog, id string) (*model.TenantState, error) {
	if err := model.ValidateTenantID("tenant", d.Tenant); err != nil {
		return nil, err
	}
	if err := model.ValidateText("name", d.Name, model.MaxDisplayLength, false); err != nil {
		return nil, err
	}
	st := model.NewTenantState(id, d.Name)
	if _, err := st.SetManagerDepth(d.Settings.ManagerDepth); err != nil {
		return nil, at("settings", err)
	}
	for _, name := range sortedKeys(d.Settings.ActionAliases) {
		path := fmt.Sprintf("settings.action_aliases[%q]", name)
		target := d.Settings.ActionAliases[name]
		if _, err := model.ValidateActionAlias(cat, path, name, path, target); err != nil {
			return nil, err
		}
		if _, err := st.SetActionAlias(name, target); err != nil {
			return nil, at(path, err)
		}
	}
	if err := d.addRoles(cat, st); err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for i, u := range d.Users {
		path := fmt.Sprintf("users[%d]", i)
		if seen[u.ID] {
			return nil, model.Invalid(path+".id", model.ReasonDuplicate, fmt.Sprintf("user %q is listed twice", u.ID))
		}
		seen[u.ID] = true
		if u.Status == "" {
			return nil, model.Invalid(path+".status", model.ReasonMissingField, "is required: active or inactive")
		}
		if _, err := st.UpsertUser(model.User{ID: u.ID, Name: u.Name, Status: model.UserStatus(u.Status)}); err != nil {
			return nil, at(path, trimPrefix(err, "user."))
		}
	}
	for i, g := range d.Grants {
		path := fmt.Sprintf("grants[%d]", i)
		if err := model.ValidateSubjectID(path+".user", g.User); err != nil {
			return nil, err
		}
		if err := model.ValidateName(path+".role", g.Role); err != nil {
			return nil, err
		}
		if _, dup := st.Grants[model.GrantKey{UserID: g.User, RoleID: g.Role}]; dup {
			return nil, model.Invalid(path, model.ReasonDuplicate, fmt.Sprintf("role %q is granted to user %q twice", g.Role, g.User))
		}
		if err := model.ValidateText(path+".granted_by", g.GrantedBy, 256, false); err != nil {
			return nil, err
		}
		grant := model.Grant{UserID: g.User, RoleID: g.Role, ExpiresAt: timeOf(g.ExpiresAt), GrantedBy: g.GrantedBy, GrantedAt: timeOf(g.GrantedAt)}
		// The zero time as "now" lets a grant that has expired since in.
		if _, err := st.GrantRole(grant, time.Time{}); err != nil {
			return nil, at(path, err)
		}
	}
	if err := d.addOrg(cat, st); err != nil {
		return nil, err
	}
	return st, nil
}

// addRoles creates the roles, each after the roles it inherits.
func (d Document) addRoles(cat *model.Catalog, st *model.TenantState) error {
	index := map[string]int{}
	for i, r := range d.Roles {
		if _, dup := index[r.ID]; dup {
			return model.Invalid(fmt.Sprintf("roles[%d].id", i), model.ReasonDuplicate, fmt.Sprintf("role %q is listed twice", r.ID))
		}
		index[r.ID] = i
	}
	state := map[string]int{} // 1 visiting, 2 done
	var add func(i int) error
	add = func(i int) error {
		r := d.Roles[i]
		path := fmt.Sprintf("roles[%d]", i)
		switch state[r.ID] {
		case 1:
			return model.Invalid(path+".inherits", model.ReasonRoleCycle, fmt.Sprintf("role %q inherits itself through its parents", r.ID))
		case 2:
			return nil
		}
		state[r.ID] = 1
		for j, p := range r.Inherits {
			pi, ok := index[p]
			if !ok {
				return model.Invalid(fmt.Sprintf("%s.inherits[%d]", path, j), model.ReasonRoleNotFound, fmt.Sprintf("role %q is not in the document", p))
			}
			if err := add(pi); err != nil {
				return err
			}
		}
		role := r.model()
		if err := model.ValidateRoleFields(cat, role); err != nil {
			return at(path, err)
		}
		if _, err := st.CreateRole(role); err != nil {
			return at(path, err)
		}
		state[r.ID] = 2
		return nil
	}
	for i := range d.Roles {
		if err := add(i); err != nil {
			return err
		}
	}
	// Request policies name other roles as approvers: they are checked
	// once every role is in.
	for i, r := range d.Roles {
		if r.Request == nil {
			continue
		}
		path := fmt.Sprintf("roles[%d].request", i)
		if err := st.ValidateRequestPolicy(cat, path, *r.Request); err != nil {
			return err
		}
		if _, err := st.SetRequestPolicy(r.ID, r.Request); err != nil {
			return at(path, err)
		}
	}
	return nil
}

func (r Role) model() model.Role {
	mg := func(vs []ModuleVerbs) []model.ModuleGrant {
		var out []model.ModuleGrant
		for _, v := range vs {
			out = append(out, model.ModuleGrant{Module: v.Module, Verbs: v.Verbs, Scope: model.Scope(v.Scope)})
		}
		return out
	}
	out := model.Role{ID: r.ID, DisplayName: r.DisplayName, Description: r.Description, Template: r.Template, Inherits: r.Inherits,
		Permissions: model.Permissions{Modules: mg(r.Permissions.Modules), Functions: r.Permissions.Functions,
			DenyModules: mg(r.Permissions.DenyModules), DenyFunctions: r.Permissions.DenyFunctions}}
	for _, f := range r.Permissions.Fields {
		out.Permissions.Fields = append(out.Permissions.Fields, model.FieldRule{Module: f.Module, Field: f.Field, State: model.FieldState(f.State)})
	}
	return out
}

func (p Principal) model() model.Principal {
	return model.Principal{Kind: model.PrincipalKind(p.Kind), ID: p.ID, IncludeSubs: p.IncludeSubs}
}

// addOrg adds the departments, memberships (managers after every member),
// sharing rules and record shares.
func (d Document) addOrg(cat *model.Catalog, st *model.TenantState) error {
	for i, dep := range d.Departments {
		if _, err := st.CreateDepartment(model.Department{ID: dep.ID, Name: dep.Name, Parent: dep.Parent}); err != nil {
			return at(fmt.Sprintf("departments[%d]", i), trimPrefix(err, "department."))
		}
	}
	for pass := range 2 {
		for i, m := range d.Members {
			path := fmt.Sprintf("members[%d]", i)
			mm := model.Membership{UserID: m.User, Primary: m.Primary, Others: m.Others}
			if _, dup := st.Members[m.User]; dup && pass == 0 {
				return model.Invalid(path+".user", model.ReasonDuplicate, fmt.Sprintf("user %q is listed twice", m.User))
			}
			if pass == 1 {
				if m.Manager == "" {
					continue
				}
				mm.Manager = m.Manager
			}
			if _, err := st.SetMembership(mm); err != nil {
				return at(path, trimPrefix(err, "membership."))
			}
		}
	}
	for i, r := range d.SharingRules {
		path := fmt.Sprintf("sharing_rules[%d]", i)
		rule := model.SharingRule{ID: r.ID, Module: r.Module, OwnedBy: r.OwnedBy.model(), SharedWith: r.SharedWith.model(), Access: model.Access(r.Access)}
		if err := model.ValidateSharingRule(cat, rule); err != nil {
			return at(path, trimPrefix(err, "rule."))
		}
		if _, err := st.CreateSharingRule(rule); err != nil {
			return at(path, trimPrefix(err, "rule."))
		}
	}
	for i, sh := range d.RecordShares {
		path := fmt.Sprintf("record_shares[%d]", i)
		share := model.RecordShare{Module: sh.Module, RecordID: sh.RecordID, Principal: sh.Principal.model(), Access: model.Access(sh.Access),
			ExpiresAt: timeOf(sh.ExpiresAt), SharedBy: sh.SharedBy, SharedAt: timeOf(sh.SharedAt)}
		if err := model.ValidateRecordShare(cat, share); err != nil {
			return at(path, trimPrefix(err, "share."))
		}
		if _, dup := st.RecordShares[share.Key()]; dup {
			return model.Invalid(path, model.ReasonDuplicate, fmt.Sprintf("%s record %q is shared with %s twice", sh.Module, sh.RecordID, share.Principal))
		}
		if _, err := st.ShareRecord(share, time.Time{}); err != nil {
			return at(path, trimPrefix(err, "share."))
		}
	}
	return nil
}

// at places an error under a path of the document: an invalid field's
// path is prefixed, and anything else the entry was refused for (an unknown
// user, a cycle) becomes an invalid entry at the path.
func at(path string, err error) error {
	var inv *model.InvalidError
	if errors.As(err, &inv) {
		return &model.InvalidError{Field: path + "." + inv.Field, Reason: inv.Reason, Message: inv.Message}
	}
	var nf *model.NotFoundError
	if errors.As(err, &nf) {
		return model.Invalid(path, nf.Reason, nf.Error())
	}
	var c *model.ConflictError
	if errors.As(err, &c) {
		return model.Invalid(path, c.Reason, c.Message)
	}
	return err
}

// trimPrefix drops a request prefix (membership., rule.) from an invalid
// field, leaving the document's own key.
func trimPrefix(err error, prefix string) error {
	var inv *model.InvalidError
	if errors.As(err, &inv) && len(inv.Field) > len(prefix) && inv.Field[:len(prefix)] == prefix {
		return &model.InvalidError{Field: inv.Field[len(prefix):], Reason: inv.Reason, Message: inv.Message}
	}
	return err
}

// KindDiff is what an import would change of one kind of entry.
type KindDiff struct {
	Kind                    string
	Added, Changed, Removed []string
}

// Empty reports whether nothing changes.
func (k KindDiff) Empty() bool { return len(k.Added)+len(k.Changed)+len(k.Removed) == 0 }

// Compare lists, per kind, the entries next adds to, changes in and
// removes from cur (cur may be nil: a new tenant).
func Compare(cur, next *model.TenantState) []KindDiff {
	if cur == nil {
		cur = model.NewTenantState(next.ID, "")
		cur.Settings = model.Settings{}
	}
	var out []KindDiff
	add := func(kind string, a, b map[string]any) {
		k := KindDiff{Kind: kind}
		for _, key := range sortedKeys(b) {
			old, ok := a[key]
			switch {
			case !ok:
				k.Added = append(k.Added, key)
			case !reflect.DeepEqual(old, b[key]):
				k.Changed = append(k.Changed, key)
			}
		}
		for _, key := range sortedKeys(a) {
			if _, ok := b[key]; !ok {
				k.Removed = append(k.Removed, key)
			}
		}
		out = append(out, k)
	}
	settings := func(st *model.TenantState) map[string]any {
		out := map[string]any{"name": st.Name, "manager_depth": st.Settings.ManagerDepth}
		for name, target := range st.Settings.ActionAliases {
			out["action_alias:"+name] = target
		}
		return out
	}
	add("settings", settings(cur), settings(next))
	add("roles", keyed(cur.Roles, func(r model.Role) string { return r.ID }), keyed(next.Roles, func(r model.Role) string { return r.ID }))
	add("users", keyed(cur.Users, func(u model.User) string { return u.ID }), keyed(next.Users, func(u model.User) string { return u.ID }))
	grantKey := func(g model.Grant) string { return g.UserID + "/" + g.RoleID }
	add("grants", keyed(cur.Grants, grantKey), keyed(next.Grants, grantKey))
	add("departments", keyed(cur.Departments, func(d model.Department) string { return d.ID }), keyed(next.Departments, func(d model.Department) string { return d.ID }))
	add("members", keyed(cur.Members, func(m model.Membership) string { return m.UserID }), keyed(next.Members, func(m model.Membership) string { return m.UserID }))
	add("sharing_rules", keyed(cur.SharingRules, func(r model.SharingRule) string { return r.ID }), keyed(next.SharingRules, func(r model.SharingRule) string { return r.ID }))
	shareKey := func(sh model.RecordShare) string { return sh.Module + "/" + sh.RecordID + "/" + sh.Principal.String() }
	add("record_shares", keyed(cur.RecordShares, shareKey), keyed(next.RecordShares, shareKey))
	return out
}

// keyed re-keys a map's values by key(v), normalising them so that equal
// entries compare equal whatever their time zone or empty-slice form.
func keyed[K comparable, V any](m map[K]V, key func(V) string) map[string]any {
	out := make(map[string]any, len(m))
	for _, v := range m {
		out[key(v)] = normal(v)
	}
	return out
}

// normal is v as its document entry, where times are UTC and empty lists
// absent.
func normal(v any) any {
	switch x := v.(type) {
	case model.Role:
		return roleOf(x)
	case model.Grant:
		return Grant{User: x.UserID, Role: x.RoleID, ExpiresAt: timePtr(x.ExpiresAt), GrantedBy: x.GrantedBy, GrantedAt: timePtr(x.GrantedAt)}
	case model.Membership:
		if len(x.Others) == 0 {
			x.Others = nil
		}
		return x
	case model.RecordShare:
		return RecordShare{Module: x.Module, RecordID: x.RecordID, Principal: principalOf(x.Principal), Access: string(x.Access),
			ExpiresAt: timePtr(x.ExpiresAt), SharedBy: x.SharedBy, SharedAt: timePtr(x.SharedAt)}
	case model.User:
		x.Status = statusOf(x.Status)
		return x
	}
	return v
}
