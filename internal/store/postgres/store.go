// Package postgres is the production store: tenants, their roles and grants,
// their organisation (departments, memberships, managers, settings) and
// sharing (sharing rules, record shares), and the change log in
// PostgreSQL, through pgx.
//
// Every write is one transaction. It locks the tenant's row (SELECT ... FOR
// UPDATE), which serialises the tenant's writers, loads the tenant's state,
// applies the mutation to it, writes only the rows that changed, appends the
// change log entry, bumps the revision and notifies NotifyChannel; the
// notification is delivered on commit, so replicas never hear of a write
// that did not happen. The schema comes from the numbered migrations
// embedded in the binary (Migrate, CheckSchema).
//
// An error that means the database could not be reached or the connection
// to it was lost also matches store.ErrUnavailable (store/pgerr).
//
// Times are stored at microsecond precision in UTC, as PostgreSQL keeps
// them; the store rounds grant and record share times down to the
// microsecond before writing, so the state a write returns equals the state
// a later read loads.
package postgres

import (
	"context"

	"encoding/json"
	"errors"
	"fmt"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

var _ store.Store = (*Store)(nil)

// NotifyChannel is the PostgreSQL notification channel every write notifies
// when it commits, with a JSON Notification as payload.
const NotifyChannel = "crmauthz_changes"

// Notification is the payload of a NotifyChannel notification: the tenant
// has reached the revision.
type Notification struct {
	Tenant   string `json:"tenant"`
	Revision int64  `json:"revision"`
	// Origin names the process that wrote (Store.WithOrigin), which
	// applies its own write and needs no notification of it.
	Origin string `json:"origin,omitempty"`
}

// sqlstateUniqueViolation is the SQLSTATE of a unique or primary key
// violation (pgerrcode.UniqueViolation).
const sqlstateUniqueViolation = "23505"

// Store is the PostgreSQL store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	now    func() time.Time
	keys   *chain.Keyring
	origin string
	cache  tenantCache
	reads  atomic.Int64 // tenants read whole by writes
	// snapshotted holds the tenants known to have a snapshot (history.go).
	snapshotted sync.Map
	// snapshotEvery is how many revisions apart snapshots are written.
	snapshotEvery int64
	closed        atomic.Bool
}

// New returns a store on pool, whose schema must be current (CheckSchema).
// now supplies change-log times (time.Now when nil). The pool stays the
// caller's: Close does not close it.
func New(pool *pgxpool.Pool, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{pool: pool, now: now, keys: chain.ProcessKeyring(), snapshotEvery: snapshotEvery}
}

// WithOrigin names the process in its writes' notifications, so that its
// own follower skips them: the process applies its writes itself.
func (s *Store) WithOrigin(origin string) *Store {
	s.origin = origin
	return s
}

// WithKeys makes the store link its change log under keys, which the
// decision log's verification must hold too. A store made by New links
// under keys made for the process alone.
func (s *Store) WithKeys(keys *chain.Keyring) *Store {
	s.keys = keys
	return s
}

// TenantIDs implements store.Store.
func (s *Store) TenantIDs(ctx context.Context) ([]string, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, "SELECT id FROM tenants WHERE deleted_at IS NULL ORDER BY id")
	ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list tenants: %w", err))
	}
	return ids, nil
}

// Tenant implements store.Store. It reads the tenant's row, roles, grants,
// organisation and sharing in one read-only snapshot.
func (s *Store) Tenant(ctx context.Context, id string) (*model.TenantState, error) {
	states, err := s.TenantStates(ctx, []string{id})
	if err != nil {
		return nil, err
	}
	if len(states) == 0 {
		return nil, model.TenantNotFound(id)
	}
	return states[0], nil
}

// TenantStates implements store.Store: one read-only snapshot and one
// query per table for all of ids.
func (s *Store) TenantStates(ctx context.Context, ids []string) (states []*model.TenantState, err error) {
	ctx, span := tracer.Start(ctx, "store.TenantStates", trace.WithAttributes(attribute.Int("crmauthz.tenants", len(ids))))
	defer func() { endSpan(span, err) }()
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err = inTx(ctx, s.pool, opts, func(tx pgx.Tx) error {
		var err error
		states, err = loadTenants(ctx, tx, ids, false)
		return err
	})
	if err != nil {
		return nil, pgerr.Wrap(err)
	}
	return states, nil
}

