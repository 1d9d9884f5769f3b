package engine

import (
	"maps"
	"slices"

	"github.com/crmauthz/crmauthz/internal/model"
)

// A write to a large tenant changes a few rows; rebuilding its whole index
// (every role's bitsets, a user table of every user, the organisation's
// maps) cost hundreds of milliseconds at 50,000 users. Apply
// instead copies the index and replaces only the parts the write reached:
//
//   - grants and user status: the users' slots in a copy of the user table,
//     and the holders of the roles the grants reach;
//   - memberships: copies of the flat per-user arrays (departments,
//     managers) with the users' entries replaced, and every manager's
//     reports recounted from them;
//   - record shares: the old entries marked dead, the new appended, and
//     the groupings recounted (shares.go);
//   - departments and sharing rules: their (small) rows and lists,
//     rebuilt, the new departments numbered after the old;
//   - settings: the manager depth.
//
//   - a role's permissions or inheritance: that role's and its
//     inheritors' bitsets, mask bits, closures (Casbin's role manager over
//     those roles alone) and scopes, and the holders when a closure
//     changed.
//
// Parts left alone are shared with the previous index, which stays valid
// for the readers still holding it. Creating or deleting a role renumbers
// the roles every other part refers to, so it rebuilds the index; so does
// a state that replaced everything (a restore) or a revision gap. TestApplyMatchesRebuild holds the patched index equal to a rebuilt
// one, and so to plain Casbin, over thousands of random writes.

// Apply makes st the tenant's current state, where d says what changed
// since the revision before st's. Calls for one tenant must come in
// revision order (the store's Write.Applied does that). Apply does not keep
// st.
func (e *Engine) Apply(st *model.TenantState, d model.Delta) error {
	cur, ok := (*e.tenants.Load())[st.ID]
	if !ok || cur.revision != st.Revision-1 || d.Whole {
		return e.Load(st)
	}
	if len(d.Roles) > 0 {
		next, err := e.patchRoles(cur, st, d.Roles)
		if err != nil {
			return err
		}
		if next == nil {
			return e.Load(st)
		}
		cur = next
	}
	e.publish([]*index{patch(e.space, cur, st, d)}, true)
	return nil
}

// patchRoles returns a copy of cur in which the roles a write changed, and
// the roles inheriting them, carry what they carry in st: their bitsets,
// their bits in the role masks, their inheritance closures (resolved over
// those roles and what they inherit alone) and scopes;
// and the roles' holders, when a closure changed. It returns nil when the
// write created or deleted a role, which renumbers the roles every part of
// the index refers to.
func (e *Engine) patchRoles(cur *index, st *model.TenantState, changed []string) (*index, error) {
	number := cur.roles.numbers()
	if len(st.Roles) != cur.roles.len() {
		return nil, nil
	}
	for _, id := range changed {
		if _, ok := st.Roles[id]; !ok {
			return nil, nil
		}
		if _, ok := number[id]; !ok {
			return nil, nil
		}
	}
	// The roles whose implicit permissions may change: those whose closure
	// held a changed role before the write or holds one after it.
	reaches := func(closure []model.Role) bool {
		return slices.ContainsFunc(closure, func(r model.Role) bool { return slices.Contains(changed, r.ID) })
	}
	var affected []int32
	needed := map[string]model.Role{}
	for i := range int32(cur.roles.len()) {
		after := st.RoleClosure(cur.roles.id(i))
		before := slices.ContainsFunc(cur.roles.closure(i), func(c int32) bool { return slices.Contains(changed, cur.roles.id(c)) })
		if !before && !reaches(after) {
			continue
		}
		affected = append(affected, i)
		for _, c := range after {
			needed[c.ID] = c
		}
	}
	roles := slices.Collect(maps.Values(needed))
	closures, err := roleClosures(st.ID, roles, number)
	if err != nil {
		return nil, err
	}
	closureOf := make(map[int32][]int32, len(roles))
	for i, r := range roles {
		closureOf[number[r.ID]] = closures[i]
	}
	ix := *cur
	ix.bits, ix.own = slices.Clone(cur.bits), slices.Clone(cur.own)
	ix.masks.b = slices.Clone(cur.masks.b)
	closuresAfter := make([][]int32, cur.roles.len())
	for i := range closuresAfter {
		closuresAfter[i] = cur.roles.closure(int32(i))
	}
	org := *cur.org
	org.scopes = slices.Clone(cur.org.scopes)
	ix.org = &org
	closureChanged := false
	for _, role := range affected {
		ix.clearRole(role)
		if err := ix.setOwn(e.space, e.cat, role, st.Roles[cur.roles.id(role)]); err != nil {
			return nil, err
		}
		closure := closureOf[role]
		closureChanged = closureChanged || !slices.Equal(closure, cur.roles.closure(role))
		closuresAfter[role] = closure
	}
	ix.roles.closures = packClosures(closuresAfter)
	for _, role := range affected {
		ix.inherit(role)
	}
	for _, role := range affected {
		setScopes(e.space, st, &ix.roles, role, org.scopes)
	}
	if closureChanged {
		org.holders = org.holdersOf(st, &ix.roles)
	}
	return &ix, nil
}

