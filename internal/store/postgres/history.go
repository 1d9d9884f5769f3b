package postgres

import (
	"context"
	"crypto/hmac"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// A tenant's history is its snapshots (tenant_snapshots) and the rows of
// every change-log entry after them: StateAt replays the latest snapshot
// at or before a revision up to it. Snapshots are written when a tenant is
// created, when a write replaces its whole state, by the first write to a
// tenant that has none (one created before snapshots were kept), and by
// every write whose revision is a multiple of snapshotEvery, so that
// StateAt replays fewer than that many changes however long the history.

// snapshotEvery is how many revisions apart a tenant's snapshots are at
// most: a snapshot is the whole state encoded, so one write in a thousand
// pays for it, and explaining a decision replays at most 999 changes.
const snapshotEvery = 1000

// queueSnapshot queues the snapshot of st at its revision, sealed under
// the active key.
func (s *Store) queueSnapshot(b *pgx.Batch, st *model.TenantState) error {
	rows, err := store.EncodeState(st)
	if err != nil {
		return err
	}
	key := s.keys.Active()
	b.Queue(`INSERT INTO tenant_snapshots (tenant_id, revision, rows, rows_mac, key_id) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (tenant_id, revision) DO NOTHING`,
		st.ID, st.Revision, string(rows), key.MAC(chain.Snapshot(st.ID, st.Revision, rows)), key.ID)
	return nil
}

// ensureSnapshot writes, in tx, the snapshot of st (the tenant's state as
// a write found it) when the tenant has none yet. The caller marks the
// tenant snapshotted once tx commits.
func (s *Store) ensureSnapshot(ctx context.Context, tx pgx.Tx, st *model.TenantState) error {
	if _, ok := s.snapshotted.Load(st.ID); ok {
		return nil
	}
	var has bool
	if err := tx.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenant_snapshots WHERE tenant_id = $1)", st.ID).Scan(&has); err != nil {
		return fmt.Errorf("look for a snapshot of tenant %q: %w", st.ID, err)
	}
	if has {
		s.snapshotted.Store(st.ID, true)
		return nil
	}
	b := &pgx.Batch{}
	if err := s.queueSnapshot(b, st); err != nil {
		return err
	}
	return sendBatch(ctx, tx, b, st.ID)
}

// StateAt implements store.Store.
func (s *Store) StateAt(ctx context.Context, tenant string, revision int64) (*model.TenantState, error) {
	var (
		at         int64
		rows, mac  []byte
		keyID      string
		historyErr = &model.ConflictError{Reason: model.ReasonHistoryUnavailable,
			Message: fmt.Sprintf("tenant %q has no history kept at revision %d: snapshots are kept from the first write after migration 0013 on", tenant, revision)}
	)
	err := s.pool.QueryRow(ctx, `SELECT revision, rows, rows_mac, key_id FROM tenant_snapshots
		WHERE tenant_id = $1 AND revision <= $2 ORDER BY revision DESC LIMIT 1`, tenant, revision).Scan(&at, &rows, &mac, &keyID)
	if errors.Is(err, pgx.ErrNoRows) {
		if _, err := s.TenantInfo(ctx, tenant); err != nil {
			return nil, err
		}
		return nil, historyErr
	}
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read a snapshot of tenant %q: %w", tenant, err))
	}
	altered := func(what string) error {
		return &model.ConflictError{Reason: model.ReasonHistoryAltered,
			Message: fmt.Sprintf("tenant %q: %s does not verify: the history was altered in the database", tenant, what)}
	}
	key, ok := s.keys.Key(keyID)
	if !ok || !hmac.Equal(key.MAC(chain.Snapshot(tenant, at, rows)), mac) {
		return nil, altered(fmt.Sprintf("the snapshot of revision %d", at))
	}
	st, err := store.StateOf(tenant, at, rows)
	if err != nil {
		return nil, err
	}
	if err := s.catchUp(ctx, s.pool, st, revision, nil); err != nil {
		if errors.Is(err, errNoRows) {
			return nil, historyErr
		}
		if errors.Is(err, errAltered) {
			return nil, altered(fmt.Sprintf("a change between revisions %d and %d", at, revision))
		}
		return nil, pgerr.Wrap(err)
	}
	return st, nil
}
