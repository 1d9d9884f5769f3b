package engine

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"math/bits"
	"slices"
	"strings"

	casbinmodel "github.com/casbin/casbin/v2/model"
	defaultrolemanager "github.com/casbin/casbin/v2/rbac/default-role-manager"

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

// permSpace numbers every permission of the catalog densely, so a role's
// permissions are a small bitset and a decision is a few bit tests. A
// module's verbs and fields are numbered next to each other, so the bits a
// field decision needs share a cache line. It is shared by all tenants, so
// its maps stay in cache.
type permSpace struct {
	ids       map[key]int32 // every permission, for building indexes
	keys      []key         // by id
	verbs     map[string]int32
	modules   map[string]*moduleSpace
	functions map[string]int32
	words     int // uint64 words per bitset
	seed      maphash.Seed
}

type moduleSpace struct {
	idx    int              // the module's position in the catalog
	base   int32            // id of the module's first verb
	fields map[string]int32 // id of each field's read; write is the next id
}

func newPermSpace(cat *model.Catalog) *permSpace {
	s := &permSpace{seed: maphash.MakeSeed(), ids: map[key]int32{}, verbs: map[string]int32{}, modules: map[string]*moduleSpace{}, functions: map[string]int32{}}
	add := func(k key) int32 {
		id := int32(len(s.keys))
		s.ids[k] = id
		s.keys = append(s.keys, k)
		return id
	}
	for i, v := range cat.Verbs {
		s.verbs[v] = int32(i)
	}
	for i, m := range cat.Modules {
		ms := &moduleSpace{idx: i, base: int32(len(s.keys)), fields: map[string]int32{}}
		for _, v := range cat.Verbs {
			add(key{kindModule, m.ID, v})
		}
		for _, f := range m.Fields {
			ms.fields[f] = add(key{kindFieldRead, m.ID, f})
			add(key{kindFieldWrite, m.ID, f})
		}
		s.modules[m.ID] = ms
	}
	for _, f := range cat.Functions {
		s.functions[f.ID] = add(key{kindFunction, f.ID, ""})
	}
	s.words = (len(s.keys) + 63) / 64
	return s
}

// moduleVerb returns the position of a module verb among all module verbs.
func (s *permSpace) moduleVerb(module, verb string) int {
	return s.modules[module].idx*len(s.verbs) + int(s.verbs[verb])
}

// id returns the number of k's permission. It looks the module and the verb
// or field up on their own, in maps keyed by one string, which costs less
// than hashing the whole key: building 10,000 tenants' indexes asks it
// millions of times.
func (s *permSpace) id(k key) (int32, bool) {
	if k.k == kindFunction {
		f, ok := s.functions[k.a]
		return f, ok
	}
	m, ok := s.modules[k.a]
	if !ok {
		return 0, false
	}
	switch k.k {
	case kindModule:
		v, ok := s.verbs[k.b]
		return m.base + v, ok
	case kindFieldRead, kindFieldWrite:
		f, ok := m.fields[k.b]
		if k.k == kindFieldWrite {
			f++
		}
		return f, ok
	}
	return 0, false
}

// moduleVerbs returns how many module verbs there are.
func (s *permSpace) moduleVerbs() int { return len(s.modules) * len(s.verbs) }

// idsFor returns the permission ids that must all be allowed for p (see
// Requests). p must be valid for the catalog.
func (s *permSpace) idsFor(p model.Permission, buf *[3]int32) []int32 {
	switch p.Kind {
	case model.KindModule:
		buf[0] = s.modules[p.Module].base + s.verbs[p.Verb]
		return buf[:1]
	case model.KindFunction:
		buf[0] = s.functions[p.Function]
		return buf[:1]
	case model.KindField:
		m := s.modules[p.Module]
		buf[1] = m.base + s.verbs[model.VerbRead]
		if p.Write {
			buf[0] = m.fields[p.Field] + 1
			buf[2] = m.base + s.verbs[model.VerbUpdate]
			return buf[:3]
		}
		buf[0] = m.fields[p.Field]
		return buf[:2]
	}
	return nil
}

