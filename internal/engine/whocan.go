package engine

import (
	"slices"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Holder is a user WhoCan found, with the reasons Check gives when it
// explains the decision.
type Holder struct {
	User    string
	Reasons []Reason
	// Until is when the access ends, as Check would decide then: at the
	// first expiry of a grant, a record share or the record owner's grant
	// that takes it; zero when none does.
	Until time.Time
	// Scope is, for a module verb, the widest data scope the user's
	// active grants give for it (which records the verb reaches before
	// managers and sharing); empty for functions and fields.
	Scope model.Scope
}

// WhoCan returns the users of tenant whom p is allowed to, ordered by id,
// those after `after` only, at most limit of them, and whether more
// follow; every answer is the decision Check gives, at the one revision
// returned. Only a user holding a grant can be allowed anything, so the
// users holding grants are the ones asked; each costs one decision, so a
// page of a 100,000-user tenant costs milliseconds. p must be valid for
// the catalog.
func (e *Engine) WhoCan(tenant string, p model.Permission, after string, limit int) (holders []Holder, more bool, revision int64, err error) {
	ix, err := e.index(tenant)
	if err != nil {
		return nil, false, 0, err
	}
	var buf [3]int32
	ids := e.space.idsFor(p, &buf)
	if !ix.someRoleAllows(ids) {
		return nil, false, ix.revision, nil
	}
	users := ix.users.usersAfter(after)
	slices.Sort(users)
	now := e.now().UnixNano()
	for _, u := range users {
		var gbuf [2]userGrant
		grants := ix.users.grantsOf(e.space.seed, u, &gbuf)
		if !ix.decide(e.space, u, p, ids, grants, now) {
			continue
		}
		if len(holders) == limit {
			return holders, true, ix.revision, nil
		}
		h := Holder{User: u, Reasons: ix.explain(e.space, u, p, ids, grants, now)}
		if p.Record != nil {
			_, why := ix.recordDecision(e.space, u, p, grants, now, true)
			h.Reasons = append(h.Reasons, why...)
		}
		h.Until = ix.until(e.space, u, p, ids, grants, now)
		if p.Kind == model.KindModule {
			if rank, _ := ix.scopeOf(e.space, grants, p.Module, p.Verb, now); rank >= 0 {
				h.Scope = model.Scopes[rank]
			}
		}
		holders = append(holders, h)
	}
	return holders, false, ix.revision, nil
}

// until returns when the access user has to p at now ends: the first of
// the expiries that can take it (the user's grants; for a record, its
// shares and its owner's grants, through which sharing rules reach it) at
// which Check denies; zero when none does. Reading it off the reasons
// missed that a record reached only by an expiring share loses it when
// the share ends, whatever the user's roles.
func (ix *index) until(space *permSpace, user string, p model.Permission, ids []int32, grants []userGrant, now int64) time.Time {
	var at []int64
	add := func(t int64) {
		if t > now {
			at = append(at, t)
		}
	}
	for _, g := range grants {
		add(g.expires)
	}
	if p.Record != nil {
		x := &ix.org.shares
		for _, i := range x.byRecord.of(ix.org.seed, p.Module, p.Record.ID, true) {
			add(x.list[i].expires)
		}
		var buf [2]userGrant
		for _, g := range ix.users.grantsOf(space.seed, p.Record.Owner, &buf) {
			add(g.expires)
		}
	}
	slices.Sort(at)
	for _, t := range slices.Compact(at) {
		if !ix.decide(space, user, p, ids, grants, t) {
			return time.Unix(0, t).UTC()
		}
	}
	return time.Time{}
}

// usersAfter returns the ids of the users in the table greater than after,
// unordered.
func (t *userTable) usersAfter(after string) []string {
	out := make([]string, 0, t.users)
	for i := range t.slots {
		if t.slots[i].n == 0 {
			continue
		}
		if id := t.idAt(i); id > after {
			out = append(out, id)
		}
	}
	return out
}
