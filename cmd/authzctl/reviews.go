package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const reviewsHelp = `Usage: authzctl reviews [list]
       authzctl reviews start --name n --default keep|revoke --deadline t [--roles r1,r2] [--reviewer u] [--unused-days n]
       authzctl reviews get <id>
       authzctl reviews items <id> [--mine | --reviewer u] [--undecided] [--csv]
       authzctl reviews keep|revoke <id> <user> <role>
       authzctl reviews close <id>

Access reviews: each active grant of the reviewed roles becomes an item for
a reviewer (the named one, else the user's manager) with the evidence of its
use from the decision log; reviewers keep or revoke each (revoke takes the
grant away at once); at the deadline, or when closed, undecided items follow
the review's default. Writes need --actor and --reason.

Examples:
  authzctl --tenant demo --actor oscar reviews start --name "2026 Q4" --roles sales_rep --default revoke --deadline 336h --reason "quarterly review"
  authzctl --tenant demo --actor alice reviews items rvw_0123456789abcdef --mine --undecided
  authzctl --tenant demo --actor alice reviews keep rvw_0123456789abcdef bob sales_rep --reason "still sells"
  authzctl --tenant demo --actor oscar reviews items rvw_0123456789abcdef --csv > review.csv
`

// runReviews dispatches the reviews subcommands; with none, or only
// flags, it lists.
func runReviews(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "list", reviewsHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "list":
		return reviewsList(ctx, c, args)
	case "start":
		return reviewsStart(ctx, c, args)
	case "get":
		return reviewsGet(ctx, c, args)
	case "items":
		return reviewsItems(ctx, c, args)
	case "keep", "revoke":
		return reviewsDecide(ctx, c, sub, args)
	case "close":
		return reviewsClose(ctx, c, args)
	}
	return usagef("reviews", "reviews: unknown subcommand %q", sub)
}

func progressText(r *pb.AccessReview) string {
	p := r.GetProgress()
	return fmt.Sprintf("%d items: %d kept, %d revoked, %d undecided; %d unused in %d days", p.GetItems(), p.GetKept(),
		p.GetRevoked(), p.GetUndecided(), p.GetUnused(), r.GetUnusedDays())
}

func reviewState(r *pb.AccessReview) string {
	return enumName(r.GetState().String(), "ACCESS_REVIEW_STATE_")
}

func reviewsList(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("reviews list", reviewsHelp)
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
	req := &pb.ListAccessReviewsRequest{TenantId: c.tenant, ActorId: c.actor, PageSize: 1000}
	resp := &pb.ListAccessReviewsResponse{}
	err = eachPage(func(token string) (string, error) {
		req.PageToken = token
		page, err := c.governance.ListAccessReviews(ctx, req)
		resp.Reviews, resp.Revision = append(resp.Reviews, page.GetReviews()...), page.GetRevision()
		return page.GetNextPageToken(), err
	})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	if len(resp.GetReviews()) == 0 {
		c.out.WriteString("no access reviews\n")
	} else {
		t := newTable(&c.out, "ID", "NAME", "STATE", "DEADLINE", "DEFAULT", "PROGRESS")
		for _, r := range resp.GetReviews() {
			t.row(r.GetReviewId(), r.GetName(), reviewState(r), timeText(r.GetDeadline()),
				enumName(r.GetDefaultDecision().String(), "REVIEW_DECISION_"), progressText(r))
		}
		t.flush()
	}
	c.printRevision(resp.GetRevision())
	return nil
}

const reviewsStartHelp = `Usage: authzctl reviews start --name n --default keep|revoke --deadline t [--roles r1,r2] [--reviewer u] [--unused-days n]

Starts a review of the tenant's active grants (of --roles only, when
given). Each becomes an item for --reviewer, else the user's manager, with
the evidence of its use over --unused-days (default 90). --deadline is an
RFC 3339 time, a date or a duration from now; then undecided items follow
--default. Needs admin.users.manage.

Example:
  authzctl --tenant demo --actor oscar reviews start --name "2026 Q4" --roles sales_rep,finance_readonly --default revoke --deadline 336h --reason "quarterly review"
`

