package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	"github.com/crmauthz/crmauthz/internal/store/storetest"
)

func TestMain(m *testing.M) {
	pgtest.Main(m)
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := postgres.New(pgtest.NewPool(t), nil)
		t.Cleanup(s.Close)
		return s
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		copies int // processes migrating at once
		rounds int // migrations each runs, one after the other
	}{
		{"once", 1, 1},
		{"idempotent", 1, 3},
		{"concurrent", 4, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.NewEmptyDatabase(t)
			var wg sync.WaitGroup
			for range tt.copies {
				// Each copy has its own pool, as separate processes would.
				pool := pgtest.Open(t, url)
				wg.Go(func() {
					for range tt.rounds {
						if err := postgres.Migrate(t.Context(), pool); err != nil {
							t.Errorf("Migrate: %v", err)
						}
					}
				})
			}
			wg.Wait()
			pool := pgtest.Open(t, url)
			if err := postgres.CheckSchema(t.Context(), pool); err != nil {
				t.Errorf("CheckSchema after Migrate: %v", err)
			}
			rows, _ := pool.Query(t.Context(), "SELECT version FROM schema_migrations ORDER BY version")
			versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
			if err != nil {
				t.Fatalf("read schema_migrations: %v", err)
			}
			for i, v := range versions {
				if v != int32(i+1) {
					t.Fatalf("schema_migrations holds versions %v, want 1, 2, 3, ...", versions)
				}
			}
			if len(versions) == 0 {
				t.Fatal("schema_migrations is empty")
			}
		})
	}
}

func TestCheckSchema(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		migrated bool   // start from a migrated database
		setup    string // SQL run before the check
		want     error
	}{
		{name: "unmigrated", want: postgres.ErrSchemaNotMigrated},
		{name: "empty version table", setup: "CREATE TABLE schema_migrations (version integer PRIMARY KEY)", want: postgres.ErrSchemaNotMigrated},
		{name: "behind", migrated: true, setup: "DELETE FROM schema_migrations WHERE version = (SELECT max(version) FROM schema_migrations)", want: postgres.ErrSchemaNotMigrated},
		{name: "current", migrated: true},
		{name: "newer", migrated: true, setup: "INSERT INTO schema_migrations (version) SELECT max(version) + 1 FROM schema_migrations", want: postgres.ErrSchemaTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var pool *pgxpool.Pool
			if tt.migrated {
				pool = pgtest.NewPool(t)
			} else {
				pool = pgtest.Open(t, pgtest.NewEmptyDatabase(t))
			}
			if tt.setup != "" {
				if _, err := pool.Exec(t.Context(), tt.setup); err != nil {
					t.Fatalf("setup: %v", err)
				}
			}
			err := postgres.CheckSchema(t.Context(), pool)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("CheckSchema = %v, want %v", err, tt.want)
			}
			if err != nil && !strings.Contains(err.Error(), "authzd migrate") {
				t.Errorf("CheckSchema error %q does not say to run `authzd migrate`", err)
			}
			if errors.Is(tt.want, postgres.ErrSchemaTooNew) {
				if err := postgres.Migrate(t.Context(), pool); !errors.Is(err, postgres.ErrSchemaTooNew) {
					t.Errorf("Migrate on a newer schema = %v, want ErrSchemaTooNew", err)
				}
			}
		})
	}
}

