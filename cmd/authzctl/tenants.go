package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const tenantsHelp = `Usage: authzctl tenants create <id> [--name n] [--templates t1,t2] [--admin user [--admin-name n]]
       authzctl tenants get <id>
       authzctl tenants list [--deleted]
       authzctl tenants delete <id> --confirm <id>

Onboards and offboards CRM customers (PlatformService); needs a platform
credential and --reason for create and delete. create instantiates the
role templates (all by default) and makes --admin the first administrator;
delete asks for the id a second time, removes the tenant's roles, grants,
users and organisation, and keeps its change log.

Example:
  authzctl tenants create globex --name "Globex Corp." --admin gina --reason "signed up"
`

// runTenants dispatches the tenants subcommands.
func runTenants(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", tenantsHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "create":
		return tenantsCreate(ctx, c, args)
	case "get":
		return tenantsGet(ctx, c, args)
	case "list":
		return tenantsList(ctx, c, args)
	case "delete":
		return tenantsDelete(ctx, c, args)
	}
	return usagef("tenants", "tenants: unknown subcommand %q", sub)
}

func tenantsCreate(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("tenants create", tenantsHelp)
	req := &pb.CreateTenantRequest{}
	var templates string
	cmd.fs.StringVar(&req.Name, "name", "", "the tenant's `name`")
	cmd.fs.StringVar(&templates, "templates", "", "comma-separated role `templates` to instantiate (default: all)")
	cmd.fs.StringVar(&req.AdminUserId, "admin", "", "the first administrator's `user` id")
	cmd.fs.StringVar(&req.AdminDisplayName, "admin-name", "", "the first administrator's `name`")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(c.reason) == "" {
		return usagef(cmd.name, "tenants create: --reason is required")
	}
	req.TenantId, req.Templates, req.Reason = pos[0], splitList(templates), c.reason
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.platform.CreateTenant(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printTenant(c, resp.GetTenant())
	return nil
}

func tenantsGet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("tenants get", tenantsHelp)
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.platform.GetTenant(ctx, &pb.GetTenantRequest{TenantId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printTenant(c, resp.GetTenant())
	return nil
}

func tenantsList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("tenants list", tenantsHelp)
	req := &pb.ListTenantsRequest{PageSize: 1000}
	cmd.fs.BoolVar(&req.IncludeDeleted, "deleted", false, "list deleted tenants too")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListTenantsResponse{}
	for {
		resp, err := c.platform.ListTenants(ctx, req)
		if err != nil {
			return err
		}
		out.Tenants = append(out.Tenants, resp.GetTenants()...)
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "TENANT", "NAME", "REVISION", "ROLES", "USERS", "GRANTS", "DELETED")
	for _, tn := range out.GetTenants() {
		t.row(tn.GetTenantId(), tn.GetName(), strconv.FormatInt(tn.GetRevision(), 10), strconv.FormatInt(tn.GetRoleCount(), 10),
			strconv.FormatInt(tn.GetUserCount(), 10), strconv.FormatInt(tn.GetGrantCount(), 10), timeText(tn.GetDeleteTime()))
	}
	t.flush()
	return nil
}

func tenantsDelete(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("tenants delete", tenantsHelp)
	var confirm string
	cmd.fs.StringVar(&confirm, "confirm", "", "the tenant `id` again, to confirm")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if strings.TrimSpace(c.reason) == "" {
		return usagef(cmd.name, "tenants delete: --reason is required")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.platform.DeleteTenant(ctx, &pb.DeleteTenantRequest{TenantId: pos[0], ConfirmTenantId: confirm, Reason: c.reason})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "deleted tenant %s (revision %d)\n", pos[0], resp.GetRevision())
	return nil
}

func printTenant(c *cli, t *pb.Tenant) {
	fmt.Fprintf(&c.out, "tenant:    %s\nname:      %s\nrevision:  %d\nroles:     %d\nusers:     %d\ngrants:    %d\ncreated:   %s\n",
		t.GetTenantId(), t.GetName(), t.GetRevision(), t.GetRoleCount(), t.GetUserCount(), t.GetGrantCount(), timeText(t.GetCreateTime()))
	if t.GetDeleteTime() != nil {
		fmt.Fprintf(&c.out, "deleted:   %s\n", timeText(t.GetDeleteTime()))
	}
}
