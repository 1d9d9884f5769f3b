// Package pgtest gives each test its own fresh PostgreSQL database, migrated
// to the current schema, on a real server.
//
// The server is, in order of preference:
//
//   - the one at AUTHZ_TEST_DATABASE_URL, when set (a postgres:// URL or a
//     keyword/value string naming a maintenance database such as
//     "postgres"; its user must be allowed to create databases);
//   - the local one at postgres://postgres@127.0.0.1:5432/postgres, when it
//     answers;
//   - a throwaway cluster that pgtest starts with initdb and pg_ctl (found
//     on PATH, or else in Debian's /usr/lib/postgresql/<version>/bin) in a temporary directory, on a free port on 127.0.0.1 only,
//     with trust authentication and fsync off. When the tests run as root,
//     initdb and pg_ctl run as the "postgres" OS user through runuser,
//     because initdb refuses to run as root.
//
// AUTHZ_TEST_PG=throwaway skips the local probe and always starts a
// throwaway cluster (CI uses it to prove that path works).
//
// Once per test process, pgtest creates a template database and migrates
// it; each NewDatabase is a copy of it (CREATE DATABASE ... TEMPLATE),
// dropped when the test ends. A package whose tests use pgtest calls Main
// from its TestMain, which drops the template, stops a throwaway cluster and
// checks for leaked goroutines:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
// A test that stops PostgreSQL, to see what the code does while its
// database is away, uses a cluster of its own (NewCluster), never the
// shared server: Cluster.Stop and Cluster.Start stop it and start it again
// with its data, on the same port.
//
// A test binary killed before Main returns (a -timeout panic, a signal)
// leaves its template database behind, and its throwaway cluster running
// in a crmauthz-pg-* temporary directory.
package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/goleak"

	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

// Environment variables that choose the server.
const (
	// EnvDatabaseURL names the server to use instead of the local one.
	EnvDatabaseURL = "AUTHZ_TEST_DATABASE_URL"
	// EnvMode set to "throwaway" skips the local server and starts a
	// throwaway cluster.
	EnvMode = "AUTHZ_TEST_PG"
)

// localURL is the local server tried when EnvDatabaseURL is unset.
const localURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=2"

// adminTimeout bounds each administrative statement (create, drop).
const adminTimeout = time.Minute

// server is the PostgreSQL server of this test process.
type server struct {
	url      string   // the maintenance database
	kind     string   // where it came from, for the log
	cluster  *cluster // the throwaway cluster, when pgtest started one
	prefix   string   // unique per process: names this process's databases
	template string   // the migrated template database
	count    atomic.Int64
	admin    *pgxpool.Pool // on the maintenance database
}

var (
	setupOnce sync.Once
	srv       *server
	errSetup  error
	logged    atomic.Bool
)

// NewDatabase creates a fresh database holding the current schema and no
// data, dropped when t ends, and returns its connection string.
func NewDatabase(t testing.TB) string {
	t.Helper()
	s := get(t)
	return s.create(t, s.template)
}

// NewEmptyDatabase creates a fresh database without any schema (not even
// schema_migrations), dropped when t ends, and returns its connection
// string.
func NewEmptyDatabase(t testing.TB) string {
	t.Helper()
	return get(t).create(t, "template0")
}

// NewPool opens a pool on a fresh migrated database (NewDatabase). The pool
// is closed, then the database dropped, when t ends.
func NewPool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	return Open(t, NewDatabase(t))
}

