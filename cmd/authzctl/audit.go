package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const auditHelp = `Usage: authzctl audit decisions [filters]     the tenant's decision log
       authzctl audit decision <id>            one decision, by the id check printed
       authzctl audit explain <id>             why a logged decision was made, as the policy stood then
       authzctl audit changes [filters]        the tenant's change log: who changed what and why
       authzctl audit verify decisions|changes|all
                                               recompute the hash chains; exit 3 when broken
       authzctl audit checkpoint [--out file]  sign every chain's head now; keep the file safe
       authzctl audit unused [--days n]        the access review: grants unused for n days
       authzctl audit security [filters]       refused authentications and calls, credential changes

Reads the AuditService. Run 'authzctl audit <subcommand> -h' for the filters.

Example:
  authzctl --tenant demo audit decisions --user bob --result denied --since 24h
`

// runAudit dispatches the audit subcommands.
func runAudit(ctx context.Context, c *cli, args []string) error {
	sub, args, err := c.subcommand(args, "", auditHelp)
	if err != nil {
		return err
	}
	switch sub {
	case "decisions":
		return auditDecisions(ctx, c, args)
	case "decision":
		return auditDecision(ctx, c, args)
	case "explain":
		return auditExplain(ctx, c, args)
	case "changes":
		return auditChanges(ctx, c, args)
	case "verify":
		return auditVerify(ctx, c, args)
	case "checkpoint":
		return auditCheckpoint(ctx, c, args)
	case "unused":
		return auditUnused(ctx, c, args)
	case "security":
		return auditSecurity(ctx, c, args)
	case "":
		return usagef("audit", "audit: name a subcommand")
	}
	return usagef("audit", "audit: unknown subcommand %q", sub)
}

// window is a time range given as --since and --until.
type window struct{ since, until string }

func (w *window) add(cmd *command) {
	cmd.fs.StringVar(&w.since, "since", "", "only entries at or after this `time`: RFC 3339, a date, or a duration ago (24h)")
	cmd.fs.StringVar(&w.until, "until", "", "only entries before this `time`: RFC 3339, a date, or a duration ago")
}

// timestamps returns the range; unset ends are nil.
func (w *window) timestamps(cmd *command) (start, end *timestamppb.Timestamp, err error) {
	now := time.Now()
	for _, f := range []struct {
		name, value string
		ts          **timestamppb.Timestamp
	}{{"since", w.since, &start}, {"until", w.until, &end}} {
		if f.value == "" {
			continue
		}
		t, err := parseTime(f.name, f.value, now, false)
		if err != nil {
			return nil, nil, usagef(cmd.name, "%v", err)
		}
		*f.ts = timestamppb.New(t)
	}
	return start, end, nil
}

// enumValue reads an enum flag: the word people type (denied) becomes the
// value named prefix+DENIED.
func enumValue(cmd *command, flagName, word, prefix string, values map[string]int32) (int32, error) {
	if word == "" {
		return 0, nil
	}
	v, ok := values[prefix+strings.ToUpper(word)]
	if !ok || v == 0 {
		var known []string
		for name, v := range values {
			if v != 0 {
				known = append(known, enumName(name, prefix))
			}
		}
		slices.Sort(known)
		return 0, usagef(cmd.name, "--%s must be one of %s, not %q", flagName, strings.Join(known, ", "), word)
	}
	return v, nil
}

const auditDecisionsHelp = `Usage: authzctl audit decisions [--user u] [--module m] [--result allowed|denied]
         [--method m] [--record id] [--request-id id] [--caller c]
         [--since t] [--until t] [--newest] [--limit n]

Lists the tenant's decision log, oldest first (--newest: newest first), at
most --limit entries. Methods: check, batch_check, check_page,
get_field_access, plan_record_filter, dropped_marker.

Example:
  authzctl --tenant demo audit decisions --user frank --result denied --since 24h
`

