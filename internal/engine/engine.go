// Package engine decides permissions. Casbin is inside: every tenant's roles
// are compiled to Casbin policy lines (policies/model.conf, RBAC with
// domains, one domain per tenant), and Casbin's role manager for the
// model's role definition resolves each tenant's role inheritance. The hot
// path does not call Enforce, which scans every policy line: every
// permission of the catalog has a dense number; each role's own lines set
// its bitsets over those numbers, its implicit permissions are the union of
// its closure's own lines (what an enforcer's
// GetImplicitPermissionsForUser returns), and per permission the engine
// keeps masks of the roles allowing and denying it; it keeps the users'
// grants (with their expiry) beside them, and swaps the tenant's whole
// index atomically when it changes. Readers take no lock; a decision is a
// few map lookups, one user slot and one mask entry, and allocates nothing.
// Memory holds only the index; the tables decisions read are packed for all
// tenants into one block (pack.go).
//
// The differential test proves that the index decides exactly as plain
// Casbin Enforce on the exported policy (Policy.CSV) does.
//
// Casbin's types never leave this package.
package engine

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Engine holds the decision index of every loaded tenant.
type Engine struct {
	cat   *model.Catalog
	space *permSpace
	now   func() time.Time

	mu sync.Mutex // serialises writers of tenants
	// gone holds the revision at which each unloaded tenant was deleted.
	gone map[string]int64
	// packed is the size of the block the tenants' hot tables were last
	// packed into, loose the size of those built since (see pack).
	packed, loose int
	// tenants maps tenant ids to their current index. Writers replace the
	// whole map (copy on write), so readers need no lock.
	tenants atomic.Pointer[map[string]*index]
	// changed is closed, and replaced, whenever the tenant map changes:
	// WaitRevision's waiters wake on it.
	changed atomic.Pointer[chan struct{}]
}

// Option configures an Engine.
type Option func(*Engine)

// WithClock sets the clock grant expiry is judged by (time.Now by default).
func WithClock(now func() time.Time) Option { return func(e *Engine) { e.now = now } }

// New returns an engine with no tenants. modelText is the Casbin model
// (policies/model.conf); the engine decides as an enforcer of it does.
func New(cat *model.Catalog, modelText string, opts ...Option) (*Engine, error) {
	if err := checkModel(modelText); err != nil {
		return nil, err
	}
	e := &Engine{cat: cat, space: newPermSpace(cat), now: time.Now, gone: map[string]int64{}}
	for _, o := range opts {
		o(e)
	}
	empty := map[string]*index{}
	e.tenants.Store(&empty)
	ch := make(chan struct{})
	e.changed.Store(&ch)
	return e, nil
}

// Detached returns an engine with no tenants, the same catalog and model
// as e, judging expiry by now: what decides against a tenant's state of
// the past (an explanation after the fact) without touching e's tenants.
func (e *Engine) Detached(now func() time.Time) *Engine {
	d := &Engine{cat: e.cat, space: e.space, now: now, gone: map[string]int64{}}
	empty := map[string]*index{}
	d.tenants.Store(&empty)
	ch := make(chan struct{})
	d.changed.Store(&ch)
	return d
}

// Catalog returns the engine's permission catalog.
func (e *Engine) Catalog() *model.Catalog { return e.cat }

// Load makes st the tenant's current state. A state older than the one
// loaded is ignored, so concurrent writers may load in any order.
func (e *Engine) Load(st *model.TenantState) error { return e.LoadAll([]*model.TenantState{st}) }

// Unload drops a tenant deleted at revision: decisions about it are
// NOT_FOUND from now on, and a state of it from before the deletion that
// arrives late (a write that raced the deletion) is not loaded again.
func (e *Engine) Unload(tenant string, revision int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.gone[tenant] = max(e.gone[tenant], revision)
	// Stored even when the tenant was not loaded: it wakes the reads
	// waiting for a revision of it, which are not found now.
	next := maps.Clone(*e.tenants.Load())
	delete(next, tenant)
	e.store(next)
}

// LoadAll loads many tenants with one swap of the tenant map, packing
// their tables when the loose ones call for it.
func (e *Engine) LoadAll(states []*model.TenantState) error { return e.load(states, true) }

