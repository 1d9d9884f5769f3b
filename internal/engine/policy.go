package engine

import (
	"slices"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// The Casbin vocabulary. Identifiers never contain ':' (internal/model
// forbids it), so these prefixes keep users, roles and the kinds of object
// apart inside one domain.
const (
	userPrefix     = "u:"
	rolePrefix     = "r:"
	modulePrefix   = "m:"  // m:account, act = verb
	functionPrefix = "f:"  // f:report.export, act = "use"
	fieldPrefix    = "fd:" // fd:account.phone, act = "read" | "write"

	actUse   = "use"
	actRead  = "read"
	actWrite = "write"

	effAllow = "allow"
	effDeny  = "deny"
)

// Policy is a tenant's policy in Casbin terms: the p lines of its roles and
// the g lines of role inheritance and of user grants.
type Policy struct {
	P [][]string // sub, dom, obj, act, eft
	G [][]string // member, role, dom
}

// CompilePolicy turns a tenant's roles and the grants active at `at` of its
// active users into Casbin policy lines for policies/model.conf. Field defaults are made
// explicit here: a field without a rule in a role gets a read line when the
// role grants module read and a write line when it grants module update.
func CompilePolicy(cat *model.Catalog, st *model.TenantState, at time.Time) Policy {
	var pol Policy
	for _, r := range st.SortedRoles() {
		pol.P = append(pol.P, roleLines(cat, st.ID, r)...)
		for _, parent := range r.Inherits {
			pol.G = append(pol.G, []string{rolePrefix + r.ID, rolePrefix + parent, st.ID})
		}
	}
	for _, g := range st.SortedGrants() {
		if g.ActiveAt(at) && !st.Inactive(g.UserID) {
			pol.G = append(pol.G, []string{userPrefix + g.UserID, rolePrefix + g.RoleID, st.ID})
		}
	}
	return pol
}

// CSV renders the policy in Casbin's CSV policy format.
func (p Policy) CSV() string {
	var b strings.Builder
	for _, l := range p.P {
		b.WriteString("p, " + strings.Join(l, ", ") + "\n")
	}
	for _, l := range p.G {
		b.WriteString("g, " + strings.Join(l, ", ") + "\n")
	}
	return b.String()
}

func roleLines(cat *model.Catalog, tenant string, r model.Role) [][]string {
	sub := rolePrefix + r.ID
	var lines [][]string
	eachLine(cat, r, func(k key, eft string) {
		obj, act := k.objAct()
		lines = append(lines, []string{sub, tenant, obj, act, eft})
	})
	return lines
}

// eachLine calls fn with the permission and effect of each of r's own
// policy lines, in the order of roleLines.
func eachLine(cat *model.Catalog, r model.Role, fn func(k key, eft string)) {
	var verbs map[string][]string
	for _, g := range r.Permissions.Modules {
		if verbs == nil {
			verbs = make(map[string][]string, len(r.Permissions.Modules))
		}
		verbs[g.Module] = append(verbs[g.Module], g.Verbs...)
		for _, v := range g.Verbs {
			fn(key{kindModule, g.Module, v}, effAllow)
		}
	}
	var rules map[[2]string]model.FieldState
	for _, fr := range r.Permissions.Fields {
		if rules == nil {
			rules = make(map[[2]string]model.FieldState, len(r.Permissions.Fields))
		}
		rules[[2]string{fr.Module, fr.Field}] = fr.State
	}
	for _, m := range cat.Modules {
		def := model.FieldHidden
		switch {
		case slices.Contains(verbs[m.ID], model.VerbUpdate):
			def = model.FieldReadWrite
		case slices.Contains(verbs[m.ID], model.VerbRead):
			def = model.FieldReadOnly
		}
		for _, f := range m.Fields {
			state, ok := rules[[2]string{m.ID, f}]
			if !ok {
				state = def
			}
			if state == model.FieldReadOnly || state == model.FieldReadWrite {
				fn(key{kindFieldRead, m.ID, f}, effAllow)
			}
			if state == model.FieldReadWrite {
				fn(key{kindFieldWrite, m.ID, f}, effAllow)
			}
		}
	}
	for _, f := range r.Permissions.Functions {
		fn(key{kindFunction, f, ""}, effAllow)
	}
	for _, g := range r.Permissions.DenyModules {
		for _, v := range g.Verbs {
			fn(key{kindModule, g.Module, v}, effDeny)
		}
	}
	for _, f := range r.Permissions.DenyFunctions {
		fn(key{kindFunction, f, ""}, effDeny)
	}
}

// Request is one Casbin request (sub, dom, obj, act) that a permission
// decision needs to be allowed.
type Request struct{ Sub, Dom, Obj, Act string }

// Requests returns the Casbin requests that must all be allowed for user to
// have p in tenant: one for module verbs and functions; for fields the
// field line plus the module verbs the field needs (read; and update for
// write), because a field is never more visible than its module.
func Requests(tenant, user string, p model.Permission) []Request {
	sub := userPrefix + user
	switch p.Kind {
	case model.KindModule:
		return []Request{{sub, tenant, modulePrefix + p.Module, p.Verb}}
	case model.KindFunction:
		return []Request{{sub, tenant, functionPrefix + p.Function, actUse}}
	case model.KindField:
		obj := fieldPrefix + p.Module + "." + p.Field
		if p.Write {
			return []Request{
				{sub, tenant, obj, actWrite},
				{sub, tenant, modulePrefix + p.Module, model.VerbRead},
				{sub, tenant, modulePrefix + p.Module, model.VerbUpdate},
			}
		}
		return []Request{{sub, tenant, obj, actRead}, {sub, tenant, modulePrefix + p.Module, model.VerbRead}}
	}
	return nil
}