// CreateTenant implements store.Store.
func (s *Store) CreateTenant(ctx context.Context, w store.Write, st *model.TenantState) (*model.TenantState, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	next := st.Clone()
	next.Revision = 1
	normalize(next)
	if err := checkKeys(next); err != nil {
		return nil, err
	}
	w.Tenant = next.ID
	change := model.Change{Action: "tenant.create", Target: "tenant/" + next.ID, After: store.CreatedSummary(w, next)}
	entry, err := store.NewChangeEntry(w, next.Revision, s.clock(), change)
	if err != nil {
		return nil, err
	}
	err = inTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		link, err := s.link(entry, nil)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO tenants (id, name, revision, manager_depth, action_aliases, created_at, head_key, head_mac)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
			next.ID, next.Name, next.Revision, next.Settings.ManagerDepth, aliasesJSON(next.Settings), entry.Time, link.key.ID, link.headMAC)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == sqlstateUniqueViolation {
			return errTenantTaken
		}
		if err != nil {
			return fmt.Errorf("create tenant %q: %w", next.ID, err)
		}
		b := &pgx.Batch{}
		if err := queueDiff(b, model.NewTenantState(next.ID, next.Name), next); err != nil {
			return err
		}
		if err := s.queueChange(b, entry, link, nil); err != nil {
			return err
		}
		if err := s.queueSnapshot(b, next); err != nil {
			return err
		}
		return sendBatch(ctx, tx, b, next.ID)
	})
	if errors.Is(err, errTenantTaken) {
		// Asked after the transaction, which the violation aborted.
		msg := fmt.Sprintf("tenant %q already exists", next.ID)
		if info, ierr := s.TenantInfo(ctx, next.ID); ierr == nil && info.Deleted() {
			msg = fmt.Sprintf("tenant %q was deleted; its change log keeps the id, which is not given out again", next.ID)
		}
		return nil, &model.ConflictError{Reason: model.ReasonTenantExists, Message: msg, Exists: true}
	}
	if err != nil {
		return nil, pgerr.Wrap(err)
	}
	s.snapshotted.Store(next.ID, true)
	return next, nil
}

// errTenantTaken is a tenant id already in the tenants table.
var errTenantTaken = errors.New("tenant id taken")

// Update implements store.Store.
//
// The write locks the tenant's row and reads its revision. When this
// process holds the tenant's state at that revision (a large tenant it
// wrote or followed before, see cache), it needs nothing else; otherwise it
// reads the tenant, after catching up from the change log when it is only
// a few revisions behind. The mutation runs on that state under a journal,
// and only the rows it changed are written, with the change-log entry, the
// rows themselves (for replicas) and the revision.
func (s *Store) Update(ctx context.Context, w store.Write, fn store.Mutation) (rev int64, err error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	ctx, span := tracer.Start(ctx, "store.Update", trace.WithAttributes(attribute.String("crmauthz.tenant", w.Tenant)))
	defer func() {
		span.SetAttributes(attribute.Int64("crmauthz.revision", rev))
		endSpan(span, err)
	}()
	// Read committed matters: a writer that waited for the tenant's lock must
	// then read the state the previous writer committed.
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.ReadCommitted})
	if err != nil {
		return 0, pgerr.Wrap(fmt.Errorf("begin transaction: %w", err))
	}
	// As in inTx: the rollback also runs when the mutation panics, and does
	// nothing after the commit.
	defer func() { _ = tx.Rollback(ctx) }()
	var head tenantHead
	err = tx.QueryRow(ctx, `SELECT t.revision, c.hash FROM tenants t
		LEFT JOIN change_log c ON c.tenant_id = t.id AND c.revision = t.revision
		WHERE t.id = $1 AND t.deleted_at IS NULL FOR UPDATE OF t`, w.Tenant).Scan(&head.revision, &head.hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, model.TenantNotFound(w.Tenant)
	}
	if err != nil {
		return 0, pgerr.Wrap(fmt.Errorf("lock tenant %q: %w", w.Tenant, err))
	}
	// The tenant's row lock is held: no other writer, in this process or
	// another, changes the tenant until the transaction ends.
	c := s.cache.slot(w.Tenant)
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := s.current(ctx, tx, c, head.revision, w.Applied)
	if err != nil {
		return 0, pgerr.Wrap(err)
	}
	if err := s.ensureSnapshot(ctx, tx, st); err != nil {
		return 0, pgerr.Wrap(err)
	}
	rev, err = s.mutate(ctx, tx, w, st, head, fn)
	if err != nil {
		return rev, pgerr.Wrap(err)
	}
	s.snapshotted.Store(w.Tenant, true)
	return rev, nil
}

