package pgtest

import (
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

func TestWithDatabase(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/postgres", "postgres://postgres@127.0.0.1:5432/db1"},
		{"postgresql://u:p%40ss@h/postgres?sslmode=disable", "postgresql://u:p%40ss@h/db1?sslmode=disable"},
		{"postgres://h:5433", "postgres://h:5433/db1"},
		{"host=h user=u dbname=postgres", "host=h user=u dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		if got := withDatabase(tt.in, "db1"); got != tt.want {
			t.Errorf("withDatabase(%q) = %q, want %q", tt.in, got, tt.want)
		}
		cfg, err := pgconn.ParseConfig(tt.want)
		if err != nil {
			t.Errorf("parse %q: %v", tt.want, err)
		} else if cfg.Database != "db1" {
			t.Errorf("%q names database %q, want db1", tt.want, cfg.Database)
		}
	}
}
