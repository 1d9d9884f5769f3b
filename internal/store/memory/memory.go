// Package memory is the embedded store: every tenant's state and change log
// in process memory. It is the default when no database is configured, so
// state lives only as long as the process.
package memory

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

var _ store.Store = (*Store)(nil)

// Store is the in-memory store. Tenants are kept as immutable snapshots;
// a write builds the next snapshot under the store's lock and swaps it in.
type Store struct {
	now func() time.Time

	mu      sync.Mutex
	closed  bool
	tenants map[string]*model.TenantState
	changes map[string][]store.ChangeEntry
	creds   map[string]store.Credential
	created map[string]time.Time
	deleted map[string]store.TenantInfo // what a deleted tenant was
	// history holds each tenant's snapshots and the rows of its other
	// writes, in revision order (StateAt).
	history map[string][]step
}

// step is one revision of a tenant's history: a snapshot of the whole
// state (store.EncodeState), or the rows its write left (store.Rows).
type step struct {
	revision int64
	snapshot bool
	rows     []byte
}

// New returns an empty store. now supplies change-log times (time.Now when nil).
func New(now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{now: now, tenants: map[string]*model.TenantState{}, changes: map[string][]store.ChangeEntry{}, creds: map[string]store.Credential{},
		created: map[string]time.Time{}, deleted: map[string]store.TenantInfo{}, history: map[string][]step{}}
}

// TenantIDs implements store.Store.
func (s *Store) TenantIDs(context.Context) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	return slices.Sorted(maps.Keys(s.tenants)), nil
}

// Tenant implements store.Store.
func (s *Store) Tenant(_ context.Context, id string) (*model.TenantState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	st, ok := s.tenants[id]
	if !ok {
		return nil, model.TenantNotFound(id)
	}
	return st.Clone(), nil
}

// TenantStates implements store.Store.
func (s *Store) TenantStates(_ context.Context, ids []string) ([]*model.TenantState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	ids = slices.Sorted(slices.Values(ids))
	var out []*model.TenantState
	for i, id := range ids {
		if st, ok := s.tenants[id]; ok && (i == 0 || id != ids[i-1]) {
			out = append(out, st.Clone())
		}
	}
	return out, nil
}

// CreateTenant implements store.Store.
func (s *Store) CreateTenant(ctx context.Context, w store.Write, st *model.TenantState) (*model.TenantState, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if _, ok := s.tenants[st.ID]; ok {
		return nil, &model.ConflictError{Reason: model.ReasonTenantExists, Message: fmt.Sprintf("tenant %q already exists", st.ID), Exists: true}
	}
	if _, ok := s.deleted[st.ID]; ok {
		return nil, tenantDeleted(st.ID)
	}
	next := st.Clone()
	next.Revision = 1
	w.Tenant = st.ID
	entry, err := s.entry(w, 1, model.Change{Action: "tenant.create", Target: "tenant/" + st.ID, After: store.CreatedSummary(w, next)})
	if err != nil {
		return nil, err
	}
	snap, err := store.EncodeState(next)
	if err != nil {
		return nil, err
	}
	s.tenants[st.ID] = next
	s.changes[st.ID] = []store.ChangeEntry{entry}
	s.history[st.ID] = []step{{revision: 1, snapshot: true, rows: snap}}
	s.created[st.ID] = entry.Time
	return next.Clone(), nil
}

// Update implements store.Store.
func (s *Store) Update(ctx context.Context, w store.Write, fn store.Mutation) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	st, ok := s.tenants[w.Tenant]
	if !ok {
		return 0, model.TenantNotFound(w.Tenant)
	}
	var d model.Delta
	err := store.Journaled(st, fn, func(change model.Change, delta model.Delta, _ *model.TenantState) error {
		entry, err := s.entry(w, st.Revision+1, change)
		if err != nil {
			return err
		}
		d = delta
		entry.Related = store.RelatedTargets(change, d)
		st.ID = w.Tenant
		st.Revision++
		h := step{revision: st.Revision, rows: nil}
		if d.Whole {
			h.snapshot = true
			h.rows, err = store.EncodeState(st)
		} else {
			h.rows, err = store.EncodeRows(st, d)
		}
		if err != nil {
			st.Revision--
			return err
		}
		s.changes[w.Tenant] = append(s.changes[w.Tenant], entry)
		s.history[w.Tenant] = append(s.history[w.Tenant], h)
		return nil
	})
	if err != nil {
		return 0, err
	}
	if w.Applied != nil {
		if err := w.Applied(st, d); err != nil {
			return st.Revision, err
		}
	}
	return st.Revision, nil
}

