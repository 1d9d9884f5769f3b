package main

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const fieldsHelp = `Usage: authzctl fields <user> <module> [--record id --owner u [--department d]]

Prints every field of a module, in catalog order, with the state it has for
the user: hidden, read_only or read_write. With --record, the fields of that
record: all hidden if the user may not read it, none read_write if the user
may not update it.

Example:
  authzctl --tenant demo fields bob account
`

func runFields(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("fields", fieldsHelp)
	var rec recordFlags
	rec.add(cmd)
	pos, err := cmd.parse(args, 2, 2)
	if err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	record, err := rec.record(cmd)
	if err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{
		TenantId: c.tenant, SubjectId: pos[0], Module: pos[1], Record: record,
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "FIELD", "STATE")
	for _, f := range resp.GetFields() {
		t.row(f.GetField(), enumName(f.GetState().String(), "FIELD_STATE_"))
	}
	t.flush()
	c.printRevision(resp.GetRevision())
	return nil
}

const permsHelp = `Usage: authzctl perms <user>

Prints what a user may do in the tenant: the active roles (with the end of
time-bound grants), the verbs held on each module with the widest data scope,
and the functions. Denies are already taken off.

Example:
  authzctl --tenant demo perms bob
`

func runPerms(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("perms", permsHelp)
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
	resp, err := c.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: c.tenant, SubjectId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	roles := make([]string, 0, len(resp.GetRoles()))
	for _, r := range resp.GetRoles() {
		s := r.GetRoleId()
		if r.GetExpiresAt() != nil {
			s += " (until " + timeText(r.GetExpiresAt()) + ")"
		}
		roles = append(roles, s)
	}
	fmt.Fprintf(&c.out, "roles: %s\n", orNone(strings.Join(roles, ", ")))
	if len(resp.GetModules()) > 0 {
		t := newTable(&c.out, "MODULE", "SCOPE", "VERBS")
		for _, m := range resp.GetModules() {
			t.row(m.GetModule(), enumName(m.GetScope().String(), "DATA_SCOPE_"), list(m.GetVerbs()))
		}
		t.flush()
	}
	fmt.Fprintf(&c.out, "functions: %s\n", orNone(strings.Join(resp.GetFunctions(), ", ")))
	c.printRevision(resp.GetRevision())
	return nil
}

// orNone prints an empty list as "none".
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

const filterHelp = `Usage: authzctl filter <user> <module> <verb> [--id-column c --owner-column c --department-column c --first-parameter n]

Prints which records of a module the user may use a verb on: the kind (all,
none or conditional), the PostgreSQL WHERE fragment and its arguments (each a
text array). The rows it selects are exactly the records check allows.

Example:
  authzctl --tenant demo filter bob account update --owner-column a.owner_id
`

func runFilter(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("filter", filterHelp)
	var (
		cols  pb.RecordColumns
		first int
	)
	cmd.fs.StringVar(&cols.Id, "id-column", "", "the record id `column` (default id)")
	cmd.fs.StringVar(&cols.OwnerId, "owner-column", "", "the owner `column` (default owner_id)")
	cmd.fs.StringVar(&cols.DepartmentId, "department-column", "", "the owning department `column` (default department_id)")
	cmd.fs.IntVar(&first, "first-parameter", 1, "the number `n` of the first SQL parameter ($n), 1-60000")
	pos, err := cmd.parse(args, 3, 3)
	if err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if first < 1 || first > 60000 {
		return usagef(cmd.name, "--first-parameter must be 1-60000")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{
		TenantId: c.tenant, SubjectId: pos[0], Module: pos[1], Verb: pos[2],
		Columns: &cols, FirstParameter: int32(first),
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "kind: %s\nsql:  %s\n", enumName(resp.GetKind().String(), "FILTER_KIND_"), resp.GetSql())
	for i, a := range resp.GetArgs() {
		fmt.Fprintf(&c.out, "$%d:   {%s}\n", first+i, list(a.GetValues()))
	}
	c.printRevision(resp.GetRevision())
	return nil
}