func auditDecisions(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit decisions", auditDecisionsHelp)
	req := &pb.ListDecisionsRequest{}
	var (
		result, method string
		when           window
		limit          int
	)
	cmd.fs.StringVar(&req.SubjectId, "user", "", "only decisions about this `user`")
	cmd.fs.StringVar(&req.Module, "module", "", "only decisions on this `module`")
	cmd.fs.StringVar(&result, "result", "", "only decisions with this `result`: allowed or denied")
	cmd.fs.StringVar(&method, "method", "", "only decisions answering this `call` (see the methods above)")
	cmd.fs.StringVar(&req.RecordId, "record", "", "only decisions about this record `id`")
	cmd.fs.StringVar(&req.RequestId, "request-id", "", "only decisions of this request `id`")
	cmd.fs.StringVar(&req.Caller, "caller", "", "only decisions made for this `caller`")
	cmd.fs.BoolVar(&req.NewestFirst, "newest", false, "newest first")
	cmd.fs.IntVar(&limit, "limit", 100, "list at most `n` entries")
	when.add(cmd)
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	r, err := enumValue(cmd, "result", result, "DECISION_RESULT_", pb.DecisionResult_value)
	if err != nil {
		return err
	}
	m, err := enumValue(cmd, "method", method, "DECISION_METHOD_", pb.DecisionMethod_value)
	if err != nil {
		return err
	}
	if limit < 1 {
		return usagef(cmd.name, "--limit must be positive")
	}
	req.TenantId, req.Result, req.Method = c.tenant, pb.DecisionResult(r), pb.DecisionMethod(m)
	if req.StartTime, req.EndTime, err = when.timestamps(cmd); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Pages until the limit, gathered into one response.
	out := &pb.ListDecisionsResponse{}
	p := newProgress("decisions read", false)
	defer p.done()
	for len(out.Decisions) < limit {
		req.PageSize = int32(min(limit-len(out.Decisions), 1000))
		resp, err := c.audit.ListDecisions(ctx, req)
		if err != nil {
			return err
		}
		out.Decisions = append(out.Decisions, resp.GetDecisions()...)
		p.add(len(resp.GetDecisions()))
		out.NextPageToken, out.ResumeToken = resp.GetNextPageToken(), resp.GetResumeToken()
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "TIME", "RESULT", "SUBJECT", "PERMISSION", "RECORD", "REVISION", "DECISION")
	for _, d := range out.GetDecisions() {
		verdict := "DENY"
		if d.GetAllowed() {
			verdict = "ALLOW"
		}
		if d.GetMethod() == pb.DecisionMethod_DECISION_METHOD_DROPPED_MARKER {
			verdict = "DROPPED"
		}
		t.row(preciseTime(d.GetDecisionTime()), verdict, d.GetSubjectId(), d.GetPermission(), d.GetRecord().GetId(),
			strconv.FormatInt(d.GetRevision(), 10), d.GetDecisionId())
	}
	t.flush()
	if out.GetNextPageToken() != "" {
		fmt.Fprintf(&c.out, "more entries: raise --limit (listed %d)\n", len(out.GetDecisions()))
	}
	return nil
}

// preciseTime prints a decision time in UTC to the millisecond.
func preciseTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

const auditDecisionHelp = `Usage: authzctl audit decision <id>

Prints one entry of the decision log, by the decision id that check and
explain print (fields, perms and filter print none; fields and filter give
it as decisionId with --output json).

Example:
  authzctl --tenant demo audit decision 3f2a9c0d1e4b5a6f-42
`

func auditDecision(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit decision", auditDecisionHelp)
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
	resp, err := c.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: c.tenant, DecisionId: pos[0]})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	d := resp.GetDecision()
	verdict := "DENY"
	if d.GetAllowed() {
		verdict = "ALLOW"
	}
	w := &c.out
	fmt.Fprintf(w, "%s %s %s (revision %d)\n", verdict, d.GetSubjectId(), d.GetPermission(), d.GetRevision())
	if r := d.GetRecord(); r != nil {
		fmt.Fprintf(w, "record:   %s (owner %s, department %s)\n", r.GetId(), orNone(r.GetOwnerId()), orNone(r.GetDepartmentId()))
	}
	fmt.Fprintf(w, "decision: %s\nmethod:   %s\ntime:     %s (took %s)\ncaller:   %s\nrequest:  %s\n",
		d.GetDecisionId(), enumName(d.GetMethod().String(), "DECISION_METHOD_"), preciseTime(d.GetDecisionTime()),
		d.GetLatency().AsDuration(), d.GetCaller(), d.GetRequestId())
	fmt.Fprintf(w, "chain:    %s position %d\nhash:     %s\n", d.GetChainId(), d.GetChainPosition(), d.GetHash())
	if len(d.GetReasons()) > 0 {
		w.WriteString("reasons:\n")
	}
	for _, r := range d.GetReasons() {
		fmt.Fprintf(w, "  %s\n", r)
	}
	return nil
}