// index is the hot-path form of one tenant at one revision. For each role it
// holds four bitsets over the permission space: the permissions the role
// allows and denies with everything it inherits (as Casbin's role manager
// resolves them), and those of its own lines, which explanations use to
// name the role a line comes from. For each permission it holds the roles
// allowing and denying it (masks), which is what a decision reads. For each
// user it holds the grants with their expiry. An index is immutable once
// built.
type index struct {
	// The fields a decision reads come first, so they share cache lines.
	masks    roleMasks
	users    userTable
	revision int64

	// bits holds each role's implicit allow and deny bitsets, interleaved
	// word by word so one permission's allow and deny bits share a cache
	// line; own holds the bitsets of the role's own lines the same way.
	bits   []uint64
	own    []uint64
	words  int
	tenant string
	roles  roleTable
	org    *orgIndex
	// inactive holds the offboarded users: their grants are left out of
	// the user table, so every decision for them denies; explanations
	// say why.
	inactive names
	// ownBlock reports that the user slots of a tenant too large to pack
	// lie in a block of their own (pack.go).
	ownBlock bool
	// compact reports that the tables without pointers lie in one slab
	// (slab.go).
	compact bool
	// aliases are the tenant's action aliases (model.Settings).
	aliases map[string]string
}

// The bitsets of a role.
const (
	setAllow    = iota // implicit allow, in bits
	setDeny            // implicit deny, in bits
	setOwnAllow        // own allow, in own
	setOwnDeny         // own deny, in own
)

// roleTable is a tenant's roles by number, their order in SortedRoles:
// their ids, numbered as names numbers users, and their closures. It is
// five objects per tenant without pointers inside, where a slice of ids
// and closures was two pointers per role for the collector to follow.
type roleTable struct {
	ids      names
	closures rows // the role itself, then every role it inherits
}

func (t *roleTable) len() int                { return t.ids.len() }
func (t *roleTable) id(r int32) string       { return t.ids.name(r) }
func (t *roleTable) closure(r int32) []int32 { return t.closures.row(r) }

// num returns the number of role id.
func (t *roleTable) num(seed maphash.Seed, id string) (int32, bool) {
	n := t.ids.find(seed, id)
	return n, n >= 0
}

// numbers returns every role's number by id, for building.
func (t *roleTable) numbers() map[string]int32 {
	out := make(map[string]int32, t.len())
	for r := range int32(t.len()) {
		out[t.id(r)] = r
	}
	return out
}

// packClosures returns closures as rows.
func packClosures(closures [][]int32) rows {
	return packRows(len(closures), func(yield func(int32, int32)) {
		for r, c := range closures {
			for _, x := range c {
				yield(int32(r), x)
			}
		}
	})
}

type userGrant struct {
	role    int32
	expires int64 // UnixNano; 0 when the grant never expires
}

// word returns the slice holding a set and the position of word w in it.
func (ix *index) word(role int32, set int, w int) ([]uint64, int) {
	arr := ix.bits
	if set >= setOwnAllow {
		arr, set = ix.own, set-setOwnAllow
	}
	return arr, (int(role)*ix.words+w)*2 + set
}

func (ix *index) has(role int32, set int, id int32) bool {
	arr, i := ix.word(role, set, int(id>>6))
	return arr[i]&(1<<(id&63)) != 0
}

func (ix *index) set(role int32, set int, id int32) {
	arr, i := ix.word(role, set, int(id>>6))
	arr[i] |= 1 << (id & 63)
}

// active reports whether a grant decides anything at now (UnixNano).
func (g userGrant) active(now int64) bool { return g.expires == 0 || now < g.expires }

// roleMasks holds, for every permission id, the set of the tenant's roles
// whose implicit permissions allow it and the set of those that deny it, as
// masks over role numbers. A decision then reads one small entry instead of
// a bitset per granted role, and the entry's address is known before the
// user is looked up, so the two memory reads overlap. A mask is as wide as
// the tenant's role count needs; a tenant of more than 64 roles has none
// and is decided from the bitsets.
type roleMasks struct {
	width int    // bytes per mask: 1, 2, 4 or 8; 0 for none
	b     []byte // the allow mask, then the deny mask, of each permission id
}

func newRoleMasks(roles, perms int) roleMasks {
	width := 0
	for _, w := range []int{1, 2, 4, 8} {
		if roles <= w*8 {
			width = w
			break
		}
	}
	return roleMasks{width: width, b: make([]byte, 2*width*perms)}
}