// Preload loads tenants as LoadAll does, but leaves their tables loose
// until Pack: a start-up loads thousands of tenants a batch at a time, and
// packing after every batch copied the growing block over and over (five
// times its size in all, a twentieth of start-up's CPU at 10,000
// tenants).
func (e *Engine) Preload(states []*model.TenantState) error { return e.load(states, false) }

// Pack packs every tenant's tables into one block (pack.go) unless none is
// loose.
func (e *Engine) Pack() {
	e.mu.Lock()
	var block []byte
	if e.loose > 0 {
		block = e.packAll(*e.tenants.Load())
	}
	e.mu.Unlock()
	collapseHugePages(block)
}

func (e *Engine) load(states []*model.TenantState, packNow bool) error {
	built := make([]*index, len(states))
	sets := ownSets{}
	for i, st := range states {
		ix, err := buildIndex(e.space, e.cat, st, sets)
		if err != nil {
			return err
		}
		if ix.packable() {
			ix = ix.compacted()
		}
		ix.inOwnBlock()
		built[i] = ix
	}
	block := e.publish(built, packNow)
	// Readers use the block already; collapsing it into large pages moves
	// no data they see, and may take a while, so no writer waits for it.
	collapseHugePages(block)
	return nil
}

// publish makes the built indexes current and, with packNow, packs every
// tenant when the loose tables call for it, returning the new block then.
func (e *Engine) publish(built []*index, packNow bool) (block []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := maps.Clone(*e.tenants.Load())
	for _, ix := range built {
		if cur, ok := next[ix.tenant]; ok && cur.revision >= ix.revision {
			continue
		}
		if gone, ok := e.gone[ix.tenant]; ok && gone >= ix.revision {
			continue
		}
		next[ix.tenant] = ix
		if ix.packable() {
			e.loose += ix.hotBytes()
		}
	}
	if packNow && e.loose > e.packed/4 {
		return e.packAll(next)
	}
	e.store(next)
	return nil
}

// packAll makes packed copies of the tenants of cur the tenant map,
// returning the new block. e.mu is held.
func (e *Engine) packAll(cur map[string]*index) []byte {
	next, block := pack(cur)
	e.packed, e.loose = len(block), 0
	e.store(next)
	return block
}

// store makes next the tenant map and wakes the waiters. e.mu is held.
func (e *Engine) store(next map[string]*index) {
	e.tenants.Store(&next)
	ch := make(chan struct{})
	close(*e.changed.Swap(&ch))
}

// Revisions returns the revision loaded of every tenant.
func (e *Engine) Revisions() map[string]int64 {
	cur := *e.tenants.Load()
	out := make(map[string]int64, len(cur))
	for id, ix := range cur {
		out[id] = ix.revision
	}
	return out
}

// WaitRevision waits until the tenant is loaded at revision rev or later,
// and returns the revision loaded; it gives up when ctx ends, returning
// the revision loaded then (0 when the tenant is not loaded) and ctx's
// error. A tenant deleted at rev or later is not found.
func (e *Engine) WaitRevision(ctx context.Context, tenant string, rev int64) (int64, error) {
	for {
		ch := *e.changed.Load()
		cur := int64(0)
		if ix, ok := (*e.tenants.Load())[tenant]; ok {
			cur = ix.revision
		}
		if cur >= rev {
			return cur, nil
		}
		e.mu.Lock()
		gone, deleted := e.gone[tenant]
		e.mu.Unlock()
		if deleted && gone >= rev {
			return 0, model.TenantNotFound(tenant)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return cur, ctx.Err()
		}
	}
}

// Revision returns the revision of the tenant's loaded state, or a
// *model.NotFoundError matching model.ErrTenantNotFound when the engine has
// not loaded the tenant. It tells callers whether a tenant exists without
// reading the store.
func (e *Engine) Revision(tenant string) (int64, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return 0, err
	}
	return ix.revision, nil
}

// ActionAlias returns what the tenant's action alias name stands for, a
// function or a module verb, and whether the tenant has the alias; an
// unknown tenant is a *model.NotFoundError.
func (e *Engine) ActionAlias(tenant, name string) (model.Permission, bool, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return model.Permission{}, false, err
	}
	target, ok := ix.aliases[name]
	if !ok {
		return model.Permission{}, false, nil
	}
	p, err := model.ParseActionTarget(e.cat, "action.name", target)
	if err != nil {
		// The catalog changed under the alias: it stands for nothing now.
		return model.Permission{}, false, fmt.Errorf("action alias %q of tenant %q stands for %q: %w", name, tenant, target, err)
	}
	return p, true, nil
}

