package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// tenantInfoQuery selects tenants with their sizes; callers add the WHERE.
const tenantInfoQuery = `SELECT t.id, t.name, t.revision, t.created_at, t.deleted_at,
	(SELECT count(*) FROM roles r WHERE r.tenant_id = t.id),
	(SELECT count(*) FROM users u WHERE u.tenant_id = t.id),
	(SELECT count(*) FROM grants g WHERE g.tenant_id = t.id)
	FROM tenants t `

func scanTenantInfo(row pgx.CollectableRow) (store.TenantInfo, error) {
	var (
		t       store.TenantInfo
		deleted *time.Time
	)
	err := row.Scan(&t.ID, &t.Name, &t.Revision, &t.CreatedAt, &deleted, &t.Roles, &t.Users, &t.Grants)
	t.CreatedAt = t.CreatedAt.UTC()
	if deleted != nil {
		t.DeletedAt = deleted.UTC()
	}
	return t, err
}

// Tenants implements store.Store.
func (s *Store) Tenants(ctx context.Context, after string, limit int, includeDeleted bool) ([]store.TenantInfo, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, tenantInfoQuery+"WHERE t.id > $1 AND ($2 OR t.deleted_at IS NULL) ORDER BY t.id LIMIT $3",
		after, includeDeleted, limit)
	ts, err := pgx.CollectRows(rows, scanTenantInfo)
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list tenants: %w", err))
	}
	return ts, nil
}

// TenantInfo implements store.Store.
func (s *Store) TenantInfo(ctx context.Context, id string) (store.TenantInfo, error) {
	if s.closed.Load() {
		return store.TenantInfo{}, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, tenantInfoQuery+"WHERE t.id = $1", id)
	t, err := pgx.CollectExactlyOneRow(rows, scanTenantInfo)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.TenantInfo{}, model.TenantNotFound(id)
	}
	if err != nil {
		return store.TenantInfo{}, pgerr.Wrap(fmt.Errorf("read tenant %q: %w", id, err))
	}
	return t, nil
}

// DeleteTenant implements store.Store. In one transaction, under the
// tenant's lock, it removes the tenant's rows but its change log, appends
// the deletion to the change log, marks the tenant deleted at the next
// revision and notifies NotifyChannel.
func (s *Store) DeleteTenant(ctx context.Context, w store.Write) (int64, error) {
	if s.closed.Load() {
		return 0, store.ErrClosed
	}
	var rev int64
	err := inTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		cur, err := loadTenant(ctx, tx, w.Tenant, true)
		if err != nil {
			return err
		}
		rev = cur.Revision + 1
		entry, err := store.NewChangeEntry(w, rev, s.clock(), model.Change{Action: "tenant.delete", Target: "tenant/" + cur.ID, Before: store.TenantSummary(cur)})
		if err != nil {
			return err
		}
		link, err := s.linkNext(ctx, tx, cur, entry)
		if err != nil {
			return err
		}
		b := &pgx.Batch{}
		// Rows that reference others go first.
		for _, table := range []string{"review_items", "access_reviews", "access_requests", "grants", "record_shares", "sharing_rules", "memberships", "users", "roles", "departments"} {
			b.Queue("DELETE FROM "+table+" WHERE tenant_id = $1", cur.ID)
		}
		b.Queue("UPDATE tenants SET revision = $2, deleted_at = $3, head_key = $4, head_mac = $5 WHERE id = $1",
			cur.ID, rev, entry.Time, link.key.ID, link.headMAC)
		if err := s.queueChange(b, entry, link, nil); err != nil {
			return err
		}
		return sendBatch(ctx, tx, b, cur.ID)
	})
	if err != nil {
		return 0, pgerr.Wrap(err)
	}
	s.cache.forget(w.Tenant)
	return rev, nil
}

// Revisions implements store.Store.
func (s *Store) Revisions(ctx context.Context) (map[string]int64, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, "SELECT id, revision FROM tenants WHERE deleted_at IS NULL")
	out := map[string]int64{}
	var (
		id  string
		rev int64
	)
	_, err := pgx.ForEachRow(rows, []any{&id, &rev}, func() error {
		out[id] = rev
		return nil
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read tenant revisions: %w", err))
	}
	return out, nil
}