// at returns the masks of roles allowing and denying id.
func (m *roleMasks) at(id int32) (allow, deny uint64) {
	i := int(id) * 2 * m.width
	switch m.width {
	case 1:
		return uint64(m.b[i]), uint64(m.b[i+1])
	case 2:
		x := binary.LittleEndian.Uint32(m.b[i:])
		return uint64(x & 0xffff), uint64(x >> 16)
	case 4:
		x := binary.LittleEndian.Uint64(m.b[i:])
		return x & 0xffffffff, x >> 32
	}
	return binary.LittleEndian.Uint64(m.b[i:]), binary.LittleEndian.Uint64(m.b[i+8:])
}

// add puts role into the allow (set == setAllow) or deny mask of id.
func (m *roleMasks) add(role int32, set int, id int32) {
	bit := int(role)
	i := int(id)*2*m.width + set*m.width + bit/8
	m.b[i] |= 1 << (bit % 8)
}

// remove takes role out of both masks of id.
func (m *roleMasks) remove(role int32, id int32) {
	bit := int(role)
	for set := range 2 {
		i := int(id)*2*m.width + set*m.width + bit/8
		m.b[i] &^= 1 << (bit % 8)
	}
}

// someRoleAllows reports whether some role of the tenant allows every id.
// When none does, no user can hold them, and the user need not be looked
// up.
func (ix *index) someRoleAllows(ids []int32) bool {
	if ix.masks.width == 0 {
		return true
	}
	for _, id := range ids {
		if allow, _ := ix.masks.at(id); allow == 0 {
			return false
		}
	}
	return true
}

// allowed decides one permission for a user's grants: some active role
// allows it and no active role denies it.
func (ix *index) allowed(grants []userGrant, id int32, now int64) bool {
	if ix.masks.width != 0 {
		var held uint64
		for _, g := range grants {
			if g.active(now) {
				held |= 1 << g.role
			}
		}
		allow, deny := ix.masks.at(id)
		return held&allow != 0 && held&deny == 0
	}
	ok := false
	for _, g := range grants {
		if !g.active(now) {
			continue
		}
		if ix.has(g.role, setDeny, id) {
			return false
		}
		ok = ok || ix.has(g.role, setAllow, id)
	}
	return ok
}

// forEach calls fn for every permission id set in role's bitset.
func (ix *index) forEach(role int32, set int, fn func(id int32)) {
	for w := range ix.words {
		arr, i := ix.word(role, set, w)
		word := arr[i]
		for word != 0 {
			fn(int32(w*64 + bits.TrailingZeros64(word)))
			word &= word - 1
		}
	}
}

// holder names the role whose own line sets the permission for role: the
// role itself or the first inherited role carrying it.
func (ix *index) holder(role int32, set int, id int32) string {
	own := setOwnAllow
	if set == setDeny {
		own = setOwnDeny
	}
	for _, r := range ix.roles.closure(role) {
		if ix.has(r, own, id) {
			return ix.roles.id(r)
		}
	}
	return ix.roles.id(role)
}

