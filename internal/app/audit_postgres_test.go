package app_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// sqlExec runs statements directly in the test's database, as someone with
// access to it (but not to the service) could.
func sqlExec(t *testing.T, db *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := db.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (e *auditEnv) status(t *testing.T) *pb.GetLogStatusResponse {
	t.Helper()
	st, err := e.audit.GetLogStatus(ctx, &pb.GetLogStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// wantBroken verifies and expects the first broken link of the first chain
// at pos, of kind.
func (e *auditEnv) wantBroken(t *testing.T, req *pb.VerifyLogRequest, kind pb.BreakKind, pos int64) *pb.BrokenLink {
	t.Helper()
	v := e.verify(t, req)
	b := v.GetChains()[0].GetBroken()
	if v.GetIntact() || b.GetKind() != kind || b.GetPosition() != pos {
		t.Fatalf("want %v at %d, got %v", kind, pos, v)
	}
	return b
}

func (e *auditEnv) wantIntact(t *testing.T, req *pb.VerifyLogRequest) *pb.VerifyLogResponse {
	t.Helper()
	v := e.verify(t, req)
	if !v.GetIntact() {
		t.Fatalf("want an intact log, got %v", v)
	}
	return v
}

// batchRow reads the decision_batches row of chain holding position pos:
// its batch's first position and its data.
func batchRow(t *testing.T, db *pgxpool.Pool, chain string, pos int64) (int64, []byte) {
	t.Helper()
	var (
		first int64
		data  []byte
	)
	err := db.QueryRow(ctx, "SELECT batch_first, data FROM decision_batches WHERE chain_id = $1 AND first_pos <= $2 AND last_pos >= $2",
		chain, pos).Scan(&first, &data)
	if err != nil {
		t.Fatalf("row of position %d: %v", pos, err)
	}
	return first, data
}

// splitEntries cuts a row's data into its entries: each a uvarint length,
// the canonical encoding and a 32-byte hash.
func splitEntries(t *testing.T, data []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 {
			t.Fatal("malformed row")
		}
		end := k + int(n) + 32
		out = append(out, slices.Clone(data[:end]))
		data = data[end:]
	}
	return out
}

// posOffset is where an entry's position is in its stored form: after its
// length (a uvarint) come the canonical encoding's fields less the prefix
// the row stores once, the position (a varint, one byte for small ones)
// first.
func posOffset(entry []byte) int {
	_, k := binary.Uvarint(entry)
	return k
}

// TestDecisionLogTamperEvidence edits, deletes and reorders the decision
// log and the change log directly in PostgreSQL: VerifyLog names the first
// broken link each time, and the restored log verifies.
func TestDecisionLogTamperEvidence(t *testing.T) {
	cfg := pgConfig(t)
	cfg.DecisionLogBatchSize = 4
	cfg.DecisionLogFlushInterval = time.Minute // batches form by count: positions 1-4 and 5-8
	e := startAudit(t, cfg)
	var issued []string
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi"} {
		issued = append(issued, e.check(t, "demo", u, modulePerm("account", "read")).GetDecisionId())
	}
	for _, id := range issued {
		e.waitDecision(t, "demo", id)
	}
	chain := e.status(t).GetChainId()
	db := pgtest.Open(t, cfg.DatabaseURL)
	first, firstData := batchRow(t, db, chain, 3)
	second, secondData := batchRow(t, db, chain, 6)
	if first != 1 || second != 5 || len(splitEntries(t, firstData)) != 4 {
		t.Fatalf("batches start at %d and %d, want 1 and 5", first, second)
	}
	decisions := &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, ChainId: chain}
	full := e.wantIntact(t, decisions)
	if c := full.GetChains()[0]; c.GetEntriesChecked() != 8 || c.GetFirstPosition() != 1 || c.GetLastPosition() != 8 {
		t.Fatalf("intact chain %v", c)
	}
	setData := func(batch int64, data []byte, entries int) {
		sqlExec(t, db, "UPDATE decision_batches SET data = $3, entries = $4 WHERE chain_id = $1 AND batch_first = $2", chain, batch, data, entries)
	}
	restore := func() {
		setData(1, firstData, 4)
		setData(5, secondData, 4)
		e.wantIntact(t, decisions)
	}

	t.Run("edit", func(t *testing.T) {
		setData(1, bytes.Replace(firstData, []byte("carol"), []byte("karol"), 1), 4)
		if b := e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 3); b.GetDecisionId() != issued[2] {
			t.Errorf("broken link names %q, want %q", b.GetDecisionId(), issued[2])
		}
		// An auditor of another tenant learns that a link is broken, not
		// whose decision it was; demo's auditor sees it.
		for tenant, want := range map[string]string{"acme": "", "demo": issued[2]} {
			key := createKey(t, e.app.Store(), "auditors of "+tenant, []string{"audit"}, []string{tenant}, "")
			resp, err := pb.NewAuditServiceClient(e.dial(t, key)).VerifyLog(ctx, decisions)
			if err != nil {
				t.Fatal(err)
			}
			b := resp.GetChains()[0].GetBroken()
			if resp.GetIntact() || b.GetPosition() != 3 || b.GetDecisionId() != want || (want == "" && strings.Contains(b.GetMessage(), "carol")) {
				t.Errorf("%s's auditor sees %v", tenant, b)
			}
		}
		// A range before the edit still verifies; one across it does not.
		e.wantIntact(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, ChainId: chain, ToPosition: 2})
		e.wantBroken(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, ChainId: chain, FromPosition: 2, ToPosition: 4},
			pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 3)
		restore()
		// Giving an entry another's hash does not help.
		es := splitEntries(t, secondData)
		copy(es[1][len(es[1])-32:], es[2][len(es[2])-32:])
		setData(5, bytes.Join(es, nil), 4)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 6)
		restore()
	})
	t.Run("delete", func(t *testing.T) {
		es := splitEntries(t, firstData)
		setData(1, bytes.Join([][]byte{es[0], es[1], es[3]}, nil), 3)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_MISSING, 3)
		restore()

		sqlExec(t, db, "CREATE TABLE saved AS SELECT * FROM decision_batches WHERE chain_id = $1", chain)
		sqlExec(t, db, "DELETE FROM decision_batches WHERE chain_id = $1 AND batch_first = 1", chain)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_MISSING, 1)
		sqlExec(t, db, "DELETE FROM decision_batches WHERE chain_id = $1", chain)
		sqlExec(t, db, "INSERT INTO decision_batches SELECT * FROM saved WHERE batch_first = 1")
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_HEAD_MISMATCH, 5) // the tail is gone
		sqlExec(t, db, "INSERT INTO decision_batches SELECT * FROM saved WHERE batch_first = 5")
		sqlExec(t, db, "DROP TABLE saved")
		e.wantIntact(t, decisions)
	})
	t.Run("reorder", func(t *testing.T) {
		// Entries 2 and 3 trade places: each now claims the other's position.
		es := splitEntries(t, firstData)
		o1, o2 := posOffset(es[1]), posOffset(es[2])
		es[1][o1], es[2][o2] = es[2][o2], es[1][o1]
		setData(1, bytes.Join([][]byte{es[0], es[2], es[1], es[3]}, nil), 4)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 2)
		restore()

		// The batches trade their commit order, so listings show the second
		// first.
		swapTxid := `UPDATE decision_batches d SET txid = o.txid FROM decision_batches o
			WHERE d.chain_id = $1 AND o.chain_id = $1 AND d.batch_first <> o.batch_first`
		sqlExec(t, db, swapTxid, chain)
		if got := e.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo"}); got[0].GetChainPosition() != 5 {
			t.Fatalf("the swap did not reorder the listing: %v", ids(got))
		}
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_INDEX_MISMATCH, 5)
		sqlExec(t, db, swapTxid, chain)
		e.wantIntact(t, decisions)

		// The rows trade their entries.
		setData(1, secondData, 4)
		setData(5, firstData, 4)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_INDEX_MISMATCH, 1)
		restore()
	})
	t.Run("move", func(t *testing.T) {
		// Rows moved out of a tenant's listing or out of a time range.
		sqlExec(t, db, "UPDATE decision_batches SET tenant_id = 'acme' WHERE chain_id = $1 AND batch_first = 5", chain)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_INDEX_MISMATCH, 5)
		sqlExec(t, db, "UPDATE decision_batches SET tenant_id = 'demo' WHERE chain_id = $1 AND batch_first = 5", chain)
		sqlExec(t, db, "UPDATE decision_batches SET min_at = min_at + interval '1 day' WHERE chain_id = $1 AND batch_first = 1", chain)
		e.wantBroken(t, decisions, pb.BreakKind_BREAK_KIND_INDEX_MISMATCH, 1)
		sqlExec(t, db, "UPDATE decision_batches SET min_at = min_at - interval '1 day' WHERE chain_id = $1 AND batch_first = 1", chain)
		e.wantIntact(t, decisions)
	})

	// The change log: seed (revision 1) and three writes.
	for _, u := range []string{"peggy", "mallory", "judy"} {
		if _, err := e.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "review", UserId: u, RoleId: "read_only"}); err != nil {
			t.Fatal(err)
		}
	}
	changes := &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: "demo"}
	if v := e.wantIntact(t, changes); v.GetChains()[0].GetEntriesChecked() != 4 {
		t.Fatalf("change chain %v", v)
	}
	t.Run("changes", func(t *testing.T) {
		save := func(rev int) {
			sqlExec(t, db, "CREATE TABLE saved AS SELECT * FROM change_log WHERE tenant_id = 'demo' AND revision = $1", rev)
		}
		restore := func(rev int) {
			sqlExec(t, db, "DELETE FROM change_log WHERE tenant_id = 'demo' AND revision = $1", rev)
			sqlExec(t, db, "INSERT INTO change_log SELECT * FROM saved")
			sqlExec(t, db, "DROP TABLE saved")
			e.wantIntact(t, changes)
		}
		save(3)
		sqlExec(t, db, "UPDATE change_log SET reason = 'nothing to see' WHERE tenant_id = 'demo' AND revision = 3")
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 3)
		restore(3)

		save(2)
		sqlExec(t, db, `UPDATE change_log SET after = jsonb_set(after, '{role_id}', '"admin"') WHERE tenant_id = 'demo' AND revision = 2`)
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 2)
		restore(2)

		save(3)
		sqlExec(t, db, "DELETE FROM change_log WHERE tenant_id = 'demo' AND revision = 3")
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_MISSING, 3)
		sqlExec(t, db, "INSERT INTO change_log SELECT * FROM saved")
		sqlExec(t, db, "DROP TABLE saved")
		e.wantIntact(t, changes)

		swap := func() {
			sqlExec(t, db, "UPDATE change_log SET revision = 1000 WHERE tenant_id = 'demo' AND revision = 2")
			sqlExec(t, db, "UPDATE change_log SET revision = 2 WHERE tenant_id = 'demo' AND revision = 3")
			sqlExec(t, db, "UPDATE change_log SET revision = 3 WHERE tenant_id = 'demo' AND revision = 1000")
		}
		swap()
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 2)
		swap()
		e.wantIntact(t, changes)

		save(3)
		sqlExec(t, db, "UPDATE change_log SET hash = NULL WHERE tenant_id = 'demo' AND revision = 3")
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_UNHASHED, 3)
		restore(3)

		// The rows a change left, which replicas apply instead of reading
		// the tenant: edited, deleted, or unsealed, the entry's hash still
		// verifies, and the rows' own seal does not.
		for _, edit := range []string{
			`UPDATE change_log SET rows = replace(rows::text, '"mallory"', '"eve"')::json WHERE tenant_id = 'demo' AND revision = 3`,
			"UPDATE change_log SET rows = NULL WHERE tenant_id = 'demo' AND revision = 3",
			"UPDATE change_log SET rows_mac = NULL WHERE tenant_id = 'demo' AND revision = 3",
		} {
			save(3)
			sqlExec(t, db, edit)
			e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HASH_MISMATCH, 3)
			restore(3)
		}

		save(4)
		sqlExec(t, db, "DELETE FROM change_log WHERE tenant_id = 'demo' AND revision = 4")
		e.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HEAD_MISMATCH, 4)
		sqlExec(t, db, "INSERT INTO change_log SELECT * FROM saved")
		sqlExec(t, db, "DROP TABLE saved")
		e.wantIntact(t, changes)
	})
}

