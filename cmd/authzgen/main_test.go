package main

import (
	"context"
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func noEnv(string) string { return "" }

// TestGenerateThenResume creates three small tenants, loads them back
// through the store, then runs again for four: the three are skipped, the
// fourth is made with the size overrides.
func TestGenerateThenResume(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	var out, progress strings.Builder
	args := []string{"--database-url", url, "--audit-key-file", pgtest.AuditKeyFile(url), "--tenants", "3", "--size", "small", "--prefix", "t", "--seed", "5"}
	if err := run(ctx, args, noEnv, &out, &progress); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "3 tenants: 3 created, 0 skipped") || !strings.Contains(progress.String(), "3/3 tenants") {
		t.Errorf("output %q, progress %q", out.String(), progress.String())
	}
	st := postgres.New(pgtest.Open(t, url), nil)
	ids, err := st.TenantIDs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"t-0001", "t-0002", "t-0003"}; !slices.Equal(ids, want) {
		t.Fatalf("tenants %v, want %v", ids, want)
	}
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	o := datagen.Small()
	for _, id := range ids {
		ts, err := st.Tenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct {
			what      string
			got, want int
		}{
			{"revision", int(ts.Revision), 1},
			{"users", len(ts.Users), o.Users},
			{"roles", len(ts.Roles), len(b.Templates) + o.Roles},
			{"departments", len(ts.Departments), o.Departments},
			{"memberships", len(ts.Members), o.Users},
			{"grants", len(ts.Grants), o.Grants()},
			{"sharing rules", len(ts.SharingRules), o.SharingRules},
			{"record shares", len(ts.RecordShares), o.Shares},
		} {
			if c.got != c.want {
				t.Errorf("%s: %s %d, want %d", id, c.what, c.got, c.want)
			}
		}
	}

	out.Reset()
	args = []string{"--database-url", url, "--audit-key-file", pgtest.AuditKeyFile(url), "--tenants", "4", "--prefix", "t", "--seed", "5", "--users", "4", "--roles", "0", "--shares", "0"}
	if err := run(ctx, args, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "4 tenants: 1 created, 3 skipped") {
		t.Errorf("second run: %q", out.String())
	}
	for _, id := range []string{"t-0001", "t-0004"} {
		ts, err := st.Tenant(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if ts.Revision != 1 {
			t.Errorf("%s at revision %d after a rerun", id, ts.Revision)
		}
		if id == "t-0004" && (len(ts.Users) != 4 || len(ts.Roles) != len(b.Templates) || len(ts.RecordShares) != 0) {
			t.Errorf("%s: %d users, %d roles, %d shares; want the overrides", id, len(ts.Users), len(ts.Roles), len(ts.RecordShares))
		}
	}
}

func TestRefusals(t *testing.T) {
	unmigrated := pgtest.NewEmptyDatabase(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "--database-url"},
		{[]string{"--database-url", unmigrated}, "authzd migrate"},
		{[]string{"--size", "huge"}, "unknown size"},
		{[]string{"--tenants", "0"}, "--tenants"},
		{[]string{"--prefix", "Gen"}, "--prefix"},
		{[]string{"--users", "-1"}, "users"},
		{[]string{"--grants-per-user", "4"}, "grants per user"},
		{[]string{"extra"}, "unexpected arguments"},
	} {
		err := run(context.Background(), tc.args, noEnv, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: %v, want an error naming %q", tc.args, err, tc.want)
		}
	}
	var usage strings.Builder
	if err := run(context.Background(), []string{"-h"}, noEnv, io.Discard, &usage); err != nil || !strings.Contains(usage.String(), "-tenants") {
		t.Errorf("-h: %v, %q", err, usage.String())
	}
}
