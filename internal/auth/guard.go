package auth

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// FunctionSuper is the super-administrator function: its holders are not
// bound by the escalation rule, and a tenant that has one keeps one.
const FunctionSuper = "admin.super"

// Actor is who acts in an admin call.
type Actor struct {
	// ID is the acting user, or platform:<credential name> for the
	// platform operator.
	ID string
	// Operator is set for the platform operator, who holds every right in
	// the credential's tenants.
	Operator bool
	// Credential is the principal's credential, for the change log.
	Credential string
}

// ActorOf returns the actor of a call whose request names requested as its
// actor_id: a bound credential's user (another actor_id is refused), else
// the named user, else, for a platform credential, the platform operator.
// A service credential, or a call without authentication, must name one.
func ActorOf(ctx context.Context, requested string) (Actor, error) {
	p := FromContext(ctx)
	if requested != "" {
		if err := model.ValidateSubjectID("actor_id", requested); err != nil {
			return Actor{}, err
		}
	}
	switch {
	case p.User != "":
		if requested != "" && requested != p.User {
			return Actor{}, &DeniedError{Reason: ReasonActorMismatch, Missing: requested, Actor: p.User,
				Message: fmt.Sprintf("%s is bound to user %q and cannot act as %q", p.describe(), p.User, requested)}
		}
		return Actor{ID: p.User, Credential: p.Credential}, nil
	case requested != "":
		return Actor{ID: requested, Credential: p.Credential}, nil
	case p.Has(ScopePlatform) && !p.Insecure:
		return Actor{ID: "platform:" + p.Name, Operator: true, Credential: p.Credential}, nil
	}
	return Actor{}, model.Invalid("actor_id", model.ReasonMissingField, "is required: name the user the call acts for")
}

// Operator returns the platform operator acting through the call's
// credential, for calls that act on the platform rather than a tenant.
func Operator(ctx context.Context) Actor {
	p := FromContext(ctx)
	return Actor{ID: "platform:" + p.Name, Operator: true, Credential: p.Credential}
}

// Guard checks one admin call's actor against a tenant's state: the
// permission table's functions, the escalation rule and the last
// super-administrator. Writes build it on the state inside the store's
// transaction, before the mutation changes that state.
type Guard struct {
	cat      *model.Catalog
	st       *model.TenantState
	actor    Actor
	now      time.Time
	rights   model.Rights
	super    bool
	hadSuper bool // a user held admin.super before the write
}

// NewGuard returns the guard of actor in st at now, for a read.
func NewGuard(cat *model.Catalog, st *model.TenantState, actor Actor, now time.Time) *Guard {
	g := &Guard{cat: cat, st: st, actor: actor, now: now, super: actor.Operator}
	if !actor.Operator {
		g.rights = st.UserRights(cat, actor.ID, now)
		g.super = g.rights.Function(FunctionSuper)
	}
	return g
}

// NewWriteGuard returns the guard of a write: NewGuard, remembering
// whether a user held admin.super before the write. Under a journal
// (model.TenantState.Begin) that is asked only when the write could have
// taken it from someone (KeepSuperAdmin); in a tenant of tens of
// thousands of grants, finding a holder costs a look at many of them.
func NewWriteGuard(cat *model.Catalog, st *model.TenantState, actor Actor, now time.Time) *Guard {
	g := NewGuard(cat, st, actor, now)
	if !st.Journaled() {
		g.hadSuper = st.HasHolder(cat, FunctionSuper, now)
	}
	return g
}

// Actor returns the guarded actor.
func (g *Guard) Actor() Actor { return g.actor }

// Super reports whether the actor is above the escalation rule: the
// platform operator, or a holder of admin.super.
func (g *Guard) Super() bool { return g.super }

// Rights returns what the actor holds (everything, for the operator).
func (g *Guard) Rights() model.Rights { return g.rights }

func (g *Guard) denied(reason, missing, msg string) error {
	return &DeniedError{Reason: reason, Missing: missing, Tenant: g.st.ID, Actor: g.actor.ID, Message: msg}
}

// Require refuses an actor who lacks the function.
func (g *Guard) Require(fn string) error {
	if g.actor.Operator || g.rights.Function(fn) {
		return nil
	}
	return g.denied(ReasonMissingPermission, fn, fmt.Sprintf("user %q lacks the function %s in tenant %q", g.actor.ID, fn, g.st.ID))
}