// TestWriteFailures breaks writes in the middle of their transaction and
// checks that nothing of them is visible afterwards, and that the store
// keeps working.
func TestWriteFailures(t *testing.T) {
	t.Parallel()
	long := func(n int) string { return strings.Repeat("x", n) }
	// raw returns a mutation that puts r into the state without the model's
	// checks, as a buggy caller could.
	rawRole := func(r model.Role) store.Mutation {
		return func(st *model.TenantState) (model.Change, error) {
			model.SetRow(st, st.Roles, r.ID, &r)
			return model.Change{Action: "role.create", Target: "role/x", After: r}, nil
		}
	}
	rawGrant := func(g model.Grant) store.Mutation {
		return func(st *model.TenantState) (model.Change, error) {
			model.SetRow(st, st.Grants, model.GrantKey{UserID: g.UserID, RoleID: g.RoleID}, &g)
			return model.Change{Action: "grant.create", Target: "grant/x", After: g}, nil
		}
	}
	raw := func(action string, apply func(st *model.TenantState)) store.Mutation {
		return func(st *model.TenantState) (model.Change, error) {
			apply(st)
			return model.Change{Action: action, Target: "x"}, nil
		}
	}
	rawDept := func(d model.Department) store.Mutation {
		return raw("department.create", func(st *model.TenantState) { model.SetRow(st, st.Departments, d.ID, &d) })
	}
	rawMember := func(m model.Membership) store.Mutation {
		return raw("membership.create", func(st *model.TenantState) { model.SetRow(st, st.Members, m.UserID, &m) })
	}
	rawShare := func(sh model.RecordShare) store.Mutation {
		return raw("record_share.create", func(st *model.TenantState) { model.SetRow(st, st.RecordShares, sh.Key(), &sh) })
	}
	const checkViolation, fkViolation = "23514", "23503"
	tests := []struct {
		name   string
		reason string
		fn     func(f *failure) store.Mutation
		check  func(t *testing.T, err error)
	}{
		{name: "context cancelled", fn: func(f *failure) store.Mutation {
			return func(st *model.TenantState) (model.Change, error) {
				f.cancel()
				return st.GrantRole(model.Grant{UserID: "carol", RoleID: "viewer"}, time.Now())
			}
		}, check: wantErrorIs(context.Canceled)},
		{name: "connection killed", fn: func(f *failure) store.Mutation {
			return func(st *model.TenantState) (model.Change, error) {
				f.killTransaction()
				return st.GrantRole(model.Grant{UserID: "carol", RoleID: "viewer"}, time.Now())
			}
		}, check: func(t *testing.T, err error) {
			if err == nil {
				t.Error("Update on a killed connection succeeded")
			}
		}},
		{name: "role id too long", fn: constant(rawRole(model.Role{ID: long(65)})), check: wantSQLState(checkViolation)},
		{name: "display name too long", fn: constant(rawRole(model.Role{ID: "r", DisplayName: long(257)})), check: wantSQLState(checkViolation)},
		{name: "too many inherits", fn: constant(rawRole(model.Role{ID: "r", Inherits: slices.Repeat([]string{"viewer"}, 17)})), check: wantSQLState(checkViolation)},
		{name: "user id too long", fn: constant(rawGrant(model.Grant{UserID: long(129), RoleID: "viewer"})), check: wantSQLState(checkViolation)},
		{name: "grant of a missing role", fn: constant(rawGrant(model.Grant{UserID: "carol", RoleID: "ghost"})), check: wantSQLState(fkViolation)},
		{name: "reason too long", reason: long(1025), fn: constant(rawGrant(model.Grant{UserID: "carol", RoleID: "viewer"})), check: wantSQLState(checkViolation)},
		{name: "department name too long", fn: constant(rawDept(model.Department{ID: "d", Name: long(257)})), check: wantSQLState(checkViolation)},
		{name: "department of a missing parent", fn: constant(rawDept(model.Department{ID: "d", Name: "D", Parent: "ghost"})), check: wantSQLState(fkViolation)},
		{name: "membership of a missing department", fn: constant(rawMember(model.Membership{UserID: "carol", Primary: "ghost"})), check: wantSQLState(fkViolation)},
		{name: "own manager", fn: constant(rawMember(model.Membership{UserID: "carol", Primary: "sales", Manager: "carol"})), check: wantSQLState(checkViolation)},
		{name: "too many other departments", fn: constant(rawMember(model.Membership{UserID: "carol", Primary: "sales", Others: slices.Repeat([]string{"sales"}, 17)})), check: wantSQLState(checkViolation)},
		{name: "manager depth too big", fn: constant(raw("settings.update", func(st *model.TenantState) { st.Settings.ManagerDepth = 17 })), check: wantSQLState(checkViolation)},
		{name: "share with sub-departments of a role", fn: constant(rawShare(model.RecordShare{
			Module: "lead", RecordID: "L-1", Principal: model.Principal{Kind: model.PrincipalRole, ID: "viewer", IncludeSubs: true}, Access: model.AccessRead,
		})), check: wantSQLState(checkViolation)},
		{name: "share with unknown access", fn: constant(rawShare(model.RecordShare{
			Module: "lead", RecordID: "L-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "alice"}, Access: "owner",
		})), check: wantSQLState(checkViolation)},
		{name: "rule of unknown principal kind", fn: constant(raw("sharing_rule.create", func(st *model.TenantState) {
			model.SetRow(st, st.SharingRules, "r", &model.SharingRule{ID: "r", Module: "lead", OwnedBy: model.Principal{Kind: "group", ID: "g"},
				SharedWith: model.Principal{Kind: model.PrincipalUser, ID: "alice"}, Access: model.AccessRead})
		})), check: wantSQLState(checkViolation)},
		{name: "deleting a department still referenced", fn: constant(raw("department.delete", func(st *model.TenantState) {
			model.SetRow[string, model.Department](st, st.Departments, "sales", nil)
		})), check: wantSQLState(fkViolation)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			url := pgtest.NewDatabase(t)
			s := postgres.New(pgtest.Open(t, url), nil)
			createTenant(t, s, "acme")
			snap := storetest.Snapshot(t, s, "acme")

			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			f := &failure{t: t, url: url, cancel: cancel}
			rev, err := s.Update(ctx, store.Write{Tenant: "acme", Actor: "admin", Reason: tt.reason}, tt.fn(f))
			if rev != 0 {
				t.Errorf("a failed Update returned revision %d", rev)
			}
			tt.check(t, err)
			storetest.AssertUnchanged(t, s, snap)

			// The tenant's lock is free and the pool healthy again.
			grant(t, s, "acme", "dave", "viewer")
			if got := tenant(t, s, "acme").Revision; got != snap.State.Revision+1 {
				t.Errorf("revision after the next write = %d, want %d", got, snap.State.Revision+1)
			}
		})
	}
}

