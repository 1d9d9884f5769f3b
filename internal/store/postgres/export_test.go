package postgres

import (
	"context"

	"github.com/jackc/pgx/v5/pgxpool"
)

// MigrateTo applies the migrations up to version, for tests of a migration
// on data written by the schema before it.
func MigrateTo(ctx context.Context, pool *pgxpool.Pool, version int) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		done, _, err := migrateStep(ctx, pool, ms[:version])
		if err != nil || done {
			return err
		}
	}
}

// Reads returns how many times a write read its tenant whole.
func (s *Store) Reads() int64 { return s.reads.Load() }

// SetSnapshotEvery sets how many revisions apart snapshots are written.
func (s *Store) SetSnapshotEvery(n int64) { s.snapshotEvery = n }
