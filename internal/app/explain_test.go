package app_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/app"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestExplainAfterTheFact: across random writes of every kind the change
// log replays — grants (some expiring), revokes, role edits, a deny role
// granted and revoked, record shares (some expiring) and unshares, sharing
// rules created and deleted, memberships and managers, departments created
// and moved, users deactivated and reactivated — and a moving clock, every
// logged Check, whether or not it asked for reasons, is explained after the
// fact exactly as Check explained it when decided: the tenant's policy
// rebuilt at the decision's revision and decided at its time. Record-level
// questions are asked whose answers turn on those writes. A decision of a
// page is refused as not explainable.
func TestExplainAfterTheFact(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		// Decisions logged at the test's clock, which moves by hours.
		clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
		base := startSetup(t, cfg, clk, nil, app.WithClockedDecisions())
		e := &auditEnv{env: base, audit: pb.NewAuditServiceClient(base.conn)}
		w := newRandomWriter(e, rand.New(rand.NewPCG(7, 11)))
		perms := []*pb.Permission{
			modulePerm("account", "read"), modulePerm("account", "export"), modulePerm("lead", "update"), functionPerm("data.export"),
			functionPerm("report.view"), fieldPerm("account", "annual_revenue", false), fieldPerm("order", "discount", true),
		}
		for _, r := range w.records {
			for _, verb := range []string{"read", "update"} {
				perms = append(perms, r.perm(verb))
			}
		}
		type logged struct {
			id      string
			allowed bool
			reasons []*pb.Reason
		}
		var decisions []logged
		kinds := map[pb.ReasonKind]int{}
		for step := 0; step < 4*len(writeKinds); step++ {
			w.step(t, step)
			e.clock.Advance(time.Duration(w.rng.IntN(12)) * time.Hour)
			for k := 0; k < 3; k++ {
				// The first check asks about what the write was about.
				subject, perm := w.pick(w.users), perms[w.rng.IntN(len(perms))]
				if k == 0 {
					subject = w.focus.user
					if w.focus.perm != nil {
						perm = w.focus.perm
					}
				}
				req := &pb.CheckRequest{TenantId: "demo", SubjectId: subject, Permission: perm, Explain: true}
				resp, err := e.authz.Check(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range resp.GetReasons() {
					kinds[r.GetKind()]++
				}
				decisions = append(decisions, logged{resp.GetDecisionId(), resp.GetAllowed(), resp.GetReasons()})
				if k == 2 {
					// Asked again without reasons: explained after the
					// fact with the reasons the first answer gave.
					req.Explain = false
					again, err := e.authz.Check(ctx, req)
					if err != nil || len(again.GetReasons()) != 0 {
						t.Fatalf("check without reasons: %v, %v", again, err)
					}
					decisions = append(decisions, logged{again.GetDecisionId(), again.GetAllowed(), resp.GetReasons()})
				}
			}
		}
		w.exercised(t)
		// The checks asked questions the writes answer: each way a record
		// is reached, or refused, appears among the reasons given.
		for _, k := range []pb.ReasonKind{pb.ReasonKind_REASON_KIND_IN_SCOPE, pb.ReasonKind_REASON_KIND_OUT_OF_SCOPE,
			pb.ReasonKind_REASON_KIND_MANAGER, pb.ReasonKind_REASON_KIND_SHARING_RULE, pb.ReasonKind_REASON_KIND_RECORD_SHARE,
			pb.ReasonKind_REASON_KIND_USER_INACTIVE, pb.ReasonKind_REASON_KIND_DENIED_BY_ROLE, pb.ReasonKind_REASON_KIND_GRANT_EXPIRED} {
			if kinds[k] == 0 {
				t.Errorf("no decision gave a reason of kind %s: the test proves too little (%v)", k, kinds)
			}
		}
		e.waitDecision(t, "demo", decisions[len(decisions)-1].id)
		allowed := 0
		for _, d := range decisions {
			got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: d.id})
			if err != nil {
				t.Fatalf("explain %s: %v", d.id, err)
			}
			if got.GetAllowed() != d.allowed || !got.GetAgreesWithLog() || !sameReasons(got.GetReasons(), d.reasons) {
				t.Fatalf("decision %s (%s of %s on %v at revision %d): explained after the fact as %t %v, at the time as %t %v",
					d.id, got.GetDecision().GetPermission(), got.GetDecision().GetSubjectId(), got.GetDecision().GetRecord(), got.GetRevision(),
					got.GetAllowed(), got.GetReasons(), d.allowed, d.reasons)
			}
			if d.allowed {
				allowed++
			}
		}
		if allowed == 0 || allowed == len(decisions) {
			t.Fatalf("%d of %d decisions allowed: the test proves too little", allowed, len(decisions))
		}

		page, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}})
		if err != nil {
			t.Fatal(err)
		}
		e.waitDecision(t, "demo", page.GetDecisionId())
		_, err = e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: page.GetDecisionId()})
		if code, reason, _ := errorInfo(t, err); code != codes.FailedPrecondition || reason != "NOT_EXPLAINABLE" {
			t.Errorf("explaining a page: %v", err)
		}
	})
}