// failure breaks a write from inside its mutation.
type failure struct {
	t      *testing.T
	url    string
	cancel context.CancelFunc
}

// killTransaction terminates, from another connection, the backend that
// holds the write's open transaction, and waits until it is gone.
func (f *failure) killTransaction() {
	t, ctx := f.t, f.t.Context()
	conn, err := pgx.Connect(ctx, f.url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = conn.Close(ctx) }()
	rows, _ := conn.Query(ctx, `SELECT pid FROM pg_stat_activity
		WHERE datname = current_database() AND state = 'idle in transaction' AND pid <> pg_backend_pid()`)
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil || len(pids) != 1 {
		t.Fatalf("find the write's backend: pids %v, err %v", pids, err)
	}
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", pids[0]); err != nil {
		t.Fatalf("terminate backend: %v", err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var alive bool
		if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = $1)", pids[0]).Scan(&alive); err != nil {
			t.Fatalf("watch backend: %v", err)
		}
		if !alive {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still alive", pids[0])
		}
	}
}

func constant(fn store.Mutation) func(*failure) store.Mutation {
	return func(*failure) store.Mutation { return fn }
}

func wantErrorIs(target error) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Errorf("err = %v, want one matching %v", err, target)
		}
	}
}

func wantSQLState(code string) func(t *testing.T, err error) {
	return func(t *testing.T, err error) {
		t.Helper()
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != code {
			t.Errorf("err = %v, want a PostgreSQL error with SQLSTATE %s", err, code)
		}
	}
}

func TestCreateTenantRefusedByDatabase(t *testing.T) {
	t.Parallel()
	s := postgres.New(pgtest.NewPool(t), nil)
	createTenant(t, s, "acme")
	long := strings.Repeat("t", 65)
	_, err := s.CreateTenant(t.Context(), store.Write{Tenant: long, Actor: "admin"}, model.NewTenantState(long, ""))
	wantSQLState("23514")(t, err)
	ids, err := s.TenantIDs(t.Context())
	if err != nil || !slices.Equal(ids, []string{"acme"}) {
		t.Errorf("TenantIDs = %q, %v; want [acme]", ids, err)
	}
}

