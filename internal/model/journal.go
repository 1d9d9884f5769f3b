package model

import (
	"reflect"
	"slices"
	"strings"
	"time"
)

// A write to a large tenant must cost what it changes, not what the tenant
// holds: copying tens of thousands of grants to run a mutation on a private
// copy, and comparing every row afterwards to find what changed, cost more
// than the change itself. Instead a store runs the mutation on the state in
// place under a journal (Begin): every mutation method records the key it
// sets or removes and how to undo it. Delta then says which rows changed
// and what they held before; Commit keeps the changes and Rollback puts
// everything back.

// Delta names what one write changed in a tenant's state: the keys of the
// rows it set or removed, each once and in key order.
type Delta struct {
	// Whole reports that the write replaced the state's maps themselves
	// (a restore): any row may have changed, and the keys below say
	// nothing.
	Whole bool
	// Settings reports that the tenant's name or settings changed.
	Settings bool

	Roles        []string
	Grants       []GrantKey
	Users        []string
	Departments  []string
	Members      []string
	SharingRules []string
	RecordShares []ShareKey

	AccessRequests []string
	AccessReviews  []string
	ReviewItems    []ReviewItemKey
}

// Empty reports whether the write changed nothing.
func (d *Delta) Empty() bool {
	return !d.Whole && !d.Settings && len(d.Roles)+len(d.Grants)+len(d.Users)+len(d.Departments)+
		len(d.Members)+len(d.SharingRules)+len(d.RecordShares)+len(d.AccessRequests)+
		len(d.AccessReviews)+len(d.ReviewItems) == 0
}

// journal is the record of a write in progress.
type journal struct {
	base   TenantState // the state's fields as Begin found them; its maps by reference
	sizes  [10]int     // the sizes of its maps then
	before *TenantState
	undo   []undo
	delta  Delta
}

// undo puts one row of map m back.
type undo struct {
	m  uintptr
	fn func()
}

// Begin starts a journal: until Commit or Rollback, the mutation methods
// record what they change. A journal already begun is replaced.
func (s *TenantState) Begin() {
	j := &journal{base: *s, before: NewTenantState(s.ID, s.Name), sizes: s.sizes()}
	j.base.journal = nil
	s.journal = j
}

// Delta returns what the write has changed so far, and a partial state
// holding, of every row the delta names, what it held before the write
// (rows the write created are absent from it). With Delta.Whole, the
// partial state is instead the whole state as Begin found it. Without a
// journal, Delta returns an empty delta and nil.
func (s *TenantState) Delta() (Delta, *TenantState) {
	j := s.journal
	if j == nil {
		return Delta{}, nil
	}
	d := j.delta
	d.Settings = s.Name != j.base.Name || !s.Settings.Equal(j.base.Settings)
	if s.replacedMaps(&j.base) {
		// The maps were swapped for others: put the rows the mutation
		// changed in the old maps back, so that they are the state as it
		// was, and leave the new ones alone.
		current := s.mapPointers()
		for i := len(j.undo) - 1; i >= 0; i-- {
			if !slices.Contains(current, j.undo[i].m) {
				j.undo[i].fn()
			}
		}
		base := j.base
		return Delta{Whole: true, Settings: d.Settings}, &base
	}
	dedupe(&d.Roles, strings.Compare)
	dedupe(&d.Grants, CompareGrantKeys)
	dedupe(&d.Users, strings.Compare)
	dedupe(&d.Departments, strings.Compare)
	dedupe(&d.Members, strings.Compare)
	dedupe(&d.SharingRules, strings.Compare)
	dedupe(&d.RecordShares, CompareShareKeys)
	dedupe(&d.AccessRequests, strings.Compare)
	dedupe(&d.AccessReviews, strings.Compare)
	dedupe(&d.ReviewItems, CompareReviewItemKeys)
	return d, j.before
}

// Commit ends the journal, keeping every change.
func (s *TenantState) Commit() { s.journal = nil }

// Rollback ends the journal and undoes every change recorded since Begin.
func (s *TenantState) Rollback() {
	j := s.journal
	if j == nil {
		return
	}
	s.journal = nil
	// Undo within the maps the rows were changed in, then restore the
	// fields themselves (which brings back maps a mutation replaced).
	for i := len(j.undo) - 1; i >= 0; i-- {
		j.undo[i].fn()
	}
	*s = j.base
}

// dedupe sorts a copy of keys and leaves each once; the journal's own
// list stays as it is, for later calls.
func dedupe[K any](keys *[]K, cmp func(a, b K) int) {
	*keys = slices.Clone(*keys)
	slices.SortFunc(*keys, cmp)
	*keys = slices.CompactFunc(*keys, func(a, b K) bool { return cmp(a, b) == 0 })
}