// Within refuses, unless the actor is super, roles carrying a permission
// the actor does not hold: every module verb (at its scope), field line
// and function of the roles and of every role they inherit. what names
// the write for the message.
func (g *Guard) Within(what string, roles ...model.Role) error {
	if g.super {
		return nil
	}
	ids := make([]string, 0, len(roles))
	all := slices.Clone(roles)
	for _, r := range roles {
		ids = append(ids, r.Inherits...)
	}
	all = append(all, g.st.RoleClosure(ids...)...)
	if miss := g.rights.Missing(g.cat, model.LinesOf(g.cat, all)); miss != "" {
		return g.denied(ReasonEscalation, miss, fmt.Sprintf("%s would give more than user %q holds: %s is not theirs to give", what, g.actor.ID, miss))
	}
	return nil
}

// Names refuses, unless the actor is super, an action alias standing for
// a permission the actor does not hold: who points a caller's action name
// at a module verb or function (or away from one) decides what that name
// allows, which is for an actor who holds it.
func (g *Guard) Names(what string, p model.Permission) error {
	if g.super {
		return nil
	}
	held, name := false, ""
	switch p.Kind {
	case model.KindFunction:
		held, name = g.rights.Function(p.Function), "function "+p.Function
	case model.KindModule:
		_, held = g.rights.Module(p.Module, p.Verb)
		name = "module " + p.Module + " " + p.Verb
	}
	if !held {
		return g.denied(ReasonEscalation, name, fmt.Sprintf("%s would name %s, which user %q does not hold", what, name, g.actor.ID))
	}
	return nil
}

// WithinUser is Within for the roles a user holds (their grants active at
// the guard's time, whether the user is active or not): offboarding or
// bringing back a user is for an actor who holds what the user holds.
func (g *Guard) WithinUser(what, user string) error {
	if g.super {
		return nil
	}
	var roles []model.Role
	for k, gr := range g.st.Grants {
		if k.UserID == user && gr.ActiveAt(g.now) {
			roles = append(roles, g.st.Roles[k.RoleID])
		}
	}
	return g.Within(what, roles...)
}

// WithinRole is Within for a role of the tenant, by id (unknown ids pass:
// the write itself reports them).
func (g *Guard) WithinRole(what, id string) error {
	r, ok := g.st.Roles[id]
	if !ok {
		return nil
	}
	return g.Within(what, r)
}

// KeepSuperAdmin refuses a write that leaves a tenant which had a holder
// of admin.super with none.
func (g *Guard) KeepSuperAdmin(after *model.TenantState) error {
	had := g.hadSuper
	if after.Journaled() {
		if !after.MayLoseHolder(FunctionSuper, g.now) {
			return nil
		}
		after.AtBase(func() { had = after.HasHolder(g.cat, FunctionSuper, g.now) })
	}
	if !had || after.HasHolder(g.cat, FunctionSuper, g.now) {
		return nil
	}
	return &model.ConflictError{Reason: model.ReasonLastSuperAdmin,
		Message: fmt.Sprintf("the write would leave tenant %q without a holder of %s; grant it to another user first", g.st.ID, FunctionSuper)}
}

// Membership refuses, unless the actor is super, a change of the actor's
// own membership and naming the actor as someone's manager (both would
// widen the actor's own reach into records), and placing a user in a
// department outside the actor's own departments and those below them
// (that would give the user a reach the actor does not have).
func (g *Guard) Membership(user, manager string, departments ...string) error {
	switch {
	case g.super:
		return nil
	case user == g.actor.ID:
		return g.denied(ReasonEscalation, "membership of "+user, fmt.Sprintf("user %q may not change their own membership", user))
	case manager != "" && manager == g.actor.ID:
		return g.denied(ReasonEscalation, "manager of "+user, fmt.Sprintf("user %q may not make themselves the manager of %q", manager, user))
	}
	mine := g.actorDepartments()
	for _, d := range departments {
		if !g.inTree(d, mine) {
			return g.denied(ReasonEscalation, "department "+d, fmt.Sprintf("user %q may not place users in department %q, outside their own department tree", g.actor.ID, d))
		}
	}
	return nil
}

