package main

import (
	"context"
	"flag"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const requestsHelp = `Usage: authzctl requests [list] [--view mine|decide|all] [--state s]
       authzctl requests roles
       authzctl requests create <role> --for duration [--user u]
       authzctl requests get <id>
       authzctl requests approve <id> [--for duration]
       authzctl requests deny <id>
       authzctl requests cancel <id>
       authzctl requests policy <role> --approver a [--approver a2] --max-days n [--pending-days n]
       authzctl requests policy <role> --off

Access requests: a user asks for a requestable role with a reason and for
how long; one of the role's approvers approves (the role is granted until
then) or denies; a request nobody decides lapses. Writes need --actor and
--reason (the request's justification, the approver's reason). Run
'authzctl requests <subcommand> -h' for each one's flags.

Examples:
  authzctl --tenant demo --actor peggy requests create data_exporter --for 72h --reason "quarterly churn analysis"
  authzctl --tenant demo --actor oscar requests --view decide
  authzctl --tenant demo --actor oscar requests approve req_0123456789abcdef --reason "ok for the quarter"
`

// runRequests dispatches the requests subcommands; with none, or only
// flags, it lists.
func runRequests(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", requestsHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return requestsList(ctx, c, args)
	case "roles":
		return requestsRoles(ctx, c, args)
	case "create":
		return requestsCreate(ctx, c, args)
	case "get":
		return requestsGet(ctx, c, args)
	case "approve":
		return requestsApprove(ctx, c, args)
	case "deny", "cancel":
		return requestsClose(ctx, c, sub, args)
	case "policy":
		return requestsPolicy(ctx, c, args)
	}
	return usagef("requests", "requests: unknown subcommand %q", sub)
}

const requestsListHelp = `Usage: authzctl requests [list] [--view mine|decide|all] [--state s]

Lists access requests, newest first: the actor's own (mine, the default),
the pending ones the actor may decide (decide), or all of the tenant's (all,
needs admin.users.manage). --state keeps one state: pending, approved,
denied, cancelled or lapsed.

Example:
  authzctl --tenant demo --actor oscar requests list --view decide
`

var requestViews = map[string]pb.AccessRequestView{
	"mine":   pb.AccessRequestView_ACCESS_REQUEST_VIEW_MINE,
	"decide": pb.AccessRequestView_ACCESS_REQUEST_VIEW_TO_DECIDE,
	"all":    pb.AccessRequestView_ACCESS_REQUEST_VIEW_ALL,
}

func requestsList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests list", requestsListHelp)
	var view, state string
	cmd.fs.StringVar(&view, "view", "mine", "whose requests: mine, decide or all")
	cmd.fs.StringVar(&state, "state", "", "only this `state`: pending, approved, denied, cancelled or lapsed")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	v, ok := requestViews[view]
	if !ok {
		return usagef(cmd.name, "requests list: --view must be mine, decide or all, got %q", view)
	}
	req := &pb.ListAccessRequestsRequest{TenantId: c.tenant, ActorId: c.actor, View: v, PageSize: 1000}
	if state != "" {
		s, ok := pb.AccessRequestState_value["ACCESS_REQUEST_STATE_"+strings.ToUpper(state)]
		if !ok || s == 0 {
			return usagef(cmd.name, "requests list: --state must be pending, approved, denied, cancelled or lapsed, got %q", state)
		}
		req.State = pb.AccessRequestState(s)
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListAccessRequestsResponse{}
	err = eachPage(func(token string) (string, error) {
		req.PageToken = token
		resp, err := c.governance.ListAccessRequests(ctx, req)
		out.Requests, out.Revision = append(out.Requests, resp.GetRequests()...), resp.GetRevision()
		return resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	if len(out.GetRequests()) == 0 {
		c.out.WriteString("no access requests\n")
	} else {
		t := newTable(&c.out, "ID", "USER", "ROLE", "FOR", "STATE", "REQUESTED_AT", "DECIDED_BY", "REASON")
		for _, r := range out.GetRequests() {
			t.row(r.GetRequestId(), r.GetUserId(), r.GetRoleId(), r.GetDuration().AsDuration().String(),
				enumName(r.GetState().String(), "ACCESS_REQUEST_STATE_"), timeText(r.GetRequestedAt()), r.GetDecidedBy(), r.GetReason())
		}
		t.flush()
	}
	c.printRevision(out.GetRevision())
	return nil
}

const requestsRolesHelp = `Usage: authzctl requests roles

Lists the roles users may request, with who approves them and for how long
an approval may grant them.

Example:
  authzctl --tenant demo --actor peggy requests roles
`

func requestsRoles(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests roles", requestsRolesHelp)
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
	resp, err := c.governance.ListRequestableRoles(ctx, &pb.ListRequestableRolesRequest{TenantId: c.tenant, ActorId: c.actor})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	if len(resp.GetRoles()) == 0 {
		c.out.WriteString("no requestable roles\n")
	} else {
		t := newTable(&c.out, "ROLE", "MAX_DAYS", "PENDING_DAYS", "APPROVERS", "DESCRIPTION")
		for _, r := range resp.GetRoles() {
			p := r.GetRequestPolicy()
			t.row(r.GetRoleId(), fmt.Sprint(p.GetMaxDays()), fmt.Sprint(p.GetPendingDays()), approversText(p.GetApprovers()), r.GetDescription())
		}
		t.flush()
	}
	c.printRevision(resp.GetRevision())
	return nil
}

func approversText(as []*pb.Approver) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = enumName(a.GetKind().String(), "APPROVER_KIND_")
		if a.GetId() != "" {
			parts[i] += ":" + a.GetId()
		}
	}
	return strings.Join(parts, ",")
}

