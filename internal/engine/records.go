package engine

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"

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
// Users and departments are numbered (names), and what the organisation
// says of them is kept as flat arrays of those numbers: at 10,000 tenants
// the collector then has a few objects per tenant to mark, none to look
// into, where maps of strings gave it millions.
type orgIndex struct {
	seed      maphash.Seed
	depth     int
	users     names       // every user a membership, a manager or a grant names
	depts     names       // every department, and every one a membership names
	manager   []int32     // user → manager, -1 for none
	deptsOf   rows        // user → departments, primary first
	reports   rows        // user → direct reports
	ancestors rows        // department → itself and every department above it
	children  rows        // department → direct sub-departments
	holders   [][]holding // role → users holding it, directly or by inheritance
	rules     ruleIndex
	shares    shareIndex
	// scopes holds, role after role, the widest scope rank of every module
	// verb with inheritance (-1: not granted): role r's is
	// scopes[r*n:(r+1)*n] for n module verbs.
	scopes []int8
}

// holding is a user holding a role, until expires (0: for good).
type holding struct {
	user    int32
	expires int64
}

// rows is a list of lists of numbers, numbered from 0, in one array: the
// n+1 positions where the rows start (the last where row n-1 ends), then
// the rows. One array is one pointer for the collector to follow, where
// starts and items apart were two.
type rows struct{ a []int32 }

// len returns the number of rows.
func (r rows) len() int {
	if len(r.a) == 0 {
		return 0
	}
	return int(r.a[0]) - 1
}

// row returns row i; none when i is out of range.
func (r rows) row(i int32) []int32 {
	if i < 0 || int(i) >= r.len() {
		return nil
	}
	return r.a[r.a[i]:r.a[i+1]]
}

// packRows returns n rows holding what fill yields, each row's items in
// the order yielded. fill is called twice: to count, then to fill.
func packRows(n int, fill func(yield func(row, v int32))) rows {
	start := make([]int32, n+1)
	fill(func(row, _ int32) { start[row+1]++ })
	start[0] = int32(n + 1)
	for i := 1; i <= n; i++ {
		start[i] += start[i-1]
	}
	a := make([]int32, start[n])
	copy(a, start)
	at := start[:n]
	fill(func(row, v int32) {
		a[at[row]] = v
		at[row]++
	})
	return rows{a: a}
}

func buildOrg(space *permSpace, st *model.TenantState, roles *roleTable) *orgIndex {
	o := &orgIndex{
		seed:  space.seed,
		depth: st.Settings.ManagerDepth,
	}
	// Members are numbered first, in the order of members, so that user i
	// < len(members) has membership members[i]; then the managers and
	// grant holders who have none.
	members := make([]model.Membership, 0, len(st.Members))
	ids := make([]string, 0, len(st.Members))
	for u, m := range st.Members {
		ids = append(ids, u)
		members = append(members, m)
	}
	more := others(func(u string) bool { _, ok := st.Members[u]; return ok })
	for _, m := range members {
		ids = more(ids, m.Manager)
	}
	for k := range st.Grants {
		ids = more(ids, k.UserID)
	}
	o.users = newNames(o.seed, ids, 0)
	depts := make([]string, 0, len(st.Departments))
	for id := range st.Departments {
		depts = append(depts, id)
	}
	more = others(func(d string) bool { _, ok := st.Departments[d]; return ok })
	for _, d := range st.Departments {
		depts = more(depts, d.Parent)
	}
	for _, m := range members {
		depts = more(depts, m.Primary)
		for _, d := range m.Others {
			depts = more(depts, d)
		}
	}
	o.depts = newNames(o.seed, depts, 0)
	o.setDepartments(st)
	o.manager = make([]int32, o.users.len())
	for i := range o.manager {
		o.manager[i] = -1
		if i < len(members) {
			o.manager[i] = o.userNum(members[i].Manager)
		}
	}
	o.deptsOf = packRows(o.users.len(), func(yield func(int32, int32)) {
		for i, m := range members {
			o.yieldDepts(int32(i), m, yield)
		}
	})
	o.reports = reportsOf(o.manager)
	o.rules = newRuleIndex(space, st, o.deptNum)
	o.shares = newShareIndex(o.seed, st, o.deptNum)
	o.holders = o.holdersOf(st, roles)
	o.scopes = make([]int8, roles.len()*space.moduleVerbs())
	for i := range roles.len() {
		setScopes(space, st, roles, int32(i), o.scopes)
	}
	return o
}

// others returns a function that appends an id to ids unless it is empty,
// known, or appended before.
func others(known func(string) bool) func(ids []string, id string) []string {
	var seen map[string]bool
	return func(ids []string, id string) []string {
		if id == "" || known(id) || seen[id] {
			return ids
		}
		if seen == nil {
			seen = map[string]bool{}
		}
		seen[id] = true
		return append(ids, id)
	}
}

