package postgres

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"sync"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// Reading a tenant of 50,000 users takes the database hundreds of
// milliseconds, and a write that reads the whole tenant costs what the
// tenant holds. So the store keeps, per process, the state of every large
// tenant it wrote or followed, at the revision it last saw. A write locks
// the tenant's row, reads the revision, and uses the kept state when it is
// at that revision; a state a few revisions behind (another replica wrote)
// catches up by applying the rows those writes left in the change log,
// each checked against its seal. Small tenants are read per write: they
// read in a few milliseconds, and keeping thousands of them would double
// the memory the engine needs for them.

// cacheMinRows is the size, in rows, from which a tenant's state is kept.
const cacheMinRows = 2000

// catchUpMax is the most revisions a kept state catches up by applying
// rows; further behind, the tenant is read again.
const catchUpMax = 256

// tenantCache holds the kept states, one slot per tenant.
type tenantCache struct {
	mu    sync.Mutex
	slots map[string]*cachedTenant
}

// cachedTenant is one tenant's slot. mu is taken after the tenant's row
// lock (by writers) or without it (by followers), never the other way
// round, and guards st.
type cachedTenant struct {
	id string
	mu sync.Mutex
	st *model.TenantState // nil when not kept
}

func (c *tenantCache) slot(id string) *cachedTenant {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.slots == nil {
		c.slots = map[string]*cachedTenant{}
	}
	t, ok := c.slots[id]
	if !ok {
		t = &cachedTenant{id: id}
		c.slots[id] = t
	}
	return t
}

// keep keeps st as the tenant's state when the tenant is large; its slot's
// lock is held.
func (c *tenantCache) keep(id string, st *model.TenantState) {
	t := c.slot(id)
	if size(st) >= cacheMinRows {
		t.st = st
	} else {
		t.st = nil
	}
}

// forget drops a tenant's slot (a deleted tenant).
func (c *tenantCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.slots, id)
}

func size(st *model.TenantState) int {
	return len(st.Roles) + len(st.Grants) + len(st.Users) + len(st.Departments) + len(st.Members) + len(st.SharingRules) + len(st.RecordShares)
}

// current returns the tenant's state at revision rev, which tx has locked:
// the kept state, caught up if it is behind (calling applied after each
// revision it applies, so that the engine follows as deltas too), or the
// tenant read in tx. c's lock is held.
func (s *Store) current(ctx context.Context, tx pgx.Tx, c *cachedTenant, rev int64, applied func(*model.TenantState, model.Delta) error) (*model.TenantState, error) {
	if st := c.st; st != nil && st.Revision <= rev && rev-st.Revision <= catchUpMax {
		if err := s.catchUp(ctx, tx, st, rev, applied); err == nil {
			return st, nil
		}
		c.st = nil
	}
	s.reads.Add(1)
	return loadTenant(ctx, tx, c.id, false)
}

// catchUp brings st from its revision to rev by applying the rows of the
// change-log entries between, calling applied (when set) after each. It
// fails, leaving st unusable, when an entry carries no rows (a restore) or
// its rows do not verify.
func (s *Store) catchUp(ctx context.Context, q querier, st *model.TenantState, rev int64, applied func(*model.TenantState, model.Delta) error) error {
	if st.Revision == rev {
		return nil
	}
	rows, _ := q.Query(ctx, `SELECT revision, rows, rows_mac, key_id FROM change_log
		WHERE tenant_id = $1 AND revision > $2 AND revision <= $3 ORDER BY revision`, st.ID, st.Revision, rev)
	type entry struct {
		revision int64
		rows     []byte
		mac      []byte
		keyID    string
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.revision, &e.rows, &e.mac, &e.keyID)
		return e, err
	})
	if err != nil {
		return fmt.Errorf("read the changes of tenant %q: %w", st.ID, err)
	}
	for _, e := range entries {
		if e.revision != st.Revision+1 {
			return fmt.Errorf("tenant %q: change log jumps from revision %d to %d", st.ID, st.Revision, e.revision)
		}
		if e.rows == nil {
			return errNoRows
		}
		key, ok := s.keys.Key(e.keyID)
		if !ok || !hmac.Equal(key.MAC(chain.ChangeRows(st.ID, e.revision, e.rows)), e.mac) {
			return fmt.Errorf("tenant %q: the rows of revision %d: %w", st.ID, e.revision, errAltered)
		}
		d, err := store.ApplyRows(st, e.rows)
		if err != nil {
			return err
		}
		st.Revision = e.revision
		if applied != nil {
			if err := applied(st, d); err != nil {
				return err
			}
		}
	}
	if st.Revision != rev {
		return fmt.Errorf("tenant %q: change log ends at revision %d, want %d", st.ID, st.Revision, rev)
	}
	return nil
}

// errNoRows is a change-log entry without rows: the tenant must be read.
var errNoRows = errors.New("change without rows")

// errAltered is sealed rows whose seal does not verify: edited in the
// database.
var errAltered = errors.New("the seal does not verify: they were altered in the database")

// querier is what catchUp reads with: a transaction or the pool.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// CatchUp brings this process's state of a tenant to its latest committed
// revision and returns that revision: a kept state by applying the rows of
// the writes since (calling applied after each, in revision order), any
// other by reading the tenant (calling applied once, with a delta of the
// whole state). A replica's follower calls it on a peer's write. A deleted
// or unknown tenant is a *model.NotFoundError.
func (s *Store) CatchUp(ctx context.Context, tenant string, applied func(*model.TenantState, model.Delta) error) (int64, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	c := s.cache.slot(tenant)
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.st; st != nil {
		rev, err := s.revision(ctx, tenant)
		if err != nil {
			c.st = nil
			return 0, err
		}
		if st.Revision <= rev && rev-st.Revision <= catchUpMax {
			err = s.catchUp(ctx, s.pool, st, rev, applied)
			if err == nil {
				return rev, nil
			}
			if !errors.Is(err, errNoRows) && ctx.Err() != nil {
				c.st = nil
				return 0, pgerr.Wrap(err)
			}
		}
		c.st = nil
	}
	// Not kept, or not to be caught up: read the tenant.
	st, err := s.Tenant(ctx, tenant)
	if err != nil {
		return 0, err
	}
	s.cache.keep(tenant, st)
	if err := applied(st, model.Delta{Whole: true}); err != nil {
		return st.Revision, err
	}
	return st.Revision, nil
}

// Keep offers the store a tenant's state just read (at start-up), which it
// keeps when the tenant is large, so that the tenant's first write or
// follow needs no read. The caller must not change st afterwards.
func (s *Store) Keep(st *model.TenantState) {
	c := s.cache.slot(st.ID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.st == nil || c.st.Revision < st.Revision {
		s.cache.keep(st.ID, st)
	}
}

// revision returns a tenant's revision, or a *model.NotFoundError for a
// deleted or unknown tenant.
func (s *Store) revision(ctx context.Context, tenant string) (int64, error) {
	var rev int64
	err := s.pool.QueryRow(ctx, "SELECT revision FROM tenants WHERE id = $1 AND deleted_at IS NULL", tenant).Scan(&rev)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, model.TenantNotFound(tenant)
	}
	if err != nil {
		return 0, pgerr.Wrap(fmt.Errorf("read the revision of tenant %q: %w", tenant, err))
	}
	return rev, nil
}
