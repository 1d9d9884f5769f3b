package engine

import (
	"encoding/binary"
	"hash/maphash"
	"maps"
	"slices"
)

// userTable maps a tenant's user ids to their grants. It is an
// open-addressing hash table of 16-byte slots in one flat slice, at most
// three quarters full. A slot holds a user id of up to 8 bytes itself
// (longer ids are packed into one string beside the table) and up to two
// grants that never expire; other grants live in a side slice. A lookup for
// a short id with plain grants touches one slot and nothing else. Keeping
// the table small and flat keeps a decision's cache misses few when many
// tenants share the machine: at 150 users a tenant's table is 3.2 KiB.
type userTable struct {
	users int // slots in use
	dead  int // grants in extra no slot refers to any more
	slots []userSlot
	ids   string      // every long user id, back to back
	more  []grantSpan // the grants of users whose grants do not fit a slot
	extra []userGrant // grants referenced from more
}

type userSlot struct {
	n     uint8    // the id's length; 0 marks an empty slot
	tag   uint8    // 8 bits of the id's hash, so most other ids are skipped unread
	roles [2]uint8 // with more == 0: the granted roles plus one, 0 for none
	more  uint32   // 0, or 1 + the user's index in userTable.more
	id    [shortID]byte
}

// maxUserID is the longest user id the table holds: a slot keeps the id's
// length in one byte, and 0 marks an empty slot. buildIndex refuses longer
// (and empty) ids, which would wrap to another length: a 256-byte id would
// read as an empty slot, a 257-byte one as a 1-byte id whose inline bytes
// are the long id's offset.
const maxUserID = 1<<8 - 1

// shortID is the longest user id kept inside its slot. A longer id's
// offset in userTable.ids is kept in the first four bytes of the slot's id.
const shortID = 8

type grantSpan struct{ first, total uint32 }

// inlineGrants reports whether gs fit a slot: at most two grants, none
// expiring, of roles numbered below 255.
func inlineGrants(gs []userGrant) bool {
	if len(gs) > 2 {
		return false
	}
	for _, g := range gs {
		if g.expires != 0 || g.role >= 1<<8-1 {
			return false
		}
	}
	return true
}

func newUserTable(seed maphash.Seed, users []string, grants map[string][]userGrant) userTable {
	return newUserTableRoom(seed, users, grants, 0)
}

// newUserTableRoom is newUserTable with room for spare more users before
// the table is three quarters full.
func newUserTableRoom(seed maphash.Seed, users []string, grants map[string][]userGrant, spare int) userTable {
	t := userTable{slots: make([]userSlot, (len(users)+spare)*4/3+1)}
	var ids []byte
	for _, u := range users {
		h := maphash.String(seed, u)
		i := probeHome(h, len(t.slots))
		for t.slots[i].n != 0 {
			i = probeNext(i, len(t.slots))
		}
		s := userSlot{n: uint8(len(u)), tag: uint8(h >> 56)}
		if len(u) <= shortID {
			copy(s.id[:], u)
		} else {
			binary.LittleEndian.PutUint32(s.id[:], uint32(len(ids)))
			ids = append(ids, u...)
		}
		t.setGrants(&s, grants[u])
		t.slots[i] = s
		t.users++
	}
	t.ids = string(ids)
	return t
}

// setGrants puts gs into slot s: inline when they fit, else appended to the
// side slices.
func (t *userTable) setGrants(s *userSlot, gs []userGrant) {
	s.roles, s.more = [2]uint8{}, 0
	if inlineGrants(gs) {
		for j, g := range gs {
			s.roles[j] = uint8(g.role + 1)
		}
		return
	}
	t.more = append(t.more, grantSpan{uint32(len(t.extra)), uint32(len(gs))})
	t.extra = append(t.extra, gs...)
	s.more = uint32(len(t.more))
}

