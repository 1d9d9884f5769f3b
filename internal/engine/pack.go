package engine

import (
	"maps"
	"slices"
	"strings"
	"unsafe"
)

// The two tables a decision reads, a tenant's role masks and its user
// slots, are copied into one block of memory shared by all tenants. At
// thousands of tenants they then sit on few memory pages, so a check for a
// random tenant rarely misses the CPU's address translation cache (TLB); on
// Linux a block of 2 MiB or more is also advised to use 2 MiB pages.
// BenchmarkCheck shows the effect at 1,000 tenants (README, Benchmarks).
//
// A write builds the changed tenant's index in ordinary memory. Once such
// loose tables exceed a quarter of the packed ones, the engine packs every
// tenant again, so a long-running engine stays packed and packing costs a
// write a constant amount of copying, amortised.
//
// A large tenant's user slots get a block of their own instead (from
// maxPacked on), aligned and advised like the shared one when it reaches a
// large page, when the tenant is loaded: they fill their own pages anyway,
// and repacking every tenant after each write to a 100,000-user tenant
// doubled what such a write copies and left the collector more to do. A
// write to it leaves its patched table in ordinary memory.

// slotSize is the size of a userSlot; the block holds slots at multiples of
// it.
const slotSize = int(unsafe.Sizeof(userSlot{}))

// hugePage is the size of a large memory page on the platforms that have
// one.
const hugePage = 2 << 20

// maxPacked is the size from which a tenant's tables are not packed.
const maxPacked = 256 << 10

// packable reports whether ix's tables go into the shared block.
func (ix *index) packable() bool { return ix.hotBytes() < maxPacked }

// hotBytes is the size of ix's tables in a block: its slots, then its masks
// padded to a slot's size.
func (ix *index) hotBytes() int {
	return len(ix.users.slots)*slotSize + roundUp(len(ix.masks.b), slotSize)
}

func roundUp(n, to int) int { return (n + to - 1) / to * to }

// pack returns copies of the indexes whose slots and masks lie in one new
// block, and the block. The copies of indexes a write patched are also
// compacted (slab.go); otherwise they share everything else with the
// originals, which stay valid for the readers holding them.
func pack(indexes map[string]*index) (map[string]*index, []byte) {
	size := 0
	for _, ix := range indexes {
		if ix.packable() {
			size += ix.hotBytes()
		}
	}
	whole := newBlock(size)
	block := whole
	ids := tenantIDs(indexes)
	out := make(map[string]*index, len(indexes))
	for _, id := range ids {
		ix := indexes[id]
		if !ix.packable() {
			out[id] = ix
			continue
		}
		if !ix.compact {
			ix = ix.compacted()
		}
		c := *ix
		n := len(ix.users.slots) * slotSize
		c.users.slots = slotsIn(block[:n:n])
		copy(c.users.slots, ix.users.slots)
		block = block[n:]
		n = len(ix.masks.b)
		c.masks.b = block[:n:n]
		copy(c.masks.b, ix.masks.b)
		block = block[roundUp(n, slotSize):]
		c.tenant = id
		out[id] = &c
	}
	return out, whole
}

// tenantIDs returns the ids of indexes, sorted, as substrings of one
// string. Every lookup in the tenant map compares the key it finds with
// the tenant asked for; with the keys in one string of a few bytes per
// tenant, that read stays in the cache where keys strewn over the heap
// each cost a cache and an address-translation miss: at 10,000 tenants,
// 5% of the server's CPU under Check load went to that comparison.
func tenantIDs(indexes map[string]*index) []string {
	ids := slices.Sorted(maps.Keys(indexes))
	all := strings.Join(ids, "")
	for i, id := range ids {
		ids[i], all = all[:len(id)], all[len(id):]
	}
	return ids
}

// newBlock returns n zero bytes; from 2 MiB on, starting at a large-page
// boundary and advised to use large pages, for at most 2 MiB more memory.
// n is a multiple of slotSize.
func newBlock(n int) []byte {
	if n < hugePage {
		return make([]byte, n)
	}
	b := make([]byte, n+hugePage)
	// Only the block's address is read, to find the first large-page
	// boundary in it.
	addr := uintptr(unsafe.Pointer(unsafe.SliceData(b))) //nolint:gosec // audited: address arithmetic only
	skip := (hugePage - int(addr%hugePage)) % hugePage
	b = b[skip : skip+n : skip+n]
	adviseHugePages(b)
	return b
}

// slotsIn views b, a part of a block whose length is a multiple of
// slotSize, as user slots. It is sound because a userSlot holds no
// pointers, so any bytes are a valid slot, and because b starts at a
// multiple of slotSize from the block's start, which Go allocates at least
// 8-aligned for blocks of 16 bytes and more, beyond a userSlot's alignment
// of 4.
func slotsIn(b []byte) []userSlot {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*userSlot)(unsafe.Pointer(unsafe.SliceData(b))), len(b)/slotSize) //nolint:gosec // audited above
}

// inOwnBlock moves the user slots of an index too large to pack into a
// block of their own (see above); ix is not yet published.
func (ix *index) inOwnBlock() {
	if ix.packable() {
		return
	}
	slots := slotsIn(newBlock(len(ix.users.slots) * slotSize))
	copy(slots, ix.users.slots)
	ix.users.slots, ix.ownBlock = slots, true
}