// Open opens a pool on the database at url, closed when t ends.
func Open(t testing.TB, url string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	// Test processes share one server; a few connections per pool suffice.
	cfg.MaxConns = 4
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("pgtest: open pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// Main runs the tests of a package that uses pgtest: after m.Run it drops
// the template database, stops the throwaway cluster if pgtest started
// one, checks that the tests leaked no goroutines (goleak, with opts), and
// exits with the tests' status.
//
// The tests' servers keep their audit keys in a directory of the run's own,
// removed at the end: AuditKeyFile names files there, and servers started
// without --audit-key-file find their default under XDG_CONFIG_HOME, which
// Main points there, never in the user's own configuration.
func Main(m *testing.M, opts ...goleak.Option) {
	dir, err := os.MkdirTemp("", "crmauthz-test-config-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		os.Exit(1)
	}
	keyDir = dir
	if err := os.Setenv("XDG_CONFIG_HOME", dir); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		os.Exit(1)
	}
	code := m.Run()
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
	}
	if err := shutdown(); err != nil {
		fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
		code = max(code, 1)
	}
	if code == 0 {
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// get returns the process's server, setting it up on first use; it fails t
// when there is none.
func get(t testing.TB) *server {
	t.Helper()
	setupOnce.Do(func() { srv, errSetup = setup() })
	if errSetup != nil {
		t.Fatalf("pgtest: no PostgreSQL server: %v", errSetup)
	}
	if !logged.Swap(true) {
		t.Logf("pgtest: using %s", srv.kind)
	}
	return srv
}

// setup picks the server, connects to it and builds the migrated template.
func setup() (*server, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*adminTimeout)
	defer cancel()
	s := &server{prefix: "crmauthz_test_" + uniqueSuffix()}
	s.template = s.prefix + "_template"
	switch {
	case os.Getenv(EnvDatabaseURL) != "":
		s.url, s.kind = os.Getenv(EnvDatabaseURL), "the server at "+EnvDatabaseURL
	case os.Getenv(EnvMode) != "throwaway" && answers(ctx, localURL):
		s.url, s.kind = localURL, "the local server on 127.0.0.1:5432"
	default:
		c, url, err := startCluster()
		if err != nil {
			return nil, fmt.Errorf("start a throwaway cluster: %w", err)
		}
		s.url, s.kind, s.cluster = url, "a throwaway cluster in "+c.dir, c
	}
	admin, err := connectAdmin(ctx, s.url)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("connect to %s: %w", s.kind, err), s.cluster.stop())
	}
	s.admin = admin
	if err := s.buildTemplate(ctx); err != nil {
		return nil, errors.Join(err, s.close())
	}
	return s, nil
}

// buildTemplate creates the template database and migrates it.
func (s *server) buildTemplate(ctx context.Context) error {
	return s.createMigrated(ctx, s.template)
}

// createMigrated creates database name and migrates it. The pool used to
// migrate is closed when it returns: PostgreSQL copies only a database
// nobody is connected to.
func (s *server) createMigrated(ctx context.Context, name string) error {
	if err := s.exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE template0"); err != nil {
		return err
	}
	pool, err := pgxpool.New(ctx, withDatabase(s.url, name))
	if err != nil {
		return fmt.Errorf("open database %s: %w", name, err)
	}
	defer pool.Close()
	if err := postgres.Migrate(ctx, pool); err != nil {
		return fmt.Errorf("migrate database %s: %w", name, err)
	}
	return nil
}

// nextName names a new database of this process.
func (s *server) nextName() string {
	return fmt.Sprintf("%s_%d", s.prefix, s.count.Add(1))
}

// create makes a new database copied from template, dropped when t ends.
func (s *server) create(t testing.TB, template string) string {
	t.Helper()
	name := s.nextName()
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	if err := s.exec(ctx, "CREATE DATABASE "+ident(name)+" TEMPLATE "+ident(template)); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
		defer cancel()
		if err := s.drop(ctx, name); err != nil {
			t.Errorf("pgtest: %v", err)
		}
	})
	return withDatabase(s.url, name)
}

// drop drops a database, disconnecting whoever is still connected to it.
func (s *server) drop(ctx context.Context, name string) error {
	return s.exec(ctx, "DROP DATABASE IF EXISTS "+ident(name)+" WITH (FORCE)")
}

// connectAdmin opens the pool of administrative connections. Creating and
// dropping databases waits for the disk, so tests running in parallel do it
// on several connections at once.
func connectAdmin(ctx context.Context, url string) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// exec runs one administrative statement on the maintenance database.
func (s *server) exec(ctx context.Context, sql string) error {
	if _, err := s.admin.Exec(ctx, sql); err != nil {
		return fmt.Errorf("%s: %w", sql, err)
	}
	return nil
}

// close drops the template, disconnects, and stops the throwaway cluster.
func (s *server) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), adminTimeout)
	defer cancel()
	err := s.drop(ctx, s.template)
	s.admin.Close()
	return errors.Join(err, s.cluster.stop())
}

// shutdown releases the server of this process, if it was set up.
func shutdown() error {
	if srv == nil {
		return nil
	}
	return srv.close()
}

// answers reports whether a PostgreSQL server accepts connections at url.
func answers(ctx context.Context, url string) bool {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return false
	}
	defer func() { _ = conn.Close(ctx) }()
	return conn.Ping(ctx) == nil
}

// withDatabase returns connection string connString naming database name
// instead of its own.
func withDatabase(connString, name string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		u, err := url.Parse(connString)
		if err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	// In a keyword/value string the last setting of a keyword wins.
	return connString + " dbname=" + name
}

// ident quotes a database name for SQL.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// uniqueSuffix names this process's databases apart from those of test
// processes running beside it on the same server.
func uniqueSuffix() string {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%d_%s", os.Getpid(), hex.EncodeToString(b))
}
