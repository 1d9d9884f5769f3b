package engine

import (
	"fmt"
	"hash/maphash"
	"slices"

	"github.com/crmauthz/crmauthz/internal/model"
)

// The data layer decides which records a module verb reaches. A record is
// allowed when the module layer allows the verb (Casbin, denies included)
// and one of these reaches the record:
//
//   - the widest scope the user's active roles grant for the verb: self (the
//     user owns it), dept (it belongs to one of the user's departments, or
//     the user owns it), dept_tree (also departments below those), org;
//   - for list and read, the user manages the owner within the tenant's
//     manager depth; for update, the user is the owner's direct manager;
//   - a sharing rule whose owner side matches the record and whose shared
//     side matches the user, at read (list, read) or read_write (also
//     update);
//   - an active record share with the user, a department of the user (or
//     above one, with sub-departments) or a role the user holds.
//
// PlanFilter expresses the same as three sets (owners, departments, record
// ids), so the rows a filter selects are exactly the records Check allows.

// orgIndex is a tenant's organisation and sharing, indexed for decisions.
type orgIndex struct {
	depth      int
	ancestors  map[string][]string // department → itself and every department above it
	children   map[string][]string // department → its direct sub-departments
	members    map[string]member   // user → departments and manager
	reports    map[string][]string // manager → direct reports
	rules      map[string][]model.SharingRule
	shares     map[[2]string][]model.RecordShare // (module, record id) → shares
	userShare  map[[2]string][]model.RecordShare // (module, user) → shares with that user
	groupShare map[string][]model.RecordShare    // module → shares with departments and roles
	holders    map[int32][]holding               // role number → users holding it, directly or by inheritance
	roleNum    map[string]int32
	scopes     [][]int8 // role number → module-verb index → widest scope rank with inheritance, -1 when not granted
}

// member is a user's place in the organisation: one map entry for both,
// where two maps cost a third more at 10,000 tenants.
type member struct {
	depts   []string // primary first
	manager string
}

type holding struct {
	user    string
	expires int64
}

func buildOrg(space *permSpace, st *model.TenantState, roles []roleInfo, number map[string]int32) *orgIndex {
	// The maps are made at their final size: grown by doubling, each
	// tenant's would hold up to twice the room.
	o := &orgIndex{
		depth:     st.Settings.ManagerDepth,
		members:   make(map[string]member, len(st.Members)),
		shares:    make(map[[2]string][]model.RecordShare, len(st.RecordShares)),
		userShare: map[[2]string][]model.RecordShare{}, groupShare: map[string][]model.RecordShare{},
		roleNum: number,
	}
	o.ancestors, o.children = departmentMaps(st)
	// Every user's departments are cut from one array.
	n := 0
	for _, m := range st.Members {
		n += 1 + len(m.Others)
	}
	all := make([]string, 0, n)
	reports := map[string]int{}
	managed := 0
	for u, m := range st.Members {
		all = append(append(all, m.Primary), m.Others...)
		o.members[u] = member{depts: all[len(all)-1-len(m.Others) : len(all) : len(all)], manager: m.Manager}
		if m.Manager != "" {
			reports[m.Manager]++
			managed++
		}
	}
	// Every manager's reports are cut from one array too.
	o.reports = make(map[string][]string, len(reports))
	reps := make([]string, managed)
	for m, n := range reports {
		o.reports[m], reps = reps[:0:n], reps[n:]
	}
	for u, m := range o.members {
		if m.manager != "" {
			o.reports[m.manager] = append(o.reports[m.manager], u)
		}
	}
	for _, reps := range o.reports {
		slices.Sort(reps)
	}
	o.rules = rulesByModule(st)
	for k, s := range st.RecordShares {
		o.shares[[2]string{k.Module, k.RecordID}] = append(o.shares[[2]string{k.Module, k.RecordID}], s)
		if s.Principal.Kind == model.PrincipalUser {
			o.userShare[[2]string{k.Module, s.Principal.ID}] = append(o.userShare[[2]string{k.Module, s.Principal.ID}], s)
		} else {
			o.groupShare[k.Module] = append(o.groupShare[k.Module], s)
		}
	}
	o.holders = holdersOf(st, roles, number)
	o.scopes = make([][]int8, len(roles))
	for i := range roles {
		o.scopes[i] = scopeOf(space, st, roles, int32(i))
	}
	return o
}