// sameReasons reports whether two explanations give the same reasons, in
// the same order, field for field.
func sameReasons(a, b []*pb.Reason) bool {
	return slices.EqualFunc(a, b, func(x, y *pb.Reason) bool { return proto.Equal(x, y) })
}

// testRecord is a record of the demo tenant the random checks ask about.
type testRecord struct{ module, id, owner, dept string }

func (r testRecord) perm(verb string) *pb.Permission {
	return recordPerm(r.module, verb, r.id, r.owner, r.dept)
}

// randomWriter makes random writes of every kind to the demo tenant
// through AdminService, as oscar (its administrator), and counts the ones
// that changed the tenant (its revision moved), by kind.
type randomWriter struct {
	e       *auditEnv
	rng     *rand.Rand
	users   []string // never oscar, who writes
	roles   []string // granted and revoked at random; not the deny role
	records []testRecord
	depts   []string // the tenant's departments, those the test made included
	movable []string // departments the test moves
	rules   []string // sharing rule ids the tenant has
	shares  []*pb.UnshareRecordRequest
	denied  map[string]bool // holders of the deny role
	off     map[string]bool // deactivated users
	took    map[string]int  // writes that changed the tenant, by kind
	rev     int64
	made    int // departments the test made
	deck    []string
	focus   focus
	granted [][2]string // (user, role) grants the tenant holds, the deny role's aside
}

// focus is what a write was about: the check that follows it asks about
// this user, and this permission when set.
type focus struct {
	user string
	perm *pb.Permission
}

// record returns a random record and makes it the focus's.
func (w *randomWriter) record() testRecord {
	r := w.records[w.rng.IntN(len(w.records))]
	w.focus.perm = r.perm(w.pick([]string{"read", "update"}))
	return r
}

// The kinds of random write; each must change the tenant at least once.
var writeKinds = []string{
	"grant", "grant until", "revoke", "role permissions", "deny role grant", "deny role revoke",
	"share", "share until", "unshare", "rule create", "rule delete", "membership", "department create",
	"department move", "deactivate", "reactivate",
}

// denyRole is the demo tenant's role that only denies (exports and
// mass mail).
const denyRole = "restricted_export"

func newRandomWriter(e *auditEnv, rng *rand.Rand) *randomWriter {
	return &randomWriter{
		e: e, rng: rng,
		users: []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "peggy"},
		roles: []string{"sales_rep", "sales_manager", "finance_readonly", "read_only", "customer_service", "data_exporter", "key_account_manager"},
		records: []testRecord{
			{"lead", "r-ivan", "ivan", "sales_west"}, {"contact", "r-mallory", "mallory", "sales_west"},
			{"opportunity", "r-bob", "bob", "sales_east"}, {"account", "acc-d1", "peggy", "d_1"},
			{"account", "acc-judy", "judy", "finance"}, {"opportunity", "opp-erin", "erin", "sales_west"},
		},
		depts:   []string{"hq", "sales", "sales_east", "sales_west", "sales_north", "key_accounts", "service", "finance", "marketing"},
		movable: []string{"sales_west", "key_accounts", "finance"},
		rules:   []string{"west_leads_to_east", "east_opportunities_to_key_accounts", "mallory_contacts_to_bob", "key_account_quotes_to_reps"},
		denied:  map[string]bool{"erin": true, "frank": true},
		granted: [][2]string{{"alice", "sales_manager"}, {"bob", "sales_rep"}, {"dave", "key_account_manager"}, {"frank", "sales_manager"},
			{"carol", "customer_service"}, {"mallory", "finance_readonly"}, {"judy", "finance_readonly"}},
		off:  map[string]bool{},
		took: map[string]int{},
	}
}