func (s *TenantState) mapPointers() []uintptr {
	return []uintptr{
		mapPointer(s.Roles), mapPointer(s.Grants), mapPointer(s.Users), mapPointer(s.Departments),
		mapPointer(s.Members), mapPointer(s.SharingRules), mapPointer(s.RecordShares),
		mapPointer(s.AccessRequests), mapPointer(s.AccessReviews), mapPointer(s.ReviewItems),
	}
}

func (s *TenantState) replacedMaps(base *TenantState) bool {
	return !slices.Equal(s.mapPointers(), base.mapPointers())
}

func mapPointer(m any) uintptr { return reflect.ValueOf(m).Pointer() }

// record notes that key k of m is about to be set or removed (SetRow): it keeps
// how to undo that, what k held before (the first time k is touched), and
// k in the delta.
func record[K comparable, V any](j *journal, m map[K]V, before map[K]V, k K, keys *[]K) {
	old, had := m[k]
	j.undo = append(j.undo, undo{m: mapPointer(m), fn: func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	}})
	if _, seen := before[k]; !seen && had && !slices.Contains(*keys, k) {
		before[k] = old
	}
	*keys = append(*keys, k)
}

// Partial returns the rows of s that d names, as a state of those rows
// alone (absent rows stay absent), with s's id, name, revision and
// settings.
func (s *TenantState) Partial(d Delta) *TenantState {
	p := NewTenantState(s.ID, s.Name)
	p.Revision, p.Settings = s.Revision, s.Settings
	pick(p.Roles, s.Roles, d.Roles)
	pick(p.Grants, s.Grants, d.Grants)
	pick(p.Users, s.Users, d.Users)
	pick(p.Departments, s.Departments, d.Departments)
	pick(p.Members, s.Members, d.Members)
	pick(p.SharingRules, s.SharingRules, d.SharingRules)
	pick(p.RecordShares, s.RecordShares, d.RecordShares)
	pick(p.AccessRequests, s.AccessRequests, d.AccessRequests)
	pick(p.AccessReviews, s.AccessReviews, d.AccessReviews)
	pick(p.ReviewItems, s.ReviewItems, d.ReviewItems)
	return p
}

func pick[K comparable, V any](into, from map[K]V, keys []K) {
	for _, k := range keys {
		if v, ok := from[k]; ok {
			into[k] = v
		}
	}
}

// SetRow sets row k of m, one of s's maps, to *v, or removes it when v is
// nil, and records that in the journal under way. Every mutation method
// changes rows through it, after its checks; on its own it puts rows in
// without them, as the stores' tests do to reach the database's own
// constraints.
func SetRow[K comparable, V any](s *TenantState, m map[K]V, k K, v *V) {
	if j := s.journal; j != nil {
		switch p := mapPointer(m); p {
		case mapPointer(s.Roles):
			record(j, s.Roles, j.before.Roles, any(k).(string), &j.delta.Roles)
		case mapPointer(s.Grants):
			record(j, s.Grants, j.before.Grants, any(k).(GrantKey), &j.delta.Grants)
		case mapPointer(s.Users):
			record(j, s.Users, j.before.Users, any(k).(string), &j.delta.Users)
		case mapPointer(s.Departments):
			record(j, s.Departments, j.before.Departments, any(k).(string), &j.delta.Departments)
		case mapPointer(s.Members):
			record(j, s.Members, j.before.Members, any(k).(string), &j.delta.Members)
		case mapPointer(s.SharingRules):
			record(j, s.SharingRules, j.before.SharingRules, any(k).(string), &j.delta.SharingRules)
		case mapPointer(s.RecordShares):
			record(j, s.RecordShares, j.before.RecordShares, any(k).(ShareKey), &j.delta.RecordShares)
		case mapPointer(s.AccessRequests):
			record(j, s.AccessRequests, j.before.AccessRequests, any(k).(string), &j.delta.AccessRequests)
		case mapPointer(s.AccessReviews):
			record(j, s.AccessReviews, j.before.AccessReviews, any(k).(string), &j.delta.AccessReviews)
		case mapPointer(s.ReviewItems):
			record(j, s.ReviewItems, j.before.ReviewItems, any(k).(ReviewItemKey), &j.delta.ReviewItems)
		default:
			panic("model.SetRow: not a map of the state")
		}
	}
	if v == nil {
		delete(m, k)
	} else {
		m[k] = *v
	}
}

// dropRow removes row k of m, one of s's maps (SetRow).
func dropRow[K comparable, V any](s *TenantState, m map[K]V, k K) { SetRow[K, V](s, m, k, nil) }