// tenantHead is a tenant's revision and that revision's change-log hash.
type tenantHead struct {
	revision int64
	hash     []byte
}

// mutate runs fn on st under a journal, writes what it changed and
// commits tx. On success st is the tenant's state at the returned revision
// and w.Applied has seen it; on failure every change is undone.
func (s *Store) mutate(ctx context.Context, tx pgx.Tx, w store.Write, st *model.TenantState, head tenantHead, fn store.Mutation) (int64, error) {
	var d model.Delta
	err := store.Journaled(st, fn, func(change model.Change, delta model.Delta, before *model.TenantState) error {
		d = delta
		st.ID, st.Revision = w.Tenant, head.revision+1
		next := st
		if d.Whole {
			normalize(st)
		} else {
			normalizeRows(st, d)
			next = st.Partial(d)
		}
		if err := checkKeys(next); err != nil {
			return err
		}
		entry, err := store.NewChangeEntry(w, st.Revision, s.clock(), change)
		if err != nil {
			return err
		}
		entry.Related = store.RelatedTargets(change, d)
		link, err := s.link(entry, head.hash)
		if err != nil {
			return err
		}
		rows, err := store.EncodeRows(st, d)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		if err := queueDiff(b, before, next); err != nil {
			return err
		}
		b.Queue("UPDATE tenants SET name = $2, revision = $3, manager_depth = $4, action_aliases = $5, head_key = $6, head_mac = $7 WHERE id = $1",
			st.ID, st.Name, st.Revision, st.Settings.ManagerDepth, aliasesJSON(st.Settings), link.key.ID, link.headMAC)
		if err := s.queueChange(b, entry, link, rows); err != nil {
			return err
		}
		if d.Whole || st.Revision%s.snapshotEvery == 0 {
			if err := s.queueSnapshot(b, st); err != nil {
				return err
			}
		}
		if err := sendBatch(ctx, tx, b, st.ID); err != nil {
			return err
		}
		if err := tx.Commit(ctx); err != nil {
			return fmt.Errorf("commit transaction: %w", err)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	s.cache.keep(w.Tenant, st)
	if w.Applied != nil {
		if err := w.Applied(st, d); err != nil {
			return st.Revision, err
		}
	}
	return st.Revision, nil
}

// Changes implements store.Store.
func (s *Store) Changes(ctx context.Context, tenant string, after int64, limit int) ([]store.ChangeEntry, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	var exists bool
	if err := s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", tenant).Scan(&exists); err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list changes of tenant %q: %w", tenant, err))
	}
	if !exists {
		return nil, model.TenantNotFound(tenant)
	}
	if limit <= 0 {
		return nil, nil
	}
	rows, _ := s.pool.Query(ctx, `SELECT revision, at, actor, credential, reason, action, target, before, after, related
		FROM change_log WHERE tenant_id = $1 AND revision > $2 ORDER BY revision LIMIT $3`,
		tenant, after, limit)
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.ChangeEntry, error) {
		e := store.ChangeEntry{Tenant: tenant}
		err := row.Scan(&e.Revision, &e.Time, &e.Actor, &e.Credential, &e.Reason, &e.Action, &e.Target, &e.Before, &e.After, &e.Related)
		e.Time = e.Time.UTC()
		return e, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list changes of tenant %q: %w", tenant, err))
	}
	return entries, nil
}

// Close marks the store closed: later calls fail with store.ErrClosed. It
// closes nothing else; the pool belongs to the caller, who closes it after
// the store.
func (s *Store) Close() {
	s.closed.Store(true)
}

// clock returns the current time as the database stores it.
func (s *Store) clock() time.Time {
	return dbTime(s.now())
}