// ManagerDepth refuses, unless the actor is super, raising the tenant's
// manager depth: every manager, the actor included, would reach further.
func (g *Guard) ManagerDepth(depth int) error {
	if g.super || depth <= g.st.Settings.ManagerDepth {
		return nil
	}
	return g.denied(ReasonEscalation, "manager depth "+fmt.Sprint(depth),
		fmt.Sprintf("user %q may lower the manager depth but not raise it from %d to %d", g.actor.ID, g.st.Settings.ManagerDepth, depth))
}

// DepartmentMove refuses, unless the actor is super, moving a department
// under one of the actor's own departments (or below them) when it was not
// there: that would widen the actor's dept_tree reach.
func (g *Guard) DepartmentMove(id, newParent string) error {
	if g.super || newParent == "" {
		return nil
	}
	mine := g.actorDepartments()
	if g.inTree(newParent, mine) && !g.inTree(id, mine) {
		return g.denied(ReasonEscalation, "department "+id, fmt.Sprintf("user %q may not move department %q into their own department tree", g.actor.ID, id))
	}
	return nil
}

func (g *Guard) actorDepartments() []string {
	m, ok := g.st.Members[g.actor.ID]
	if !ok {
		return nil
	}
	return append([]string{m.Primary}, m.Others...)
}

// inTree reports whether dept is one of roots or below one.
func (g *Guard) inTree(dept string, roots []string) bool {
	for d, hops := dept, 0; d != "" && hops <= len(g.st.Departments); hops++ {
		if slices.Contains(roots, d) {
			return true
		}
		d = g.st.Departments[d].Parent
	}
	return false
}

// SharingRule refuses, unless the actor is super, a rule sharing records
// the actor cannot reach: for read access the actor must list and read
// every record the owner side matches, for read_write also update them.
// What the actor reaches is judged on scopes and managers: org reaches
// every record; self the actor's own; dept the records of a department of
// the actor; dept_tree also those below; managers their reports' records
// (update only the direct manager). Records owned by a role's holders are
// reachable only at org.
func (g *Guard) SharingRule(r model.SharingRule) error {
	if g.super {
		return nil
	}
	verbs := []string{model.VerbList, model.VerbRead}
	if r.Access == model.AccessReadWrite {
		verbs = append(verbs, model.VerbUpdate)
	}
	for _, v := range verbs {
		sc, held := g.rights.Module(r.Module, v)
		if !held {
			return g.denied(ReasonEscalation, fmt.Sprintf("module %s %s", r.Module, v),
				fmt.Sprintf("sharing rule %q would share what user %q may not: module %s %s", r.ID, g.actor.ID, r.Module, v))
		}
		if !g.reaches(sc, r.OwnedBy, v) {
			return g.denied(ReasonEscalation, fmt.Sprintf("module %s %s on the records owned by %s", r.Module, v, r.OwnedBy),
				fmt.Sprintf("sharing rule %q would share records owned by %s, which user %q may not %s (scope %s)", r.ID, r.OwnedBy, g.actor.ID, v, sc))
		}
	}
	return nil
}

func (g *Guard) reaches(sc model.Scope, owner model.Principal, verb string) bool {
	if sc == model.ScopeOrg {
		return true
	}
	mine := g.actorDepartments()
	switch owner.Kind {
	case model.PrincipalUser:
		return (owner.ID == g.actor.ID && sc.Rank() >= model.ScopeSelf.Rank()) || g.manages(owner.ID, verb)
	case model.PrincipalDepartment:
		switch sc {
		case model.ScopeDeptTree:
			return g.inTree(owner.ID, mine)
		case model.ScopeDept:
			return slices.Contains(mine, owner.ID) && (!owner.IncludeSubs || !g.hasChildren(owner.ID))
		}
	}
	return false
}

func (g *Guard) hasChildren(dept string) bool {
	for _, d := range g.st.Departments {
		if d.Parent == dept {
			return true
		}
	}
	return false
}

// manages reports whether the actor's manager access reaches the user's
// records for the verb: list and read within the tenant's manager depth,
// update for the direct manager.
func (g *Guard) manages(user, verb string) bool {
	depth := g.st.Settings.ManagerDepth
	if verb == model.VerbUpdate {
		depth = min(depth, 1)
	}
	m := user
	for range depth {
		m = g.st.Members[m].Manager
		if m == "" {
			return false
		}
		if m == g.actor.ID {
			return true
		}
	}
	return false
}