// holdersOf returns, for each role, the users holding it, directly or by
// inheritance, in no order: they are read as sets.
func holdersOf(st *model.TenantState, roles []roleInfo, number map[string]int32) map[int32][]holding {
	// Counted first, so that every role's list is cut from one array at
	// its size rather than grown by doubling.
	count := make([]int, len(roles))
	total := 0
	for _, g := range st.Grants {
		for _, r := range roles[number[g.RoleID]].closure {
			count[r]++
			total++
		}
	}
	all := make([]holding, total)
	holders := make(map[int32][]holding, len(roles))
	for r, n := range count {
		if n > 0 {
			holders[int32(r)], all = all[:0:n], all[n:]
		}
	}
	for _, g := range st.Grants {
		var exp int64
		if !g.ExpiresAt.IsZero() {
			exp = g.ExpiresAt.UnixNano()
		}
		for _, r := range roles[number[g.RoleID]].closure {
			holders[r] = append(holders[r], holding{g.UserID, exp})
		}
	}
	return holders
}

// scopeOf returns a role's widest scope rank of every module verb over
// itself and what it inherits (-1: not granted).
func scopeOf(space *permSpace, st *model.TenantState, roles []roleInfo, role int32) []int8 {
	out := space.noScopes()
	for _, c := range roles[role].closure {
		for _, mg := range st.Roles[roles[c].id].Permissions.Modules {
			for _, v := range mg.Verbs {
				j := space.moduleVerb(mg.Module, v)
				out[j] = max(out[j], int8(mg.Scope.Rank()))
			}
		}
	}
	return out
}

// userDepts returns the user's departments.
func (o *orgIndex) userDepts(user string) []string { return o.members[user].depts }

// inTree reports whether dept is one of roots or below one of them.
func (o *orgIndex) inTree(dept string, roots []string) bool {
	for _, a := range o.ancestors[dept] {
		if slices.Contains(roots, a) {
			return true
		}
	}
	return false
}

// managerLevel returns how many levels above owner the user manages it
// (1: direct manager), or 0 when the user is not in the owner's chain
// within the manager depth.
func (o *orgIndex) managerLevel(user, owner string) int {
	m := owner
	for level := 1; level <= o.depth; level++ {
		m = o.members[m].manager
		if m == "" {
			return 0
		}
		if m == user {
			return level
		}
	}
	return 0
}

// holds reports whether grants hold the role, directly or through a role
// inheriting it, by a grant active at now.
func (ix *index) holds(grants []userGrant, role string, now int64) bool {
	n, ok := ix.org.roleNum[role]
	if !ok {
		return false
	}
	for _, g := range grants {
		if g.active(now) && slices.Contains(ix.roles[g.role].closure, n) {
			return true
		}
	}
	return false
}

// matchesUser reports whether a principal (on the shared side) includes the
// user, whose grants are given.
func (ix *index) matchesUser(p model.Principal, user string, grants []userGrant, now int64) bool {
	o := ix.org
	switch p.Kind {
	case model.PrincipalUser:
		return p.ID == user
	case model.PrincipalRole:
		return ix.holds(grants, p.ID, now)
	case model.PrincipalDepartment:
		for _, d := range o.members[user].depts {
			if d == p.ID || (p.IncludeSubs && o.inTree(d, []string{p.ID})) {
				return true
			}
		}
	}
	return false
}

// matchesRecord reports whether a principal (on the owner side) includes
// the record.
func (ix *index) matchesRecord(seed maphash.Seed, p model.Principal, rec *model.Record, now int64) bool {
	o := ix.org
	switch p.Kind {
	case model.PrincipalUser:
		return p.ID == rec.Owner
	case model.PrincipalRole:
		var buf [2]userGrant
		return ix.holds(ix.users.grantsOf(seed, rec.Owner, &buf), p.ID, now)
	case model.PrincipalDepartment:
		return rec.Department != "" && (rec.Department == p.ID || (p.IncludeSubs && o.inTree(rec.Department, []string{p.ID})))
	}
	return false
}