// holders returns the users a set holds, in order.
func holders(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for u := range set {
		out = append(out, u)
	}
	slices.Sort(out)
	return out
}

func (w *randomWriter) pick(from []string) string { return from[w.rng.IntN(len(from))] }

func (w *randomWriter) pick2(a, b *pb.Permission) *pb.Permission {
	if w.rng.IntN(2) == 0 {
		return a
	}
	return b
}

// principal returns user (the user a write is about), or a random
// department (maybe with those below it) or role.
func (w *randomWriter) principal(user string) *pb.Principal {
	switch w.rng.IntN(3) {
	case 0:
		return &pb.Principal{Kind: &pb.Principal_UserId{UserId: user}}
	case 1:
		return &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: w.pick(w.depts)}, IncludeSubdepartments: w.rng.IntN(2) == 0}
	default:
		return &pb.Principal{Kind: &pb.Principal_RoleId{RoleId: w.pick(w.roles)}}
	}
}

// owners returns a random principal that may own r: its owner, its
// department or a role.
func (w *randomWriter) owners(r testRecord) *pb.Principal {
	switch w.rng.IntN(3) {
	case 0:
		return &pb.Principal{Kind: &pb.Principal_UserId{UserId: r.owner}}
	case 1:
		dept := r.dept
		if !slices.Contains(w.depts, dept) { // one the test has yet to make
			dept = w.pick(w.depts)
		}
		return &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: dept}, IncludeSubdepartments: w.rng.IntN(2) == 0}
	default:
		return &pb.Principal{Kind: &pb.Principal_RoleId{RoleId: w.pick(w.roles)}}
	}
}

func (w *randomWriter) access() pb.RecordAccess {
	if w.rng.IntN(2) == 0 {
		return pb.RecordAccess_RECORD_ACCESS_READ
	}
	return pb.RecordAccess_RECORD_ACCESS_READ_WRITE
}

func (w *randomWriter) later() *timestamppb.Timestamp {
	return timestamppb.New(w.e.clock.Now().Add(time.Duration(1+w.rng.IntN(36)) * time.Hour))
}