// clearRole clears every bit of role: its bitsets and its place in the
// role masks.
func (ix *index) clearRole(role int32) {
	for w := range ix.words {
		for _, set := range []int{setAllow, setDeny, setOwnAllow, setOwnDeny} {
			arr, i := ix.word(role, set, w)
			arr[i] = 0
		}
	}
	if ix.masks.width == 0 {
		return
	}
	for id := range int32(len(ix.masks.b) / (2 * ix.masks.width)) {
		ix.masks.remove(role, id)
	}
}

// patch returns a copy of cur with the parts d reaches rebuilt from st.
func patch(space *permSpace, cur *index, st *model.TenantState, d model.Delta) *index {
	ix := *cur
	ix.revision = st.Revision
	// The tables the write replaces are loose until the engine packs.
	ix.compact = false
	if len(d.Users) > 0 {
		// The offboarded users st names, of those the index had and those
		// the write set.
		var ids []string
		for _, id := range slices.Concat(cur.inactive.ids(), d.Users) {
			if u, ok := st.Users[id]; ok && !u.Active() {
				ids = append(ids, id)
			}
		}
		slices.Sort(ids)
		ix.inactive = newNames(space.seed, slices.Compact(ids), 0)
	}
	users := touchedUsers(d)
	if len(users) > 0 {
		changes := make(map[string][]userGrant, len(users))
		for _, u := range users {
			var gs []userGrant
			if ix.inactive.find(space.seed, u) < 0 {
				gs = ix.grantsIn(st, u)
			}
			changes[u] = gs
		}
		ix.users = cur.users.patch(space.seed, changes)
		ix.ownBlock = false
	}
	ix.org = cur.org.patch(space, st, d, &ix)
	// Users and departments keep their numbers while the index is
	// patched, those no longer named included; past twice what the
	// tenant names, they are numbered anew.
	if o := ix.org; o.users.len() > 2*(len(st.Members)+len(st.Grants))+1024 || o.depts.len() > 2*len(st.Departments)+1024 {
		ix.org = buildOrg(space, st, &ix.roles)
	}
	if d.Settings {
		ix.aliases = maps.Clone(st.Settings.ActionAliases)
	}
	return &ix
}

// touchedUsers returns the users whose slot a write may change: those of
// its grants and those whose status it set, sorted, each once.
func touchedUsers(d model.Delta) []string {
	users := slices.Clone(d.Users)
	for _, k := range d.Grants {
		users = append(users, k.UserID)
	}
	slices.Sort(users)
	return slices.Compact(users)
}

// grantsIn returns the user's grants in st as the user table keeps them,
// in role order (as buildIndex adds them).
func (ix *index) grantsIn(st *model.TenantState, user string) []userGrant {
	var gs []userGrant
	for i := range int32(ix.roles.len()) {
		if g, ok := st.Grants[model.GrantKey{UserID: user, RoleID: ix.roles.id(i)}]; ok {
			ug := userGrant{role: i}
			if !g.ExpiresAt.IsZero() {
				ug.expires = g.ExpiresAt.UnixNano()
			}
			gs = append(gs, ug)
		}
	}
	return gs
}