// widens reports whether access lets the verb through: read gives list and
// read, read_write also update.
func widens(a model.Access, verb string) bool {
	switch verb {
	case model.VerbList, model.VerbRead:
		return true
	case model.VerbUpdate:
		return a == model.AccessReadWrite
	}
	return false
}

// scopeOf returns the widest scope rank the user's active grants give for
// the module verb (-1: none).
func (ix *index) scopeOf(space *permSpace, grants []userGrant, module, verb string, now int64) (rank int8, role string) {
	rank = -1
	j := space.moduleVerb(module, verb)
	for _, g := range grants {
		if g.active(now) && ix.org.scopes[g.role][j] > rank {
			rank, role = ix.org.scopes[g.role][j], ix.roles[g.role].id
		}
	}
	return rank, role
}

// recordDecision decides the data layer for a record the module layer
// allows, returning whether it is allowed and, when explain is set, why.
func (ix *index) recordDecision(space *permSpace, user string, p model.Permission, grants []userGrant, now int64, explain bool) (bool, []Reason) {
	o, rec := ix.org, p.Record
	// Reasons are made only when explaining: their messages cost more
	// than the decision.
	var out []Reason
	rank, role := ix.scopeOf(space, grants, p.Module, p.Verb, now)
	scope := model.Scopes[max(rank, 0)]
	inScope := false
	switch {
	case rank < 0:
	case scope == model.ScopeOrg:
		inScope = true
	case rank >= 1 && rec.Owner == user:
		inScope = true
	case scope == model.ScopeDept && rec.Department != "":
		inScope = slices.Contains(o.userDepts(user), rec.Department)
	case scope == model.ScopeDeptTree && rec.Department != "":
		inScope = o.inTree(rec.Department, o.userDepts(user))
	}
	if inScope {
		if !explain {
			return true, nil
		}
		out = append(out, Reason{Kind: InScope, Role: role, Message: fmt.Sprintf("role %s grants %s %s with scope %s, which reaches record %s", role, p.Module, p.Verb, scope, rec.ID)})
	}
	allowed := inScope
	if level := o.managerLevel(user, rec.Owner); level > 0 && (p.Verb == model.VerbList || p.Verb == model.VerbRead || (p.Verb == model.VerbUpdate && level == 1)) {
		if !explain {
			return true, nil
		}
		allowed = true
		out = append(out, Reason{Kind: Manager, Message: fmt.Sprintf("user %s manages the owner %s (%d level(s) up, manager depth %d)", user, rec.Owner, level, o.depth)})
	}
	for _, r := range o.rules[p.Module] {
		if widens(r.Access, p.Verb) && ix.matchesUser(r.SharedWith, user, grants, now) && ix.matchesRecord(space.seed, r.OwnedBy, rec, now) {
			if !explain {
				return true, nil
			}
			allowed = true
			out = append(out, Reason{Kind: SharingRule, Rule: r.ID, Message: fmt.Sprintf("sharing rule %s shares records owned by %s %s with %s %s at %s", r.ID, r.OwnedBy.Kind, r.OwnedBy.ID, r.SharedWith.Kind, r.SharedWith.ID, r.Access)})
		}
	}
	for _, s := range o.shares[[2]string{p.Module, rec.ID}] {
		if widens(s.Access, p.Verb) && (s.ExpiresAt.IsZero() || now < s.ExpiresAt.UnixNano()) && ix.matchesUser(s.Principal, user, grants, now) {
			if !explain {
				return true, nil
			}
			allowed = true
			out = append(out, Reason{Kind: RecordShare, ExpiresAt: s.ExpiresAt, Message: fmt.Sprintf("record %s is shared with %s %s at %s", rec.ID, s.Principal.Kind, s.Principal.ID, s.Access)})
		}
	}
	if !allowed && explain {
		what := "no role grants it a data scope"
		if rank >= 0 {
			what = fmt.Sprintf("the widest scope held is %s (role %s)", scope, role)
		}
		out = append(out, Reason{Kind: OutOfScope, Message: fmt.Sprintf("user %s may %s %s records but not record %s (owner %s, department %q): %s, and no manager link, sharing rule or record share reaches it", user, p.Verb, p.Module, rec.ID, rec.Owner, rec.Department, what)})
	}
	return allowed, out
}

// FilterKind classifies a record filter.
type FilterKind uint8

