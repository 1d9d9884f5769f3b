package app_test

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/config"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestAtLeastRevision: every read RPC takes at_least_revision. At the
// revision of the last write, or below, each answers, stating a revision
// at least the one asked for; beyond it (no write has made that revision)
// each is UNAVAILABLE with REPLICA_BEHIND, the decisions after
// --max-revision-wait; a negative one is INVALID_ARGUMENT naming the
// field (items[0].at_least_revision in a batch). Replicas following each other are TestReplicasFollowEachOther in
// cmd/authzd.
func TestAtLeastRevision(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		cfg.MaxRevisionWait = 50 * time.Millisecond
		e := startAudit(t, cfg)
		g, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "sales_rep"})
		if err != nil {
			t.Fatal(err)
		}
		type read func(rev int64) (revision int64, err error)
		reads := map[string]read{
			"Check": func(rev int64) (int64, error) {
				r, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "peggy", Permission: modulePerm("account", "read"), AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"BatchCheck": func(rev int64) (int64, error) {
				r, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: []*pb.BatchCheckItem{
					{TenantId: "demo", SubjectId: "peggy", Permission: modulePerm("account", "read"), AtLeastRevision: rev}}})
				if err != nil {
					return 0, err
				}
				return r.GetResults()[0].GetRevision(), nil
			},
			"CheckPage": func(rev int64) (int64, error) {
				r, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "peggy",
					Permissions: []*pb.Permission{modulePerm("account", "read")}, AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"GetFieldAccess": func(rev int64) (int64, error) {
				r, err := e.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "peggy", Module: "account", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListEffectivePermissions": func(rev int64) (int64, error) {
				r, err := e.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: "demo", SubjectId: "peggy", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"PlanRecordFilter": func(rev int64) (int64, error) {
				r, err := e.authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{TenantId: "demo", SubjectId: "peggy", Module: "account", Verb: "list", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"GetRole": func(rev int64) (int64, error) {
				r, err := e.admin.GetRole(ctx, &pb.GetRoleRequest{TenantId: "demo", ActorId: "oscar", RoleId: "sales_rep", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListRoles": func(rev int64) (int64, error) {
				r, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListGrants": func(rev int64) (int64, error) {
				r, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{TenantId: "demo", ActorId: "oscar", Filter: &pb.ListGrantsRequest_UserId{UserId: "peggy"}, AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListDepartments": func(rev int64) (int64, error) {
				r, err := e.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListMemberships": func(rev int64) (int64, error) {
				r, err := e.admin.ListMemberships(ctx, &pb.ListMembershipsRequest{TenantId: "demo", ActorId: "oscar", Filter: &pb.ListMembershipsRequest_UserId{UserId: "bob"}, AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListSharingRules": func(rev int64) (int64, error) {
				r, err := e.admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListRecordShares": func(rev int64) (int64, error) {
				r, err := e.admin.ListRecordShares(ctx, &pb.ListRecordSharesRequest{TenantId: "demo", ActorId: "oscar", Module: "account", RecordId: "acc-1", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"GetUser": func(rev int64) (int64, error) {
				r, err := e.admin.GetUser(ctx, &pb.GetUserRequest{TenantId: "demo", ActorId: "oscar", UserId: "peggy", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ListUsers": func(rev int64) (int64, error) {
				r, err := e.admin.ListUsers(ctx, &pb.ListUsersRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ExportCasbinPolicy": func(rev int64) (int64, error) {
				r, err := e.admin.ExportCasbinPolicy(ctx, &pb.ExportCasbinPolicyRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
			"ExportTenant": func(rev int64) (int64, error) {
				stream, err := e.admin.ExportTenant(ctx, &pb.ExportTenantRequest{TenantId: "demo", ActorId: "oscar", AtLeastRevision: rev})
				if err != nil {
					return 0, err
				}
				r, err := stream.Recv()
				return r.GetRevision(), err
			},
			"ListUnusedGrants": func(rev int64) (int64, error) {
				r, err := e.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "demo", AtLeastRevision: rev})
				return r.GetRevision(), err
			},
		}
		for name, read := range reads {
			for _, rev := range []int64{0, g.GetRevision() - 1, g.GetRevision()} {
				got, err := read(rev)
				if err != nil || got < g.GetRevision() {
					t.Errorf("%s at_least_revision %d: revision %d, %v; want revision %d", name, rev, got, err, g.GetRevision())
				}
			}
			_, err := read(g.GetRevision() + 1)
			if code, reason, _ := errorInfo(t, err); code != codes.Unavailable || reason != "REPLICA_BEHIND" {
				t.Errorf("%s at a revision not written: %v; want UNAVAILABLE REPLICA_BEHIND", name, err)
			}
			_, err = read(-1)
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || !strings.HasSuffix(field, "at_least_revision") {
				t.Errorf("%s at_least_revision -1: %v; want INVALID_ARGUMENT naming at_least_revision", name, err)
			}
		}

		st, err := e.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		replica := st.GetReplica()
		switch {
		case cfg.DatabaseURL == "" && replica != nil:
			t.Errorf("a server on memory reports a replica status: %v", replica)
		case cfg.DatabaseURL != "" && (!replica.GetFollowing() || replica.GetConnectedTime() == nil || replica.GetLag().AsDuration() != 0):
			t.Errorf("a replica on PostgreSQL reports %v; want following since start, no lag", replica)
		}
	})
}