// patch returns a copy of o with the parts d reaches rebuilt from st; ix
// is the index being built, whose roles are o's.
func (o *orgIndex) patch(space *permSpace, st *model.TenantState, d model.Delta, ix *index) *orgIndex {
	if !d.Settings && len(d.Departments)+len(d.Members)+len(d.SharingRules)+len(d.RecordShares)+len(d.Grants) == 0 {
		return o
	}
	n := *o
	n.depth = st.Settings.ManagerDepth
	if len(d.Departments) > 0 {
		var ids []string
		for id, dep := range st.Departments {
			ids = append(ids, id)
			if dep.Parent != "" {
				ids = append(ids, dep.Parent)
			}
		}
		n.depts = o.depts.with(o.seed, ids)
		n.setDepartments(st)
	}
	if len(d.Departments)+len(d.SharingRules) > 0 {
		n.rules = newRuleIndex(space, st, n.deptNum)
	}
	if len(d.Members) > 0 {
		n.patchMembers(o, st, d.Members)
	}
	// A department keeps its number (new ones are numbered after the
	// old), so the shares' department numbers stay right when
	// departments change.
	if len(d.RecordShares) > 0 {
		n.shares = o.shares.patch(n.seed, st, d.RecordShares, n.deptNum)
	}
	if len(d.Grants) > 0 {
		n.patchHolders(o, st, d.Grants, ix)
	}
	return &n
}

// patchMembers replaces the departments and manager of users, and with
// them every manager's reports. The arrays of prev are never written: the
// changed ones are replaced.
func (o *orgIndex) patchMembers(prev *orgIndex, st *model.TenantState, users []string) {
	ids, depts := slices.Clone(users), []string(nil)
	for _, u := range users {
		if m, ok := st.Members[u]; ok {
			if m.Manager != "" {
				ids = append(ids, m.Manager)
			}
			depts = append(append(depts, m.Primary), m.Others...)
		}
	}
	o.users = o.users.with(o.seed, ids)
	o.depts = o.depts.with(o.seed, depts)
	o.manager = make([]int32, o.users.len())
	copy(o.manager, prev.manager)
	for i := len(prev.manager); i < len(o.manager); i++ {
		o.manager[i] = -1
	}
	changed := make(map[int32]model.Membership, len(users))
	for _, u := range users {
		n := o.userNum(u)
		m, ok := st.Members[u]
		changed[n] = m
		o.manager[n] = -1
		if ok {
			o.manager[n] = o.userNum(m.Manager)
		}
	}
	o.deptsOf = packRows(o.users.len(), func(yield func(int32, int32)) {
		for i := range int32(o.users.len()) {
			m, ok := changed[i]
			if !ok {
				for _, d := range prev.deptsOf.row(i) {
					yield(i, d)
				}
			} else if m.Primary != "" {
				o.yieldDepts(i, m, yield)
			}
		}
	})
	o.reports = reportsOf(o.manager)
}

// patchHolders replaces, in the holders of every role the changed grants
// reach (the granted roles and those they inherit), the entries of the
// grants' users with those their grants in st give.
func (o *orgIndex) patchHolders(prev *orgIndex, st *model.TenantState, grants []model.GrantKey, ix *index) {
	var ids []string
	for _, k := range grants {
		ids = append(ids, k.UserID)
	}
	o.users = o.users.with(o.seed, ids)
	reached := map[int32]map[int32]bool{} // role → users whose entries change
	users := map[int32]string{}
	for _, k := range grants {
		r, ok := ix.roles.num(o.seed, k.RoleID)
		if !ok {
			continue
		}
		u := o.userNum(k.UserID)
		users[u] = k.UserID
		for _, c := range ix.roles.closure(r) {
			if reached[c] == nil {
				reached[c] = map[int32]bool{}
			}
			reached[c][u] = true
		}
	}
	if len(reached) == 0 {
		return
	}
	// What each user's grants give now, in the roles reached.
	give := map[int32][]holding{}
	for _, u := range slices.Sorted(maps.Keys(users)) {
		for i := range int32(ix.roles.len()) {
			g, ok := st.Grants[model.GrantKey{UserID: users[u], RoleID: ix.roles.id(i)}]
			if !ok {
				continue
			}
			h := holding{user: u}
			if !g.ExpiresAt.IsZero() {
				h.expires = g.ExpiresAt.UnixNano()
			}
			for _, c := range ix.roles.closure(i) {
				if reached[c][u] {
					give[c] = append(give[c], h)
				}
			}
		}
	}
	// The lists of roles not reached are shared with prev.
	o.holders = slices.Clone(prev.holders)
	for role, gone := range reached {
		hs := slices.DeleteFunc(slices.Clone(prev.holders[role]), func(h holding) bool { return gone[h.user] })
		o.holders[role] = append(hs, give[role]...)
	}
}