// Changes implements store.Store.
func (s *Store) Changes(_ context.Context, tenant string, after int64, limit int) ([]store.ChangeEntry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	if _, ok := s.tenants[tenant]; !ok {
		if _, ok := s.deleted[tenant]; !ok {
			return nil, model.TenantNotFound(tenant)
		}
	}
	var out []store.ChangeEntry
	for _, e := range s.changes[tenant] {
		if e.Revision > after && len(out) < limit {
			out = append(out, e)
		}
	}
	return out, nil
}

// Close implements store.Store.
func (s *Store) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
}

func (s *Store) entry(w store.Write, rev int64, c model.Change) (store.ChangeEntry, error) {
	return store.NewChangeEntry(w, rev, s.now(), c)
}

// CreateCredential implements store.Store.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	if _, ok := s.creds[c.ID]; ok {
		return &model.ConflictError{Reason: model.ReasonCredentialExists, Message: fmt.Sprintf("credential %q already exists", c.ID), Exists: true}
	}
	if c.Certificate != "" {
		if _, ok := s.byCertificate(c.Certificate); ok {
			return &model.ConflictError{Reason: model.ReasonCredentialExists, Message: fmt.Sprintf("certificate identity %q already has a credential", c.Certificate), Exists: true}
		}
	}
	// Times as PostgreSQL keeps them, so both stores return the same.
	c.CreatedAt, c.ExpiresAt = c.CreatedAt.UTC().Truncate(time.Microsecond), c.ExpiresAt.UTC().Truncate(time.Microsecond)
	s.creds[c.ID] = cloneCredential(c)
	return nil
}

func (s *Store) byCertificate(identity string) (store.Credential, bool) {
	for _, c := range s.creds {
		if c.Certificate == identity && !c.Revoked() {
			return c, true
		}
	}
	return store.Credential{}, false
}

// Credential implements store.Store.
func (s *Store) Credential(_ context.Context, id string) (store.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Credential{}, store.ErrClosed
	}
	c, ok := s.creds[id]
	if !ok {
		return store.Credential{}, model.CredentialNotFound(id)
	}
	return cloneCredential(c), nil
}

// CredentialByCertificate implements store.Store.
func (s *Store) CredentialByCertificate(_ context.Context, identity string) (store.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Credential{}, store.ErrClosed
	}
	c, ok := s.byCertificate(identity)
	if !ok {
		return store.Credential{}, &model.NotFoundError{Reason: model.ReasonCredentialNotFound, What: fmt.Sprintf("credential of certificate identity %q", identity)}
	}
	return cloneCredential(c), nil
}

// Credentials implements store.Store.
func (s *Store) Credentials(_ context.Context, after string, limit int, includeRevoked bool) ([]store.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var out []store.Credential
	for _, id := range slices.Sorted(maps.Keys(s.creds)) {
		c := s.creds[id]
		if id <= after || (c.Revoked() && !includeRevoked) {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, cloneCredential(c))
	}
	return out, nil
}

// RevokeCredential implements store.Store.
func (s *Store) RevokeCredential(_ context.Context, id, by string, at time.Time) (store.Credential, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.Credential{}, store.ErrClosed
	}
	c, ok := s.creds[id]
	if !ok {
		return store.Credential{}, model.CredentialNotFound(id)
	}
	if !c.Revoked() {
		c.RevokedAt, c.RevokedBy = at.UTC().Truncate(time.Microsecond), by
		s.creds[id] = c
	}
	return cloneCredential(c), nil
}

func cloneCredential(c store.Credential) store.Credential {
	c.SecretHash = slices.Clone(c.SecretHash)
	c.Scopes = slices.Clone(c.Scopes)
	c.Tenants = slices.Clone(c.Tenants)
	return c
}

// tenantDeleted is the conflict of creating a tenant whose id a deleted
// tenant had.
func tenantDeleted(id string) error {
	return &model.ConflictError{Reason: model.ReasonTenantExists, Exists: true,
		Message: fmt.Sprintf("tenant %q was deleted; its change log keeps the id, which is not given out again", id)}
}

