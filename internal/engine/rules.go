package engine

import (
	"cmp"
	"slices"
	"strings"

	"github.com/crmauthz/crmauthz/internal/model"
)

// ruleIndex is a tenant's sharing rules, kept as shareIndex keeps record
// shares: their ids in one text, the rules as entries of fixed size in
// module order (the catalog's) then id order, and where each module's run
// of entries starts. Held as model values in a map by module, the rules
// were seven strings each for the collector to follow.
type ruleIndex struct {
	text  string
	list  []rule
	start []int32 // module position → its first entry; one more holds len(list)
}

// rule is a sharing rule: its id, and each side's principal with its
// department number (-1 for principals of other kinds).
type rule struct {
	id, owned, with             span
	ownedKind, withKind, access uint8 // indexes in principalKinds and accesses
	ownedSubs, withSubs         bool
	ownedDept, withDept         int32
}

func newRuleIndex(space *permSpace, st *model.TenantState, deptNum func(string) int32) ruleIndex {
	type entry struct {
		module int
		r      model.SharingRule
	}
	all := make([]entry, 0, len(st.SharingRules))
	size := 0
	for _, r := range st.SharingRules {
		m, ok := space.modules[r.Module]
		if !ok {
			continue // no decision asks about a module the catalog lacks
		}
		all = append(all, entry{m.idx, r})
		size += len(r.ID) + len(r.OwnedBy.ID) + len(r.SharedWith.ID)
	}
	slices.SortFunc(all, func(a, b entry) int {
		return cmp.Or(cmp.Compare(a.module, b.module), strings.Compare(a.r.ID, b.r.ID))
	})
	text := make([]byte, 0, size)
	str := func(s string) span {
		text = append(text, s...)
		return span{uint32(len(text) - len(s)), uint32(len(s))}
	}
	principalDept := func(p model.Principal) int32 {
		if p.Kind != model.PrincipalDepartment {
			return -1
		}
		return deptNum(p.ID)
	}
	x := ruleIndex{list: make([]rule, len(all)), start: make([]int32, len(space.modules)+1)}
	for i, e := range all {
		r := e.r
		x.list[i] = rule{id: str(r.ID), owned: str(r.OwnedBy.ID), with: str(r.SharedWith.ID),
			ownedKind: uint8(slices.Index(principalKinds, r.OwnedBy.Kind)), withKind: uint8(slices.Index(principalKinds, r.SharedWith.Kind)),
			access: uint8(slices.Index(accesses, r.Access)), ownedSubs: r.OwnedBy.IncludeSubs, withSubs: r.SharedWith.IncludeSubs,
			ownedDept: principalDept(r.OwnedBy), withDept: principalDept(r.SharedWith)}
		x.start[e.module+1]++
	}
	for i := 1; i < len(x.start); i++ {
		x.start[i] += x.start[i-1]
	}
	x.text = string(text)
	return x
}

// of returns the rules of module, in id order.
func (x *ruleIndex) of(space *permSpace, module string) []rule {
	m, ok := space.modules[module]
	if !ok || m.idx+1 >= len(x.start) {
		return nil
	}
	return x.list[x.start[m.idx]:x.start[m.idx+1]]
}

func (x *ruleIndex) str(s span) string { return x.text[s.at : s.at+s.n] }

// ownedBy returns the principal owning the records r shares.
func (x *ruleIndex) ownedBy(r *rule) model.Principal {
	return model.Principal{Kind: kindAt(r.ownedKind), ID: x.str(r.owned), IncludeSubs: r.ownedSubs}
}

// sharedWith returns the principal r shares the records with.
func (x *ruleIndex) sharedWith(r *rule) model.Principal {
	return model.Principal{Kind: kindAt(r.withKind), ID: x.str(r.with), IncludeSubs: r.withSubs}
}

func kindAt(i uint8) model.PrincipalKind {
	if int(i) < len(principalKinds) {
		return principalKinds[i]
	}
	return ""
}

func accessAt(i uint8) model.Access {
	if int(i) < len(accesses) {
		return accesses[i]
	}
	return ""
}
