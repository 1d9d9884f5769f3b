package main

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const grantHelp = `Usage: authzctl grant <user> <role> [--until time]

Gives a user a role of the tenant, optionally until a time: an RFC 3339
time (2030-12-31T00:00:00Z), a date (2030-12-31, midnight UTC) or a duration
from now (72h, 90m). Granting a role the user already holds replaces the
grant's expiry. Needs --actor and --reason.

Example:
  authzctl --tenant demo --actor oscar grant peggy sales_rep --until 72h --reason "covers the north region"
`

func runGrant(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("grant", grantHelp)
	var until string
	cmd.fs.StringVar(&until, "until", "", "when the grant ends: an RFC 3339 `time`, a date or a duration from now")
	pos, err := cmd.parse(args, 2, 2)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	req := &pb.GrantRoleRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, UserId: pos[0], RoleId: pos[1]}
	if until != "" {
		t, err := parseTime("until", until, time.Now(), true)
		if err != nil {
			return usagef(cmd.name, "grant: %v", err)
		}
		req.ExpiresAt = timestamppb.New(t)
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.GrantRole(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	g := resp.GetGrant()
	fmt.Fprintf(&c.out, "granted %s to %s", g.GetRoleId(), g.GetUserId())
	if g.GetExpiresAt() != nil {
		fmt.Fprintf(&c.out, " until %s", timeText(g.GetExpiresAt()))
	}
	fmt.Fprintf(&c.out, " (revision %d)\n", resp.GetRevision())
	return nil
}

const revokeHelp = `Usage: authzctl revoke <user> <role>

Takes a role from a user. Needs --actor and --reason.

Example:
  authzctl --tenant demo --actor oscar revoke peggy sales_rep --reason "back to marketing"
`

func runRevoke(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("revoke", revokeHelp)
	pos, err := cmd.parse(args, 2, 2)
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
	resp, err := c.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, UserId: pos[0], RoleId: pos[1]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "revoked %s from %s (revision %d)\n", pos[1], pos[0], resp.GetRevision())
	return nil
}

const grantsHelp = `Usage: authzctl grants --user u [--all]
       authzctl grants --role r [--all]

Lists the grants of one user or of one role: who granted them, when, and
when they end. Expired grants decide nothing; --all lists them too.

Examples:
  authzctl --tenant demo grants --user erin
  authzctl --tenant demo grants --role sales_rep --all
`

func runGrants(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("grants", grantsHelp)
	var (
		user, role string
		all        bool
	)
	cmd.fs.StringVar(&user, "user", "", "the grants held by this `user`")
	cmd.fs.StringVar(&role, "role", "", "the grants of this `role`")
	cmd.fs.BoolVar(&all, "all", false, "include expired grants")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	req := &pb.ListGrantsRequest{TenantId: c.tenant, ActorId: c.actor, IncludeExpired: all, PageSize: 1000}
	switch {
	case (user == "") == (role == ""):
		return usagef(cmd.name, "grants: give exactly one of --user and --role")
	case user != "":
		req.Filter = &pb.ListGrantsRequest_UserId{UserId: user}
	default:
		req.Filter = &pb.ListGrantsRequest_RoleId{RoleId: role}
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Every page, gathered into one response.
	out := &pb.ListGrantsResponse{}
	p := newProgress("grants read", false)
	defer p.done()
	for {
		req.PageToken = out.GetNextPageToken()
		resp, err := c.admin.ListGrants(ctx, req)
		if err != nil {
			return err
		}
		out.Grants = append(out.Grants, resp.GetGrants()...)
		p.add(len(resp.GetGrants()))
		out.NextPageToken, out.Revision = resp.GetNextPageToken(), resp.GetRevision()
		if out.NextPageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "USER", "ROLE", "EXPIRES", "ACTIVE", "GRANTED_BY", "GRANTED_AT")
	for _, g := range out.GetGrants() {
		t.row(g.GetUserId(), g.GetRoleId(), timeText(g.GetExpiresAt()), strconv.FormatBool(g.GetActive()), g.GetGrantedBy(), timeText(g.GetGrantedAt()))
	}
	t.flush()
	c.printRevision(out.GetRevision())
	return nil
}