const requestsCreateHelp = `Usage: authzctl requests create <role> --for duration [--user u]

Asks for a requestable role for a time (a duration such as 72h or 720h, at
most the role's max days), with --reason as the justification. The request
is for the actor unless --user names another user (that needs
admin.users.manage).

Example:
  authzctl --tenant demo --actor peggy requests create data_exporter --for 72h --reason "quarterly churn analysis"
`

func requestsCreate(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests create", requestsCreateHelp)
	var user string
	var d time.Duration
	cmd.fs.StringVar(&user, "user", "", "ask for this `user` instead of the actor")
	cmd.fs.DurationVar(&d, "for", 0, "how long the role is needed, e.g. 72h")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	if d <= 0 {
		return usagef(cmd.name, "requests create: --for is required, e.g. --for 72h")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.governance.RequestAccess(ctx, &pb.RequestAccessRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason,
		RoleId: pos[0], UserId: user, Duration: durationpb.New(d)})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	r := resp.GetRequest()
	fmt.Fprintf(&c.out, "requested %s for %s for %s: %s, pending until %s (revision %d)\n", r.GetRoleId(), r.GetUserId(),
		r.GetDuration().AsDuration(), r.GetRequestId(), timeText(r.GetPendingUntil()), resp.GetRevision())
	return nil
}

const requestsGetHelp = `Usage: authzctl requests get <id>

Shows one access request and whether the actor may decide it.

Example:
  authzctl --tenant demo --actor oscar requests get req_0123456789abcdef
`

