package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/casbin/casbin/v2"
	casbinmodel "github.com/casbin/casbin/v2/model"

	"github.com/crmauthz/crmauthz/internal/model"
)

// kind tells the index key's object apart without building Casbin strings on
// the hot path.
type kind uint8

const (
	kindModule kind = iota + 1
	kindFunction
	kindFieldRead
	kindFieldWrite
)

// key is one (obj, act) pair of a Casbin p line: for modules a = module and
// b = verb, for functions a = function, for fields a = module and b = field.
type key struct {
	k    kind
	a, b string
}

// index is the hot-path form of one tenant at one revision: for each role,
// the permissions it carries with everything it inherits (as Casbin's role
// manager resolves them), and for each user, the grants with their expiry.
// An index is immutable once built.
type index struct {
	tenant   string
	revision int64
	roles    map[string]*roleIndex
	users    map[string][]userGrant
}

type roleIndex struct {
	id string
	// allow and deny map each permission to the role holding the line: the
	// role itself or one it inherits.
	allow map[key]string
	deny  map[key]string
}

type userGrant struct {
	role    *roleIndex
	expires int64 // UnixNano; 0 when the grant never expires
}

// buildIndex loads the tenant's roles into a Casbin enforcer and reads each
// role's implicit permissions back from it.
func buildIndex(cat *model.Catalog, modelText string, st *model.TenantState) (*index, error) {
	m, err := casbinmodel.NewModelFromString(modelText)
	if err != nil {
		return nil, fmt.Errorf("parse casbin model: %w", err)
	}
	e, err := casbin.NewEnforcer(m)
	if err != nil {
		return nil, fmt.Errorf("new enforcer: %w", err)
	}
	// Grants carry expiry, which plain g lines cannot; the index applies
	// them itself, so only role lines and role inheritance go to Casbin.
	pol := CompilePolicy(cat, &model.TenantState{ID: st.ID, Roles: st.Roles}, time.Time{})
	if err := e.GetModel().AddPolicies("p", "p", pol.P); err != nil {
		return nil, fmt.Errorf("load policy of tenant %q: %w", st.ID, err)
	}
	if len(pol.G) > 0 {
		if err := e.GetModel().AddPolicies("g", "g", pol.G); err != nil {
			return nil, fmt.Errorf("load role links of tenant %q: %w", st.ID, err)
		}
	}
	if err := e.BuildRoleLinks(); err != nil {
		return nil, fmt.Errorf("build role links of tenant %q: %w", st.ID, err)
	}
	ix := &index{
		tenant:   st.ID,
		revision: st.Revision,
		roles:    make(map[string]*roleIndex, len(st.Roles)),
		users:    map[string][]userGrant{},
	}
	for id := range st.Roles {
		lines, err := e.GetImplicitPermissionsForUser(rolePrefix+id, st.ID)
		if err != nil {
			return nil, fmt.Errorf("permissions of role %q: %w", id, err)
		}
		ri := &roleIndex{id: id, allow: make(map[key]string, len(lines)), deny: map[key]string{}}
		for _, l := range lines {
			k, err := parseKey(l[2], l[3])
			if err != nil {
				return nil, fmt.Errorf("role %q: %w", id, err)
			}
			holder := strings.TrimPrefix(l[0], rolePrefix)
			if l[4] == effDeny {
				ri.deny[k] = holder
			} else {
				ri.allow[k] = holder
			}
		}
		ix.roles[id] = ri
	}
	for _, g := range st.SortedGrants() {
		ri := ix.roles[g.RoleID]
		if ri == nil {
			return nil, fmt.Errorf("grant of unknown role %q to %q", g.RoleID, g.UserID)
		}
		var exp int64
		if !g.ExpiresAt.IsZero() {
			exp = g.ExpiresAt.UnixNano()
		}
		ix.users[g.UserID] = append(ix.users[g.UserID], userGrant{role: ri, expires: exp})
	}
	return ix, nil
}

func parseKey(obj, act string) (key, error) {
	switch {
	case strings.HasPrefix(obj, modulePrefix):
		return key{kindModule, obj[len(modulePrefix):], act}, nil
	case strings.HasPrefix(obj, functionPrefix):
		return key{kindFunction, obj[len(functionPrefix):], ""}, nil
	case strings.HasPrefix(obj, fieldPrefix):
		mod, field, ok := strings.Cut(obj[len(fieldPrefix):], ".")
		if !ok {
			break
		}
		if act == actWrite {
			return key{kindFieldWrite, mod, field}, nil
		}
		return key{kindFieldRead, mod, field}, nil
	}
	return key{}, fmt.Errorf("unexpected policy object %q", obj)
}

// casbinLine renders the p line behind a key for explanations.
func (k key) casbinLine(holder, tenant, eft string) string {
	var obj, act string
	switch k.k {
	case kindModule:
		obj, act = modulePrefix+k.a, k.b
	case kindFunction:
		obj, act = functionPrefix+k.a, actUse
	case kindFieldRead:
		obj, act = fieldPrefix+k.a+"."+k.b, actRead
	case kindFieldWrite:
		obj, act = fieldPrefix+k.a+"."+k.b, actWrite
	}
	return strings.Join([]string{"p", rolePrefix + holder, tenant, obj, act, eft}, ", ")
}

// keysFor returns the keys that must all be allowed for p (see Requests).
// The common kinds fill a fixed array so the hot path does not allocate.
func keysFor(p model.Permission, buf *[3]key) []key {
	switch p.Kind {
	case model.KindModule:
		buf[0] = key{kindModule, p.Module, p.Verb}
		return buf[:1]
	case model.KindFunction:
		buf[0] = key{kindFunction, p.Function, ""}
		return buf[:1]
	case model.KindField:
		buf[1] = key{kindModule, p.Module, model.VerbRead}
		if p.Write {
			buf[0] = key{kindFieldWrite, p.Module, p.Field}
			buf[2] = key{kindModule, p.Module, model.VerbUpdate}
			return buf[:3]
		}
		buf[0] = key{kindFieldRead, p.Module, p.Field}
		return buf[:2]
	}
	return nil
}

// allowed decides one key for a user's grants: some active role allows it
// and no active role denies it.
func allowed(grants []userGrant, k key, now int64) bool {
	ok := false
	for i := range grants {
		g := &grants[i]
		if g.expires != 0 && now >= g.expires {
			continue
		}
		if _, d := g.role.deny[k]; d {
			return false
		}
		if !ok {
			_, ok = g.role.allow[k]
		}
	}
	return ok
}