// userNum returns the number of user, -1 for none.
func (o *orgIndex) userNum(user string) int32 {
	if user == "" {
		return -1
	}
	return o.users.find(o.seed, user)
}

// deptNum returns the number of dept, -1 for none.
func (o *orgIndex) deptNum(dept string) int32 {
	if dept == "" {
		return -1
	}
	return o.depts.find(o.seed, dept)
}

// yieldDepts yields user's departments in m, primary first.
func (o *orgIndex) yieldDepts(user int32, m model.Membership, yield func(int32, int32)) {
	yield(user, o.deptNum(m.Primary))
	for _, d := range m.Others {
		yield(user, o.deptNum(d))
	}
}

// setDepartments sets every department's chain up to the top and its
// sub-departments from st; o.depts numbers them all.
func (o *orgIndex) setDepartments(st *model.TenantState) {
	n := o.depts.len()
	parent := make([]int32, n) // -1: at the top, or not a department of st
	for i := range parent {
		parent[i] = -1
		if d, ok := st.Departments[o.depts.name(int32(i))]; ok {
			parent[i] = o.deptNum(d.Parent)
		}
	}
	o.ancestors = packRows(n, func(yield func(int32, int32)) {
		for i := range int32(n) {
			if _, ok := st.Departments[o.depts.name(i)]; !ok {
				continue
			}
			yield(i, i)
			// A parent that is not a department of st ends the chain.
			for steps, p := 0, parent[i]; p >= 0 && steps < len(st.Departments); steps, p = steps+1, parent[p] {
				yield(i, p)
			}
		}
	})
	o.children = packRows(n, func(yield func(int32, int32)) {
		for i, p := range parent {
			if p >= 0 {
				yield(p, int32(i))
			}
		}
	})
}

// reportsOf returns every user's direct reports, given every user's
// manager.
func reportsOf(manager []int32) rows {
	return packRows(len(manager), func(yield func(int32, int32)) {
		for u, m := range manager {
			if m >= 0 {
				yield(m, int32(u))
			}
		}
	})
}

// holdersOf returns, for each role, the users holding it, directly or by
// inheritance, in no order: they are read as sets. o.users numbers every
// user holding a grant.
func (o *orgIndex) holdersOf(st *model.TenantState, roles *roleTable) [][]holding {
	type held struct {
		holding
		role int32
	}
	grants := make([]held, 0, len(st.Grants))
	for _, g := range st.Grants {
		r, _ := roles.num(o.seed, g.RoleID)
		h := held{holding: holding{user: o.userNum(g.UserID)}, role: r}
		if !g.ExpiresAt.IsZero() {
			h.expires = g.ExpiresAt.UnixNano()
		}
		grants = append(grants, h)
	}
	// The lists share one array, one object for the collector where a
	// list per role was one each; each is capped at its end, so a grant
	// (patchHolders) copies the lists of the roles it reaches alone.
	count := make([]int, roles.len())
	total := 0
	for _, g := range grants {
		for _, r := range roles.closure(g.role) {
			count[r]++
			total++
		}
	}
	holders := make([][]holding, roles.len())
	all := make([]holding, total)
	for r, n := range count {
		if n > 0 {
			holders[r], all = all[:0:n], all[n:]
		}
	}
	for _, g := range grants {
		for _, r := range roles.closure(g.role) {
			holders[r] = append(holders[r], g.holding)
		}
	}
	return holders
}

// setScopes sets role's row of scopes to its widest scope rank of every
// module verb over itself and what it inherits (-1: not granted).
func setScopes(space *permSpace, st *model.TenantState, roles *roleTable, role int32, scopes []int8) {
	n := space.moduleVerbs()
	out := scopes[int(role)*n : (int(role)+1)*n]
	for i := range out {
		out[i] = -1
	}
	for _, c := range roles.closure(role) {
		for _, mg := range st.Roles[roles.id(c)].Permissions.Modules {
			for _, v := range mg.Verbs {
				j := space.moduleVerb(mg.Module, v)
				out[j] = max(out[j], int8(mg.Scope.Rank()))
			}
		}
	}
}

// who is the user a decision is for, looked up in the organisation once.
type who struct {
	id    string
	num   int32 // -1 when the organisation does not name the user
	depts []int32
}

func (o *orgIndex) who(user string) who {
	n := o.userNum(user)
	return who{id: user, num: n, depts: o.deptsOf.row(n)}
}

