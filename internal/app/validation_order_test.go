package app_test

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestReadsValidateBeforeLookup: a malformed read request is INVALID_ARGUMENT
// naming the field whatever the state, also in a tenant that does not exist,
// like the writes; a well-formed one in an unknown tenant is NOT_FOUND.
func TestReadsValidateBeforeLookup(t *testing.T) {
	e := start(t, cfgDefault())
	ctx := context.Background()
	call := func(f func() error) error { return f() }
	tests := []struct {
		name   string
		err    error
		code   codes.Code
		reason string
		field  string
	}{
		{"get role: bad role id", call(func() error {
			_, err := e.admin.GetRole(ctx, &pb.GetRoleRequest{ActorId: "oscar", TenantId: "nowhere", RoleId: "Sales Rep"})
			return err
		}), codes.InvalidArgument, "INVALID_IDENTIFIER", "role_id"},
		{"list roles: bad page size", call(func() error {
			_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "nowhere", PageSize: -1})
			return err
		}), codes.InvalidArgument, "INVALID_VALUE", "page_size"},
		{"list roles: bad page token", call(func() error {
			_, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{ActorId: "oscar", TenantId: "nowhere", PageToken: "!!"})
			return err
		}), codes.InvalidArgument, "INVALID_VALUE", "page_token"},
		{"list grants: bad page size", call(func() error {
			_, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "nowhere", Filter: &pb.ListGrantsRequest_RoleId{RoleId: "sales_rep"}, PageSize: 5000})
			return err
		}), codes.InvalidArgument, "INVALID_VALUE", "page_size"},
		{"list grants: bad page token", call(func() error {
			_, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "nowhere", Filter: &pb.ListGrantsRequest_UserId{UserId: "bob"}, PageToken: "!!"})
			return err
		}), codes.InvalidArgument, "INVALID_VALUE", "page_token"},
		{"get role: unknown tenant", call(func() error {
			_, err := e.admin.GetRole(ctx, &pb.GetRoleRequest{ActorId: "oscar", TenantId: "nowhere", RoleId: "sales_rep"})
			return err
		}), codes.NotFound, "TENANT_NOT_FOUND", ""},
		{"list grants: unknown role", call(func() error {
			_, err := e.admin.ListGrants(ctx, &pb.ListGrantsRequest{ActorId: "oscar", TenantId: "demo", Filter: &pb.ListGrantsRequest_RoleId{RoleId: "nope"}, PageSize: 10})
			return err
		}), codes.NotFound, "ROLE_NOT_FOUND", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, reason, field := errorInfo(t, tt.err)
			if code != tt.code || reason != tt.reason || field != tt.field {
				t.Fatalf("got %v reason=%q field=%q (%v), want %v %s naming %q", code, reason, field, tt.err, tt.code, tt.reason, tt.field)
			}
		})
	}
}