// step makes one random write. A write the tenant's state refuses (an
// unknown grant, a cycle) is expected; any other error fails the test.
func (w *randomWriter) step(t *testing.T, step int) {
	t.Helper()
	const tenant, actor, why = "demo", "oscar", "random"
	admin := w.e.admin
	// Kinds are dealt from a shuffled deck, so that every kind is tried
	// as often as the others, in a random order.
	if len(w.deck) == 0 {
		w.deck = slices.Clone(writeKinds)
		w.rng.Shuffle(len(w.deck), func(i, j int) { w.deck[i], w.deck[j] = w.deck[j], w.deck[i] })
	}
	kind := w.deck[0]
	w.deck = w.deck[1:]
	w.focus = focus{user: w.pick(w.users)}
	var (
		resp interface{ GetRevision() int64 }
		err  error
		then func() // what the test learns once the write took
	)
	switch kind {
	case "grant", "grant until":
		req := &pb.GrantRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: w.focus.user, RoleId: w.pick(w.roles)}
		if kind == "grant until" {
			req.ExpiresAt = w.later()
		}
		resp, err = admin.GrantRole(ctx, req)
		then = func() { w.granted = append(w.granted, [2]string{req.GetUserId(), req.GetRoleId()}) }
	case "revoke":
		g := [2]string{w.pick(w.users), w.pick(w.roles)}
		if len(w.granted) > 0 && w.rng.IntN(4) != 0 {
			g = w.granted[w.rng.IntN(len(w.granted))]
		}
		w.focus.user = g[0]
		resp, err = admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: g[0], RoleId: g[1]})
		then = func() { w.granted = slices.DeleteFunc(w.granted, func(h [2]string) bool { return h == g }) }
	case "role permissions":
		verbs := []string{"read", "list"}
		if w.rng.IntN(2) == 0 {
			verbs = append(verbs, "export")
		}
		resp, err = admin.UpdateRolePermissions(ctx, &pb.UpdateRolePermissionsRequest{TenantId: tenant, ActorId: actor, Reason: why,
			RoleId: "read_only", Permissions: &pb.RolePermissions{Modules: []*pb.ModuleVerbs{{Module: "account", Verbs: verbs}},
				Functions: []string{"report.view"}}})
	case "deny role grant", "deny role revoke":
		u := w.focus.user
		w.focus.perm = w.pick2(modulePerm("account", "export"), functionPerm("data.export"))
		if kind == "deny role grant" {
			resp, err = admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: u, RoleId: denyRole})
		} else {
			if held := holders(w.denied); len(held) > 0 {
				u = w.pick(held)
				w.focus.user = u
			}
			resp, err = admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: u, RoleId: denyRole})
		}
		then = func() {
			if kind == "deny role grant" {
				w.denied[u] = true
			} else {
				delete(w.denied, u)
			}
		}
	case "share", "share until":
		r := w.record()
		share := &pb.RecordShare{Module: r.module, RecordId: r.id, Principal: w.principal(w.focus.user), Access: w.access()}
		if kind == "share until" {
			share.ExpiresAt = w.later()
		}
		resp, err = admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: tenant, ActorId: actor, Reason: why, Share: share,
			RecordOwnerId: r.owner, RecordDepartmentId: r.dept})
		then = func() {
			w.shares = append(w.shares, &pb.UnshareRecordRequest{TenantId: tenant, ActorId: actor, Reason: why, Module: r.module, RecordId: r.id,
				Principal: share.GetPrincipal(), RecordOwnerId: r.owner, RecordDepartmentId: r.dept})
		}
	case "unshare":
		if len(w.shares) == 0 {
			return
		}
		i := w.rng.IntN(len(w.shares))
		resp, err = admin.UnshareRecord(ctx, w.shares[i])
		w.shares = slices.Delete(w.shares, i, i+1)
	case "rule create":
		id, r := fmt.Sprintf("rule_%d", step), w.record()
		resp, err = admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: tenant, ActorId: actor, Reason: why, Rule: &pb.SharingRule{
			RuleId: id, Module: r.module, OwnedBy: w.owners(r), SharedWith: w.principal(w.focus.user), Access: w.access()}})
		then = func() { w.rules = append(w.rules, id) }
	case "rule delete":
		if len(w.rules) == 0 {
			return
		}
		i := w.rng.IntN(len(w.rules))
		resp, err = admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: tenant, ActorId: actor, Reason: why, RuleId: w.rules[i]})
		w.rules = slices.Delete(w.rules, i, i+1)
	case "membership":
		// Often a record's owner, whose new manager is then asked
		// about the record.
		m := &pb.Membership{UserId: w.pick(w.users), PrimaryDepartmentId: w.pick(w.depts)}
		if w.rng.IntN(2) == 0 {
			m.UserId = w.record().owner
		}
		if o := w.pick(w.depts); o != m.GetPrimaryDepartmentId() && w.rng.IntN(2) == 0 {
			m.OtherDepartmentIds = []string{o}
		}
		if mgr := w.focus.user; mgr != m.GetUserId() && w.rng.IntN(4) != 0 {
			m.ManagerId = mgr
		}
		resp, err = admin.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: tenant, ActorId: actor, Reason: why, Membership: m})
	case "department create":
		id := fmt.Sprintf("d_%d", w.made+1)
		w.record()
		resp, err = admin.CreateDepartment(ctx, &pb.CreateDepartmentRequest{TenantId: tenant, ActorId: actor, Reason: why,
			Department: &pb.Department{DepartmentId: id, Name: "Department " + id, ParentId: w.pick(w.depts)}})
		then = func() { w.made, w.depts, w.movable = w.made+1, append(w.depts, id), append(w.movable, id) }
	case "department move":
		id, parent := w.pick(w.movable), w.pick(w.depts)
		if id == parent {
			return
		}
		w.record()
		resp, err = admin.UpdateDepartment(ctx, &pb.UpdateDepartmentRequest{TenantId: tenant, ActorId: actor, Reason: why,
			Department: &pb.Department{DepartmentId: id, Name: "Department " + id, ParentId: parent}})
	case "deactivate":
		u := w.focus.user
		resp, err = admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: u})
		then = func() { w.off[u] = true }
	case "reactivate":
		off := holders(w.off)
		if len(off) == 0 {
			return
		}
		u := w.pick(off)
		w.focus.user = u
		resp, err = admin.ReactivateUser(ctx, &pb.ReactivateUserRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: u})
		then = func() { delete(w.off, u) }
	}
	if err != nil {
		if c := status.Code(err); c != codes.NotFound && c != codes.FailedPrecondition && c != codes.AlreadyExists {
			t.Fatalf("write %d (%s): %v", step, kind, err)
		}
		return
	}
	if then != nil {
		then()
	}
	if r := resp.GetRevision(); r > w.rev {
		w.rev = r
		w.took[kind]++
	}
}