// TestRestart checks that the state survives the process: a new pool and
// store read what the old ones wrote.
func TestRestart(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	pool := pgtest.Open(t, url)
	s := postgres.New(pool, nil)
	createTenant(t, s, "acme")
	createTenant(t, s, "globex")
	grant(t, s, "acme", "carol", "viewer")
	for _, fn := range []store.Mutation{
		func(st *model.TenantState) (model.Change, error) {
			return st.CreateDepartment(model.Department{ID: "east", Name: "Sales East", Parent: "sales"})
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "carol", Primary: "east", Others: []string{"sales"}, Manager: "alice"})
		},
		func(st *model.TenantState) (model.Change, error) { return st.SetManagerDepth(5) },
		func(st *model.TenantState) (model.Change, error) {
			return st.CreateSharingRule(model.SharingRule{ID: "east_leads", Module: "lead",
				OwnedBy:    model.Principal{Kind: model.PrincipalDepartment, ID: "east", IncludeSubs: true},
				SharedWith: model.Principal{Kind: model.PrincipalUser, ID: "alice"}, Access: model.AccessReadWrite})
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.ShareRecord(model.RecordShare{Module: "lead", RecordID: "L-1", Principal: model.Principal{Kind: model.PrincipalRole, ID: "viewer"},
				Access: model.AccessRead, ExpiresAt: time.Now().Add(time.Hour), SharedBy: "admin", SharedAt: time.Now()}, time.Now())
		},
	} {
		if _, err := s.Update(t.Context(), store.Write{Tenant: "acme", Actor: "admin"}, fn); err != nil {
			t.Fatal(err)
		}
	}
	snaps := []storetest.TenantSnapshot{storetest.Snapshot(t, s, "acme"), storetest.Snapshot(t, s, "globex")}
	s.Close()
	if err := pool.Ping(t.Context()); err != nil {
		t.Errorf("the pool is unusable after the store's Close: %v", err)
	}
	pool.Close()

	s = postgres.New(pgtest.Open(t, url), nil)
	defer s.Close()
	for _, snap := range snaps {
		storetest.AssertUnchanged(t, s, snap)
	}
	ids, err := s.TenantIDs(t.Context())
	if err != nil || !slices.Equal(ids, []string{"acme", "globex"}) {
		t.Errorf("TenantIDs = %q, %v; want [acme globex]", ids, err)
	}
}

// TestNotify checks that each committed write notifies its revision, and a
// failed write nothing.
func TestNotify(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	s := postgres.New(pgtest.Open(t, url), nil)
	listener, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer func() { _ = listener.Close(context.WithoutCancel(t.Context())) }()
	if _, err := listener.Exec(t.Context(), "LISTEN "+postgres.NotifyChannel); err != nil {
		t.Fatalf("listen: %v", err)
	}
	next := func() postgres.Notification {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		n, err := listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("wait for notification: %v", err)
		}
		var got postgres.Notification
		if err := json.Unmarshal([]byte(n.Payload), &got); err != nil || n.Channel != postgres.NotifyChannel {
			t.Fatalf("notification %q on %q: %v", n.Payload, n.Channel, err)
		}
		return got
	}

	createTenant(t, s, "acme")
	if got, want := next(), (postgres.Notification{Tenant: "acme", Revision: 1}); got != want {
		t.Errorf("notification = %+v, want %+v", got, want)
	}
	_, err = s.Update(t.Context(), store.Write{Tenant: "acme"}, func(st *model.TenantState) (model.Change, error) {
		return st.RevokeRole("nobody", "viewer")
	})
	if err == nil {
		t.Fatal("revoking a missing grant succeeded")
	}
	grant(t, s, "acme", "carol", "viewer")
	if got, want := next(), (postgres.Notification{Tenant: "acme", Revision: 2}); got != want {
		t.Errorf("notification = %+v, want %+v (a failed write must not notify)", got, want)
	}
}

