package main

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const usersHelp = `Usage: authzctl users list [--inactive]
       authzctl users get <user>
       authzctl users upsert <user> [--name n] [--department d [--also d2,d3] [--manager m]]
       authzctl users deactivate <user>
       authzctl users reactivate <user>

The tenant's users (AdminService). Grants, memberships and shares may name
only known users. deactivate offboards a user: every decision for them is
DENY at once and their grants stay, which reactivate restores. Writes need
--reason (and --actor without a credential).

Example:
  authzctl --tenant demo --actor oscar users deactivate mallory --reason "left the company"
`

// runUsers dispatches the users subcommands.
func runUsers(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", usersHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return usersList(ctx, c, args)
	case "get":
		return usersGet(ctx, c, args)
	case "upsert":
		return usersUpsert(ctx, c, args)
	case "deactivate", "reactivate":
		return usersStatus(ctx, c, sub, args)
	}
	return usagef("users", "users: unknown subcommand %q", sub)
}

func usersList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("users list", usersHelp)
	var inactive bool
	cmd.fs.BoolVar(&inactive, "inactive", false, "only offboarded users")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	req := &pb.ListUsersRequest{TenantId: c.tenant, ActorId: c.actor, PageSize: 1000}
	if inactive {
		req.Status = pb.UserStatus_USER_STATUS_INACTIVE
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListUsersResponse{}
	for {
		resp, err := c.admin.ListUsers(ctx, req)
		if err != nil {
			return err
		}
		out.Users, out.Revision = append(out.Users, resp.GetUsers()...), resp.GetRevision()
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "USER", "NAME", "STATUS", "DEPARTMENT", "OTHERS", "MANAGER")
	for _, u := range out.GetUsers() {
		t.row(u.GetUserId(), u.GetDisplayName(), enumName(u.GetStatus().String(), "USER_STATUS_"), u.GetPrimaryDepartmentId(),
			strings.Join(u.GetOtherDepartmentIds(), ","), u.GetManagerId())
	}
	t.flush()
	return nil
}

func usersGet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("users get", usersHelp)
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.GetUser(ctx, &pb.GetUserRequest{TenantId: c.tenant, ActorId: c.actor, UserId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printUser(c, resp.GetUser())
	return nil
}

func usersUpsert(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("users upsert", usersHelp)
	u := &pb.User{}
	var others string
	cmd.fs.StringVar(&u.DisplayName, "name", "", "the user's `name`")
	cmd.fs.StringVar(&u.PrimaryDepartmentId, "department", "", "the primary `department`")
	cmd.fs.StringVar(&others, "also", "", "comma-separated further `departments`")
	cmd.fs.StringVar(&u.ManagerId, "manager", "", "the user's `manager`")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	u.UserId, u.OtherDepartmentIds = pos[0], splitList(others)
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.UpsertUser(ctx, &pb.UpsertUserRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, User: u})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printUser(c, resp.GetUser())
	fmt.Fprintf(&c.out, "revision:    %d\n", resp.GetRevision())
	return nil
}

func usersStatus(ctx context.Context, c *cli, sub string, args []string) error {
	cmd := c.command("users "+sub, usersHelp)
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	var (
		user *pb.User
		rev  int64
	)
	if sub == "deactivate" {
		resp, err := c.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, UserId: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		user, rev = resp.GetUser(), resp.GetRevision()
	} else {
		resp, err := c.admin.ReactivateUser(ctx, &pb.ReactivateUserRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, UserId: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		user, rev = resp.GetUser(), resp.GetRevision()
	}
	fmt.Fprintf(&c.out, "%s is %s (revision %d)\n", user.GetUserId(), enumName(user.GetStatus().String(), "USER_STATUS_"), rev)
	return nil
}

func printUser(c *cli, u *pb.User) {
	fmt.Fprintf(&c.out, "user:        %s\nname:        %s\nstatus:      %s\ndepartment:  %s\n", u.GetUserId(), u.GetDisplayName(),
		enumName(u.GetStatus().String(), "USER_STATUS_"), orDash(u.GetPrimaryDepartmentId()))
	if len(u.GetOtherDepartmentIds()) > 0 {
		fmt.Fprintf(&c.out, "also:        %s\n", strings.Join(u.GetOtherDepartmentIds(), ", "))
	}
	if u.GetManagerId() != "" {
		fmt.Fprintf(&c.out, "manager:     %s\n", u.GetManagerId())
	}
}