// inTx runs fn in a transaction and commits it if fn succeeds. fn's error is
// returned as is, so that a mutation's error reaches the caller unchanged.
func inTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(pgx.Tx) error) error {
	tx, err := pool.BeginTx(ctx, opts)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	// The rollback also runs when fn panics, so that no connection is left
	// holding a tenant's lock; after a commit it does nothing. When the
	// rollback itself fails, pgx closes the connection, which ends the
	// transaction just the same.
	defer func() { _ = tx.Rollback(ctx) }()
	if err := fn(tx); err != nil {
		return err
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// loadTenant reads one tenant in tx; forUpdate locks its row.
func loadTenant(ctx context.Context, tx pgx.Tx, id string, forUpdate bool) (*model.TenantState, error) {
	states, err := loadTenants(ctx, tx, []string{id}, forUpdate)
	if err != nil {
		return nil, err
	}
	if len(states) == 0 {
		return nil, model.TenantNotFound(id)
	}
	return states[0], nil
}

// loadTenants reads the tenants of ids that exist (not deleted) in tx, with
// one query per table for all of them: start-up reads thousands of tenants,
// and eight queries for each was most of its time in PostgreSQL.
func loadTenants(ctx context.Context, tx pgx.Tx, ids []string, forUpdate bool) ([]*model.TenantState, error) {
	q := "SELECT id, name, revision, manager_depth, action_aliases FROM tenants WHERE id = ANY($1) AND deleted_at IS NULL ORDER BY id"
	if forUpdate {
		q += " FOR UPDATE"
	}
	rows, _ := tx.Query(ctx, q, ids)
	states, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (*model.TenantState, error) {
		var id string
		var st model.TenantState
		var aliases map[string]string
		if err := row.Scan(&id, &st.Name, &st.Revision, &st.Settings.ManagerDepth, &aliases); err != nil {
			return nil, err
		}
		out := model.NewTenantState(id, st.Name)
		out.Revision, out.Settings.ManagerDepth = st.Revision, st.Settings.ManagerDepth
		if len(aliases) > 0 {
			out.Settings.ActionAliases = aliases
		}
		return out, nil
	})
	if err != nil {
		return nil, fmt.Errorf("load tenants: %w", err)
	}
	if len(states) == 0 {
		return nil, nil
	}
	l := &tenantLoads{tx: tx, ids: ids, byID: make(map[string]*tenantLoad, len(states))}
	for _, st := range states {
		l.byID[st.ID] = &tenantLoad{st: st, in: interner{}}
	}
	// Roles made from one template carry the same permissions in every
	// tenant: each text is decoded once. The tenants then share the
	// decoded slices, as a state and its clones do (model.TenantState
	// replaces a role's permissions, never edits them).
	decoded := map[string]model.Permissions{}
	err = eachTenantRow(ctx, l, "roles", `SELECT tenant_id, role_id, display_name, description, template, inherits, permissions, request
		FROM roles WHERE tenant_id = ANY($1)`, func(row pgx.CollectableRow) (string, model.Role, error) {
		var r model.Role
		var tenant string
		var perms, request []byte
		if err := row.Scan(&tenant, &r.ID, &r.DisplayName, &r.Description, &r.Template, &r.Inherits, &perms, &request); err != nil {
			return "", r, err
		}
		if request != nil {
			r.Request = new(model.RequestPolicy)
			if err := json.Unmarshal(request, r.Request); err != nil {
				return "", r, fmt.Errorf("decode the request policy of role %q of tenant %q: %w", r.ID, tenant, err)
			}
		}
		if len(r.Inherits) == 0 {
			r.Inherits = nil
		}
		p, ok := decoded[string(perms)]
		if !ok {
			if err := json.Unmarshal(perms, &p); err != nil {
				return "", r, fmt.Errorf("decode permissions of role %q of tenant %q: %w", r.ID, tenant, err)
			}
			decoded[string(perms)] = p
		}
		r.Permissions = p
		return tenant, r, nil
	}, func(t *tenantLoad, r model.Role) { t.st.Roles[r.ID] = r })
	if err != nil {
		return nil, err
	}
	err = eachTenantRowSized(ctx, l, "grants", `SELECT tenant_id, user_id, role_id, expires_at, granted_by, granted_at
		FROM grants WHERE tenant_id = ANY($1)`, func(row pgx.CollectableRow) (string, model.Grant, error) {
		var g model.Grant
		var tenant string
		var expiresAt, grantedAt *time.Time
		if err := row.Scan(&tenant, &g.UserID, &g.RoleID, &expiresAt, &g.GrantedBy, &grantedAt); err != nil {
			return "", g, err
		}
		if expiresAt != nil {
			g.ExpiresAt = expiresAt.UTC()
		}
		if grantedAt != nil {
			g.GrantedAt = grantedAt.UTC()
		}
		return tenant, g, nil
	}, func(t *tenantLoad, n int) {
		t.st.Grants = make(map[model.GrantKey]model.Grant, n)
		if len(t.in) == 0 {
			t.in = make(interner, n) // about one id a grant: its user
		}
	}, func(t *tenantLoad, g model.Grant) {
		g.UserID, g.RoleID, g.GrantedBy = t.in.of(g.UserID), t.in.of(g.RoleID), t.in.of(g.GrantedBy)
		t.st.Grants[model.GrantKey{UserID: g.UserID, RoleID: g.RoleID}] = g
	})
	if err != nil {
		return nil, err
	}
	if err := loadOrg(ctx, l); err != nil {
		return nil, err
	}
	if err := loadRequests(ctx, l); err != nil {
		return nil, err
	}
	if err := loadReviews(ctx, l); err != nil {
		return nil, err
	}
	return states, nil
}

// tenantLoads is the tenants loadTenants reads.
type tenantLoads struct {
	tx   pgx.Tx
	ids  []string
	byID map[string]*tenantLoad
}

// tenantLoad is one tenant being read, with the strings read for it so
// far.
type tenantLoad struct {
	st *model.TenantState
	in interner
}

// eachTenantRow runs a query of the tenants' rows (the tenant id is its
// parameter $1), scans each row and puts it into its tenant. Rows of a
// tenant not being read (deleted meanwhile) are skipped.
func eachTenantRow[T any](ctx context.Context, l *tenantLoads, what, sql string,
	scan func(row pgx.CollectableRow) (string, T, error), put func(t *tenantLoad, v T)) error {
	return eachTenantRowSized(ctx, l, what, sql, scan, nil, put)
}

// eachTenantRowSized is eachTenantRow that first tells size how many rows
// each tenant has, so that their maps are made at their size: grown row by
// row, rehashing them was a tenth of the start-up's CPU at 10,000 tenants.
func eachTenantRowSized[T any](ctx context.Context, l *tenantLoads, what, sql string,
	scan func(row pgx.CollectableRow) (string, T, error), size func(t *tenantLoad, n int), put func(t *tenantLoad, v T)) error {
	type row struct {
		t *tenantLoad
		v T
	}
	var all []row
	rows, _ := l.tx.Query(ctx, sql, l.ids)
	_, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (struct{}, error) {
		tenant, v, err := scan(r)
		if err != nil {
			return struct{}{}, err
		}
		if t := l.byID[tenant]; t != nil {
			if size == nil {
				put(t, v)
			} else {
				all = append(all, row{t, v})
			}
		}
		return struct{}{}, nil
	})
	if err != nil {
		return fmt.Errorf("load %s: %w", what, err)
	}
	if size == nil {
		return nil
	}
	count := make(map[*tenantLoad]int, len(l.byID))
	for _, r := range all {
		count[r.t]++
	}
	for t, n := range count {
		size(t, n)
	}
	for _, r := range all {
		put(r.t, r.v)
	}
	return nil
}

