package app_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// pgConfig serves a fresh database of the shared test server, seeded with
// the demo tenant, with a decision spool of the test's own.
func pgConfig(t testing.TB) config.Config { return pgConfigOn(t, pgtest.NewDatabase(t)) }

// pgConfigOn is pgConfig on the database at url.
func pgConfigOn(t testing.TB, url string) config.Config {
	cfg := config.Default()
	cfg.DatabaseURL = url
	cfg.SeedDemo = "true"
	cfg.DecisionSpoolDir = t.TempDir()
	cfg.AuditKeyFile = pgtest.AuditKeyFile(cfg.DatabaseURL)
	return cfg
}

// TestPostgresSurvivesRestart writes through gRPC against PostgreSQL,
// restarts the server on the same database, and finds every decision,
// role, grant and revision as it was.
func TestPostgresSurvivesRestart(t *testing.T) {
	cfg := pgConfig(t)
	first := start(t, cfg)
	if _, err := first.admin.CreateRole(ctx, &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "events team", RoleId: "events",
		Permissions: &pb.RolePermissions{Modules: []*pb.ModuleVerbs{{Module: "campaign", Verbs: []string{"list", "read", "create", "update"}}}, Functions: []string{"email.mass_send"}},
		Inherits:    []string{"read_only"}}); err != nil {
		t.Fatal(err)
	}
	until := first.clock.Now().Add(48 * time.Hour).Truncate(time.Microsecond)
	if _, err := first.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "runs the spring fair", UserId: "peggy", RoleId: "events", ExpiresAt: timestamppb.New(until)}); err != nil {
		t.Fatal(err)
	}
	if _, err := first.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "left the team", UserId: "bob", RoleId: "sales_rep"}); err != nil {
		t.Fatal(err)
	}
	probes := []struct {
		user string
		p    *pb.Permission
	}{
		{"peggy", modulePerm("campaign", "update")},
		{"peggy", functionPerm("email.mass_send")},
		{"peggy", modulePerm("account", "read")}, // inherited from read_only
		{"bob", modulePerm("account", "read")},   // revoked
		{"alice", modulePerm("opportunity", "delete")},
		{"frank", functionPerm("data.export")}, // denied
	}
	before := make([]*pb.CheckResponse, len(probes))
	for i, pr := range probes {
		before[i] = first.check(t, "demo", pr.user, pr.p)
	}
	rolesBefore, err := first.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if rolesBefore.GetRevision() != 4 {
		t.Fatalf("revision after seed and three writes: %d, want 4", rolesBefore.GetRevision())
	}
	first.stop()

	second := start(t, cfg) // the demo tenant exists: seeding leaves it alone
	for i, pr := range probes {
		after := second.check(t, "demo", pr.user, pr.p)
		after.DecisionId = before[i].GetDecisionId() // every decision has its own audit entry
		if !proto.Equal(after, before[i]) {
			t.Errorf("%s %v: after restart %v, before %v", pr.user, pr.p, after, before[i])
		}
	}
	wantAllowed := []bool{true, true, true, false, true, false}
	for i := range probes {
		if before[i].GetAllowed() != wantAllowed[i] {
			t.Errorf("%s %v: allowed=%v, want %v", probes[i].user, probes[i].p, before[i].GetAllowed(), wantAllowed[i])
		}
	}
	rolesAfter, err := second.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "demo"})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(rolesAfter, rolesBefore) {
		t.Errorf("roles after restart differ:\n%v\nbefore:\n%v", rolesAfter, rolesBefore)
	}
	grants, err := second.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}})
	if err != nil || len(grants.GetGrants()) != 1 || !grants.GetGrants()[0].GetExpiresAt().AsTime().Equal(until) || grants.GetGrants()[0].GetGrantedBy() != "oscar" {
		t.Fatalf("peggy's grant after restart: %v %v", grants, err)
	}
}

// TestServeRefusesUnmigratedDatabase: a database without the schema (or
// with a newer one) stops the server at start with a clear message.
func TestServeRefusesUnmigratedDatabase(t *testing.T) {
	cfg := config.Default()
	cfg.DatabaseURL = pgtest.NewEmptyDatabase(t)
	_, err := app.New(context.Background(), cfg, zaptest.NewLogger(t))
	if !errors.Is(err, postgres.ErrSchemaNotMigrated) {
		t.Fatalf("app.New on an empty database: %v, want ErrSchemaNotMigrated", err)
	}
	if err := app.Migrate(context.Background(), cfg, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	if err := app.Migrate(context.Background(), cfg, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	cfg.SeedDemo = "true"
	e := start(t, cfg)
	if !e.check(t, "demo", "bob", modulePerm("account", "read")).GetAllowed() {
		t.Fatal("migrated and seeded server does not decide")
	}
}
