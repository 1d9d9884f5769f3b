package main

import (
	"context"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const departmentsHelp = `Usage: authzctl departments [list]

Lists the tenant's department tree, ordered by id, with each department's
parent.

Example:
  authzctl --tenant demo departments list
`

func runDepartments(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", departmentsHelp)
	if err != nil {
		return err
	}
	if sub != "list" {
		return usagef("departments", "departments: unknown subcommand %q", sub)
	}
	cmd := c.command("departments list", departmentsHelp)
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
	resp, err := c.admin.ListDepartments(ctx, &pb.ListDepartmentsRequest{TenantId: c.tenant, ActorId: c.actor})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "DEPARTMENT", "PARENT", "NAME")
	for _, d := range resp.GetDepartments() {
		t.row(d.GetDepartmentId(), d.GetParentId(), d.GetName())
	}
	t.flush()
	c.printRevision(resp.GetRevision())
	return nil
}

const membershipsHelp = `Usage: authzctl memberships --user u
       authzctl memberships --department d

Lists where users sit in the organisation: the membership of one user, or
every membership naming a department (primary or other), with managers.

Examples:
  authzctl --tenant demo memberships --user bob
  authzctl --tenant demo memberships --department sales_east
`

func runMemberships(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("memberships", membershipsHelp)
	var user, department string
	cmd.fs.StringVar(&user, "user", "", "the membership of this `user`")
	cmd.fs.StringVar(&department, "department", "", "the memberships naming this department `id`")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	req := &pb.ListMembershipsRequest{TenantId: c.tenant, ActorId: c.actor}
	switch {
	case (user == "") == (department == ""):
		return usagef(cmd.name, "memberships: give exactly one of --user and --department")
	case user != "":
		req.Filter = &pb.ListMembershipsRequest_UserId{UserId: user}
	default:
		req.Filter = &pb.ListMembershipsRequest_DepartmentId{DepartmentId: department}
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.ListMemberships(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "USER", "PRIMARY", "OTHER", "MANAGER")
	for _, m := range resp.GetMemberships() {
		t.row(m.GetUserId(), m.GetPrimaryDepartmentId(), list(m.GetOtherDepartmentIds()), m.GetManagerId())
	}
	t.flush()
	c.printRevision(resp.GetRevision())
	return nil
}

const rulesHelp = `Usage: authzctl rules [list]

Lists the tenant's sharing rules: whose records of a module are shared with
whom, and for reading or also updating.

Example:
  authzctl --tenant demo rules list
`

func runRules(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", rulesHelp)
	if err != nil {
		return err
	}
	if sub != "list" {
		return usagef("rules", "rules: unknown subcommand %q", sub)
	}
	cmd := c.command("rules list", rulesHelp)
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
	resp, err := c.admin.ListSharingRules(ctx, &pb.ListSharingRulesRequest{TenantId: c.tenant, ActorId: c.actor})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "RULE", "MODULE", "OWNED_BY", "SHARED_WITH", "ACCESS")
	for _, r := range resp.GetRules() {
		t.row(r.GetRuleId(), r.GetModule(), principalText(r.GetOwnedBy()), principalText(r.GetSharedWith()),
			enumName(r.GetAccess().String(), "RECORD_ACCESS_"))
	}
	t.flush()
	c.printRevision(resp.GetRevision())
	return nil
}

// principalText names a principal as user:u, role:r or department:d (with
// "+sub" when its sub-departments are included).
func principalText(p *pb.Principal) string {
	switch k := p.GetKind().(type) {
	case *pb.Principal_UserId:
		return "user:" + k.UserId
	case *pb.Principal_RoleId:
		return "role:" + k.RoleId
	case *pb.Principal_DepartmentId:
		s := "department:" + k.DepartmentId
		if p.GetIncludeSubdepartments() {
			s += "+sub"
		}
		return s
	}
	return ""
}