// buildIndex builds the index of st: each role's own lines (as
// CompilePolicy writes them), its inheritance resolved by Casbin's role
// manager, its implicit permissions, the users' grants and the
// organisation. sets, when not nil, holds the own bitsets of the roles
// built before in the same load.
func buildIndex(space *permSpace, cat *model.Catalog, st *model.TenantState, sets ownSets) (*index, error) {
	roles := st.SortedRoles()
	ix := &index{
		tenant:   st.ID,
		revision: st.Revision,
		words:    space.words,
		bits:     make([]uint64, len(roles)*2*space.words),
		own:      make([]uint64, len(roles)*2*space.words),
		masks:    newRoleMasks(len(roles), len(space.keys)),
	}
	number := make(map[string]int32, len(roles))
	ids := make([]string, len(roles))
	for i, r := range roles {
		ids[i] = r.ID
		number[r.ID] = int32(i)
	}
	closures, err := roleClosures(st.ID, roles, number)
	if err != nil {
		return nil, err
	}
	ix.roles = roleTable{ids: newNames(space.seed, ids, 0), closures: packClosures(closures)}
	for i, r := range roles {
		if err := ix.setOwnFrom(sets, space, cat, int32(i), r); err != nil {
			return nil, err
		}
	}
	for i := range roles {
		ix.inherit(int32(i))
	}
	if len(roles) > model.MaxRoles {
		return nil, fmt.Errorf("tenant %q has %d roles; the engine holds at most %d", st.ID, len(roles), model.MaxRoles)
	}
	byUser := map[string][]userGrant{}
	var users []string
	var inactive []string
	for id, u := range st.Users {
		if !u.Active() {
			inactive = append(inactive, id)
		}
	}
	ix.inactive = newNames(space.seed, inactive, 0)
	// Grants in map order: the table does not care in which order users
	// arrive, and each user's grants are put in role order below; sorting
	// every grant of a large tenant cost more than the rest of the table.
	for _, g := range st.Grants {
		if ix.inactive.find(space.seed, g.UserID) >= 0 {
			continue
		}
		role, ok := number[g.RoleID]
		if !ok {
			return nil, fmt.Errorf("grant of unknown role %q to %q", g.RoleID, g.UserID)
		}
		if len(g.UserID) == 0 || len(g.UserID) > maxUserID {
			return nil, fmt.Errorf("grant of role %q to a user id of %d bytes; the engine holds ids of 1 to %d bytes", g.RoleID, len(g.UserID), maxUserID)
		}
		ug := userGrant{role: role}
		if !g.ExpiresAt.IsZero() {
			ug.expires = g.ExpiresAt.UnixNano()
		}
		if byUser[g.UserID] == nil {
			users = append(users, g.UserID)
		}
		byUser[g.UserID] = append(byUser[g.UserID], ug)
	}
	for _, gs := range byUser {
		if len(gs) > 1 {
			slices.SortFunc(gs, func(a, b userGrant) int { return cmp.Compare(a.role, b.role) })
		}
	}
	ix.users = newUserTable(space.seed, users, byUser)
	ix.org = buildOrg(space, st, &ix.roles)
	ix.aliases = maps.Clone(st.Settings.ActionAliases)
	return ix, nil
}

// checkModel parses the Casbin model and checks that its role definition
// has domains (g = _, _, _), the one the engine's role closures resolve.
func checkModel(modelText string) error {
	m, err := casbinmodel.NewModelFromString(modelText)
	if err != nil {
		return fmt.Errorf("parse casbin model: %w", err)
	}
	g, ok := m["g"]["g"]
	if !ok || len(g.Tokens) != 3 {
		return errors.New("casbin model: the role definition must be g = _, _, _ (roles with domains)")
	}
	return nil
}

// maxHierarchy is how many levels of inheritance Casbin's role manager
// follows in an enforcer of policies/model.conf (casbin.NewEnforcer's
// default); the model keeps inheritance shallower (model.MaxInheritDepth).
const maxHierarchy = 10

// roleClosures resolves the inheritance of roles in tenant with Casbin's
// role manager for the model's role definition (g = _, _, _), as the
// tenant's enforcer resolves it: for each role, the role itself, then the
// number of every role it inherits, in number order, so explanations name
// the same role every time.
func roleClosures(tenant string, roles []model.Role, number map[string]int32) ([][]int32, error) {
	rm := defaultrolemanager.NewRoleManager(maxHierarchy)
	for _, r := range roles {
		for _, parent := range r.Inherits {
			if err := rm.AddLink(rolePrefix+r.ID, rolePrefix+parent, tenant); err != nil {
				return nil, fmt.Errorf("role %q inherits %q: %w", r.ID, parent, err)
			}
		}
	}
	out := make([][]int32, len(roles))
	for i, r := range roles {
		inherited, err := rm.GetImplicitRoles(rolePrefix+r.ID, tenant)
		if err != nil {
			return nil, fmt.Errorf("roles of role %q: %w", r.ID, err)
		}
		closure := make([]int32, 1, 1+len(inherited))
		closure[0] = number[r.ID]
		for _, name := range inherited {
			n, ok := number[strings.TrimPrefix(name, rolePrefix)]
			if !ok {
				return nil, fmt.Errorf("role %q inherits unknown role %q", r.ID, name)
			}
			closure = append(closure, n)
		}
		slices.Sort(closure[1:])
		out[i] = closure
	}
	return out, nil
}

