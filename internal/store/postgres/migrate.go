package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"sync"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// The schema's migrations: numbered SQL files applied in order, each once.
// A migration is never edited after release; a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// ErrSchemaNotMigrated reports a database whose schema is missing or older
// than this binary needs.
var ErrSchemaNotMigrated = errors.New("database schema is not migrated")

// ErrSchemaTooNew reports a database migrated by a newer binary than this one.
var ErrSchemaTooNew = errors.New("database schema is newer than this binary")

// migrateLockKey is the pg_advisory_xact_lock key that serialises
// migrations of one database ("crmauthz" in ASCII).
const migrateLockKey int64 = 0x63726d617574687a

type migration struct {
	version int
	name    string
	sql     string
}

var migrationName = regexp.MustCompile(`^([0-9]{4})_[a-z0-9_]+\.sql$`)

// loadMigrations reads the embedded migrations, ordered by version. The
// versions must run 1, 2, 3, ... without gaps.
var loadMigrations = sync.OnceValues(func() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, fmt.Errorf("read migrations: %w", err)
	}
	var ms []migration
	for _, e := range entries {
		m := migrationName.FindStringSubmatch(e.Name())
		if m == nil {
			return nil, fmt.Errorf("migration %q: name must look like 0001_name.sql", e.Name())
		}
		version, _ := strconv.Atoi(m[1])
		sql, err := fs.ReadFile(migrationFiles, "migrations/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("read migration %q: %w", e.Name(), err)
		}
		ms = append(ms, migration{version: version, name: e.Name(), sql: string(sql)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return cmp.Compare(a.version, b.version) })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %q: expected version %d", m.name, i+1)
		}
	}
	return ms, nil
})

// Migrate brings the database's schema to the newest version this binary
// knows, applying each pending migration in its own transaction. It is
// idempotent, and safe when several processes run it at once: each step
// holds a transaction-scoped advisory lock, so one process applies a
// migration while the others wait and then find it applied. It refuses a
// database migrated by a newer binary with ErrSchemaTooNew.
func Migrate(ctx context.Context, pool *pgxpool.Pool) error { return MigrateReport(ctx, pool, nil) }

// MigrateReport is Migrate, calling applied (when set) with the name of
// each migration it applies, in order, once it is committed.
func MigrateReport(ctx context.Context, pool *pgxpool.Pool, applied func(name string)) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	for {
		done, name, err := migrateStep(ctx, pool, ms)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
		if applied != nil {
			applied(name)
		}
	}
}

// migrateStep applies the next pending migration, if any, and reports
// whether the schema is now current.
func migrateStep(ctx context.Context, pool *pgxpool.Pool, ms []migration) (done bool, name string, err error) {
	// Read committed, whatever the server's default: a process that waited
	// for the lock must read the versions the process before it committed.
	err = inTx(ctx, pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrateLockKey); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		const bootstrap = `CREATE TABLE IF NOT EXISTS schema_migrations (
			version    integer PRIMARY KEY,
			applied_at timestamptz NOT NULL DEFAULT now()
		)`
		if _, err := tx.Exec(ctx, bootstrap); err != nil {
			return fmt.Errorf("create schema_migrations: %w", err)
		}
		var current int
		if err := tx.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		if current > len(ms) {
			return tooNew(current, len(ms))
		}
		if current == len(ms) {
			done = true
			return nil
		}
		next := ms[current]
		if _, err := tx.Exec(ctx, next.sql); err != nil {
			return fmt.Errorf("apply migration %s: %w", next.name, err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", next.version); err != nil {
			return fmt.Errorf("record migration %s: %w", next.name, err)
		}
		name = next.name
		return nil
	})
	return done, name, err
}

// CheckSchema verifies that the database's schema is exactly the version
// this binary knows. It returns an error matching ErrSchemaNotMigrated when
// the database is unmigrated or behind, and ErrSchemaTooNew when a newer
// binary migrated it.
func CheckSchema(ctx context.Context, pool *pgxpool.Pool) error {
	ms, err := loadMigrations()
	if err != nil {
		return err
	}
	var exists bool
	if err := pool.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	var current int
	if exists {
		if err := pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&current); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
	}
	switch {
	case current > len(ms):
		return tooNew(current, len(ms))
	case current == 0:
		return fmt.Errorf("%w: the database has no schema yet; run `authzd migrate`", ErrSchemaNotMigrated)
	case current < len(ms):
		return fmt.Errorf("%w: the database is at version %d, this binary needs %d; run `authzd migrate`",
			ErrSchemaNotMigrated, current, len(ms))
	}
	return nil
}

func tooNew(current, known int) error {
	return fmt.Errorf("%w: the database is at version %d, this binary knows versions up to %d; "+
		"run a newer authzd (`authzd migrate` cannot downgrade)", ErrSchemaTooNew, current, known)
}
