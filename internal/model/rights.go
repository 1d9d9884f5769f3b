package model

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// This file computes, from a tenant's state alone, what roles carry and
// what a user effectively holds, with the engine's semantics (roles are
// additive, denies override, a field is never more visible than its
// module, the widest scope wins). The admin checks use it inside a write's
// transaction, on the state being changed; a test proves it agrees with the
// engine's decisions on generated tenants.

// ModuleVerb names a record verb on a module.
type ModuleVerb struct{ Module, Verb string }

// FieldKey names a field of a module.
type FieldKey struct{ Module, Field string }

// Lines is what a set of roles carries, inherited roles included, before
// denies apply: the allow and deny lines of their Casbin policy, with the
// widest scope of each module verb.
type Lines struct {
	Modules       map[ModuleVerb]Scope
	Functions     map[string]bool
	FieldRead     map[FieldKey]bool
	FieldWrite    map[FieldKey]bool
	DenyModules   map[ModuleVerb]bool
	DenyFunctions map[string]bool
}

func newLines() Lines {
	return Lines{
		Modules: map[ModuleVerb]Scope{}, Functions: map[string]bool{}, FieldRead: map[FieldKey]bool{},
		FieldWrite: map[FieldKey]bool{}, DenyModules: map[ModuleVerb]bool{}, DenyFunctions: map[string]bool{},
	}
}