// managerOf returns user's manager, -1 for none.
func (o *orgIndex) managerOf(user int32) int32 {
	if user < 0 || int(user) >= len(o.manager) {
		return -1
	}
	return o.manager[user]
}

// inTree reports whether dept is one of roots or below one of them.
func (o *orgIndex) inTree(dept int32, roots []int32) bool {
	for _, a := range o.ancestors.row(dept) {
		if slices.Contains(roots, a) {
			return true
		}
	}
	return false
}

// managerLevel returns how many levels above owner the user manages it
// (1: direct manager), or 0 when the user is not in the owner's chain
// within the manager depth.
func (o *orgIndex) managerLevel(u int32, owner string) int {
	if u < 0 {
		return 0
	}
	m := o.userNum(owner)
	for level := 1; level <= o.depth; level++ {
		if m = o.managerOf(m); m < 0 {
			return 0
		}
		if m == u {
			return level
		}
	}
	return 0
}

// holds reports whether grants hold the role, directly or through a role
// inheriting it, by a grant active at now.
func (ix *index) holds(grants []userGrant, role string, now int64) bool {
	n, ok := ix.roles.num(ix.org.seed, role)
	if !ok {
		return false
	}
	for _, g := range grants {
		if g.active(now) && slices.Contains(ix.roles.closure(g.role), n) {
			return true
		}
	}
	return false
}

// matchesUser reports whether a principal (on the shared side), of
// department number pd when a department, includes the user, whose grants
// are given.
func (ix *index) matchesUser(p model.Principal, pd int32, w who, grants []userGrant, now int64) bool {
	switch p.Kind {
	case model.PrincipalUser:
		return p.ID == w.id
	case model.PrincipalRole:
		return ix.holds(grants, p.ID, now)
	case model.PrincipalDepartment:
		if pd < 0 {
			return false
		}
		for _, d := range w.depts {
			if d == pd || (p.IncludeSubs && ix.org.inTree(d, []int32{pd})) {
				return true
			}
		}
	}
	return false
}

// ruleReaches reports whether the shared side of sharing rule r includes
// the user w, as matchesUser does for its principal; it reads the rule's
// text only for a user or a role, where a rule of a module is read for
// every record check of it.
func (ix *index) ruleReaches(x *ruleIndex, r *rule, w who, grants []userGrant, now int64) bool {
	switch r.withKind {
	case kindUser:
		return x.str(r.with) == w.id
	case kindRole:
		return ix.holds(grants, x.str(r.with), now)
	case kindDepartment:
		if r.withDept < 0 {
			return false
		}
		for _, d := range w.depts {
			if d == r.withDept || (r.withSubs && slices.Contains(ix.org.ancestors.row(d), r.withDept)) {
				return true
			}
		}
	}
	return false
}