// exercised fails the test unless every kind of write changed the tenant
// at least once.
func (w *randomWriter) exercised(t *testing.T) {
	t.Helper()
	for _, k := range writeKinds {
		if w.took[k] == 0 {
			t.Errorf("no %q write changed the tenant: the test proves too little (%v)", k, w.took)
		}
	}
}

// TestExplainRefusesAlteredHistory: someone with database access who edits
// a tenant's snapshot or a change's rows to make the past policy say
// otherwise gets HISTORY_ALTERED, not a false explanation.
func TestExplainRefusesAlteredHistory(t *testing.T) {
	cfg := pgConfig(t)
	e := startAudit(t, cfg)
	if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover", UserId: "peggy", RoleId: "read_only"}); err != nil {
		t.Fatal(err)
	}
	resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "peggy", Permission: modulePerm("account", "read")})
	if err != nil || !resp.GetAllowed() {
		t.Fatalf("peggy reads accounts: %v, %v", resp, err)
	}
	e.waitDecision(t, "demo", resp.GetDecisionId())
	explain := func() error {
		_, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()})
		return err
	}
	if err := explain(); err != nil {
		t.Fatal(err)
	}
	db := pgtest.Open(t, cfg.DatabaseURL)
	exec := func(sql string) {
		t.Helper()
		if _, err := db.Exec(ctx, sql); err != nil {
			t.Fatal(err)
		}
	}
	for _, edit := range []struct{ name, sql, undo string }{
		{"the snapshot", `UPDATE tenant_snapshots SET rows = replace(rows::text, '"heidi"', '"heidj"')::json WHERE tenant_id = 'demo'`,
			`UPDATE tenant_snapshots SET rows = replace(rows::text, '"heidj"', '"heidi"')::json WHERE tenant_id = 'demo'`},
		{"a change's rows", `UPDATE change_log SET rows = replace(rows::text, '"read_only"', '"admin"')::json WHERE tenant_id = 'demo' AND rows IS NOT NULL`,
			`UPDATE change_log SET rows = replace(rows::text, '"admin"', '"read_only"')::json WHERE tenant_id = 'demo' AND rows IS NOT NULL`},
	} {
		exec(edit.sql)
		if code, reason, _ := errorInfo(t, explain()); code != codes.FailedPrecondition || reason != "HISTORY_ALTERED" {
			t.Errorf("after editing %s: %v %s, want FAILED_PRECONDITION HISTORY_ALTERED", edit.name, code, reason)
		}
		exec(edit.undo)
		if err := explain(); err != nil {
			t.Fatalf("after undoing the edit of %s: %v", edit.name, err)
		}
	}
}

