package engine

import (
	"hash/maphash"
	"slices"
	"unsafe"
)

// names numbers a tenant's ids of one kind (users, departments) from 0, so
// that the organisation index can be flat arrays of numbers. The ids lie
// back to back in one text and are found through an open-addressing table
// of numbers. A names is one object the collector need not look into,
// where a map of strings is one object per id to trace: at 10,000 tenants
// of 100 users the organisation maps were 260 MiB of pointers and the
// collector's marking took a fifth of the server's CPU. Every object costs
// a collection some work, so the text shares the table's array rather
// than being a string of its own.
type names struct {
	n int // how many ids
	m int // how many slots
	// a holds n ends, then m slots, then the text, four bytes a word. End
	// i is where id i ends in the text; it starts where id i-1 ends. A
	// slot holds 0 (empty) or the number of an id plus one in the low 24
	// bits and 8 bits of the id's hash above them, so that most other ids
	// are skipped unread. The text is written only while the names is
	// made: the ids handed out point into it.
	a []uint32
}

func (n *names) ends() []uint32  { return n.a[:n.n] }
func (n *names) slots() []uint32 { return n.a[n.n : n.n+n.m] }

// textLen returns the length of the text.
func (n *names) textLen() int {
	if n.n == 0 {
		return 0
	}
	return int(n.a[n.n-1])
}

// text returns the text's bytes, to write while the names is made.
func (n *names) text() []byte {
	if n.textLen() == 0 {
		return nil
	}
	// Sound: the words after the slots are the text's, bytes of any value
	// are valid, and they are n.textLen() long ((size+3)/4 words, made by
	// makeNames).
	return unsafe.Slice((*byte)(unsafe.Pointer(&n.a[n.n+n.m])), n.textLen()) //nolint:gosec // audited above
}

// makeNames returns a names of n ids and m empty slots, with room for a
// text of size bytes; the caller writes the ends, then the text.
func makeNames(n, m, size int) names {
	return names{n: n, m: m, a: make([]uint32, n+m+(size+3)/4)}
}

// maxNames is how many ids a names can number: the low 24 bits of a slot.
// A tenant holds at most model.MaxTenantUsers (100,000) users.
const maxNames = 1<<24 - 1

// newNames numbers ids, which are distinct, in their order, with room for
// spare more before the table is three quarters full.
func newNames(seed maphash.Seed, ids []string, spare int) names {
	size := 0
	for _, id := range ids {
		size += len(id)
	}
	n := makeNames(len(ids), (len(ids)+spare)*4/3+1, size)
	end := 0
	for i, id := range ids {
		end += len(id)
		n.a[i] = uint32(end)
	}
	text := n.text()[:0]
	for _, id := range ids {
		text = append(text, id...)
	}
	for i, id := range ids {
		n.place(seed, id, int32(i))
	}
	return n
}

// place puts number i, of id, in the first free slot of id's probe.
func (n *names) place(seed maphash.Seed, id string, i int32) {
	h := maphash.String(seed, id)
	slots := n.slots()
	s := probeHome(h, len(slots))
	for slots[s] != 0 {
		s = probeNext(s, len(slots))
	}
	slots[s] = uint32(h>>56)<<24 | uint32(i+1)
}

// probeHome returns the slot a hash starts its probe at, in a table of
// size slots (names and userTable probe alike).
func probeHome(h uint64, size int) int { return int(uint64(uint32(h)) * uint64(size) >> 32) }

// probeNext returns the slot after s.
func probeNext(s, size int) int {
	if s++; s == size {
		return 0
	}
	return s
}

// len returns how many ids are numbered.
func (n *names) len() int { return n.n }

// name returns id number i; "" for -1, no id.
func (n *names) name(i int32) string {
	if i < 0 {
		return ""
	}
	var start uint32
	if i > 0 {
		start = n.a[i-1]
	}
	if start == n.a[i] {
		return ""
	}
	// Sound: the id lies inside the text (see text), which is never
	// written once the names is made, so the string stays immutable; it
	// keeps the array alive as any pointer into it does.
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(&n.a[n.n+n.m]), start)), n.a[i]-start) //nolint:gosec // audited above
}

// ids returns every id, in number order.
func (n *names) ids() []string {
	out := make([]string, n.len())
	for i := range out {
		out[i] = n.name(int32(i))
	}
	return out
}

// find returns the number of id, or -1.
func (n *names) find(seed maphash.Seed, id string) int32 {
	slots := n.slots()
	if len(slots) == 0 {
		return -1
	}
	h := maphash.String(seed, id)
	tag := uint32(h >> 56)
	for s := probeHome(h, len(slots)); ; s = probeNext(s, len(slots)) {
		v := slots[s]
		if v == 0 {
			return -1
		}
		if v>>24 == tag {
			if i := int32(v&maxNames) - 1; n.name(i) == id {
				return i
			}
		}
	}
}

// findPair returns, with pair, the number of a+"\x00"+b without making
// that string; else the number of a.
func (n *names) findPair(seed maphash.Seed, a, b string, pair bool) int32 {
	if !pair {
		return n.find(seed, a)
	}
	slots := n.slots()
	if len(slots) == 0 {
		return -1
	}
	var hash maphash.Hash
	hash.SetSeed(seed)
	_, _ = hash.WriteString(a)
	_ = hash.WriteByte(0)
	_, _ = hash.WriteString(b)
	h := hash.Sum64()
	tag := uint32(h >> 56)
	for s := probeHome(h, len(slots)); ; s = probeNext(s, len(slots)) {
		v := slots[s]
		if v == 0 {
			return -1
		}
		if v>>24 != tag {
			continue
		}
		i := int32(v&maxNames) - 1
		if id := n.name(i); len(id) == len(a)+1+len(b) && id[:len(a)] == a && id[len(a)] == 0 && id[len(a)+1:] == b {
			return i
		}
	}
}

// with returns n with the ids it lacks numbered after its own, in their
// order; n itself is not changed (readers may hold it). It returns n when
// it has them all.
func (n names) with(seed maphash.Seed, ids []string) names {
	var added []string
	var seen map[string]bool // for many ids; a few are compared
	for _, id := range ids {
		if n.find(seed, id) >= 0 {
			continue
		}
		if len(added) < 16 {
			if slices.Contains(added, id) {
				continue
			}
		} else {
			if seen == nil {
				seen = make(map[string]bool, len(ids))
				for _, a := range added {
					seen[a] = true
				}
			}
			if seen[id] {
				continue
			}
			seen[id] = true
		}
		added = append(added, id)
	}
	if len(added) == 0 {
		return n
	}
	total := n.len() + len(added)
	if total*4 > len(n.slots())*3 {
		return newNames(seed, append(n.ids(), added...), total/4+8)
	}
	size := n.textLen()
	for _, id := range added {
		size += len(id)
	}
	c := makeNames(total, n.m, size)
	copy(c.a, n.ends())
	end := n.textLen()
	for i, id := range added {
		end += len(id)
		c.a[n.len()+i] = uint32(end)
	}
	copy(c.slots(), n.slots())
	text := append(c.text()[:0], n.text()...)
	for _, id := range added {
		text = append(text, id...)
	}
	for i, id := range added {
		c.place(seed, id, int32(n.len()+i))
	}
	return c
}
