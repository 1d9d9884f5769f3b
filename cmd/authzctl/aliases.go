package main

import (
	"context"
	"fmt"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const aliasesHelp = `Usage: authzctl aliases [list]
       authzctl aliases set <alias> <action>
       authzctl aliases delete <alias>

Action aliases are the names the tenant's callers use for an action, as an
API gateway speaking AuthZEN sends them (can_update_account), each standing
for a module verb written <module>.<verb> (account.update) or a function id
(report.export). The AuthZEN endpoint decides an alias as what it stands
for. Writes need --actor and --reason, and an actor who holds what the alias
stands for (and, when repointing or deleting one, what it stood for).

Examples:
  authzctl --tenant demo aliases list
  authzctl --tenant demo --actor oscar aliases set can_list_accounts account.list --reason "gateway names"
  authzctl --tenant demo --actor oscar aliases delete can_list_accounts --reason "retired"
`

func runAliases(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", aliasesHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return aliasesList(ctx, c, args)
	case "set":
		return aliasesSet(ctx, c, args)
	case "delete":
		return aliasesDelete(ctx, c, args)
	}
	return usagef("aliases", "aliases: unknown subcommand %q", sub)
}

func aliasesList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("aliases list", aliasesHelp)
	if _, err := cmd.parse(args, 0, 0); err != nil {
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
	resp, err := c.admin.ListActionAliases(ctx, &pb.ListActionAliasesRequest{TenantId: c.tenant, ActorId: c.actor})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "ALIAS", "ACTION")
	for _, a := range resp.GetAliases() {
		t.row(a.GetAlias(), a.GetAction())
	}
	t.flush()
	c.printRevision(resp.GetRevision())
	return nil
}

func aliasesSet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("aliases set", aliasesHelp)
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
	resp, err := c.admin.SetActionAlias(ctx, &pb.SetActionAliasRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason,
		Alias: &pb.ActionAlias{Alias: pos[0], Action: pos[1]}})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "%s now stands for %s (revision %d)\n", pos[0], pos[1], resp.GetRevision())
	return nil
}

func aliasesDelete(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("aliases delete", aliasesHelp)
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
	resp, err := c.admin.DeleteActionAlias(ctx, &pb.DeleteActionAliasRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, Alias: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "deleted the alias %s (revision %d)\n", pos[0], resp.GetRevision())
	return nil
}