// TestExplainRecordSharesInOneOrder: a record shared with a user along
// several paths is explained with its shares in one order whatever order
// they were written in, so the reasons of a decision made by the live
// server equal those given after the fact by a policy rebuilt from the
// change log (and those of a restarted server or a replica).
func TestExplainRecordSharesInOneOrder(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		e := startAudit(t, cfg)
		// Written against the order of their reasons' messages.
		for _, p := range []*pb.Principal{
			{Kind: &pb.Principal_UserId{UserId: "bob"}},
			{Kind: &pb.Principal_RoleId{RoleId: "sales_rep"}},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales_east"}},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "sales"}, IncludeSubdepartments: true},
			{Kind: &pb.Principal_DepartmentId{DepartmentId: "hq"}, IncludeSubdepartments: true},
		} {
			if _, err := e.admin.ShareRecord(ctx, &pb.ShareRecordRequest{TenantId: "demo", ActorId: "oscar", Reason: "cover",
				Share:         &pb.RecordShare{Module: "account", RecordId: "acc-9", Principal: p, Access: pb.RecordAccess_RECORD_ACCESS_READ},
				RecordOwnerId: "peggy", RecordDepartmentId: "marketing"}); err != nil {
				t.Fatal(err)
			}
		}
		resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
			Permission: recordPerm("account", "read", "acc-9", "peggy", "marketing"), Explain: true})
		if err != nil || !resp.GetAllowed() {
			t.Fatalf("bob reads acc-9: %v, %v", resp, err)
		}
		var shares []string
		for _, r := range resp.GetReasons() {
			if r.GetKind() == pb.ReasonKind_REASON_KIND_RECORD_SHARE {
				shares = append(shares, r.GetMessage())
			}
		}
		if len(shares) != 5 || !slices.IsSorted(shares) {
			t.Errorf("the shares reaching acc-9 are explained as %q, want all five in the order of their messages", shares)
		}
		e.waitDecision(t, "demo", resp.GetDecisionId())
		got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()})
		if err != nil {
			t.Fatal(err)
		}
		if !sameReasons(got.GetReasons(), resp.GetReasons()) {
			t.Errorf("explained after the fact as %v, at the time as %v", got.GetReasons(), resp.GetReasons())
		}
	})
}

