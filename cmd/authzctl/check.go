package main

import (
	"context"
	"fmt"
	"strings"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const checkHelp = `Usage: authzctl check <user> <module> <verb> [--record id --owner u [--department d]]
       authzctl check <user> --function f
       authzctl check <user> --field module.field [--write]

Decides one permission of a user in the tenant and prints ALLOW or DENY with
the policy revision it was decided at; --explain adds the reasons (which
role and rule allowed or denied it, or what was missing). With --record the
record's data layer decides too: the role's scope, managers and sharing.
With --at-least-revision (the revision a write printed) the decision waits
until the replica reached holds that write: read your writes on any
replica.

Exit status: 0 ALLOW, 3 DENY, 1 error, 2 usage error.

Examples:
  authzctl --tenant demo check bob account read
  authzctl --tenant demo check bob account update --record acc-17 --owner alice
  authzctl --tenant demo check frank --function data.export --explain
  authzctl --tenant demo check bob --field account.credit_limit --write
`

const explainHelp = `Usage: authzctl explain <user> <module> <verb> [--record id --owner u [--department d]]
       authzctl explain <user> --function f
       authzctl explain <user> --field module.field [--write]

Decides one permission like check and prints the reasons: which role and
rule allowed or denied it, or what was missing.

Exit status: 0 ALLOW, 3 DENY, 1 error, 2 usage error.

Examples:
  authzctl --tenant demo explain bob account delete
  authzctl --tenant demo explain frank --function data.export
`

func runCheck(ctx context.Context, c *cli, args []string) error {
	return check(ctx, c.command("check", checkHelp), args, false)
}

func runExplain(ctx context.Context, c *cli, args []string) error {
	return check(ctx, c.command("explain", explainHelp), args, true)
}

// recordFlags are the flags that describe one record.
type recordFlags struct{ id, owner, department string }

func (r *recordFlags) add(cmd *command) {
	cmd.fs.StringVar(&r.id, "record", "", "the record `id`: the record's data layer decides too")
	cmd.fs.StringVar(&r.owner, "owner", "", "the `user` owning the record (required with --record)")
	cmd.fs.StringVar(&r.department, "department", "", "the department `id` owning the record")
}

// record returns the record, or nil when none was named.
func (r *recordFlags) record(cmd *command) (*pb.Record, error) {
	if r.id == "" {
		if r.owner != "" || r.department != "" {
			return nil, usagef(cmd.name, "--owner and --department describe a record: add --record")
		}
		return nil, nil
	}
	if r.owner == "" {
		return nil, usagef(cmd.name, "--record needs --owner")
	}
	return &pb.Record{Id: r.id, OwnerId: r.owner, DepartmentId: r.department}, nil
}

func check(ctx context.Context, cmd *command, args []string, explain bool) error {
	var (
		function, field string
		write           bool
		rec             recordFlags
		atLeast         int64
	)
	cmd.fs.StringVar(&function, "function", "", "check the function `id`, e.g. report.export")
	cmd.fs.StringVar(&field, "field", "", "check the field `module.field`, e.g. account.credit_limit")
	cmd.fs.BoolVar(&write, "write", false, "with --field: check writing the field instead of reading it")
	rec.add(cmd)
	cmd.fs.Int64Var(&atLeast, "at-least-revision", 0, "decide at this tenant `revision` or a later one (a write's), waiting for this replica to reach it")
	if !explain {
		cmd.fs.BoolVar(&explain, "explain", false, "print the reasons for the decision")
	}
	pos, err := cmd.parse(args, 1, 3)
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
	perm, err := permission(cmd, pos[1:], function, field, write, record)
	if err != nil {
		return err
	}

	ctx, cancel, err := cmd.c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := cmd.c.authz.Check(ctx, &pb.CheckRequest{
		TenantId: cmd.c.tenant, SubjectId: pos[0], Permission: perm, Explain: explain, AtLeastRevision: atLeast,
	})
	if err != nil {
		return err
	}
	if cmd.c.json() {
		err = cmd.c.printJSON(resp)
	} else {
		printDecision(cmd.c, pos[0], perm, resp)
	}
	if err == nil && !resp.GetAllowed() {
		err = errDenied
	}
	return err
}

// permission builds the permission of a check from its arguments: a
// module and a verb, a function, or a field.
func permission(cmd *command, args []string, function, field string, write bool, rec *pb.Record) (*pb.Permission, error) {
	kinds := 0
	for _, set := range []bool{len(args) > 0, function != "", field != ""} {
		if set {
			kinds++
		}
	}
	switch {
	case kinds != 1:
		return nil, usagef(cmd.name, "name one permission: <module> <verb>, --function or --field")
	case write && field == "":
		return nil, usagef(cmd.name, "--write needs --field")
	case rec != nil && len(args) == 0:
		return nil, usagef(cmd.name, "--record needs <module> <verb>")
	case function != "":
		return &pb.Permission{Kind: &pb.Permission_Function{Function: &pb.FunctionPermission{Function: function}}}, nil
	case field != "":
		module, name, ok := strings.Cut(field, ".")
		if !ok {
			return nil, usagef(cmd.name, "--field must be module.field, e.g. account.credit_limit")
		}
		mode := pb.FieldAccessMode_FIELD_ACCESS_MODE_READ
		if write {
			mode = pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE
		}
		return &pb.Permission{Kind: &pb.Permission_Field{Field: &pb.FieldPermission{Module: module, Field: name, Access: mode}}}, nil
	case len(args) != 2:
		return nil, usagef(cmd.name, "a module permission needs <module> <verb>")
	}
	return &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: args[0], Verb: args[1], Record: rec}}}, nil
}

// permissionText describes a permission the way the command line names it.
func permissionText(p *pb.Permission) string {
	switch {
	case p.GetFunction() != nil:
		return "function " + p.GetFunction().GetFunction()
	case p.GetField() != nil:
		f := p.GetField()
		return fmt.Sprintf("field %s.%s %s", f.GetModule(), f.GetField(), enumName(f.GetAccess().String(), "FIELD_ACCESS_MODE_"))
	}
	m := p.GetModule()
	s := m.GetModule() + " " + m.GetVerb()
	if r := m.GetRecord(); r != nil {
		s += fmt.Sprintf(" record %s (owner %s", r.GetId(), r.GetOwnerId())
		if r.GetDepartmentId() != "" {
			s += ", department " + r.GetDepartmentId()
		}
		s += ")"
	}
	return s
}

// printDecision prints a decision in text: one line, then the reasons.
func printDecision(c *cli, user string, p *pb.Permission, resp *pb.CheckResponse) {
	verdict := "DENY"
	if resp.GetAllowed() {
		verdict = "ALLOW"
	}
	fmt.Fprintf(&c.out, "%s %s %s (revision %d", verdict, user, permissionText(p), resp.GetRevision())
	if id := resp.GetDecisionId(); id != "" {
		fmt.Fprintf(&c.out, ", decision %s", id)
	}
	c.out.WriteString(")\n")
	for _, r := range resp.GetReasons() {
		fmt.Fprintf(&c.out, "  %s: %s\n", enumName(r.GetKind().String(), "REASON_KIND_"), r.GetMessage())
		if r.GetRule() != "" {
			fmt.Fprintf(&c.out, "    rule: %s\n", r.GetRule())
		}
		if r.GetGrantExpiresAt() != nil {
			fmt.Fprintf(&c.out, "    grant of %s expires %s\n", r.GetRoleId(), timeText(r.GetGrantExpiresAt()))
		}
	}
}