// TestConnect checks that Connect opens a working pool whose failed
// queries are logged through zap.
func TestConnect(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	core, logs := observer.New(zapcore.DebugLevel)
	pool, err := postgres.Connect(t.Context(), url, zap.New(core))
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer pool.Close()
	if _, err := pool.Exec(t.Context(), "SELECT 1"); err != nil {
		t.Fatalf("query: %v", err)
	}
	if n := logs.Len(); n != 0 {
		t.Errorf("a successful query logged %d entries at warn level, want none: %v", n, logs.All())
	}
	if _, err := pool.Exec(t.Context(), "SELECT * FROM no_such_table"); err == nil {
		t.Fatal("query of a missing table succeeded")
	}
	entries := logs.FilterLoggerName("pgx").FilterLevelExact(zapcore.ErrorLevel).All()
	if len(entries) != 1 || entries[0].ContextMap()["sql"] != "SELECT * FROM no_such_table" {
		t.Errorf("failed query logged %v, want one error entry from logger pgx with the sql", logs.All())
	}

	if _, err := postgres.Connect(t.Context(), "postgres://127.0.0.1:1/nothing?connect_timeout=2", zap.NewNop()); err == nil {
		t.Error("Connect to a closed port succeeded")
	}
	if _, err := postgres.Connect(t.Context(), "postgres://user:secret@host:notaport/db", zap.NewNop()); err == nil || strings.Contains(err.Error(), "secret") {
		t.Errorf("Connect with a malformed url = %v, want an error without the password", err)
	}
}