// patch returns a copy of t in which each user of changes holds the grants
// given (none: a slot that holds nothing). The copy shares nothing
// writable with t, which stays valid for its readers. When the table would
// be more than three quarters full, or half its side slices is no longer
// referred to, the copy is built anew with room to grow.
func (t *userTable) patch(seed maphash.Seed, changes map[string][]userGrant) userTable {
	added := 0
	for u := range changes {
		if t.find(seed, u) < 0 {
			added++
		}
	}
	if (t.users+added)*4 > len(t.slots)*3 || t.dead > len(t.extra)/2+64 {
		return t.rebuilt(seed, changes)
	}
	c := userTable{users: t.users, dead: t.dead, slots: slices.Clone(t.slots), ids: t.ids,
		more: slices.Clip(t.more), extra: slices.Clip(t.extra)}
	ids := []byte(nil)
	for _, u := range slices.Sorted(maps.Keys(changes)) {
		i := c.find(seed, u)
		if i < 0 {
			h := maphash.String(seed, u)
			i = probeHome(h, len(c.slots))
			for c.slots[i].n != 0 {
				i = probeNext(i, len(c.slots))
			}
			s := userSlot{n: uint8(len(u)), tag: uint8(h >> 56)}
			if len(u) <= shortID {
				copy(s.id[:], u)
			} else {
				binary.LittleEndian.PutUint32(s.id[:], uint32(len(c.ids)+len(ids)))
				ids = append(ids, u...)
			}
			c.slots[i] = s
			c.users++
		} else if m := c.slots[i].more; m != 0 {
			c.dead += int(c.more[m-1].total)
		}
		c.setGrants(&c.slots[i], changes[u])
	}
	if len(ids) > 0 {
		c.ids += string(ids)
	}
	return c
}

// rebuilt returns a new table of t's users with their grants, changed as
// changes says, leaving out users who hold nothing, with room for a
// quarter more users.
func (t *userTable) rebuilt(seed maphash.Seed, changes map[string][]userGrant) userTable {
	grants := make(map[string][]userGrant, t.users+len(changes))
	for i := range t.slots {
		if t.slots[i].n == 0 {
			continue
		}
		u := t.idAt(i)
		var buf [2]userGrant
		if gs := t.grantsAt(i, &buf); len(gs) > 0 {
			grants[u] = slices.Clone(gs)
		}
	}
	for u, gs := range changes {
		if len(gs) > 0 {
			grants[u] = gs
		} else {
			delete(grants, u)
		}
	}
	users := slices.Sorted(maps.Keys(grants))
	return newUserTableRoom(seed, users, grants, len(users)/4+8)
}

// find returns the slot holding user, or -1.
func (t *userTable) find(seed maphash.Seed, user string) int {
	if len(t.slots) == 0 || len(user) > maxUserID {
		return -1
	}
	h := maphash.String(seed, user)
	n, tag := uint8(len(user)), uint8(h>>56)
	for i := probeHome(h, len(t.slots)); ; i = probeNext(i, len(t.slots)) {
		s := &t.slots[i]
		if s.n == 0 {
			return -1
		}
		if s.n == n && s.tag == tag && t.idAt(i) == user {
			return i
		}
	}
}

// idAt returns the user id of the slot at i, which is in use.
func (t *userTable) idAt(i int) string {
	s := &t.slots[i]
	if s.n <= shortID {
		return string(s.id[:s.n])
	}
	off := binary.LittleEndian.Uint32(s.id[:])
	return t.ids[off : off+uint32(s.n)]
}

// grantsAt returns the grants of the slot at i, inline ones unpacked into
// buf.
func (t *userTable) grantsAt(i int, buf *[2]userGrant) []userGrant {
	s := &t.slots[i]
	if s.more != 0 {
		sp := t.more[s.more-1]
		return t.extra[sp.first : sp.first+sp.total]
	}
	k := 0
	for _, r := range s.roles {
		if r != 0 {
			buf[k] = userGrant{role: int32(r) - 1}
			k++
		}
	}
	return buf[:k]
}

// grantsOf returns the user's grants, nil when the user holds none. Inline
// grants are unpacked into buf.
func (t *userTable) grantsOf(seed maphash.Seed, user string, buf *[2]userGrant) []userGrant {
	if len(t.slots) == 0 || len(user) > maxUserID {
		return nil
	}
	h := maphash.String(seed, user)
	var short [shortID]byte
	copy(short[:], user)
	n, tag := uint8(len(user)), uint8(h>>56)
	for i := probeHome(h, len(t.slots)); ; i = probeNext(i, len(t.slots)) {
		s := &t.slots[i]
		if s.n == 0 {
			return nil
		}
		if s.n != n || s.tag != tag {
			continue
		}
		if n <= shortID {
			if s.id != short {
				continue
			}
		} else if off := binary.LittleEndian.Uint32(s.id[:]); t.ids[off:off+uint32(n)] != user {
			continue
		}
		return t.grantsAt(i, buf)
	}
}