func (s *Store) info(st *model.TenantState) store.TenantInfo {
	return store.TenantInfo{ID: st.ID, Name: st.Name, Revision: st.Revision, Roles: len(st.Roles), Users: len(st.Users),
		Grants: len(st.Grants), CreatedAt: s.created[st.ID]}
}

// Tenants implements store.Store.
func (s *Store) Tenants(_ context.Context, after string, limit int, includeDeleted bool) ([]store.TenantInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	all := map[string]store.TenantInfo{}
	for id, st := range s.tenants {
		all[id] = s.info(st)
	}
	if includeDeleted {
		maps.Copy(all, s.deleted)
	}
	var out []store.TenantInfo
	for _, id := range slices.Sorted(maps.Keys(all)) {
		if id <= after {
			continue
		}
		if len(out) == limit {
			break
		}
		out = append(out, all[id])
	}
	return out, nil
}

// TenantInfo implements store.Store.
func (s *Store) TenantInfo(_ context.Context, id string) (store.TenantInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.TenantInfo{}, store.ErrClosed
	}
	if st, ok := s.tenants[id]; ok {
		return s.info(st), nil
	}
	if info, ok := s.deleted[id]; ok {
		return info, nil
	}
	return store.TenantInfo{}, model.TenantNotFound(id)
}

// DeleteTenant implements store.Store.
func (s *Store) DeleteTenant(ctx context.Context, w store.Write) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, store.ErrClosed
	}
	cur, ok := s.tenants[w.Tenant]
	if !ok {
		return 0, model.TenantNotFound(w.Tenant)
	}
	rev := cur.Revision + 1
	entry, err := s.entry(w, rev, model.Change{Action: "tenant.delete", Target: "tenant/" + cur.ID, Before: store.TenantSummary(cur)})
	if err != nil {
		return 0, err
	}
	info := s.info(cur)
	info.Revision, info.Roles, info.Users, info.Grants, info.DeletedAt = rev, 0, 0, 0, entry.Time
	s.deleted[cur.ID] = info
	delete(s.tenants, cur.ID)
	s.changes[cur.ID] = append(s.changes[cur.ID], entry)
	return rev, nil
}

// Revisions implements store.Store.
func (s *Store) Revisions(context.Context) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	out := make(map[string]int64, len(s.tenants))
	for id, st := range s.tenants {
		out[id] = st.Revision
	}
	return out, nil
}

// DueReviews implements store.Store.
func (s *Store) DueReviews(_ context.Context, now time.Time, limit int) ([]store.ReviewRef, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	type due struct {
		ref      store.ReviewRef
		deadline time.Time
	}
	var all []due
	for id, st := range s.tenants {
		for _, r := range st.AccessReviews {
			if r.State == model.ReviewOpen && !r.Deadline.After(now) {
				all = append(all, due{store.ReviewRef{Tenant: id, Review: r.ID}, r.Deadline})
			}
		}
	}
	slices.SortFunc(all, func(a, b due) int { return a.deadline.Compare(b.deadline) })
	out := make([]store.ReviewRef, 0, min(limit, len(all)))
	for _, d := range all[:min(limit, len(all))] {
		out = append(out, d.ref)
	}
	return out, nil
}

// StateAt implements store.Store.
func (s *Store) StateAt(_ context.Context, tenant string, revision int64) (*model.TenantState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	steps, ok := s.history[tenant]
	if !ok {
		if _, gone := s.deleted[tenant]; !gone {
			return nil, model.TenantNotFound(tenant)
		}
	}
	first := -1
	for i, h := range steps {
		if h.revision > revision {
			break
		}
		if h.snapshot {
			first = i
		}
	}
	if first < 0 {
		return nil, &model.ConflictError{Reason: model.ReasonHistoryUnavailable, Message: fmt.Sprintf("tenant %q has no history kept at revision %d", tenant, revision)}
	}
	st, err := store.StateOf(tenant, steps[first].revision, steps[first].rows)
	if err != nil {
		return nil, err
	}
	for _, h := range steps[first+1:] {
		if h.revision > revision {
			break
		}
		if _, err := store.ApplyRows(st, h.rows); err != nil {
			return nil, err
		}
		st.Revision = h.revision
	}
	return st, nil
}
