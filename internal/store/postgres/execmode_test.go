package postgres_test

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	"github.com/crmauthz/crmauthz/internal/store/storetest"
)

// TestConformanceQueryExecModes runs the conformance suite with the query
// modes connection poolers such as PgBouncer in transaction mode need.
func TestConformanceQueryExecModes(t *testing.T) {
	for name, mode := range map[string]pgx.QueryExecMode{"exec": pgx.QueryExecModeExec, "simple_protocol": pgx.QueryExecModeSimpleProtocol} {
		t.Run(name, func(t *testing.T) {
			storetest.Run(t, func(t *testing.T) store.Store {
				cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
				if err != nil {
					t.Fatal(err)
				}
				cfg.MaxConns = 4
				cfg.ConnConfig.DefaultQueryExecMode = mode
				pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(pool.Close)
				s := postgres.New(pool, nil)
				t.Cleanup(s.Close)
				return s
			})
		})
	}
}