func requestsGet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests get", requestsGetHelp)
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
	resp, err := c.governance.GetAccessRequest(ctx, &pb.GetAccessRequestRequest{TenantId: c.tenant, ActorId: c.actor, RequestId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	r := resp.GetRequest()
	fmt.Fprintf(&c.out, "%s: %s asks for %s for %s (asked by %s at %s)\n", r.GetRequestId(), r.GetUserId(), r.GetRoleId(),
		r.GetDuration().AsDuration(), r.GetRequestedBy(), timeText(r.GetRequestedAt()))
	fmt.Fprintf(&c.out, "  reason: %s\n  state: %s", r.GetReason(), enumName(r.GetState().String(), "ACCESS_REQUEST_STATE_"))
	switch {
	case r.GetDecidedBy() != "":
		fmt.Fprintf(&c.out, " by %s at %s: %s", r.GetDecidedBy(), timeText(r.GetDecidedAt()), r.GetDecisionReason())
	case r.GetState() == pb.AccessRequestState_ACCESS_REQUEST_STATE_PENDING:
		fmt.Fprintf(&c.out, " until %s", timeText(r.GetPendingUntil()))
	}
	c.out.WriteString("\n")
	if r.GetGrantExpiresAt() != nil {
		fmt.Fprintf(&c.out, "  granted until %s\n", timeText(r.GetGrantExpiresAt()))
	}
	fmt.Fprintf(&c.out, "  you may decide it: %t\n", resp.GetActorMayDecide())
	c.printRevision(resp.GetRevision())
	return nil
}

const requestsApproveHelp = `Usage: authzctl requests approve <id> [--for duration]

Approves a pending request: the user holds the role until now plus the
duration asked, or the shorter --for. The actor must be one of the role's
approvers and hold what the role gives; nobody approves their own request.

Example:
  authzctl --tenant demo --actor oscar requests approve req_0123456789abcdef --for 24h --reason "one day is enough"
`

func requestsApprove(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests approve", requestsApproveHelp)
	var d time.Duration
	cmd.fs.DurationVar(&d, "for", 0, "grant for this shorter `duration` than asked")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	req := &pb.ApproveAccessRequestRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, RequestId: pos[0]}
	if d != 0 {
		req.Duration = durationpb.New(d)
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.governance.ApproveAccessRequest(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	r := resp.GetRequest()
	fmt.Fprintf(&c.out, "approved %s: %s holds %s until %s (revision %d)\n", r.GetRequestId(), r.GetUserId(), r.GetRoleId(),
		timeText(r.GetGrantExpiresAt()), resp.GetRevision())
	return nil
}

const requestsCloseHelp = `Usage: authzctl requests deny <id>
       authzctl requests cancel <id>

Denies a pending request (an approver, with --reason for the requester), or
cancels it (the requester, or an admin with admin.users.manage).

Example:
  authzctl --tenant demo --actor oscar requests deny req_0123456789abcdef --reason "use the shared report instead"
`

func requestsClose(ctx context.Context, c *cli, sub string, args []string) error {
	cmd := c.command("requests "+sub, requestsCloseHelp)
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
	var r *pb.AccessRequest
	var rev int64
	if sub == "deny" {
		resp, err := c.governance.DenyAccessRequest(ctx, &pb.DenyAccessRequestRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, RequestId: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		r, rev = resp.GetRequest(), resp.GetRevision()
	} else {
		resp, err := c.governance.CancelAccessRequest(ctx, &pb.CancelAccessRequestRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, RequestId: pos[0]})
		if err != nil {
			return err
		}
		if c.json() {
			return c.printJSON(resp)
		}
		r, rev = resp.GetRequest(), resp.GetRevision()
	}
	fmt.Fprintf(&c.out, "%s %s: %s for %s (revision %d)\n", enumName(r.GetState().String(), "ACCESS_REQUEST_STATE_"), r.GetRequestId(),
		r.GetRoleId(), r.GetUserId(), rev)
	return nil
}

const requestsPolicyHelp = `Usage: authzctl requests policy <role> --approver a [--approver a2] --max-days n [--pending-days n]
       authzctl requests policy <role> --off

Makes a role requestable, naming who approves: manager (the user's
manager), function:<id> (its holders) or role:<id> (its holders); any one
of them may decide. --max-days bounds the grant an approval gives (1-365),
--pending-days how long a request waits (1-90, default 14). --off makes the
role no longer requestable. Needs admin.roles.manage, --actor and --reason.

Example:
  authzctl --tenant demo --actor oscar requests policy data_exporter --approver manager --approver function:admin.users.manage --max-days 30 --reason "exports on request"
`

// approverFlags collects repeated --approver flags.
type approverFlags []*pb.Approver

func (a *approverFlags) String() string { return "" }

func (a *approverFlags) Set(s string) error {
	kind, id, _ := strings.Cut(s, ":")
	switch kind {
	case "manager":
		if id != "" {
			return fmt.Errorf("manager takes no id")
		}
		*a = append(*a, &pb.Approver{Kind: pb.ApproverKind_APPROVER_KIND_MANAGER})
	case "function":
		*a = append(*a, &pb.Approver{Kind: pb.ApproverKind_APPROVER_KIND_FUNCTION, Id: id})
	case "role":
		*a = append(*a, &pb.Approver{Kind: pb.ApproverKind_APPROVER_KIND_ROLE, Id: id})
	default:
		return fmt.Errorf("must be manager, function:<id> or role:<id>")
	}
	return nil
}

var _ flag.Value = (*approverFlags)(nil)

func requestsPolicy(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("requests policy", requestsPolicyHelp)
	var (
		approvers        approverFlags
		maxDays, pending int
		off              bool
	)
	cmd.fs.Var(&approvers, "approver", "who approves: manager, function:<id> or role:<id> (repeatable)")
	cmd.fs.IntVar(&maxDays, "max-days", 0, "the longest grant an approval gives, in `days` (1-365)")
	cmd.fs.IntVar(&pending, "pending-days", 0, "how many `days` a request waits before it lapses (default 14)")
	cmd.fs.BoolVar(&off, "off", false, "make the role no longer requestable")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	req := &pb.SetRequestPolicyRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, RoleId: pos[0]}
	switch {
	case off && (len(approvers) > 0 || maxDays != 0 || pending != 0):
		return usagef(cmd.name, "requests policy: --off takes no other flag")
	case !off:
		if len(approvers) == 0 || maxDays == 0 {
			return usagef(cmd.name, "requests policy: give --approver and --max-days, or --off")
		}
		req.Policy = &pb.RequestPolicy{Approvers: approvers, MaxDays: int32(maxDays), PendingDays: int32(pending)}
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.governance.SetRequestPolicy(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	if p := resp.GetRole().GetRequestPolicy(); p != nil {
		fmt.Fprintf(&c.out, "role %s is requestable for up to %d days, approved by %s (revision %d)\n", pos[0], p.GetMaxDays(),
			approversText(p.GetApprovers()), resp.GetRevision())
	} else {
		fmt.Fprintf(&c.out, "role %s is not requestable (revision %d)\n", pos[0], resp.GetRevision())
	}
	return nil
}

const whocanHelp = `Usage: authzctl whocan <module> <verb> [--record id --owner u [--department d]]
       authzctl whocan --function f
       authzctl whocan --field module.field [--write]

Lists the users a permission is allowed to, as Check decides it for each,
with the roles (and inherited roles) that give it, and for a record what
reaches it. Needs admin.users.manage.

Examples:
  authzctl --tenant demo --actor oscar whocan account export
  authzctl --tenant demo --actor oscar whocan --function data.export
  authzctl --tenant demo --actor oscar whocan account read --record acc-17 --owner alice
`

func runWhoCan(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("whocan", whocanHelp)
	var (
		function, field string
		write           bool
		rec             recordFlags
	)
	cmd.fs.StringVar(&function, "function", "", "the function `id`, e.g. data.export")
	cmd.fs.StringVar(&field, "field", "", "the field `module.field`, e.g. account.credit_limit")
	cmd.fs.BoolVar(&write, "write", false, "with --field: writing the field instead of reading it")
	rec.add(cmd)
	pos, err := cmd.parse(args, 0, 2)
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
	perm, err := permission(cmd, pos, function, field, write, record)
	if err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.WhoCanResponse{}
	err = eachPage(func(token string) (string, error) {
		resp, err := c.governance.WhoCan(ctx, &pb.WhoCanRequest{TenantId: c.tenant, ActorId: c.actor, Permission: perm, PageSize: 1000, PageToken: token})
		out.Users, out.Revision = append(out.Users, resp.GetUsers()...), resp.GetRevision()
		return resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	if len(out.GetUsers()) == 0 {
		fmt.Fprintf(&c.out, "nobody may %s\n", permissionText(perm))
	} else {
		t := newTable(&c.out, "USER", "UNTIL", "WHY")
		for _, u := range out.GetUsers() {
			var why []string
			for _, r := range u.GetReasons() {
				why = append(why, r.GetMessage())
			}
			t.row(u.GetUserId(), timeText(u.GetExpiresAt()), strings.Join(why, "; "))
		}
		t.flush()
	}
	c.printRevision(out.GetRevision())
	return nil
}

const expiringHelp = `Usage: authzctl expiring [--within duration] [--user u]

Lists the grants and record shares that end within a window (default 168h,
a week), soonest first, so that users can be warned before they lose
access. Everyone's need admin.users.manage; the actor's own (--user
themselves) need nothing.

Example:
  authzctl --tenant demo --actor oscar expiring --within 720h
`

func runExpiring(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("expiring", expiringHelp)
	var user string
	within := 7 * 24 * time.Hour
	cmd.fs.StringVar(&user, "user", "", "only this `user`'s grants and the records shared with them")
	cmd.fs.DurationVar(&within, "within", within, "the window from now, 1h to 8760h")
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
	out := &pb.ListExpiringResponse{}
	err = eachPage(func(token string) (string, error) {
		resp, err := c.governance.ListExpiring(ctx, &pb.ListExpiringRequest{TenantId: c.tenant, ActorId: c.actor, UserId: user,
			Within: durationpb.New(within), PageSize: 1000, PageToken: token})
		out.Items, out.Revision = append(out.Items, resp.GetItems()...), resp.GetRevision()
		return resp.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	if len(out.GetItems()) == 0 {
		fmt.Fprintf(&c.out, "nothing ends within %s\n", within)
	} else {
		t := newTable(&c.out, "EXPIRES", "KIND", "WHO", "WHAT")
		for _, it := range out.GetItems() {
			if g := it.GetGrant(); g != nil {
				t.row(timeText(it.GetExpiresAt()), "grant", g.GetUserId(), "role "+g.GetRoleId())
			} else {
				sh := it.GetRecordShare()
				p := sh.GetPrincipal()
				t.row(timeText(it.GetExpiresAt()), "record share", principalText(p), sh.GetModule()+" "+sh.GetRecordId())
			}
		}
		t.flush()
	}
	c.printRevision(out.GetRevision())
	return nil
}