// interner hands out one string for equal ids read from different rows of
// a tenant (a user id in its user, grant and membership rows; a department
// id in every membership), so a loaded tenant and the index built from it
// hold each id once.
type interner map[string]string

func (in interner) of(s string) string {
	if c, ok := in[s]; ok {
		return c
	}
	in[s] = s
	return s
}

// queueDiff queues the statements that turn the rows of state cur into
// those of state next: only the rows that changed are written. Rows that go
// away are deleted before the rows they reference (grants before roles;
// memberships, sharing rules and record shares before departments), and
// referenced rows arrive before the rows that reference them.
func queueDiff(b *pgx.Batch, cur, next *model.TenantState) error {
	tenant := next.ID
	for _, g := range gone(cur.Grants, next.Grants, model.CompareGrantKeys) {
		b.Queue("DELETE FROM grants WHERE tenant_id = $1 AND user_id = $2 AND role_id = $3", tenant, g.UserID, g.RoleID)
	}
	queueOrgDeletes(b, cur, next)
	for _, r := range next.SortedRoles() {
		if old, ok := cur.Roles[r.ID]; ok && reflect.DeepEqual(old, r) {
			continue
		}
		perms, err := json.Marshal(r.Permissions)
		if err != nil {
			return fmt.Errorf("encode permissions of role %q: %w", r.ID, err)
		}
		inherits := r.Inherits
		if inherits == nil {
			inherits = []string{}
		}
		var request any // NULL: not requestable
		if r.Request != nil {
			b, err := json.Marshal(r.Request)
			if err != nil {
				return fmt.Errorf("encode the request policy of role %q: %w", r.ID, err)
			}
			request = string(b)
		}
		b.Queue(`INSERT INTO roles (tenant_id, role_id, display_name, description, template, inherits, permissions, request)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
			ON CONFLICT (tenant_id, role_id) DO UPDATE SET display_name = excluded.display_name,
				description = excluded.description, template = excluded.template,
				inherits = excluded.inherits, permissions = excluded.permissions, request = excluded.request`,
			tenant, r.ID, r.DisplayName, r.Description, r.Template, inherits, string(perms), request)
	}
	if err := queueRequests(b, cur, next); err != nil {
		return err
	}
	queueReviewDeletes(b, cur, next)
	if err := queueReviewUpserts(b, cur, next); err != nil {
		return err
	}
	for _, g := range changed(next.Grants, cur.Grants, sameGrant, model.CompareGrantKeys) {
		b.Queue(`INSERT INTO grants (tenant_id, user_id, role_id, expires_at, granted_by, granted_at)
			VALUES ($1, $2, $3, $4, $5, $6)
			ON CONFLICT (tenant_id, user_id, role_id) DO UPDATE SET expires_at = excluded.expires_at,
				granted_by = excluded.granted_by, granted_at = excluded.granted_at`,
			tenant, g.UserID, g.RoleID, nullTime(g.ExpiresAt), g.GrantedBy, nullTime(g.GrantedAt))
	}
	queueOrgUpserts(b, cur, next)
	for _, id := range slices.Sorted(maps.Keys(cur.Roles)) {
		if _, ok := next.Roles[id]; !ok {
			b.Queue("DELETE FROM roles WHERE tenant_id = $1 AND role_id = $2", tenant, id)
		}
	}
	return nil
}