const auditChangesHelp = `Usage: authzctl audit changes [--by u] [--action a] [--target prefix] [--since t] [--until t] [--limit n]

Lists the tenant's change log, oldest revision first: every admin write with
its actor, reason, action and target, and under ALSO the grants it made or
took away besides its target (an approval's grant, the grants an access
review revoked). --target matches those too: grant/peggy/ lists every write
that changed a grant of peggy's. --output json adds the target before and
after each write.

Example:
  authzctl --tenant demo audit changes --target grant/peggy/
`

func auditChanges(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit changes", auditChangesHelp)
	req := &pb.ListChangesRequest{}
	var (
		when  window
		limit int
	)
	cmd.fs.StringVar(&req.ActorId, "by", "", "only writes by this admin `user`")
	cmd.fs.StringVar(&req.Action, "action", "", "only writes of this `action`, e.g. grant.create")
	cmd.fs.StringVar(&req.TargetPrefix, "target", "", "only writes whose target, or a grant they also changed, starts with `prefix`, e.g. grant/peggy/")
	cmd.fs.IntVar(&limit, "limit", 100, "list at most `n` entries")
	when.add(cmd)
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if limit < 1 {
		return usagef(cmd.name, "--limit must be positive")
	}
	var err error
	req.TenantId = c.tenant
	if req.StartTime, req.EndTime, err = when.timestamps(cmd); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Pages until the limit, gathered into one response.
	out := &pb.ListChangesResponse{}
	p := newProgress("changes read", false)
	defer p.done()
	for len(out.Changes) < limit {
		req.PageSize = int32(min(limit-len(out.Changes), 1000))
		resp, err := c.audit.ListChanges(ctx, req)
		if err != nil {
			return err
		}
		out.Changes = append(out.Changes, resp.GetChanges()...)
		p.add(len(resp.GetChanges()))
		out.NextPageToken = resp.GetNextPageToken()
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "REVISION", "TIME", "ACTOR", "ACTION", "TARGET", "REASON", "ALSO")
	for _, ch := range out.GetChanges() {
		t.row(strconv.FormatInt(ch.GetRevision(), 10), timeText(ch.GetChangeTime()), ch.GetActorId(), ch.GetAction(), ch.GetTarget(), ch.GetReason(),
			alsoText(ch.GetRelatedTargets(), req.GetTargetPrefix()))
	}
	t.flush()
	if out.GetNextPageToken() != "" {
		fmt.Fprintf(&c.out, "more entries: raise --limit (listed %d)\n", len(out.GetChanges()))
	}
	return nil
}