// setOwn sets role's own bitsets from the lines of r, its definition.
func (ix *index) setOwn(space *permSpace, cat *model.Catalog, role int32, r model.Role) error {
	var err error
	eachLine(cat, r, func(k key, eft string) {
		id, ok := space.id(k)
		if !ok {
			if err == nil {
				obj, act := k.objAct()
				err = fmt.Errorf("role %q: permission %s %s is not in the catalog", r.ID, obj, act)
			}
			return
		}
		set := setOwnAllow
		if eft == effDeny {
			set = setOwnDeny
		}
		ix.set(role, set, id)
	})
	return err
}

// ownSets holds, within one load, the own bitsets of the roles built so
// far by their permissions: roles of tenants made from one template share
// their permissions' arrays (the store decodes a template's text once per
// batch), and building each role's bitsets from its lines anew was a
// seventh of start-up's CPU at 10,000 tenants.
type ownSets map[permsID][]uint64

// permsID names a Permissions value by its arrays (their first elements)
// and lengths: two values of the same arrays hold the same permissions. A
// load compares them while it holds the states, so no array is freed and
// its address reused meanwhile.
type permsID struct {
	modules, denyModules     *model.ModuleGrant
	fields                   *model.FieldRule
	functions, denyFunctions *string
	n                        [5]int
}

func permsOf(p *model.Permissions) permsID {
	return permsID{
		modules: first(p.Modules), denyModules: first(p.DenyModules), fields: first(p.Fields),
		functions: first(p.Functions), denyFunctions: first(p.DenyFunctions),
		n: [5]int{len(p.Modules), len(p.DenyModules), len(p.Fields), len(p.Functions), len(p.DenyFunctions)},
	}
}

// first returns the address of s's first element; nil when s is empty.
func first[T any](s []T) *T {
	if len(s) == 0 {
		return nil
	}
	return &s[0]
}

// setOwnFrom sets role's own bitsets as setOwn does, copying them from
// sets when a role of the same permissions was built before.
func (ix *index) setOwnFrom(sets ownSets, space *permSpace, cat *model.Catalog, role int32, r model.Role) error {
	own := ix.own[int(role)*ix.words*2 : (int(role)+1)*ix.words*2]
	id := permsOf(&r.Permissions)
	if b, ok := sets[id]; ok {
		copy(own, b)
		return nil
	}
	if err := ix.setOwn(space, cat, role, r); err != nil {
		return err
	}
	if sets != nil {
		sets[id] = slices.Clone(own)
	}
	return nil
}

// inherit sets role's implicit bitsets, the union of the own bitsets of
// its closure (what Casbin's GetImplicitPermissionsForUser returns for
// it), and puts role in the masks of those permissions.
func (ix *index) inherit(role int32) {
	for _, c := range ix.roles.closure(role) {
		for w := range ix.words {
			for _, set := range [2]int{setAllow, setDeny} {
				src, i := ix.word(c, set+setOwnAllow, w)
				dst, j := ix.word(role, set, w)
				dst[j] |= src[i]
			}
		}
	}
	if ix.masks.width == 0 {
		return
	}
	for _, set := range [2]int{setAllow, setDeny} {
		ix.forEach(role, set, func(id int32) { ix.masks.add(role, set, id) })
	}
}

// The model's bound on user ids must fit the user table.
var _ [maxUserID - model.MaxSubjectLength]struct{}

// objAct returns the Casbin object and action of a key.
func (k key) objAct() (obj, act string) {
	switch k.k {
	case kindModule:
		return modulePrefix + k.a, k.b
	case kindFunction:
		return functionPrefix + k.a, actUse
	case kindFieldRead:
		return fieldPrefix + k.a + "." + k.b, actRead
	case kindFieldWrite:
		return fieldPrefix + k.a + "." + k.b, actWrite
	}
	return "", ""
}

// casbinLine renders the p line behind a key for explanations.
func (k key) casbinLine(holder, tenant, eft string) string {
	obj, act := k.objAct()
	return strings.Join([]string{"p", rolePrefix + holder, tenant, obj, act, eft}, ", ")
}