func (e *Engine) index(tenant string) (*index, error) {
	ix, ok := (*e.tenants.Load())[tenant]
	if !ok {
		return nil, model.TenantNotFound(tenant)
	}
	return ix, nil
}

// Decision is the answer to one check.
type Decision struct {
	Allowed  bool
	Revision int64
	Reasons  []Reason // filled only when asked to explain
}

// ReasonKind classifies a Reason.
type ReasonKind uint8

// Reason kinds.
const (
	AllowedByRole ReasonKind = iota + 1
	DeniedByRole
	NotGranted
	ModuleAccessMissing
	GrantExpired
	InScope      // the record is inside a role's data scope
	Manager      // the user manages the record's owner
	SharingRule  // a sharing rule reaches the record (Rule names it)
	RecordShare  // the record is shared with the user
	OutOfScope   // the module verb is held but nothing reaches the record
	UserInactive // the user is offboarded: everything is denied
)

// Reason explains part of a decision.
type Reason struct {
	Kind      ReasonKind
	Role      string    // the granted role the reason concerns
	Rule      string    // the Casbin p line, when one matched
	Message   string    // for people
	ExpiresAt time.Time // the grant's expiry, when it has one
}

// Check decides whether user may use p in tenant. p must be valid for the
// catalog (model.Permission.Validate).
func (e *Engine) Check(tenant, user string, p model.Permission, explain bool) (Decision, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return Decision{}, err
	}
	var buf [3]int32
	ids := e.space.idsFor(p, &buf)
	if !explain && !ix.someRoleAllows(ids) {
		return Decision{Revision: ix.revision}, nil
	}
	var gbuf [2]userGrant
	grants := ix.users.grantsOf(e.space.seed, user, &gbuf)
	now := e.nowFor(grants)
	if p.Record != nil {
		now = e.now().UnixNano()
	}
	if !explain {
		return Decision{Allowed: ix.decide(e.space, user, p, ids, grants, now), Revision: ix.revision}, nil
	}
	d := Decision{Allowed: ix.allowedAll(ids, grants, now), Revision: ix.revision}
	d.Reasons = ix.explain(e.space, user, p, ids, grants, now)
	if d.Allowed && p.Record != nil {
		var why []Reason
		d.Allowed, why = ix.recordDecision(e.space, user, p, grants, now, true)
		d.Reasons = append(d.Reasons, why...)
	}
	return d, nil
}

// CheckPage decides perms for user in tenant, as Check without reasons,
// writing each answer to allowed (as long as perms): one page of a CRM,
// whose tenant and user are looked up once. perms must be valid for the
// catalog. It returns the revision every answer was given at.
func (e *Engine) CheckPage(tenant, user string, perms []model.Permission, allowed []bool) (int64, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return 0, err
	}
	var gbuf [2]userGrant
	grants := ix.users.grantsOf(e.space.seed, user, &gbuf)
	now := e.nowFor(grants)
	if now == 0 && slices.ContainsFunc(perms, func(p model.Permission) bool { return p.Record != nil }) {
		now = e.now().UnixNano()
	}
	for i, p := range perms {
		var buf [3]int32
		allowed[i] = ix.decide(e.space, user, p, e.space.idsFor(p, &buf), grants, now)
	}
	return ix.revision, nil
}

// decide decides p, whose permission ids are ids, for user's grants.
func (ix *index) decide(space *permSpace, user string, p model.Permission, ids []int32, grants []userGrant, now int64) bool {
	if !ix.allowedAll(ids, grants, now) {
		return false
	}
	if p.Record != nil {
		ok, _ := ix.recordDecision(space, user, p, grants, now, false)
		return ok
	}
	return true
}

// allowedAll reports whether grants allow every permission id of ids.
func (ix *index) allowedAll(ids []int32, grants []userGrant, now int64) bool {
	for _, id := range ids {
		if !ix.allowed(grants, id, now) {
			return false
		}
	}
	return true
}

// nowFor reads the clock only when some grant can expire.
func (e *Engine) nowFor(grants []userGrant) int64 {
	for i := range grants {
		if grants[i].expires != 0 {
			return e.now().UnixNano()
		}
	}
	return 0
}

