package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const rolesHelp = `Usage: authzctl roles [list]
       authzctl roles get <id>
       authzctl roles templates
       authzctl roles create <id> --template t | --permissions file.json
       authzctl roles delete <id>

Lists and manages the tenant's roles. Run 'authzctl roles <subcommand> -h'
for each one's flags.

Example:
  authzctl --tenant demo roles
`

// runRoles dispatches the roles subcommands; with none, or only flags, it lists.
func runRoles(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", rolesHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return rolesList(ctx, c, args)
	case "get":
		return rolesGet(ctx, c, args)
	case "templates":
		return rolesTemplates(ctx, c, args)
	case "create":
		return rolesCreate(ctx, c, args)
	case "delete":
		return rolesDelete(ctx, c, args)
	}
	return usagef("roles", "roles: unknown subcommand %q", sub)
}

const rolesListHelp = `Usage: authzctl roles [list]

Lists the tenant's roles, ordered by id, with the template each started from
and the roles it inherits.

Example:
  authzctl --tenant demo roles list
`

func rolesList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("roles list", rolesListHelp)
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
	// Every page, gathered into one response.
	all := &pb.ListRolesResponse{}
	for {
		resp, err := c.admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: c.tenant, ActorId: c.actor, PageSize: 1000, PageToken: all.GetNextPageToken()})
		if err != nil {
			return err
		}
		all.Roles = append(all.Roles, resp.GetRoles()...)
		all.NextPageToken, all.Revision = resp.GetNextPageToken(), resp.GetRevision()
		if all.NextPageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(all)
	}
	t := newTable(&c.out, "ROLE", "TEMPLATE", "INHERITS", "NAME")
	for _, r := range all.GetRoles() {
		t.row(r.GetRoleId(), r.GetTemplateId(), list(r.GetInherits()), r.GetDisplayName())
	}
	t.flush()
	c.printRevision(all.GetRevision())
	return nil
}

const rolesGetHelp = `Usage: authzctl roles get <id>

Prints one role: its names, template, inherited roles and its own
permissions (module verbs with their data scope, field rules, functions and
denies).

Example:
  authzctl --tenant demo roles get key_account_manager
`

func rolesGet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("roles get", rolesGetHelp)
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
	resp, err := c.admin.GetRole(ctx, &pb.GetRoleRequest{TenantId: c.tenant, ActorId: c.actor, RoleId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	printRole(&c.out, resp.GetRole())
	c.printRevision(resp.GetRevision())
	return nil
}

// printRole prints a role and its permissions.
func printRole(w *strings.Builder, r *pb.Role) {
	fmt.Fprintf(w, "role:        %s\n", r.GetRoleId())
	fmt.Fprintf(w, "name:        %s\n", r.GetDisplayName())
	fmt.Fprintf(w, "description: %s\n", r.GetDescription())
	fmt.Fprintf(w, "template:    %s\n", orNone(r.GetTemplateId()))
	fmt.Fprintf(w, "inherits:    %s\n", orNone(strings.Join(r.GetInherits(), ", ")))
	p := r.GetPermissions()
	if len(p.GetModules())+len(p.GetDenyModules()) > 0 {
		t := newTable(w, "MODULE", "SCOPE", "VERBS")
		for _, m := range p.GetModules() {
			t.row(m.GetModule(), enumName(m.GetScope().String(), "DATA_SCOPE_"), list(m.GetVerbs()))
		}
		for _, m := range p.GetDenyModules() {
			t.row(m.GetModule(), "deny", list(m.GetVerbs()))
		}
		t.flush()
	}
	if len(p.GetFields()) > 0 {
		t := newTable(w, "FIELD", "STATE")
		for _, f := range p.GetFields() {
			t.row(f.GetModule()+"."+f.GetField(), enumName(f.GetState().String(), "FIELD_STATE_"))
		}
		t.flush()
	}
	fmt.Fprintf(w, "functions:   %s\n", orNone(strings.Join(p.GetFunctions(), ", ")))
	if len(p.GetDenyFunctions()) > 0 {
		fmt.Fprintf(w, "denied functions: %s\n", strings.Join(p.GetDenyFunctions(), ", "))
	}
}

const rolesTemplatesHelp = `Usage: authzctl roles templates

Lists the global role templates new roles can start from. No --tenant needed.

Example:
  authzctl roles templates
`

func rolesTemplates(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("roles templates", rolesTemplatesHelp)
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.ListRoleTemplates(ctx, &pb.ListRoleTemplatesRequest{})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "TEMPLATE", "NAME")
	for _, r := range resp.GetTemplates() {
		t.row(r.GetRoleId(), r.GetDisplayName())
	}
	t.flush()
	return nil
}