// RoleClosure returns the roles ids name and every role they inherit,
// each once, sorted by id. Unknown ids are skipped.
func (s *TenantState) RoleClosure(ids ...string) []Role {
	seen := map[string]bool{}
	var out []Role
	var walk func(id string)
	walk = func(id string) {
		r, ok := s.Roles[id]
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		out = append(out, r)
		for _, p := range r.Inherits {
			walk(p)
		}
	}
	for _, id := range ids {
		walk(id)
	}
	slices.SortFunc(out, func(a, b Role) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// LinesOf returns what roles carry together. Field lines follow each role's
// own field rules, else the role's own module verbs (read gives read,
// update gives read and write), as the engine compiles them.
func LinesOf(cat *Catalog, roles []Role) Lines {
	l := newLines()
	for _, r := range roles {
		verbs := map[string][]string{}
		for _, g := range r.Permissions.Modules {
			verbs[g.Module] = append(verbs[g.Module], g.Verbs...)
			for _, v := range g.Verbs {
				k := ModuleVerb{g.Module, v}
				if cur, ok := l.Modules[k]; !ok || g.Scope.Rank() > cur.Rank() {
					l.Modules[k] = normalScope(g.Scope)
				}
			}
		}
		rules := map[FieldKey]FieldState{}
		for _, fr := range r.Permissions.Fields {
			rules[FieldKey{fr.Module, fr.Field}] = fr.State
		}
		for _, m := range cat.Modules {
			def := FieldHidden
			switch {
			case slices.Contains(verbs[m.ID], VerbUpdate):
				def = FieldReadWrite
			case slices.Contains(verbs[m.ID], VerbRead):
				def = FieldReadOnly
			}
			for _, f := range m.Fields {
				k := FieldKey{m.ID, f}
				state, ok := rules[k]
				if !ok {
					state = def
				}
				if state == FieldReadOnly || state == FieldReadWrite {
					l.FieldRead[k] = true
				}
				if state == FieldReadWrite {
					l.FieldWrite[k] = true
				}
			}
		}
		for _, fn := range r.Permissions.Functions {
			l.Functions[fn] = true
		}
		for _, g := range r.Permissions.DenyModules {
			for _, v := range g.Verbs {
				l.DenyModules[ModuleVerb{g.Module, v}] = true
			}
		}
		for _, fn := range r.Permissions.DenyFunctions {
			l.DenyFunctions[fn] = true
		}
	}
	return l
}

// normalScope spells the empty scope (the whole tenant) as ScopeOrg.
func normalScope(s Scope) Scope {
	if s == "" {
		return ScopeOrg
	}
	return s
}

// ActiveRoles returns the ids of the roles the user holds by a grant
// active at now, sorted; none for an inactive user.
func (s *TenantState) ActiveRoles(user string, now time.Time) []string {
	if s.Inactive(user) {
		return nil
	}
	var out []string
	if len(s.Roles) < len(s.Grants) {
		// A large tenant has far more grants than roles: look up the
		// user's grant of each role.
		for id := range s.Roles {
			if g, ok := s.Grants[GrantKey{user, id}]; ok && g.ActiveAt(now) {
				out = append(out, id)
			}
		}
	} else {
		for k, g := range s.Grants {
			if k.UserID == user && g.ActiveAt(now) {
				out = append(out, k.RoleID)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Rights is what a user effectively holds: the lines of their active roles
// with denies applied and fields gated by their module's verbs.
type Rights struct {
	lines Lines
}

// UserRights returns what user holds in the tenant at now.
func (s *TenantState) UserRights(cat *Catalog, user string, now time.Time) Rights {
	return Rights{lines: LinesOf(cat, s.RoleClosure(s.ActiveRoles(user, now)...))}
}

// Module reports whether the verb on the module is held, and at which
// scope.
func (r Rights) Module(module, verb string) (Scope, bool) {
	k := ModuleVerb{module, verb}
	sc, ok := r.lines.Modules[k]
	if !ok || r.lines.DenyModules[k] {
		return "", false
	}
	return sc, true
}

// Function reports whether the function is held.
func (r Rights) Function(fn string) bool {
	return r.lines.Functions[fn] && !r.lines.DenyFunctions[fn]
}

// Field returns the state of a field: hidden unless the module's read is
// held and a line allows reading it; read-write when update is held too and
// a line allows writing it.
func (r Rights) Field(module, field string) FieldState {
	k := FieldKey{module, field}
	if _, ok := r.Module(module, VerbRead); !ok || !r.lines.FieldRead[k] {
		return FieldHidden
	}
	if _, ok := r.Module(module, VerbUpdate); ok && r.lines.FieldWrite[k] {
		return FieldReadWrite
	}
	return FieldReadOnly
}

// Missing returns the first permission that want carries and r does not
// hold at the same or a wider scope, in catalog order (module verbs, then
// fields, then functions), or "" when r holds everything want carries.
// Denies in want only narrow, so they are not compared.
func (r Rights) Missing(cat *Catalog, want Lines) string {
	for _, m := range cat.Modules {
		for _, v := range cat.Verbs {
			sc, ok := want.Modules[ModuleVerb{m.ID, v}]
			if !ok {
				continue
			}
			have, held := r.Module(m.ID, v)
			switch {
			case !held:
				return fmt.Sprintf("module %s %s", m.ID, v)
			case have.Rank() < sc.Rank():
				return fmt.Sprintf("module %s %s at scope %s (held at %s)", m.ID, v, sc, have)
			}
		}
	}
	for _, m := range cat.Modules {
		for _, f := range m.Fields {
			k := FieldKey{m.ID, f}
			state := r.Field(m.ID, f)
			switch {
			case want.FieldRead[k] && state == FieldHidden:
				return fmt.Sprintf("field %s.%s read", m.ID, f)
			case want.FieldWrite[k] && state != FieldReadWrite:
				return fmt.Sprintf("field %s.%s write", m.ID, f)
			}
		}
	}
	for _, f := range cat.Functions {
		if want.Functions[f.ID] && !r.Function(f.ID) {
			return "function " + f.ID
		}
	}
	return ""
}

// HoldersOf returns the users holding the function at now, sorted. Only
// the users granted a role that carries the function are looked at closely.
func (s *TenantState) HoldersOf(cat *Catalog, fn string, now time.Time) []string {
	var out []string
	s.eachHolder(cat, fn, now, func(u string) bool {
		out = append(out, u)
		return true
	})
	slices.Sort(out)
	return out
}

// HasHolder reports whether any user holds the function at now: HoldersOf
// that stops at the first. A write guard asks it twice per write, and
// finding every holder in a tenant of tens of thousands of users cost a
// look at every grant per candidate.
func (s *TenantState) HasHolder(cat *Catalog, fn string, now time.Time) bool {
	found := false
	s.eachHolder(cat, fn, now, func(string) bool {
		found = true
		return false
	})
	return found
}

// TakesLastHolder reports whether removing grant k at now would leave the
// tenant, which has a holder of the function, with none: k is an active
// grant of a role that carries fn (itself or by inheritance), its user
// holds fn, and no other user does, nor the user without k.
func (s *TenantState) TakesLastHolder(cat *Catalog, fn string, k GrantKey, now time.Time) bool {
	if g, ok := s.Grants[k]; !ok || !g.ActiveAt(now) || s.Inactive(k.UserID) {
		return false
	}
	if !slices.ContainsFunc(s.RoleClosure(k.RoleID), func(r Role) bool { return slices.Contains(r.Permissions.Functions, fn) }) ||
		!s.UserRights(cat, k.UserID, now).Function(fn) {
		return false
	}
	other := false
	s.eachHolder(cat, fn, now, func(u string) bool {
		other = u != k.UserID
		return !other
	})
	if other {
		return false
	}
	rest := slices.DeleteFunc(s.ActiveRoles(k.UserID, now), func(id string) bool { return id == k.RoleID })
	return !(Rights{lines: LinesOf(cat, s.RoleClosure(rest...))}).Function(fn)
}

// eachHolder calls yield with each user holding the function at now, in
// no order, until yield returns false.
func (s *TenantState) eachHolder(cat *Catalog, fn string, now time.Time, yield func(string) bool) {
	carries := map[string]bool{}
	for id := range s.Roles {
		for _, r := range s.RoleClosure(id) {
			if slices.Contains(r.Permissions.Functions, fn) {
				carries[id] = true
				break
			}
		}
	}
	seen := map[string]bool{}
	for k, g := range s.Grants {
		if !carries[k.RoleID] || seen[k.UserID] || !g.ActiveAt(now) || s.Inactive(k.UserID) {
			continue
		}
		seen[k.UserID] = true
		if s.UserRights(cat, k.UserID, now).Function(fn) && !yield(k.UserID) {
			return
		}
	}
}