// FieldAccess returns the state of every field of module for user, in
// catalog order. With a record, fields are hidden when the user may not read
// the record and at most read-only when the user may not update it.
func (e *Engine) FieldAccess(tenant, user, module string, rec *model.Record) ([]model.FieldState, int64, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return nil, 0, err
	}
	m := e.cat.Module(module)
	if m == nil {
		return nil, 0, model.Invalid("module", model.ReasonUnknownModule, fmt.Sprintf("unknown module %q", module))
	}
	var gbuf [2]userGrant
	grants := ix.users.grantsOf(e.space.seed, user, &gbuf)
	now := e.nowFor(grants)
	ids := e.space.ids
	read := ix.allowed(grants, ids[key{kindModule, module, model.VerbRead}], now)
	update := read && ix.allowed(grants, ids[key{kindModule, module, model.VerbUpdate}], now)
	if rec != nil {
		now = e.now().UnixNano()
		p := model.Permission{Kind: model.KindModule, Module: module, Verb: model.VerbRead, Record: rec}
		read, _ = ix.recordDecision(e.space, user, p, grants, now, false)
		read = read && ix.allowed(grants, ids[key{kindModule, module, model.VerbRead}], now)
		p.Verb = model.VerbUpdate
		update, _ = ix.recordDecision(e.space, user, p, grants, now, false)
		update = update && read && ix.allowed(grants, ids[key{kindModule, module, model.VerbUpdate}], now)
	}
	states := make([]model.FieldState, len(m.Fields))
	for i, f := range m.Fields {
		switch {
		case !read || !ix.allowed(grants, ids[key{kindFieldRead, module, f}], now):
			states[i] = model.FieldHidden
		case update && ix.allowed(grants, ids[key{kindFieldWrite, module, f}], now):
			states[i] = model.FieldReadWrite
		default:
			states[i] = model.FieldReadOnly
		}
	}
	return states, ix.revision, nil
}

// Effective is what a user may do in a tenant.
type Effective struct {
	Modules   []model.ModuleGrant // verbs per module and widest scope, catalog order, widest scope first
	Functions []string            // sorted
	Roles     []ActiveRole        // sorted by role id
	Revision  int64
}

// ActiveRole is a role a user holds now.
type ActiveRole struct {
	Role      string
	ExpiresAt time.Time // zero when the grant does not expire
}

// EffectivePermissions returns the union of the user's active roles less
// everything denied.
func (e *Engine) EffectivePermissions(tenant, user string) (Effective, error) {
	ix, err := e.index(tenant)
	if err != nil {
		return Effective{}, err
	}
	var gbuf [2]userGrant
	grants := ix.users.grantsOf(e.space.seed, user, &gbuf)
	now := e.nowFor(grants)
	out := Effective{Revision: ix.revision}
	have := map[int32]bool{}
	for _, g := range grants {
		if !g.active(now) {
			continue
		}
		ar := ActiveRole{Role: ix.roles.id(g.role)}
		if g.expires != 0 {
			ar.ExpiresAt = time.Unix(0, g.expires).UTC()
		}
		out.Roles = append(out.Roles, ar)
		ix.forEach(g.role, setAllow, func(id int32) {
			if k := e.space.keys[id].k; (k == kindModule || k == kindFunction) && ix.allowed(grants, id, now) {
				have[id] = true
			}
		})
	}
	slices.SortFunc(out.Roles, func(a, b ActiveRole) int { return cmp.Compare(a.Role, b.Role) })
	for _, m := range e.cat.Modules {
		// One entry per scope: the verbs whose widest scope it is.
		byScope := make([][]string, len(model.Scopes))
		for _, v := range e.cat.Verbs {
			if have[e.space.ids[key{kindModule, m.ID, v}]] {
				rank, _ := ix.scopeOf(e.space, grants, m.ID, v, now)
				byScope[max(rank, 0)] = append(byScope[max(rank, 0)], v)
			}
		}
		for rank := len(model.Scopes) - 1; rank >= 0; rank-- {
			if verbs := byScope[rank]; len(verbs) > 0 {
				out.Modules = append(out.Modules, model.ModuleGrant{Module: m.ID, Verbs: verbs, Scope: model.Scopes[rank]})
			}
		}
	}
	for id := range have {
		if k := e.space.keys[id]; k.k == kindFunction {
			out.Functions = append(out.Functions, k.a)
		}
	}
	slices.Sort(out.Functions)
	return out, nil
}