func reviewsStart(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("reviews start", reviewsStartHelp)
	var name, def, deadline, roles, reviewer string
	var unused int
	cmd.fs.StringVar(&name, "name", "", "the review's `name`")
	cmd.fs.StringVar(&def, "default", "", "what undecided items get at the end: keep or revoke")
	cmd.fs.StringVar(&deadline, "deadline", "", "when the review ends: an RFC 3339 `time`, a date or a duration from now")
	cmd.fs.StringVar(&roles, "roles", "", "review only these comma-separated `roles`")
	cmd.fs.StringVar(&reviewer, "reviewer", "", "the `user` who reviews every item (default: each user's manager)")
	cmd.fs.IntVar(&unused, "unused-days", 0, "the evidence window in `days` (default 90)")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	d, ok := map[string]pb.ReviewDecision{"keep": pb.ReviewDecision_REVIEW_DECISION_KEEP, "revoke": pb.ReviewDecision_REVIEW_DECISION_REVOKE}[def]
	if !ok {
		return usagef(cmd.name, "reviews start: --default must be keep or revoke")
	}
	if deadline == "" {
		return usagef(cmd.name, "reviews start: --deadline is required")
	}
	at, err := parseTime("deadline", deadline, time.Now(), true)
	if err != nil {
		return usagef(cmd.name, "reviews start: %v", err)
	}
	req := &pb.StartAccessReviewRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, Name: name, ReviewerId: reviewer,
		DefaultDecision: d, Deadline: timestamppb.New(at), UnusedDays: int32(unused)}
	if roles != "" {
		req.RoleIds = strings.Split(roles, ",")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.governance.StartAccessReview(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	r := resp.GetReview()
	fmt.Fprintf(&c.out, "started %s until %s: %s (revision %d)\n", r.GetReviewId(), timeText(r.GetDeadline()), progressText(r), resp.GetRevision())
	return nil
}

const reviewsGetHelp = `Usage: authzctl reviews get <id>

Shows a review and its progress.

Example:
  authzctl --tenant demo --actor oscar reviews get rvw_0123456789abcdef
`

func reviewsGet(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("reviews get", reviewsGetHelp)
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
	resp, err := c.governance.GetAccessReview(ctx, &pb.GetAccessReviewRequest{TenantId: c.tenant, ActorId: c.actor, ReviewId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	r := resp.GetReview()
	fmt.Fprintf(&c.out, "%s %q: %s, deadline %s, default %s\n  %s\n", r.GetReviewId(), r.GetName(), reviewState(r), timeText(r.GetDeadline()),
		enumName(r.GetDefaultDecision().String(), "REVIEW_DECISION_"), progressText(r))
	if r.GetClosedBy() != "" {
		fmt.Fprintf(&c.out, "  closed by %s at %s\n", r.GetClosedBy(), timeText(r.GetClosedAt()))
	}
	c.printRevision(resp.GetRevision())
	return nil
}

const reviewsItemsHelp = `Usage: authzctl reviews items <id> [--mine | --reviewer u] [--undecided] [--csv]

Lists a review's items, by user then role: each grant with its reviewer,
when it was last used, and the decision; an offboarded user's grant is
marked "(inactive)" (user_inactive in the CSV). --csv writes the record for
compliance as CSV; a cell that would start a spreadsheet formula (=, +, -,
@, tab, carriage return) gets a leading single quote, so it shows as text.
Everyone's items need admin.users.manage; --mine lists the actor's own.

Example:
  authzctl --tenant demo --actor alice reviews items rvw_0123456789abcdef --mine --undecided
`

func reviewsItems(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("reviews items", reviewsItemsHelp)
	var (
		reviewer              string
		mine, undecided, csvs bool
	)
	cmd.fs.StringVar(&reviewer, "reviewer", "", "only this reviewer's items")
	cmd.fs.BoolVar(&mine, "mine", false, "only the actor's items")
	cmd.fs.BoolVar(&undecided, "undecided", false, "only the items not decided yet")
	cmd.fs.BoolVar(&csvs, "csv", false, "write the items as CSV")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if mine {
		if reviewer != "" {
			return usagef(cmd.name, "reviews items: --mine and --reviewer exclude each other")
		}
		reviewer = c.actor
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListReviewItemsResponse{}
	p := newProgress("review items read", false)
	err = eachPage(func(token string) (string, error) {
		resp, err := c.governance.ListReviewItems(ctx, &pb.ListReviewItemsRequest{TenantId: c.tenant, ActorId: c.actor, ReviewId: pos[0],
			ReviewerId: reviewer, UndecidedOnly: undecided, PageSize: 1000, PageToken: token})
		out.Items, out.Revision = append(out.Items, resp.GetItems()...), resp.GetRevision()
		p.add(len(resp.GetItems()))
		return resp.GetNextPageToken(), err
	})
	p.done()
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(out)
	}
	rows := [][]string{{"user", "role", "reviewer", "last_used", "unused", "user_inactive", "grant_expires", "decision", "decided_by", "decided_at", "comment"}}
	for _, it := range out.GetItems() {
		rows = append(rows, []string{it.GetUserId(), it.GetRoleId(), it.GetReviewerId(), timeText(it.GetLastUsedAt()), fmt.Sprint(it.GetUnused()),
			fmt.Sprint(it.GetUserInactive()), timeText(it.GetGrantExpiresAt()), enumName(it.GetDecision().String(), "REVIEW_DECISION_"), it.GetDecidedBy(),
			timeText(it.GetDecidedAt()), it.GetComment()})
	}
	if csvs {
		return writeCSV(&c.out, rows)
	}
	if len(rows) == 1 {
		c.out.WriteString("no items\n")
	} else {
		t := newTable(&c.out, "USER", "ROLE", "REVIEWER", "LAST_USED", "DECISION", "DECIDED_BY")
		for _, r := range rows[1:] {
			user := r[0]
			if r[5] == "true" {
				user += " (inactive)"
			}
			t.row(user, r[1], r[2], r[3], r[7], r[8])
		}
		t.flush()
	}
	c.printRevision(out.GetRevision())
	return nil
}

const reviewsDecideHelp = `Usage: authzctl reviews keep <id> <user> <role>
       authzctl reviews revoke <id> <user> <role>

Decides one item of an open review: keep the grant, or revoke it at once.
The actor must be the item's reviewer (or hold admin.users.manage), never
the user themselves; --reason is the item's comment.

Example:
  authzctl --tenant demo --actor frank reviews revoke rvw_0123456789abcdef erin sales_rep --reason "moved to marketing"
`

func reviewsDecide(ctx context.Context, c *cli, sub string, args []string) error {
	cmd := c.command("reviews "+sub, reviewsDecideHelp)
	pos, err := cmd.parse(args, 3, 3)
	if err != nil {
		return err
	}
	if err := cmd.needWriter(); err != nil {
		return err
	}
	d := pb.ReviewDecision_REVIEW_DECISION_KEEP
	if sub == "revoke" {
		d = pb.ReviewDecision_REVIEW_DECISION_REVOKE
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.governance.DecideReviewItem(ctx, &pb.DecideReviewItemRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason,
		ReviewId: pos[0], UserId: pos[1], RoleId: pos[2], Decision: d})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	verb := "kept"
	if sub == "revoke" {
		verb = "revoked"
	}
	fmt.Fprintf(&c.out, "%s %s of %s (revision %d)\n", verb, pos[2], pos[1], resp.GetRevision())
	return nil
}

const reviewsCloseHelp = `Usage: authzctl reviews close <id>

Closes an open review: undecided items follow its default. Needs
admin.users.manage. A review whose deadline passes is closed by the server.

Example:
  authzctl --tenant demo --actor oscar reviews close rvw_0123456789abcdef --reason "all answered"
`

func reviewsClose(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("reviews close", reviewsCloseHelp)
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
	resp, err := c.governance.CloseAccessReview(ctx, &pb.CloseAccessReviewRequest{TenantId: c.tenant, ActorId: c.actor, Reason: c.reason, ReviewId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	fmt.Fprintf(&c.out, "closed %s: %s (revision %d)\n", pos[0], progressText(resp.GetReview()), resp.GetRevision())
	return nil
}