const rolesCreateHelp = `Usage: authzctl roles create <id> --template t [--permissions file.json] [flags]
       authzctl roles create <id> --permissions file.json [flags]

Adds a role to the tenant, from a global template (see 'authzctl roles
templates') or from scratch. --permissions reads a crmauthz.v1.RolePermissions
in protobuf JSON from a file, or from standard input with "-"; with a
template it replaces the template's permissions.

Example:
  authzctl --tenant demo --actor oscar roles create inside_sales --template sales_rep \
    --display-name "Inside sales" --reason "inside sales team"
`

func rolesCreate(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("roles create", rolesCreateHelp)
	var template, permsFile, name, description, inherits string
	cmd.fs.StringVar(&template, "template", "", "start from the global template `id`")
	cmd.fs.StringVar(&permsFile, "permissions", "", "read the role's permissions (protobuf JSON) from `file`; - reads standard input")
	cmd.fs.StringVar(&name, "display-name", "", "the `name` shown to people")
	cmd.fs.StringVar(&description, "description", "", "the role's description")
	cmd.fs.StringVar(&inherits, "inherits", "", "comma-separated `roles` of the tenant this role inherits")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	if template == "" && permsFile == "" {
		return usagef(cmd.name, "roles create: --template or --permissions is required")
	}
	req := &pb.CreateRoleRequest{
		TenantId: c.tenant, ActorId: c.actor, Reason: c.reason,
		RoleId: pos[0], TemplateId: template, DisplayName: name, Description: description,
	}
	if inherits != "" {
		req.Inherits = strings.Split(inherits, ",")
	}
	if permsFile != "" {
		if req.Permissions, err = c.readPermissions(permsFile); err != nil {
			return err
		}
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.CreateRole(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "created role %s (revision %d)\n", resp.GetRole().GetRoleId(), resp.GetRevision())
	return nil
}

// readPermissions reads role permissions in protobuf JSON from a file, or
// from standard input when name is "-".
func (c *cli) readPermissions(name string) (*pb.RolePermissions, error) {
	var (
		b   []byte
		err error
	)
	if name == "-" {
		b, err = io.ReadAll(c.stdin)
	} else {
		b, err = os.ReadFile(name) // #nosec G304 -- the file the operator named.
	}
	if err != nil {
		return nil, fmt.Errorf("read permissions: %w", err)
	}
	p := &pb.RolePermissions{}
	if err := protojson.Unmarshal(b, p); err != nil {
		return nil, fmt.Errorf("read permissions from %s: %w", name, err)
	}
	return p, nil
}

const rolesDeleteHelp = `Usage: authzctl roles delete <id>

Removes a role from the tenant. A role still granted to a user (even an
expired grant), inherited by another role, or named by a sharing rule or a
record share is refused (FAILED_PRECONDITION, ROLE_IN_USE).

Example:
  authzctl --tenant demo --actor oscar roles delete inside_sales --reason "team merged"
`

func rolesDelete(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("roles delete", rolesDeleteHelp)
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
	resp, err := c.admin.DeleteRole(ctx, &pb.DeleteRoleRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, RoleId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "deleted role %s (revision %d)\n", pos[0], resp.GetRevision())
	return nil
}
