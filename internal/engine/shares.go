package engine

import (
	"hash/maphash"
	"slices"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// shareIndex is a tenant's record shares, kept the way names keeps ids:
// the strings in one text, the shares as entries of fixed size, and the
// shares of a record, of a user, and with the departments and roles of a
// module found through names tables of those keys. Held as model values in
// maps, the shares were half the objects the collector marked at 10,000
// tenants.
//
// A write appends: the share it replaces or removes is marked dead, its
// new version (if any) goes at the end, and the three groupings are
// recounted from the entries' key numbers, which is copying integers. When
// half the entries are dead the index is built anew.
type shareIndex struct {
	text string  // the module, record id and principal id of every entry
	list []share // live and dead entries
	dead int
	// byRecord's keys are "module\x00record id"; byUser's are
	// "module\x00user id", of the shares with users; byModule's are
	// modules, of the shares with departments and roles.
	byRecord, byUser, byModule groups
}

// span is a string in shareIndex.text.
type span struct{ at, n uint32 }

type share struct {
	module, record, principal span
	kind                      uint8 // index in principalKinds
	subs                      bool
	access                    uint8 // index in accesses
	dead                      bool
	dept                      int32 // the principal's department number; -1 for others
	expires                   int64 // 0: for good
	// The entry's key numbers in byRecord and in byUser or byModule.
	recordKey, groupKey int32
}

// The indexes of the kinds in principalKinds.
const (
	kindUser uint8 = iota
	kindDepartment
	kindRole
)

var (
	principalKinds = []model.PrincipalKind{kindUser: model.PrincipalUser, kindDepartment: model.PrincipalDepartment, kindRole: model.PrincipalRole}
	accesses       = []model.Access{model.AccessRead, model.AccessReadWrite}
)

// groups finds list entries by key: the entries of key k are rows.row(k).
type groups struct {
	keys names
	rows rows
}

// of returns the entries of key a, or with pair of a\x00b.
func (g *groups) of(seed maphash.Seed, a, b string, pair bool) []int32 {
	return g.rows.row(g.keys.findPair(seed, a, b, pair))
}

func newShareIndex(seed maphash.Seed, st *model.TenantState, deptNum func(string) int32) shareIndex {
	var x shareIndex
	shares := make([]model.RecordShare, 0, len(st.RecordShares))
	for _, s := range st.RecordShares {
		shares = append(shares, s)
	}
	x.append(seed, shares, deptNum)
	return x
}

// append adds shares as new entries and recounts the groupings. x's
// slices are never written in place: readers may hold them.
func (x *shareIndex) append(seed maphash.Seed, shares []model.RecordShare, deptNum func(string) int32) {
	size := len(x.text)
	for _, s := range shares {
		size += len(s.Module) + len(s.RecordID) + len(s.Principal.ID)
	}
	text := make([]byte, len(x.text), size)
	copy(text, x.text)
	str := func(s string) span {
		text = append(text, s...)
		return span{uint32(len(text) - len(s)), uint32(len(s))}
	}
	recordKeys, userKeys, moduleKeys := make([]string, len(shares)), []string(nil), []string(nil)
	for i, s := range shares {
		recordKeys[i] = s.Module + "\x00" + s.RecordID
		if s.Principal.Kind == model.PrincipalUser {
			userKeys = append(userKeys, s.Module+"\x00"+s.Principal.ID)
		} else {
			moduleKeys = append(moduleKeys, s.Module)
		}
	}
	x.byRecord.keys = x.byRecord.keys.with(seed, recordKeys)
	x.byUser.keys = x.byUser.keys.with(seed, userKeys)
	x.byModule.keys = x.byModule.keys.with(seed, moduleKeys)
	list := make([]share, len(x.list), len(x.list)+len(shares))
	copy(list, x.list)
	for _, s := range shares {
		e := share{module: str(s.Module), record: str(s.RecordID), principal: str(s.Principal.ID), subs: s.Principal.IncludeSubs, dept: -1,
			kind: uint8(slices.Index(principalKinds, s.Principal.Kind)), access: uint8(slices.Index(accesses, s.Access))}
		if !s.ExpiresAt.IsZero() {
			e.expires = s.ExpiresAt.UnixNano()
		}
		e.recordKey = x.byRecord.keys.findPair(seed, s.Module, s.RecordID, true)
		switch s.Principal.Kind {
		case model.PrincipalUser:
			e.groupKey = x.byUser.keys.findPair(seed, s.Module, s.Principal.ID, true)
		case model.PrincipalDepartment:
			e.dept = deptNum(s.Principal.ID)
			fallthrough
		default:
			e.groupKey = x.byModule.keys.find(seed, s.Module)
		}
		list = append(list, e)
	}
	x.text, x.list = string(text), list
	x.regroup()
}

// regroup recounts the three groupings from the live entries' keys.
func (x *shareIndex) regroup() {
	x.byRecord.rows = packRows(x.byRecord.keys.len(), func(yield func(int32, int32)) {
		for i := range x.list {
			if e := &x.list[i]; !e.dead {
				yield(e.recordKey, int32(i))
			}
		}
	})
	user := func(e *share) bool {
		return int(e.kind) < len(principalKinds) && principalKinds[e.kind] == model.PrincipalUser
	}
	x.byUser.rows = packRows(x.byUser.keys.len(), func(yield func(int32, int32)) {
		for i := range x.list {
			if e := &x.list[i]; !e.dead && user(e) {
				yield(e.groupKey, int32(i))
			}
		}
	})
	x.byModule.rows = packRows(x.byModule.keys.len(), func(yield func(int32, int32)) {
		for i := range x.list {
			if e := &x.list[i]; !e.dead && !user(e) {
				yield(e.groupKey, int32(i))
			}
		}
	})
}

// patch returns x with the shares of keys as st holds them (removed when
// st has none); x is not changed.
func (x shareIndex) patch(seed maphash.Seed, st *model.TenantState, keys []model.ShareKey, deptNum func(string) int32) shareIndex {
	if x.dead+len(keys) > len(x.list)/2+64 {
		return newShareIndex(seed, st, deptNum)
	}
	c := x
	c.list = slices.Clone(x.list)
	var added []model.RecordShare
	for _, k := range keys {
		for _, i := range x.byRecord.of(seed, k.Module, k.RecordID, true) {
			if pr := x.principal(&x.list[i]); pr.Kind == k.Principal.Kind && pr.ID == k.Principal.ID && pr.IncludeSubs == k.Principal.IncludeSubs {
				c.list[i].dead = true
				c.dead++
			}
		}
		if s, ok := st.RecordShares[k]; ok {
			added = append(added, s)
		}
	}
	c.append(seed, added, deptNum)
	return c
}

func (x *shareIndex) str(s span) string { return x.text[s.at : s.at+s.n] }

// principal returns the share's principal.
func (x *shareIndex) principal(s *share) model.Principal {
	return model.Principal{Kind: kindAt(s.kind), ID: x.str(s.principal), IncludeSubs: s.subs}
}

// accessOf returns the share's access.
func (x *shareIndex) accessOf(s *share) model.Access { return accessAt(s.access) }

// activeAt reports whether the share decides anything at now.
func (s *share) activeAt(now int64) bool { return s.expires == 0 || now < s.expires }

// expiresAt returns when the share expires; zero when it does not.
func (s *share) expiresAt() time.Time {
	if s.expires == 0 {
		return time.Time{}
	}
	return time.Unix(0, s.expires)
}