// changeLink is a change-log entry's link: its hash, which extends the
// tenant's chain, and the sealed head the tenant moves to with it.
type changeLink struct {
	key     *chain.Key
	hash    []byte
	headMAC []byte
}

// link links entry after the revision whose hash is prev (nil for a
// tenant's first revision) under the active key: HMAC-SHA-256 of prev and
// the entry's canonical content (internal/audit/chain). It is computed
// here, in the write's transaction, which holds the tenant's lock; the key
// never reaches the database.
func (s *Store) link(e store.ChangeEntry, prev []byte) (changeLink, error) {
	key := s.keys.Active()
	canon, err := chain.Change(e.Tenant, e.Revision, e.Time, e.Actor, e.Credential, e.Reason, e.Action, e.Target, e.Before, e.After, e.Related)
	if err != nil {
		return changeLink{}, err
	}
	hash := key.Link(prev, canon)
	return changeLink{key: key, hash: hash, headMAC: key.MAC(chain.TenantHead(e.Tenant, e.Revision, hash))}, nil
}

// linkNext links entry after cur's revision, whose hash it reads: called
// after the tenant's lock is taken, it reads the last committed revision's.
func (s *Store) linkNext(ctx context.Context, tx pgx.Tx, cur *model.TenantState, entry store.ChangeEntry) (changeLink, error) {
	var prev []byte
	err := tx.QueryRow(ctx, "SELECT hash FROM change_log WHERE tenant_id = $1 AND revision = $2", cur.ID, cur.Revision).Scan(&prev)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return changeLink{}, fmt.Errorf("read the change-log head of tenant %q: %w", cur.ID, err)
	}
	return s.link(entry, prev)
}

// queueChange queues the change log entry, with the rows the write left
// behind (nil for none) sealed under the entry's key, and the notification
// of its revision.
func (s *Store) queueChange(b *pgx.Batch, e store.ChangeEntry, link changeLink, rows []byte) error {
	var rowsMAC []byte
	if rows != nil {
		rowsMAC = link.key.MAC(chain.ChangeRows(e.Tenant, e.Revision, rows))
	}
	b.Queue(`INSERT INTO change_log (tenant_id, revision, at, actor, reason, action, target, before, after, hash, credential, key_id, rows, rows_mac, related)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)`,
		e.Tenant, e.Revision, e.Time, e.Actor, e.Reason, e.Action, e.Target, jsonText(e.Before), jsonText(e.After), link.hash, e.Credential, link.key.ID,
		jsonText(rows), rowsMAC, e.Related)
	payload, err := json.Marshal(Notification{Tenant: e.Tenant, Revision: e.Revision, Origin: s.origin})
	if err != nil {
		return fmt.Errorf("encode notification: %w", err)
	}
	b.Queue("SELECT pg_notify($1, $2)", NotifyChannel, string(payload))
	return nil
}

