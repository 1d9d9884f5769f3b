package engine

import "hash/maphash"

// maxRoles bounds a tenant's roles so a grant's role fits 16 bits.
const maxRoles = 1<<16 - 1

// userTable maps a tenant's user ids to their grants. It is an
// open-addressing hash table of 32-byte slots in one flat slice: a slot
// holds up to two grants and, when it is at most 10 bytes long, the user id
// itself; longer ids are packed into one string beside the table. A lookup
// for a short id touches one slot and nothing else. Keeping the table small
// and flat keeps a decision's cache misses few when many tenants share the
// machine.
type userTable struct {
	slots    []userSlot
	mask     uint64
	ids      string      // every user id, back to back
	expiries []int64     // distinct grant expiries (UnixNano); index 0 means never
	extra    []userGrant // grants of users whose grants do not fit a slot
}

type userSlot struct {
	hash   uint32
	off    uint32 // a long user id is ids[off : off+n]
	n      uint8  // the id's length; 0 marks an empty slot
	count  uint8  // grants inline; 0 with first/total: grants in extra
	first  uint16 // with count == 0: the grants are extra[first : first+total]
	total  uint16
	inline [2]packedGrant
	short  [shortID]byte // a short user id
}

// shortID is the longest user id kept inside its slot.
const shortID = 10

// packedGrant is a grant inside a slot: the role's number and the index of
// its expiry in userTable.expiries.
type packedGrant struct{ role, expiry uint16 }

func newUserTable(seed maphash.Seed, users []string, grants map[string][]userGrant) userTable {
	size := 4
	for size*3 < len(users)*4 { // load factor at most 3/4
		size *= 2
	}
	t := userTable{mask: uint64(size - 1), slots: make([]userSlot, size), expiries: []int64{0}}
	var ids []byte
	expiry := map[int64]int{0: 0}
	for _, u := range users {
		h := maphash.String(seed, u)
		i := h & t.mask
		for t.slots[i].n != 0 {
			i = (i + 1) & t.mask
		}
		s := userSlot{hash: uint32(h), n: uint8(len(u))}
		if len(u) <= shortID {
			copy(s.short[:], u)
		} else {
			s.off = uint32(len(ids))
			ids = append(ids, u...)
		}
		gs := grants[u]
		packed := len(gs) <= len(s.inline) && len(t.extra) < 1<<16
		for j, g := range gs {
			x, ok := expiry[g.expires]
			if !ok {
				x = len(t.expiries)
				expiry[g.expires] = x
				t.expiries = append(t.expiries, g.expires)
			}
			if j < len(s.inline) && x < 1<<16 {
				s.inline[j] = packedGrant{role: uint16(g.role), expiry: uint16(x)}
			} else {
				packed = false
			}
		}
		if packed {
			s.count = uint8(len(gs))
		} else {
			s.first, s.total = uint16(len(t.extra)), uint16(len(gs))
			t.extra = append(t.extra, gs...)
		}
		t.slots[i] = s
	}
	t.ids = string(ids)
	return t
}

// grantsOf returns the user's grants, nil when the user holds none. Inline
// grants are unpacked into buf.
func (t *userTable) grantsOf(seed maphash.Seed, user string, buf *[2]userGrant) []userGrant {
	if len(t.slots) == 0 {
		return nil
	}
	h := maphash.String(seed, user)
	for i := h & t.mask; ; i = (i + 1) & t.mask {
		s := &t.slots[i]
		if s.n == 0 {
			return nil
		}
		if s.hash != uint32(h) || int(s.n) != len(user) {
			continue
		}
		if s.n <= shortID {
			if string(s.short[:s.n]) != user {
				continue
			}
		} else if t.ids[s.off:s.off+uint32(s.n)] != user {
			continue
		}
		if s.count == 0 {
			return t.extra[s.first : int(s.first)+int(s.total)]
		}
		for j, g := range s.inline[:s.count] {
			buf[j] = userGrant{role: int32(g.role)}
			if g.expiry != 0 {
				buf[j].expires = t.expiries[g.expiry]
			}
		}
		return buf[:s.count]
	}
}