// alsoText shows a change's related targets: those under prefix first,
// at most three in all, then how many more.
func alsoText(related []string, prefix string) string {
	const most = 3
	if len(related) == 0 {
		return "-"
	}
	var shown, rest []string
	for _, r := range related {
		if strings.HasPrefix(r, prefix) {
			shown = append(shown, r)
		} else {
			rest = append(rest, r)
		}
	}
	shown = append(shown, rest...)
	if len(shown) <= most {
		return strings.Join(shown, " ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(shown[:most], " "), len(shown)-most)
}

const auditVerifyHelp = `Usage: authzctl audit verify decisions [--chain id] [--from n] [--to n] [--checkpoint file]
       authzctl audit verify changes [--from revision] [--to revision] [--checkpoint file]
       authzctl audit verify all [--checkpoint file]

Recomputes the keyed hash chains of the decision log (every writer's chain, or
one), of the tenant's change log, or of both logs whole (every chain, their
registration, every tenant's change log), and names the first broken link of
each. With --checkpoint, a file 'authzctl audit checkpoint' wrote, every chain
the checkpoint names must also still exist, reach the head it saw and hold the
same entry there: that detects a chain deleted, cut short or rewritten since,
whoever did it. The change log is verifiable on PostgreSQL only.

Exit status: 0 intact, 3 a chain is broken, 1 error, 2 usage error.

Examples:
  authzctl audit verify decisions
  authzctl --tenant demo audit verify changes
  authzctl audit verify all --checkpoint checkpoint.json
`

func auditVerify(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit verify", auditVerifyHelp)
	req := &pb.VerifyLogRequest{}
	cmd.fs.StringVar(&req.ChainId, "chain", "", "decisions: verify only this chain `id` (16 lowercase hex digits)")
	cmd.fs.Int64Var(&req.FromPosition, "from", 0, "the first `position` (decisions) or revision (changes) to verify")
	cmd.fs.Int64Var(&req.ToPosition, "to", 0, "the last `position` or revision to verify; 0 runs to the end")
	checkpoint := cmd.fs.String("checkpoint", "", "verify against the checkpoint in this `file`")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if *checkpoint != "" {
		if req.Checkpoint, err = readCheckpoint(*checkpoint); err != nil {
			return err
		}
	}
	switch pos[0] {
	case "all":
		req.Log = pb.LogKind_LOG_KIND_ALL
	case "decisions":
		req.Log = pb.LogKind_LOG_KIND_DECISIONS
	case "changes":
		if err := cmd.needTenant(); err != nil {
			return err
		}
		req.Log, req.TenantId = pb.LogKind_LOG_KIND_CHANGES, c.tenant
	default:
		return usagef(cmd.name, "audit verify: name the log: decisions, changes or all, not %q", pos[0])
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.audit.VerifyLog(ctx, req)
	if err != nil {
		return err
	}
	if c.json() {
		err = c.printJSON(resp)
	} else {
		printVerify(&c.out, resp)
	}
	if err == nil && !resp.GetIntact() {
		err = errDenied
	}
	return err
}

// printVerify prints a verification: one line per chain, then the broken
// links, then the verdict.
func printVerify(w *strings.Builder, resp *pb.VerifyLogResponse) {
	t := newTable(w, "LOG", "CHAIN", "POSITIONS", "CHECKED", "RETAINED_AFTER", "RESULT", "HEAD")
	for _, ch := range resp.GetChains() {
		result := "intact"
		if ch.GetBroken() != nil {
			result = "BROKEN"
		}
		t.row(enumName(ch.GetLog().String(), "LOG_KIND_"), ch.GetChainId(), fmt.Sprintf("%d-%d", ch.GetFirstPosition(), ch.GetLastPosition()),
			strconv.FormatInt(ch.GetEntriesChecked(), 10), strconv.FormatInt(ch.GetRetainedAfter(), 10), result, ch.GetHeadHash())
	}
	t.flush()
	if cp := resp.GetCheckpoint(); cp != nil {
		fmt.Fprintf(w, "checkpoint of %s (key %s): %d heads compared\n", cp.GetIssuedTime().AsTime().Format(time.RFC3339), cp.GetKeyId(), cp.GetHeadsChecked())
	}
	for _, ch := range resp.GetChains() {
		if b := ch.GetBroken(); b != nil {
			fmt.Fprintf(w, "chain %s breaks at %d (%s): %s", ch.GetChainId(), b.GetPosition(), enumName(b.GetKind().String(), "BREAK_KIND_"), b.GetMessage())
			if b.GetDecisionId() != "" {
				fmt.Fprintf(w, " [decision %s]", b.GetDecisionId())
			}
			w.WriteByte('\n')
		}
	}
	if resp.GetIntact() {
		w.WriteString("INTACT\n")
	} else {
		w.WriteString("BROKEN\n")
	}
}

const auditCheckpointHelp = `Usage: authzctl audit checkpoint [--out file]

Asks the service to sign the head of every decision chain and of every
tenant's change log now, and writes the signed checkpoint (JSON) to the file,
or prints it. Keep checkpoints outside the database, where its administrators
cannot reach them; 'authzctl audit verify all --checkpoint file' later proves
that nothing the checkpoint covers was deleted or rewritten. Needs an audit
credential for every tenant, and PostgreSQL.

Example:
  authzctl audit checkpoint --out checkpoint-$(date +%F).json
`

// auditCheckpoint asks for a checkpoint and keeps it in a file.
func auditCheckpoint(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit checkpoint", auditCheckpointHelp)
	out := cmd.fs.String("out", "", "write the checkpoint to this `file` (0600) instead of printing it")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.audit.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
	if err != nil {
		return err
	}
	cp := resp.GetCheckpoint()
	if *out == "" {
		return c.printJSON(cp)
	}
	b, err := jsonOutput.Marshal(cp)
	if err != nil {
		return fmt.Errorf("encode checkpoint: %w", err)
	}
	if err := os.WriteFile(*out, append(b, '\n'), 0o600); err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(cp)
	}
	fmt.Fprintf(&c.out, "checkpoint %d of %s signed by %s: %d decision chains, %d tenants; written to %s\n", cp.GetId(),
		cp.GetIssuedTime().AsTime().Format(time.RFC3339), cp.GetKeyId(), len(cp.GetDecisionChains()), len(cp.GetTenants()), *out)
	return nil
}

// readCheckpoint reads a checkpoint file 'audit checkpoint' wrote.
func readCheckpoint(path string) (*pb.Checkpoint, error) {
	b, err := os.ReadFile(path) //nolint:gosec // the auditor names the file to read
	if err != nil {
		return nil, err
	}
	cp := &pb.Checkpoint{}
	if err := protojson.Unmarshal(b, cp); err != nil {
		return nil, fmt.Errorf("checkpoint %s: %w", path, err)
	}
	return cp, nil
}

const auditUnusedHelp = `Usage: authzctl audit unused [--days n]

The access review: the tenant's active grants whose role's permissions no
allowed decision of the user used in the last n days (grants younger than
the window are left out). Says so when the decision log does not cover the
whole window.

Example:
  authzctl --tenant demo audit unused --days 30
`

func auditUnused(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit unused", auditUnusedHelp)
	var days int
	cmd.fs.IntVar(&days, "days", 90, "the window in `days`, 1-3650")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if days < 1 || days > 3650 {
		return usagef(cmd.name, "--days must be 1-3650")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	// Every page, gathered into one response.
	req := &pb.ListUnusedGrantsRequest{TenantId: c.tenant, UnusedDays: int32(days), PageSize: 1000}
	out := &pb.ListUnusedGrantsResponse{}
	p := newProgress("grants read", false)
	defer p.done()
	for {
		resp, err := c.audit.ListUnusedGrants(ctx, req)
		if err != nil {
			return err
		}
		out.Grants = append(out.Grants, resp.GetGrants()...)
		p.add(len(resp.GetGrants()))
		out.Revision, out.WindowStart, out.EvidenceSince = resp.GetRevision(), resp.GetWindowStart(), resp.GetEvidenceSince()
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "USER", "ROLE", "GRANTED_BY", "GRANTED_AT", "EXPIRES")
	for _, g := range out.GetGrants() {
		t.row(g.GetUserId(), g.GetRoleId(), g.GetGrantedBy(), timeText(g.GetGrantedAt()), timeText(g.GetExpiresAt()))
	}
	t.flush()
	fmt.Fprintf(&c.out, "window since %s\n", timeText(out.GetWindowStart()))
	if out.GetEvidenceSince().AsTime().After(out.GetWindowStart().AsTime()) {
		fmt.Fprintf(&c.out, "note: the decision log holds evidence only since %s; a grant may have been used unseen\n", timeText(out.GetEvidenceSince()))
	}
	c.printRevision(out.GetRevision())
	return nil
}

const auditSecurityHelp = `Usage: authzctl audit security [--kind k] [--since t] [--until t] [--newest] [--limit n]

Lists the security log: refused authentications (authn.refused), refused
calls (call.refused: a missing scope, tenant or permission, an escalation),
credentials created and revoked (credential.created, credential.revoked).
With --tenant, that tenant's events; without, every tenant the credential
may see (and, for a credential of every tenant, events of no tenant).

Example:
  authzctl audit security --kind call.refused --since 24h
`

func auditSecurity(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit security", auditSecurityHelp)
	req := &pb.ListSecurityEventsRequest{}
	var (
		when  window
		limit int
	)
	cmd.fs.StringVar(&req.Kind, "kind", "", "only events of this `kind`")
	cmd.fs.BoolVar(&req.NewestFirst, "newest", false, "newest first")
	cmd.fs.IntVar(&limit, "limit", 100, "list at most `n` events")
	when.add(cmd)
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if limit < 1 {
		return usagef(cmd.name, "--limit must be positive")
	}
	var err error
	if req.StartTime, req.EndTime, err = when.timestamps(cmd); err != nil {
		return err
	}
	req.TenantId = c.tenant
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	out := &pb.ListSecurityEventsResponse{}
	p := newProgress("security events read", false)
	defer p.done()
	for len(out.Events) < limit {
		req.PageSize = int32(min(limit-len(out.Events), 1000))
		resp, err := c.audit.ListSecurityEvents(ctx, req)
		if err != nil {
			return err
		}
		out.Events = append(out.Events, resp.GetEvents()...)
		p.add(len(resp.GetEvents()))
		out.NextPageToken = resp.GetNextPageToken()
		if req.PageToken = resp.GetNextPageToken(); req.PageToken == "" {
			break
		}
	}
	if c.json() {
		return c.printJSON(out)
	}
	t := newTable(&c.out, "TIME", "KIND", "REASON", "TENANT", "CREDENTIAL", "ACTOR", "METHOD", "COUNT", "PEER")
	for _, ev := range out.GetEvents() {
		t.row(preciseTime(ev.GetEventTime()), ev.GetKind(), ev.GetReason(), ev.GetTenantId(), ev.GetCredential(), ev.GetActorId(),
			strings.TrimPrefix(ev.GetMethod(), "/crmauthz.v1."), strconv.FormatInt(ev.GetCount(), 10), ev.GetPeer())
	}
	t.flush()
	if out.GetNextPageToken() != "" {
		fmt.Fprintf(&c.out, "more events: raise --limit (listed %d)\n", len(out.GetEvents()))
	}
	return nil
}

const auditExplainHelp = `Usage: authzctl audit explain <decision id>

Explains a logged decision after the fact, whether or not its caller asked
for reasons: the tenant's policy is rebuilt as it stood at the decision's
revision and decided again at its time. Prints the verdict, whether it
agrees with the log, and the reasons (which role and rule, or what was
missing). Exit status 3 when it does not agree with the log.

Example:
  authzctl --tenant demo audit explain 4f0c2a9e8b7d6c5a-12
`

func auditExplain(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("audit explain", auditExplainHelp)
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
	resp, err := c.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: c.tenant, DecisionId: pos[0]})
	if err != nil {
		return err
	}
	if !resp.GetAgreesWithLog() {
		err = errDenied
	}
	if c.json() {
		if perr := c.printJSON(resp); perr != nil {
			return perr
		}
		return err
	}
	d := resp.GetDecision()
	verdict := "DENY"
	if resp.GetAllowed() {
		verdict = "ALLOW"
	}
	agrees := "agrees with the log"
	if !resp.GetAgreesWithLog() {
		agrees = "DISAGREES with the log"
	}
	fmt.Fprintf(&c.out, "%s %s %s at revision %d, %s (%s)\n", verdict, d.GetSubjectId(), d.GetPermission(), resp.GetRevision(),
		preciseTime(d.GetDecisionTime()), agrees)
	for _, r := range resp.GetReasons() {
		fmt.Fprintf(&c.out, "  %s: %s\n", enumName(r.GetKind().String(), "REASON_KIND_"), r.GetMessage())
		if r.GetRule() != "" {
			fmt.Fprintf(&c.out, "    rule: %s\n", r.GetRule())
		}
	}
	return err
}