// jsonText passes JSON as text, NULL for nil. Passed as []byte, JSON
// would travel as bytea under the simple protocol and exec mode that
// connection poolers such as PgBouncer need, and be refused.
func jsonText(b []byte) any {
	if b == nil {
		return nil
	}
	return string(b)
}

// sendBatch runs the queued statements of a write to tenant.
func sendBatch(ctx context.Context, tx pgx.Tx, b *pgx.Batch, tenant string) error {
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write tenant %q: %w", tenant, err)
	}
	return nil
}

// normalizeRows rounds the times of the grants and record shares d names
// down to what the database keeps.
func normalizeRows(st *model.TenantState, d model.Delta) {
	for _, k := range d.Grants {
		if g, ok := st.Grants[k]; ok {
			g.ExpiresAt, g.GrantedAt = dbTime(g.ExpiresAt), dbTime(g.GrantedAt)
			st.Grants[k] = g
		}
	}
	for _, k := range d.RecordShares {
		if sh, ok := st.RecordShares[k]; ok {
			sh.ExpiresAt, sh.SharedAt = dbTime(sh.ExpiresAt), dbTime(sh.SharedAt)
			st.RecordShares[k] = sh
		}
	}
}

// normalize rounds the grant and record share times of st down to what the
// database keeps.
func normalize(st *model.TenantState) {
	for k, g := range st.Grants {
		g.ExpiresAt, g.GrantedAt = dbTime(g.ExpiresAt), dbTime(g.GrantedAt)
		st.Grants[k] = g
	}
	normalizeOrg(st)
}

// checkKeys verifies that every row of st is filed under its own key; the
// tables know only the row's own identifiers.
func checkKeys(st *model.TenantState) error {
	for id, r := range st.Roles {
		if id != r.ID {
			return fmt.Errorf("tenant %q: role %q is filed under %q", st.ID, r.ID, id)
		}
	}
	for k, g := range st.Grants {
		if k.UserID != g.UserID || k.RoleID != g.RoleID {
			return fmt.Errorf("tenant %q: grant of %q to %q is filed under %q/%q", st.ID, g.RoleID, g.UserID, k.RoleID, k.UserID)
		}
	}
	for id, r := range st.AccessRequests {
		if id != r.ID {
			return fmt.Errorf("tenant %q: access request %q is filed under %q", st.ID, r.ID, id)
		}
	}
	for id, r := range st.AccessReviews {
		if id != r.ID {
			return fmt.Errorf("tenant %q: access review %q is filed under %q", st.ID, r.ID, id)
		}
	}
	for k, it := range st.ReviewItems {
		if k != it.Key() {
			return fmt.Errorf("tenant %q: an item of access review %q is filed under another key", st.ID, it.Review)
		}
	}
	return checkOrgKeys(st)
}

func sameGrant(a, b model.Grant) bool {
	return a.UserID == b.UserID && a.RoleID == b.RoleID && a.GrantedBy == b.GrantedBy &&
		a.ExpiresAt.Equal(b.ExpiresAt) && a.GrantedAt.Equal(b.GrantedAt)
}

// dbTime returns t in UTC at microsecond precision; the zero time stays zero.
func dbTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return t.UTC().Truncate(time.Microsecond)
}

// nullTime turns the zero time into SQL NULL.
func nullTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t
}

// tracer starts the store's spans from the global provider
// (internal/tracing); a no-op while tracing is off.
var tracer = otel.Tracer("github.com/crmauthz/crmauthz/internal/store/postgres")

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// aliasesJSON is the action_aliases column of settings: a JSON object,
// empty when the tenant has none.
func aliasesJSON(s model.Settings) string {
	if len(s.ActionAliases) == 0 {
		return "{}"
	}
	b, err := json.Marshal(s.ActionAliases)
	if err != nil { // a map of strings always encodes
		panic(err)
	}
	return string(b)
}
