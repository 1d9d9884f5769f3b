package engine

import "unsafe"

// A collection marks every object the engine holds and follows every
// pointer to it, in every cycle; what it pays grows with both. Built
// table by table, a tenant's index was some thirty objects: its bitsets,
// id tables, rows, rule and share lists, each allocated on its own. At
// 10,000 tenants a cycle then cost ~100 ms of CPU, most of it cache misses
// on the objects' headers and mark bits (BenchmarkCollect).
//
// So once an index is built, its tables that hold no pointers are copied
// into one array, its slab, and the index's slices and strings are set to
// windows of it. The collector then marks one object per tenant where it
// marked thirty, and the pointers it follows all lead into that object,
// whose header and mark bits stay in cache. The tables a decision reads
// first, the role masks and the user slots, are left to pack (pack.go),
// and so are tenants too large to pack: they are few, and their tables
// fill pages of their own.
//
// Every window is capped at its end, so an append to one (a write's copy
// of a table) allocates anew rather than running into its neighbour;
// writes copy the tables they change (apply.go), and never write a slab.
// A write's new tables are loose again until the engine packs, which
// compacts the patched indexes once more.

// flat lists the types a slab holds: none holds a pointer, so any bytes
// are a valid value, and none needs more than 8-byte alignment.
type flat interface {
	byte | int8 | int32 | uint32 | uint64 | userGrant | grantSpan | holding | rule | share
}

// slab lays tables out in one array: a first pass sizes it, a second
// copies.
type slab struct {
	buf  []uint64 // nil while sizing
	size int      // bytes sized, or placed so far
}

// slabTable moves *p into s, or sizes it.
func slabTable[T flat](s *slab, p *[]T) {
	n := len(*p)
	if n == 0 {
		*p = nil
		return
	}
	var zero T
	size := roundUp(n*int(unsafe.Sizeof(zero)), 8)
	if s.buf != nil {
		// Sound: the window lies inside buf (the sizing pass counted it),
		// starts 8-aligned, and T holds no pointers (flat).
		w := unsafe.Slice((*T)(unsafe.Pointer(&s.buf[s.size/8])), n) //nolint:gosec // audited above
		copy(w, *p)
		*p = w[:n:n]
	}
	s.size += size
}

// slabText moves the string *p into s, or sizes it.
func slabText(s *slab, p *string) {
	n := len(*p)
	if n == 0 {
		*p = ""
		return
	}
	if s.buf != nil {
		// Sound as in slabTable; the bytes are never written again, so
		// the string stays immutable.
		b := unsafe.Slice((*byte)(unsafe.Pointer(&s.buf[s.size/8])), n) //nolint:gosec // audited above
		copy(b, *p)
		*p = unsafe.String(&b[0], n) //nolint:gosec // audited above
	}
	s.size += roundUp(n, 8)
}

// compacted returns a copy of ix whose tables without pointers, and those
// of its organisation, lie in one slab. ix and its organisation are not
// changed: readers may hold them.
func (ix *index) compacted() *index {
	c := *ix
	org := *ix.org
	c.org = &org
	c.holdersApart()
	var s slab
	c.slabTables(&s)
	s.buf, s.size = make([]uint64, s.size/8), 0
	c.slabTables(&s)
	c.compact = true
	return &c
}

// holdersApart gives ix's organisation a holders list of its own, whose
// windows slabTables may move.
func (ix *index) holdersApart() {
	h := make([][]holding, len(ix.org.holders))
	copy(h, ix.org.holders)
	ix.org.holders = h
}

// slabTables sizes or places every table of ix without pointers, in the
// order a check reads them.
func (ix *index) slabTables(s *slab) {
	slabTable(s, &ix.bits)
	slabTable(s, &ix.own)
	slabTable(s, &ix.users.more)
	slabTable(s, &ix.users.extra)
	slabText(s, &ix.users.ids)
	slabText(s, &ix.tenant)
	slabTable(s, &ix.roles.ids.a)
	slabTable(s, &ix.roles.closures.a)
	slabTable(s, &ix.inactive.a)
	o := ix.org
	slabTable(s, &o.users.a)
	slabTable(s, &o.depts.a)
	slabTable(s, &o.manager)
	slabTable(s, &o.deptsOf.a)
	slabTable(s, &o.reports.a)
	slabTable(s, &o.ancestors.a)
	slabTable(s, &o.children.a)
	slabTable(s, &o.scopes)
	for r := range o.holders {
		slabTable(s, &o.holders[r])
	}
	slabText(s, &o.rules.text)
	slabTable(s, &o.rules.list)
	slabTable(s, &o.rules.start)
	slabText(s, &o.shares.text)
	slabTable(s, &o.shares.list)
	for _, g := range []*groups{&o.shares.byRecord, &o.shares.byUser, &o.shares.byModule} {
		slabTable(s, &g.keys.a)
		slabTable(s, &g.rows.a)
	}
}