// Unjournaled reports whether rows were added to or removed from s's maps
// since Begin other than through its methods or SetRow, which no delta
// would name: a mutation must change the state through them. (A row
// replaced behind the journal's back goes unseen; the mutations of this
// package never do that.)
func (s *TenantState) Unjournaled() bool {
	j := s.journal
	if j == nil || s.replacedMaps(&j.base) {
		return false
	}
	b, now, was := j.before, s.sizes(), j.sizes
	return now[0]-was[0] != created(s.Roles, b.Roles, j.delta.Roles) ||
		now[1]-was[1] != created(s.Grants, b.Grants, j.delta.Grants) ||
		now[2]-was[2] != created(s.Users, b.Users, j.delta.Users) ||
		now[3]-was[3] != created(s.Departments, b.Departments, j.delta.Departments) ||
		now[4]-was[4] != created(s.Members, b.Members, j.delta.Members) ||
		now[5]-was[5] != created(s.SharingRules, b.SharingRules, j.delta.SharingRules) ||
		now[6]-was[6] != created(s.RecordShares, b.RecordShares, j.delta.RecordShares) ||
		now[7]-was[7] != created(s.AccessRequests, b.AccessRequests, j.delta.AccessRequests) ||
		now[8]-was[8] != created(s.AccessReviews, b.AccessReviews, j.delta.AccessReviews) ||
		now[9]-was[9] != created(s.ReviewItems, b.ReviewItems, j.delta.ReviewItems)
}

func (s *TenantState) sizes() [10]int {
	return [10]int{len(s.Roles), len(s.Grants), len(s.Users), len(s.Departments), len(s.Members), len(s.SharingRules), len(s.RecordShares),
		len(s.AccessRequests), len(s.AccessReviews), len(s.ReviewItems)}
}

// created returns how many rows the journaled keys added, less those they
// removed: the change in the map's size the journal accounts for.
func created[K comparable, V any](now, before map[K]V, keys []K) int {
	n := 0
	seen := make(map[K]bool, len(keys))
	for _, k := range keys {
		if seen[k] {
			continue
		}
		seen[k] = true
		_, has := now[k]
		_, had := before[k]
		switch {
		case has && !had:
			n++
		case had && !has:
			n--
		}
	}
	return n
}

// Journaled reports whether a journal is under way (Begin).
func (s *TenantState) Journaled() bool { return s.journal != nil }

// AtBase runs fn while s holds the state Begin found, and then puts the
// write's changes back: it swaps only the rows the write changed. Without
// a journal, fn runs on s as it is.
func (s *TenantState) AtBase(fn func()) {
	j := s.journal
	if j == nil {
		fn()
		return
	}
	d, before := s.Delta()
	saved := *s
	if d.Whole {
		*s = *before
		defer func() { *s = saved }()
		fn()
		return
	}
	s.Name, s.Settings = j.base.Name, j.base.Settings
	restore := []func(){
		swapRows(s.Roles, before.Roles, d.Roles), swapRows(s.Grants, before.Grants, d.Grants),
		swapRows(s.Users, before.Users, d.Users), swapRows(s.Departments, before.Departments, d.Departments),
		swapRows(s.Members, before.Members, d.Members), swapRows(s.SharingRules, before.SharingRules, d.SharingRules),
		swapRows(s.RecordShares, before.RecordShares, d.RecordShares),
		swapRows(s.AccessRequests, before.AccessRequests, d.AccessRequests),
		swapRows(s.AccessReviews, before.AccessReviews, d.AccessReviews), swapRows(s.ReviewItems, before.ReviewItems, d.ReviewItems),
	}
	defer func() {
		for _, r := range restore {
			r()
		}
		s.Name, s.Settings = saved.Name, saved.Settings
	}()
	fn()
}

// swapRows sets the keys of m to what before holds of them (absent when
// before lacks them) and returns how to put the current rows back.
func swapRows[K comparable, V any](m, before map[K]V, keys []K) func() {
	type row struct {
		v  V
		ok bool
	}
	cur := make([]row, len(keys))
	for i, k := range keys {
		cur[i].v, cur[i].ok = m[k]
		if b, had := before[k]; had {
			m[k] = b
		} else {
			delete(m, k)
		}
	}
	return func() {
		for i, k := range keys {
			if cur[i].ok {
				m[k] = cur[i].v
			} else {
				delete(m, k)
			}
		}
	}
}

// MayLoseHolder reports whether the write under way can have taken the
// function from some user: it replaced the state, changed roles or user
// status, removed (or left expired) a grant of a role that carries the
// function, or granted a role that denies it. Without a journal, it
// reports true.
func (s *TenantState) MayLoseHolder(fn string, now time.Time) bool {
	j := s.journal
	if j == nil {
		return true
	}
	d, _ := s.Delta()
	if d.Whole || len(d.Roles) > 0 || len(d.Users) > 0 {
		return true
	}
	for _, k := range d.Grants {
		for _, r := range s.RoleClosure(k.RoleID) {
			if slices.Contains(r.Permissions.DenyFunctions, fn) {
				return true // a grant that denies it
			}
			if g, ok := s.Grants[k]; (!ok || !g.ActiveAt(now)) && slices.Contains(r.Permissions.Functions, fn) {
				return true // a grant that carried it, gone
			}
		}
	}
	return false
}