// matchesRecord reports whether a principal (on the owner side), of
// department number pd when a department, includes the record, whose
// department's number is recDept.
func (ix *index) matchesRecord(seed maphash.Seed, p model.Principal, pd int32, rec *model.Record, recDept int32, now int64) bool {
	switch p.Kind {
	case model.PrincipalUser:
		return p.ID == rec.Owner
	case model.PrincipalRole:
		var buf [2]userGrant
		return ix.holds(ix.users.grantsOf(seed, rec.Owner, &buf), p.ID, now)
	case model.PrincipalDepartment:
		return rec.Department != "" && (rec.Department == p.ID || (p.IncludeSubs && ix.org.inTree(recDept, []int32{pd})))
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
	n, j := space.moduleVerbs(), space.moduleVerb(module, verb)
	for _, g := range grants {
		if s := ix.org.scopes[int(g.role)*n+j]; g.active(now) && s > rank {
			rank, role = s, ix.roles.id(g.role)
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
	// Scope org and the user's own records need no organisation lookup.
	inScope := rank >= 0 && (scope == model.ScopeOrg || (rank >= 1 && rec.Owner == user))
	if inScope && !explain {
		return true, nil
	}
	w, recDept := o.who(user), o.deptNum(rec.Department)
	if !inScope && rank >= 0 && recDept >= 0 {
		switch scope {
		case model.ScopeDept:
			inScope = slices.Contains(w.depts, recDept)
		case model.ScopeDeptTree:
			inScope = o.inTree(recDept, w.depts)
		}
	}
	if inScope {
		if !explain {
			return true, nil
		}
		out = append(out, Reason{Kind: InScope, Role: role, Message: fmt.Sprintf("role %s grants %s %s with scope %s, which reaches record %s", role, p.Module, p.Verb, scope, rec.ID)})
	}
	allowed := inScope
	if level := o.managerLevel(w.num, rec.Owner); level > 0 && (p.Verb == model.VerbList || p.Verb == model.VerbRead || (p.Verb == model.VerbUpdate && level == 1)) {
		if !explain {
			return true, nil
		}
		allowed = true
		out = append(out, Reason{Kind: Manager, Message: fmt.Sprintf("user %s manages the owner %s (%d level(s) up, manager depth %d)", user, rec.Owner, level, o.depth)})
	}
	rules := o.rules.of(space, p.Module)
	for i := range rules {
		r := &rules[i]
		// Each side is read from the rule only when the one before matched:
		// most rules of a module end at the access or the shared side.
		access := accessAt(r.access)
		if !widens(access, p.Verb) {
			continue
		}
		if !ix.ruleReaches(&o.rules, r, w, grants, now) {
			continue
		}
		if owned := o.rules.ownedBy(r); ix.matchesRecord(space.seed, owned, r.ownedDept, rec, recDept, now) {
			if !explain {
				return true, nil
			}
			with := o.rules.sharedWith(r)
			allowed = true
			id := o.rules.str(r.id)
			out = append(out, Reason{Kind: SharingRule, Rule: id, Message: fmt.Sprintf("sharing rule %s shares records owned by %s %s with %s %s at %s", id, owned.Kind, owned.ID, with.Kind, with.ID, access)})
		}
	}
	x := &o.shares
	shared := len(out)
	for _, i := range x.byRecord.of(o.seed, p.Module, rec.ID, true) {
		s := &x.list[i]
		if !widens(x.accessOf(s), p.Verb) || !s.activeAt(now) {
			continue
		}
		if pr := x.principal(s); ix.matchesUser(pr, s.dept, w, grants, now) {
			if !explain {
				return true, nil
			}
			allowed = true
			out = append(out, Reason{Kind: RecordShare, ExpiresAt: s.expiresAt(), Message: fmt.Sprintf("record %s is shared with %s %s at %s", rec.ID, pr.Kind, pr.ID, x.accessOf(s))})
		}
	}
	// The index holds a record's shares in the order they were written on
	// this server, in map order on one that loaded the tenant whole (a
	// restart, a replica, a policy rebuilt to explain a decision after the
	// fact): their reasons are given by message, the same everywhere.
	slices.SortStableFunc(out[shared:], func(a, b Reason) int { return strings.Compare(a.Message, b.Message) })
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
	w := o.who(user)
	if rank >= 1 {
		owners.add(user)
	}
	switch {
	case rank >= 0 && model.Scopes[rank] == model.ScopeDept:
		for _, d := range w.depts {
			depts.add(o.depts.name(d))
		}
	case rank >= 0 && model.Scopes[rank] == model.ScopeDeptTree:
		for _, d := range w.depts {
			o.subtree(d, depts)
		}
	}
	switch verb {
	case model.VerbList, model.VerbRead:
		o.subordinates(w.num, o.depth, owners)
	case model.VerbUpdate:
		o.subordinates(w.num, min(o.depth, 1), owners)
	}
	rules := o.rules.of(e.space, module)
	for i := range rules {
		r := &rules[i]
		if !widens(accessAt(r.access), verb) || !ix.ruleReaches(&o.rules, r, w, grants, now) {
			continue
		}
		owned := o.rules.ownedBy(r)
		switch owned.Kind {
		case model.PrincipalUser:
			owners.add(owned.ID)
		case model.PrincipalRole:
			role, ok := ix.roles.num(o.seed, owned.ID)
			if !ok {
				continue
			}
			for _, h := range o.holders[role] {
				if h.expires == 0 || now < h.expires {
					owners.add(o.users.name(h.user))
				}
			}
		case model.PrincipalDepartment:
			if owned.IncludeSubs && r.ownedDept >= 0 {
				o.subtree(r.ownedDept, depts)
			} else {
				depts.add(owned.ID)
			}
		}
	}
	x := &o.shares
	for _, list := range [2][]int32{x.byUser.of(o.seed, module, user, true), x.byModule.of(o.seed, module, "", false)} {
		for _, i := range list {
			s := &x.list[i]
			if widens(x.accessOf(s), verb) && s.activeAt(now) && ix.matchesUser(x.principal(s), s.dept, w, grants, now) {
				records.add(x.str(s.record))
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
func (o *orgIndex) subtree(dept int32, into set) {
	into.add(o.depts.name(dept))
	for _, c := range o.children.row(dept) {
		o.subtree(c, into)
	}
}

// subordinates adds the users the manager manages within depth levels.
func (o *orgIndex) subordinates(m int32, depth int, into set) {
	if m < 0 {
		return
	}
	level := []int32{m}
	for range depth {
		var next []int32
		for _, m := range level {
			for _, r := range o.reports.row(m) {
				into.add(o.users.name(r))
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
