package pgtest_test

import (
	"errors"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

func TestNewDatabase(t *testing.T) {
	var names [2]string
	for i := range names {
		t.Run("database", func(t *testing.T) {
			pool := pgtest.NewPool(t)
			if err := postgres.CheckSchema(t.Context(), pool); err != nil {
				t.Errorf("CheckSchema of a new database: %v", err)
			}
			var tenants int
			if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM tenants").Scan(&tenants); err != nil || tenants != 0 {
				t.Errorf("a new database holds %d tenants (%v), want none", tenants, err)
			}
			// A write here must not reach the next test's database.
			if _, err := pool.Exec(t.Context(), "INSERT INTO tenants (id, name, revision, created_at) VALUES ('acme', '', 1, now())"); err != nil {
				t.Fatalf("insert: %v", err)
			}
			if err := pool.QueryRow(t.Context(), "SELECT current_database()").Scan(&names[i]); err != nil {
				t.Fatalf("current_database: %v", err)
			}
		})
	}
	if names[0] == names[1] {
		t.Errorf("two tests shared database %q", names[0])
	}

	// The databases of finished tests are gone.
	pool := pgtest.NewPool(t)
	var left int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_database WHERE datname = ANY($1)", names[:]).Scan(&left); err != nil {
		t.Fatalf("list databases: %v", err)
	}
	if left != 0 {
		t.Errorf("%d databases of finished tests remain", left)
	}
}

func TestNewEmptyDatabase(t *testing.T) {
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	if err := postgres.CheckSchema(t.Context(), pool); !errors.Is(err, postgres.ErrSchemaNotMigrated) {
		t.Errorf("CheckSchema of an empty database = %v, want ErrSchemaNotMigrated", err)
	}
	var tables int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_tables WHERE schemaname = 'public'").Scan(&tables); err != nil || tables != 0 {
		t.Errorf("an empty database holds %d tables (%v), want none", tables, err)
	}
}

// TestCluster stops a cluster of the test's own and starts it again: while
// it is stopped connections are refused; started, it answers on the same
// URL with the data written before.
func TestCluster(t *testing.T) {
	c := pgtest.NewCluster(t)
	url := c.NewDatabase(t)
	pool := pgtest.Open(t, url)
	if err := postgres.CheckSchema(t.Context(), pool); err != nil {
		t.Fatalf("CheckSchema of a cluster's new database: %v", err)
	}
	if _, err := pool.Exec(t.Context(), "INSERT INTO tenants (id, name, revision, created_at) VALUES ('acme', '', 1, now())"); err != nil {
		t.Fatalf("insert: %v", err)
	}

	c.Stop(t)
	// The pool's connection was cut by the stop; a new one is refused.
	if _, err := pool.Exec(t.Context(), "SELECT 1"); !pgerr.Unavailable(err) {
		t.Errorf("a query on a connection cut by the stop: %v; want the database unavailable", err)
	}
	var connectErr *pgconn.ConnectError
	if _, err := pool.Exec(t.Context(), "SELECT 1"); !errors.As(err, &connectErr) {
		t.Errorf("a query to the stopped cluster: %v; want a refused connection", err)
	}

	c.Start(t)
	var tenants int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM tenants").Scan(&tenants); err != nil || tenants != 1 {
		t.Errorf("after the restart the database holds %d tenants (%v), want the one written before", tenants, err)
	}
	if other := c.NewDatabase(t); other == url {
		t.Errorf("two databases of the cluster share the URL %s", url)
	}
}