func createTenant(t *testing.T, s store.Store, id string) {
	t.Helper()
	st := model.NewTenantState(id, "Tenant "+id)
	viewer := model.Role{ID: "viewer", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}}}}}
	if _, err := st.CreateRole(viewer); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"alice", "carol", "dave"} {
		if _, err := st.UpsertUser(model.User{ID: u}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.GrantRole(model.Grant{UserID: "alice", RoleID: "viewer", ExpiresAt: time.Now().Add(time.Hour)}, time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, fn := range []store.Mutation{
		func(st *model.TenantState) (model.Change, error) {
			return st.CreateDepartment(model.Department{ID: "sales", Name: "Sales"})
		},
		func(st *model.TenantState) (model.Change, error) {
			return st.SetMembership(model.Membership{UserID: "alice", Primary: "sales"})
		},
	} {
		if _, err := fn(st); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.CreateTenant(t.Context(), store.Write{Tenant: id, Actor: "admin"}, st); err != nil {
		t.Fatalf("CreateTenant(%q): %v", id, err)
	}
}

func grant(t *testing.T, s store.Store, tenant, user, role string) {
	t.Helper()
	_, err := s.Update(t.Context(), store.Write{Tenant: tenant, Actor: "admin"}, func(st *model.TenantState) (model.Change, error) {
		return st.GrantRole(model.Grant{UserID: user, RoleID: role}, time.Now())
	})
	if err != nil {
		t.Fatalf("grant %s to %s: %v", role, user, err)
	}
}

func tenant(t *testing.T, s store.Store, id string) *model.TenantState {
	t.Helper()
	st, err := s.Tenant(t.Context(), id)
	if err != nil {
		t.Fatalf("Tenant(%q): %v", id, err)
	}
	return st
}

// TestMigrateConcurrentStricterIsolation migrates one database from several
// processes at once on a server whose default isolation is stricter than
// read committed, as some operators configure it: a process that waited
// for the migration lock must still see the migrations the others applied.
func TestMigrateConcurrentStricterIsolation(t *testing.T) {
	t.Parallel()
	for _, level := range []string{"repeatable read", "serializable"} {
		t.Run(level, func(t *testing.T) {
			t.Parallel()
			url := pgtest.NewEmptyDatabase(t)
			setup := pgtest.Open(t, url)
			if _, err := setup.Exec(t.Context(), `DO $$ BEGIN
				EXECUTE format('ALTER DATABASE %I SET default_transaction_isolation = %L', current_database(), '`+level+`');
				END $$`); err != nil {
				t.Fatalf("set default isolation: %v", err)
			}
			setup.Close()
			const copies = 4
			var wg sync.WaitGroup
			for range copies {
				pool := pgtest.Open(t, url)
				wg.Go(func() {
					if err := postgres.Migrate(t.Context(), pool); err != nil {
						t.Errorf("Migrate: %v", err)
					}
				})
			}
			wg.Wait()
			if err := postgres.CheckSchema(t.Context(), pgtest.Open(t, url)); err != nil {
				t.Errorf("CheckSchema after Migrate: %v", err)
			}
		})
	}
}

// TestMigrationMakesNamedUsersKnown: migration 0006 makes every user the
// existing rows name (grants, memberships, managers, sharing rules, record
// shares) a known, active user, so a database written before users were
// records loads and serves as before.
func TestMigrationMakesNamedUsersKnown(t *testing.T) {
	ctx := t.Context()
	url := pgtest.NewEmptyDatabase(t)
	pool := pgtest.Open(t, url)
	if err := postgres.MigrateTo(ctx, pool, 5); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		`INSERT INTO tenants (id, name, revision, created_at) VALUES ('acme', 'Acme', 1, now())`,
		`INSERT INTO roles (tenant_id, role_id, display_name, description, template, inherits, permissions)
			VALUES ('acme', 'viewer', '', '', '', '{}', '{}')`,
		`INSERT INTO grants (tenant_id, user_id, role_id, granted_by) VALUES ('acme', 'granted', 'viewer', 'x')`,
		`INSERT INTO departments (tenant_id, department_id, name) VALUES ('acme', 'hq', 'HQ')`,
		`INSERT INTO memberships (tenant_id, user_id, primary_department_id, other_department_ids, manager_id)
			VALUES ('acme', 'member', 'hq', '{}', 'boss')`,
		`INSERT INTO sharing_rules (tenant_id, rule_id, module, owner_kind, owner_id, owner_subs, shared_kind, shared_id, shared_subs, access)
			VALUES ('acme', 'r', 'lead', 'user', 'owner', false, 'user', 'sharee', false, 'read')`,
		`INSERT INTO record_shares (tenant_id, module, record_id, principal_kind, principal_id, principal_subs, access, shared_by)
			VALUES ('acme', 'lead', 'L-1', 'user', 'shared', false, 'read', 'x')`,
	} {
		if _, err := pool.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	st, err := postgres.New(pool, nil).Tenant(ctx, "acme")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, u := range st.SortedUsers() {
		if u.Status != model.UserActive {
			t.Errorf("user %s is %s", u.ID, u.Status)
		}
		got = append(got, u.ID)
	}
	if want := []string{"boss", "granted", "member", "owner", "shared", "sharee"}; !slices.Equal(got, want) {
		t.Errorf("known users %v, want %v", got, want)
	}
}

// TestMigrationCompressesDecisionBatches: migration 0016 stores decision
// batches lz4-compressed, and 0017 the shared rows' tenant lists, in the
// partitions that exist as in those made later, or leaves them as they
// were on a server built without lz4.
func TestMigrationCompressesDecisionBatches(t *testing.T) {
	ctx := t.Context()
	pool := pgtest.Open(t, pgtest.NewEmptyDatabase(t))
	if err := postgres.MigrateTo(ctx, pool, 15); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE decision_batches_20260101 PARTITION OF decision_batches
		FOR VALUES FROM ('2026-01-01 00:00:00+00') TO ('2026-01-02 00:00:00+00')`); err != nil {
		t.Fatal(err)
	}
	if err := postgres.Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `CREATE TABLE decision_batches_20260102 PARTITION OF decision_batches
		FOR VALUES FROM ('2026-01-02 00:00:00+00') TO ('2026-01-03 00:00:00+00')`); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"data": "m/l", "tenants": "x/l"} // MAIN and EXTENDED, lz4
	if !serverHasLZ4(t, pool) {
		want = map[string]string{"data": "e/", "tenants": "x/"} // EXTERNAL and EXTENDED, the default method
	}
	for _, table := range []string{"decision_batches", "decision_batches_20260101", "decision_batches_20260102"} {
		for column, want := range want {
			var got string
			if err := pool.QueryRow(ctx, `SELECT attstorage::text || '/' || attcompression::text FROM pg_attribute
				WHERE attrelid = $1::regclass AND attname = $2`, table, column).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s stores %s as %s, want %s", table, column, got, want)
			}
		}
	}
}

// serverHasLZ4 reports whether the server can compress with lz4.
func serverHasLZ4(t *testing.T, pool *pgxpool.Pool) bool {
	t.Helper()
	_, err := pool.Exec(t.Context(), "CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)")
	return err == nil
}