// TestDecisionLogRetention: the log keeps daily partitions ahead of time;
// past the retention whole partitions are dropped, and the chain still
// verifies from the anchor left behind.
func TestDecisionLogRetention(t *testing.T) {
	cfg := pgConfig(t)
	cfg.DecisionLog = "sync"
	cfg.DecisionLogRetentionDays = 30
	clk := &clock{t: time.Now().Add(time.Hour)}
	first := startClock(t, cfg, clk)
	var old []string
	for range 5 {
		old = append(old, first.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId())
	}
	firstChain := first.status(t).GetChainId()
	db := pgtest.Open(t, cfg.DatabaseURL)
	partitions := func() []string {
		rows, err := db.Query(ctx, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = 'decision_batches'::regclass ORDER BY 1`)
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var out []string
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				t.Fatal(err)
			}
			out = append(out, n)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	day := func(d time.Time) string { return "decision_batches_" + d.UTC().Format("20060102") }
	today := clk.Now()
	want := []string{day(today.AddDate(0, 0, -1)), day(today), day(today.AddDate(0, 0, 1)), day(today.AddDate(0, 0, 2))}
	if got := partitions(); !slices.Equal(got, want) {
		t.Fatalf("partitions %v, want %v", got, want)
	}
	first.stop()

	// Sixty days later the first days are past the 30-day retention.
	later := &clock{t: clk.Now().Add(60 * 24 * time.Hour)}
	second := startClock(t, cfg, later)
	if got := partitions(); slices.ContainsFunc(got, func(p string) bool { return slices.Contains(want, p) }) || !slices.Contains(got, day(later.Now())) {
		t.Fatalf("partitions after 60 days %v", got)
	}
	recent := second.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId()
	got := second.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo"})
	if !slices.Equal(ids(got), []string{recent}) {
		t.Fatalf("after retention %v, want only %s", ids(got), recent)
	}
	if _, err := second.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: old[0]}); status.Code(err) != codes.NotFound {
		t.Fatalf("a decision past retention: %v", err)
	}
	v := second.wantIntact(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
	for _, c := range v.GetChains() {
		if c.GetChainId() == firstChain && (c.GetRetainedAfter() != 5 || c.GetEntriesChecked() != 0) {
			t.Errorf("first chain after retention %v", c)
		}
		if c.GetChainId() != firstChain && (c.GetRetainedAfter() != 0 || c.GetEntriesChecked() != 1) {
			t.Errorf("second chain %v", c)
		}
	}
	// The access review says the log no longer covers a 90-day window.
	r, err := second.audit.ListUnusedGrants(ctx, &pb.ListUnusedGrantsRequest{TenantId: "demo", UnusedDays: 90})
	if err != nil {
		t.Fatal(err)
	}
	if !r.GetEvidenceSince().AsTime().After(r.GetWindowStart().AsTime()) {
		t.Errorf("evidence since %v, window from %v", r.GetEvidenceSince().AsTime(), r.GetWindowStart().AsTime())
	}
}

// stallWriter holds the chain head's row lock so the batcher cannot commit
// until release: the queue behind it fills.
func stallWriter(t *testing.T, db *pgxpool.Pool, chain string) (release func()) {
	t.Helper()
	tx, err := db.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "SELECT 1 FROM audit_chains WHERE chain_id = $1 FOR UPDATE", chain); err != nil {
		t.Fatal(err)
	}
	return func() { _ = tx.Rollback(ctx) }
}

func (e *auditEnv) waitQueued(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for e.status(t).GetQueued() != n {
		if time.Now().After(deadline) {
			t.Fatalf("queue never held %d entries: %v", n, e.status(t))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestDecisionLogOverflowDropsAllowsFirst fills the queue behind a stalled
// writer under drop_denies_last: allowed decisions are dropped first, a
// deny only when the queue holds nothing else, and every drop is counted
// and marked in the log.
func TestDecisionLogOverflowDropsAllowsFirst(t *testing.T) {
	cfg := pgConfig(t)
	// The queue's policy: without the spool, which takes the queue's
	// place on PostgreSQL (its policy is tested in internal/audit).
	cfg.DecisionSpoolDir = "off"
	cfg.DecisionLogOverflow = "drop_denies_last"
	cfg.DecisionLogQueueSize = 4
	cfg.DecisionLogBatchSize = 1
	cfg.DecisionLogFlushInterval = time.Millisecond
	e := startAudit(t, cfg)
	db := pgtest.Open(t, cfg.DatabaseURL)
	release := stallWriter(t, db, e.status(t).GetChainId())
	defer release()

	allow := func() string { return e.check(t, "demo", "bob", modulePerm("account", "read")).GetDecisionId() }
	deny := func() string { return e.check(t, "demo", "bob", modulePerm("account", "delete")).GetDecisionId() }
	a1 := allow()
	e.waitQueued(t, 0) // the writer holds a1, stalled
	var queuedAllows, denies []string
	for range 4 {
		queuedAllows = append(queuedAllows, allow())
	}
	if a6, a7 := allow(), allow(); a6 != "" || a7 != "" {
		t.Fatalf("allows beyond a full queue got ids %q %q", a6, a7)
	}
	for range 4 {
		denies = append(denies, deny()) // each evicts a queued allow
	}
	if d5 := deny(); d5 != "" {
		t.Fatalf("a deny beyond a queue of denies got id %q", d5)
	}
	st := e.status(t)
	if st.GetDroppedAllowed() != 6 || st.GetDroppedDenied() != 1 || st.GetQueued() != 4 {
		t.Fatalf("status while stalled %v", st)
	}
	release()

	for _, id := range append([]string{a1}, denies...) {
		e.waitDecision(t, "demo", id)
	}
	for _, id := range queuedAllows {
		if _, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: id}); status.Code(err) != codes.NotFound {
			t.Errorf("evicted allow %s: %v", id, err)
		}
	}
	markers := e.listAll(t, &pb.ListDecisionsRequest{TenantId: "demo", Method: pb.DecisionMethod_DECISION_METHOD_DROPPED_MARKER})
	if len(markers) != 1 || !strings.HasPrefix(markers[0].GetReasons()[0], "6 allowed and 1 denied decisions") {
		t.Fatalf("markers %v", markers)
	}
	if st := e.status(t); st.GetWritten() != 6 {
		t.Errorf("written %d, want 5 decisions and a marker", st.GetWritten())
	}
	e.wantIntact(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
}

// TestDecisionLogOverflowBlocks: under the default policy a full queue makes
// the call wait, and nothing is dropped.
func TestDecisionLogOverflowBlocks(t *testing.T) {
	cfg := pgConfig(t)
	// The queue's policy: without the spool, which takes the queue's
	// place on PostgreSQL (its policy is tested in internal/audit).
	cfg.DecisionSpoolDir = "off"
	cfg.DecisionLogQueueSize = 2
	cfg.DecisionLogBatchSize = 1
	cfg.DecisionLogFlushInterval = time.Millisecond
	e := startAudit(t, cfg)
	db := pgtest.Open(t, cfg.DatabaseURL)
	release := stallWriter(t, db, e.status(t).GetChainId())
	defer release()

	read := modulePerm("account", "read")
	first := e.check(t, "demo", "bob", read).GetDecisionId()
	e.waitQueued(t, 0)
	queued := []string{first, e.check(t, "demo", "bob", read).GetDecisionId(), e.check(t, "demo", "bob", read).GetDecisionId()}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	_, err := e.authz.Check(short, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: read})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("check on a full queue: %v, want DEADLINE_EXCEEDED", err)
	}
	done := make(chan string, 1)
	go func() {
		resp, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: read})
		if err != nil {
			t.Error(err)
		}
		done <- resp.GetDecisionId()
	}()
	time.Sleep(50 * time.Millisecond)
	release()
	queued = append(queued, <-done)
	for _, id := range queued {
		e.waitDecision(t, "demo", id)
	}
	if st := e.status(t); st.GetDroppedAllowed()+st.GetDroppedDenied() != 0 {
		t.Errorf("dropped under the block policy: %v", st)
	}
}

// TestDecisionLogSyncBatchCheck: in the sync mode a BatchCheck's entries
// are all durable when its response arrives, and they share group commits
// rather than taking one each.
func TestDecisionLogSyncBatchCheck(t *testing.T) {
	cfg := pgConfig(t)
	cfg.DecisionLog = "sync"
	e := startAudit(t, cfg)
	items := make([]*pb.BatchCheckItem, 300)
	for i := range items {
		items[i] = &pb.BatchCheckItem{TenantId: "demo", SubjectId: "bob", Permission: modulePerm("account", "read")}
	}
	resp, err := e.authz.BatchCheck(ctx, &pb.BatchCheckRequest{Items: items})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if _, err := e.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: r.GetDecisionId()}); err != nil {
			t.Fatalf("decision %s is not durable when the response arrives: %v", r.GetDecisionId(), err)
		}
	}
	db := pgtest.Open(t, cfg.DatabaseURL)
	var batches int
	if err := db.QueryRow(ctx, "SELECT count(DISTINCT batch_first) FROM decision_batches").Scan(&batches); err != nil {
		t.Fatal(err)
	}
	if batches > 30 {
		t.Fatalf("300 items took %d commits", batches)
	}
}