// Filter kinds.
const (
	FilterNone FilterKind = iota + 1
	FilterAll
	FilterConditional
)

// Filter is which records of a module a user may use a verb on: with
// FilterConditional, those whose owner is in Owners, or whose department is
// in Departments, or whose id is in Records. The sets are sorted.
type Filter struct {
	Kind        FilterKind
	Owners      []string
	Departments []string
	Records     []string
	Revision    int64
}

// PlanFilter returns the record filter for user, module and verb; the
// records it selects are exactly those Check allows for a record.
func (e *Engine) PlanFilter(tenant, user, module, verb string) (Filter, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return Filter{}, err
	}
	if err := e.cat.CheckModule("module", module); err != nil {
		return Filter{}, err
	}
	if err := e.cat.CheckVerb("verb", verb); err != nil {
		return Filter{}, err
	}
	var gbuf [2]userGrant
	grants := ix.users.grantsOf(e.space.seed, user, &gbuf)
	now := e.now().UnixNano()
	f := Filter{Kind: FilterNone, Revision: ix.revision}
	if !ix.allowed(grants, e.space.modules[module].base+e.space.verbs[verb], now) {
		return f, nil
	}
	o := ix.org
	rank, _ := ix.scopeOf(e.space, grants, module, verb, now)
	if rank >= 0 && model.Scopes[rank] == model.ScopeOrg {
		f.Kind = FilterAll
		return f, nil
	}
	owners, depts, records := set{}, set{}, set{}
	if rank >= 1 {
		owners.add(user)
	}
	switch {
	case rank >= 0 && model.Scopes[rank] == model.ScopeDept:
		depts.add(o.userDepts(user)...)
	case rank >= 0 && model.Scopes[rank] == model.ScopeDeptTree:
		for _, d := range o.userDepts(user) {
			o.subtree(d, depts)
		}
	}
	switch verb {
	case model.VerbList, model.VerbRead:
		o.subordinates(user, o.depth, owners)
	case model.VerbUpdate:
		o.subordinates(user, min(o.depth, 1), owners)
	}
	for _, r := range o.rules[module] {
		if !widens(r.Access, verb) || !ix.matchesUser(r.SharedWith, user, grants, now) {
			continue
		}
		switch r.OwnedBy.Kind {
		case model.PrincipalUser:
			owners.add(r.OwnedBy.ID)
		case model.PrincipalRole:
			for _, h := range o.holders[o.roleNum[r.OwnedBy.ID]] {
				if h.expires == 0 || now < h.expires {
					owners.add(h.user)
				}
			}
		case model.PrincipalDepartment:
			if r.OwnedBy.IncludeSubs {
				o.subtree(r.OwnedBy.ID, depts)
			} else {
				depts.add(r.OwnedBy.ID)
			}
		}
	}
	for _, list := range [][]model.RecordShare{o.userShare[[2]string{module, user}], o.groupShare[module]} {
		for _, s := range list {
			if widens(s.Access, verb) && (s.ExpiresAt.IsZero() || now < s.ExpiresAt.UnixNano()) && ix.matchesUser(s.Principal, user, grants, now) {
				records.add(s.RecordID)
			}
		}
	}
	if len(owners)+len(depts)+len(records) > 0 {
		f.Kind = FilterConditional
		f.Owners, f.Departments, f.Records = owners.sorted(), depts.sorted(), records.sorted()
	}
	return f, nil
}

// subtree adds dept and every department below it.
func (o *orgIndex) subtree(dept string, into set) {
	into.add(dept)
	for _, c := range o.children[dept] {
		o.subtree(c, into)
	}
}

// subordinates adds the users the manager manages within depth levels.
func (o *orgIndex) subordinates(manager string, depth int, into set) {
	level := []string{manager}
	for range depth {
		var next []string
		for _, m := range level {
			for _, r := range o.reports[m] {
				into.add(r)
				next = append(next, r)
			}
		}
		level = next
	}
}

type set map[string]bool

func (s set) add(vs ...string) {
	for _, v := range vs {
		s[v] = true
	}
}

func (s set) sorted() []string {
	out := make([]string, 0, len(s))
	for v := range s {
		out = append(out, v)
	}
	slices.Sort(out)
	return out
}