// TestExplainBatchCheck: the decisions a BatchCheck logged, one per item,
// are found in the log by method and explained after later writes (and
// the clock) changed every answer, each with the reasons the batch gave
// for its item at the time.
func TestExplainBatchCheck(t *testing.T) {
	backends(t, func(t *testing.T, cfg config.Config) {
		clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
		base := startSetup(t, cfg, clk, nil, app.WithClockedDecisions())
		e := &auditEnv{env: base, audit: pb.NewAuditServiceClient(base.conn)}
		const tenant, actor, why = "demo", "oscar", "batch"
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: "peggy", RoleId: "read_only",
			ExpiresAt: timestamppb.New(clk.Now().Add(2 * time.Hour))}); err != nil {
			t.Fatal(err)
		}
		items := []*pb.BatchCheckItem{
			// A grant that expires.
			{TenantId: tenant, SubjectId: "peggy", Permission: modulePerm("account", "read")},
			// A sharing rule (mallory's contacts to bob).
			{TenantId: tenant, SubjectId: "bob", Permission: recordPerm("contact", "read", "c-7", "mallory", "sales_west")},
			// A record share (acc-2001 to erin).
			{TenantId: tenant, SubjectId: "erin", Permission: recordPerm("account", "update", "acc-2001", "alice", "sales_east")},
			// A manager (alice manages bob).
			{TenantId: tenant, SubjectId: "alice", Permission: recordPerm("lead", "read", "l-3", "bob", "marketing")},
			// A deny role (frank's export freeze).
			{TenantId: tenant, SubjectId: "frank", Permission: functionPerm("data.export")},
			// A user about to be deactivated.
			{TenantId: tenant, SubjectId: "grace", Permission: fieldPerm("account", "annual_revenue", false)},
		}
		batch, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: items, Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		results := batch.GetResults()
		if len(results) != len(items) {
			t.Fatalf("%d results for %d items", len(results), len(items))
		}
		want := []bool{true, true, true, true, false, true}
		for i, r := range results {
			if r.GetAllowed() != want[i] || len(r.GetReasons()) == 0 {
				t.Fatalf("item %d (%v): allowed %t with reasons %v, want %t with reasons", i, items[i], r.GetAllowed(), r.GetReasons(), want[i])
			}
		}
		e.waitDecision(t, tenant, results[len(results)-1].GetDecisionId())

		// Later: each answer changes.
		clk.Advance(3 * time.Hour)
		for _, w := range []func() error{
			func() error {
				_, err := e.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: tenant, ActorId: actor, Reason: why, RuleId: "mallory_contacts_to_bob"})
				return err
			},
			func() error {
				_, err := e.admin.UnshareRecord(ctx, &pb.UnshareRecordRequest{TenantId: tenant, ActorId: actor, Reason: why, Module: "account", RecordId: "acc-2001",
					Principal: userP("erin"), RecordOwnerId: "alice", RecordDepartmentId: "sales_east"})
				return err
			},
			func() error {
				_, err := e.admin.SetMembership(ctx, &pb.SetMembershipRequest{TenantId: tenant, ActorId: actor, Reason: why,
					Membership: &pb.Membership{UserId: "bob", PrimaryDepartmentId: "sales_east"}})
				return err
			},
			func() error {
				_, err := e.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: "frank", RoleId: denyRole})
				return err
			},
			func() error {
				_, err := e.admin.DeactivateUser(ctx, &pb.DeactivateUserRequest{TenantId: tenant, ActorId: actor, Reason: why, UserId: "grace"})
				return err
			},
		} {
			if err := w(); err != nil {
				t.Fatal(err)
			}
		}
		now, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: items, Explain: true})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range now.GetResults() {
			if r.GetAllowed() == results[i].GetAllowed() && sameReasons(r.GetReasons(), results[i].GetReasons()) {
				t.Fatalf("item %d (%v) is decided now as it was: the later writes changed nothing", i, items[i])
			}
		}

		// The log holds the first batch's decisions, one per item; each is
		// explained as the batch explained its item then.
		logged := e.listAll(t, &pb.ListDecisionsRequest{TenantId: tenant, Method: pb.DecisionMethod_DECISION_METHOD_BATCH_CHECK})
		byID := map[string]*pb.Decision{}
		for _, d := range logged {
			byID[d.GetDecisionId()] = d
		}
		for i, r := range results {
			d, ok := byID[r.GetDecisionId()]
			if !ok {
				t.Fatalf("item %d: decision %s is not among the logged BatchCheck decisions %v", i, r.GetDecisionId(), ids(logged))
			}
			if d.GetSubjectId() != items[i].GetSubjectId() || d.GetAllowed() != r.GetAllowed() || d.GetRevision() != r.GetRevision() {
				t.Errorf("item %d is logged as %v", i, d)
			}
			got, err := e.audit.ExplainDecision(ctx, &pb.ExplainDecisionRequest{TenantId: tenant, DecisionId: d.GetDecisionId()})
			if err != nil {
				t.Fatalf("explain item %d: %v", i, err)
			}
			if got.GetAllowed() != r.GetAllowed() || !got.GetAgreesWithLog() || got.GetRevision() != r.GetRevision() || !sameReasons(got.GetReasons(), r.GetReasons()) {
				t.Errorf("item %d (%v): explained after the fact as %t at revision %d %v, by the batch as %t at revision %d %v", i, items[i],
					got.GetAllowed(), got.GetRevision(), got.GetReasons(), r.GetAllowed(), r.GetRevision(), r.GetReasons())
			}
		}
	})
}
