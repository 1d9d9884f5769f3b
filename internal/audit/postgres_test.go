package audit

import (
	"context"
	"encoding/binary"
	"fmt"
	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// TestPostgresListsInBoundedSteps: a filter that matches little of a large
// log returns short pages with tokens rather than scanning on, and paging
// still finds every match; lookups by id and range verification work
// across many rows.
func TestPostgresListsInBoundedSteps(t *testing.T) {
	defer func(q, c int) { rowsPerQuery, rowsPerCall = q, c }(rowsPerQuery, rowsPerCall)
	rowsPerQuery, rowsPerCall = 8, 16
	ctx := context.Background()
	l := startPostgres(t, pgtest.NewPool(t), Options{Mode: ModeSync})
	defer func() {
		if err := l.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var ids []string
	for i := range 100 { // sequential sync calls: one row each
		id, err := l.Record(ctx, decision("t", fmt.Sprintf("u%d", i%50), i%3 == 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	calls, short := 0, 0
	var got []Decision
	tok := ""
	for {
		p, err := l.ListDecisions(ctx, Query{Tenant: "t", Subject: "u49"}, 10, tok)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if len(p.Decisions) == 0 && p.Next != "" {
			short++
		}
		got = append(got, p.Decisions...)
		if tok = p.Next; tok == "" {
			break
		}
	}
	if len(got) != 2 || got[0].ID != ids[49] || got[1].ID != ids[99] || short == 0 || calls < 5 {
		t.Fatalf("found %d entries in %d calls (%d short)", len(got), calls, short)
	}
	all := listAll(t, l, Query{Tenant: "t", NewestFirst: true})
	if len(all) != 100 || all[0].ID != ids[99] || all[99].ID != ids[0] {
		t.Fatalf("newest first: %d entries", len(all))
	}
	for _, i := range []int{0, 37, 99} {
		d, err := l.Decision(ctx, "t", ids[i])
		if err != nil || d.ID != ids[i] || d.Subject != fmt.Sprintf("u%d", i%50) {
			t.Fatalf("decision %s: %+v %v", ids[i], d, err)
		}
	}
	if _, err := l.Decision(ctx, "other", ids[3]); err == nil {
		t.Fatal("a decision was found in another tenant")
	}
	var exported int
	if err := l.ExportDecisions(ctx, Query{Tenant: "t", Result: ResultAllow}, func(ds []Decision) error { exported += len(ds); return nil }); err != nil || exported != 34 {
		t.Fatalf("exported %d allowed decisions: %v", exported, err)
	}
	rs, err := l.Verify(ctx, l.ChainID(), 40, 60)
	if err != nil || rs[0].Broken != nil || rs[0].First != 40 || rs[0].Last != 60 || rs[0].Checked != 21 {
		t.Fatalf("range verification %+v %v", rs, err)
	}
}

// TestPostgresListsAcrossTransactionIDDigits: listing follows transaction
// ids as numbers. Ordered as text, the batches of ids 94-99 sort after
// those of 100-105, and a page starting below 100 skipped to 100 and
// never listed them.
func TestPostgresListsAcrossTransactionIDDigits(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	l := startPostgres(t, pool, Options{Mode: ModeSync})
	defer func() {
		if err := l.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var ids []string
	for i := range 12 { // sequential sync calls: one row, one transaction each
		id, err := l.Record(ctx, decision("t", fmt.Sprintf("u%d", i), true))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Give the rows, in write order, the ids a server passes 100 with:
	// 94, 95 ... 99, 100 ... 105. Every one is below the horizon, as a
	// server that ran initdb and the migrations is far past them.
	if _, err := pool.Exec(ctx, "UPDATE decision_batches SET txid = (first_pos + 93)::text::xid8"); err != nil {
		t.Fatal(err)
	}
	if h, err := l.be.horizon(ctx); err != nil || h <= 105 {
		t.Fatalf("horizon %d %v", h, err)
	}
	idsOf := func(ds []Decision) []string {
		out := make([]string, len(ds))
		for i := range ds {
			out[i] = ds[i].ID
		}
		return out
	}
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	for _, size := range []int{1, 2, 5, 100} {
		for _, desc := range []bool{false, true} {
			var got []Decision
			tok := ""
			for {
				p, err := l.ListDecisions(ctx, Query{Tenant: "t", NewestFirst: desc}, size, tok)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Decisions...)
				if tok = p.Next; tok == "" {
					break
				}
			}
			want := ids
			if desc {
				want = reversed
			}
			if !slices.Equal(idsOf(got), want) {
				t.Errorf("pages of %d, newest first %v: %v, want %v", size, desc, idsOf(got), want)
			}
		}
	}
	// Resuming from the end of the first page lists the rest.
	p, err := l.ListDecisions(ctx, Query{Tenant: "t"}, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	rest, err := l.ListDecisions(ctx, Query{Tenant: "t"}, 100, p.Resume)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(idsOf(p.Decisions), idsOf(rest.Decisions)...); !slices.Equal(got, ids) {
		t.Errorf("resumed listing %v, want %v", got, ids)
	}
	var exported []string
	if err := l.ExportDecisions(ctx, Query{Tenant: "t"}, func(ds []Decision) error { exported = append(exported, idsOf(ds)...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(exported, ids) {
		t.Errorf("exported %v, want %v", exported, ids)
	}
}

func startPostgres(t *testing.T, pool *pgxpool.Pool, opts Options) *Log {
	t.Helper()
	opts.Logger = zaptest.NewLogger(t)
	l, err := NewPostgres(pool, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestPostgresMasksReasons: the explanation names the user, the record,
// its owner and department; the stored entry holds none of them in plain
// when they are masked, and an identifier that merely contains one (the
// role bob_admin) is left alone.
func TestPostgresMasksReasons(t *testing.T) {
	ctx := context.Background()
	l := startPostgres(t, pgtest.NewPool(t), Options{Mode: ModeSync, Mask: MaskAttributes, MaskKey: "0123456789abcdef0123"})
	defer func() { _ = l.Close(ctx) }()
	d := decision("t", "bob", false)
	d.Perm = model.Permission{Kind: model.KindModule, Module: "account", Verb: "read", Record: &model.Record{ID: "acc-9", Owner: "carol.smith", Department: "east"}}
	d.Reasons = []string{
		`role bob_admin grants module account read on record acc-9 with scope own, which reaches record acc-9`,
		`user bob manages the owner carol.smith (1 level(s) up, manager depth 2)`,
		`user bob may read account records but not record acc-9 (owner carol.smith, department "east"): bob.`,
		`called from 10.0.0.1:4242`,
	}
	id, err := l.Record(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, err := l.Decision(ctx, "t", id)
	if err != nil {
		t.Fatal(err)
	}
	m := func(v string) string { return l.masker.value(v) }
	want := []string{
		fmt.Sprintf(`role bob_admin grants module account read on record %s with scope own, which reaches record %s`, m("acc-9"), m("acc-9")),
		fmt.Sprintf(`user %s manages the owner %s (1 level(s) up, manager depth 2)`, m("bob"), m("carol.smith")),
		fmt.Sprintf(`user %s may read account records but not record %s (owner %s, department "%s"): %s.`, m("bob"), m("acc-9"), m("carol.smith"), m("east"), m("bob")),
		fmt.Sprintf(`called from %s`, m("10.0.0.1:4242")),
	}
	if !slices.Equal(got.Reasons, want) {
		t.Fatalf("stored reasons\n%q\nwant\n%q", got.Reasons, want)
	}
	if rs, err := l.Verify(ctx, "", 0, 0); err != nil || rs[0].Broken != nil {
		t.Fatalf("verify %+v %v", rs, err)
	}
}

// TestPostgresFindsDecisionFarFromItsIDNeighbours: a call takes its id,
// then waits (for room in the queue, for the CPU) while later ids are
// written; its entry shares a row with much later ones, after many rows
// whose highest id is above its own. Looking it up by id still finds it.
func TestPostgresFindsDecisionFarFromItsIDNeighbours(t *testing.T) {
	ctx := context.Background()
	l, err := NewPostgres(pgtest.NewPool(t), Options{QueueSize: 200, BatchSize: 2, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	record := func(seq uint64) string { // the next id is seq
		l.seq.Store(seq - 1)
		id, err := l.Record(ctx, decision("t", "bob", true))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	for i := range 128 { // 64 rows of two: ids 101-228
		record(101 + uint64(i))
	}
	late := record(5) // queued after them, in one row with id 300
	record(300)
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if d, err := l.Decision(ctx, "t", late); err != nil || d.ID != late {
		t.Fatalf("decision %s: %+v %v", late, d, err)
	}
}

// TestPostgresTimeFiltersBelowMicroseconds: PostgreSQL keeps microseconds
// and a query's times may carry nanoseconds. [From, To) still selects
// exactly what it says: an entry at 12:00:00.000000 is before 12:00:00.0000005
// (so in a range ending there, and not in one starting there).
func TestPostgresTimeFiltersBelowMicroseconds(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	l := startPostgres(t, pool, Options{Mode: ModeSync})
	defer func() { _ = l.Close(ctx) }()
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	d := decision("t", "bob", true)
	d.Time = at
	id, err := l.Record(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	// Listings may lag a write while another transaction on the server
	// may still be writing (the horizon): the cases start once the entry
	// is listed, from when every later listing sees it.
	for start := time.Now(); ; time.Sleep(10 * time.Millisecond) {
		p, err := l.ListDecisions(ctx, Query{Tenant: "t"}, 10, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Decisions) == 1 {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the entry is never listed")
		}
	}
	half := at.Add(500 * time.Nanosecond)
	for _, tc := range []struct {
		from, to time.Time
		want     int
	}{{at, half, 1}, {at.Add(-time.Second), half, 1}, {half, at.Add(time.Second), 0}} {
		p, err := l.ListDecisions(ctx, Query{Tenant: "t", From: tc.from, To: tc.to}, 10, "")
		if err != nil || len(p.Decisions) != tc.want || tc.want == 1 && p.Decisions[0].ID != id {
			t.Errorf("decisions in [%s, %s): %+v %v, want %d", tc.from.Format(time.RFC3339Nano), tc.to.Format(time.RFC3339Nano), p.Decisions, err, tc.want)
		}
	}
	if _, err := pool.Exec(ctx, `INSERT INTO tenants (id, name, revision, created_at) VALUES ('t', 'T', 1, $1)`, at); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO change_log (tenant_id, revision, at, actor, reason, action, target)
		VALUES ('t', 1, $1, 'admin', 'why', 'role.create', 'role/r')`, at); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		from, to time.Time
		want     int
	}{{at, half, 1}, {at.Add(-time.Second), half, 1}, {half, at.Add(time.Second), 0}} {
		p, err := l.ListChanges(ctx, ChangeQuery{Tenant: "t", From: tc.from, To: tc.to}, 10, "")
		if err != nil || len(p.Changes) != tc.want {
			t.Errorf("changes in [%s, %s): %+v %v, want %d", tc.from.Format(time.RFC3339Nano), tc.to.Format(time.RFC3339Nano), p.Changes, err, tc.want)
		}
	}
}

// TestPostgresRetentionAnchorsBatchCommittingDuringDrop: a writer whose
// batch belongs to a day past the retention (its clock is behind, or it
// retried the batch that long) commits while maintenance waits to drop that
// day's partition. The anchor must cover that batch too, or the dropped
// entries leave the chain broken.
func TestPostgresRetentionAnchorsBatchCommittingDuringDrop(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	day0 := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	w := startPostgres(t, pool, Options{Mode: ModeSync, Now: func() time.Time { return day0.Add(12 * time.Hour) }})
	defer func() { _ = w.Close(ctx) }()
	record := func() error {
		d := decision("t", "bob", true)
		d.Time = day0.Add(12 * time.Hour)
		_, err := w.Record(ctx, d)
		return err
	}
	for range 2 {
		if err := record(); err != nil {
			t.Fatal(err)
		}
	}
	// Three days on, with a day of retention, the partitions up to day0
	// are due. Create the coming days' partitions first, and drop the day
	// before day0's, so that day0's is the first to drop.
	m := &pgBackend{pool: pool, keys: chain.ProcessKeyring()}
	now := day0.AddDate(0, 0, 3)
	if err := m.maintain(ctx, now); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, "DROP TABLE "+partitionName(day0.AddDate(0, 0, -1))); err != nil {
		t.Fatal(err)
	}
	m.retention = 1

	// Stall the writer's next batch after its COPY into day0's partition,
	// at the update of its chain head (a lock that, unlike FOR UPDATE,
	// leaves the anchors' foreign key check alone).
	stall, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = stall.Rollback(ctx) }()
	if _, err := stall.Exec(ctx, "SELECT 1 FROM audit_chains WHERE chain_id = $1 FOR NO KEY UPDATE", w.ChainID()); err != nil {
		t.Fatal(err)
	}
	written := make(chan error, 1)
	go func() { written <- record() }()
	waitFor := func(what, sql string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var n int
			if err := pool.QueryRow(ctx, sql).Scan(&n); err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("never saw %s", what)
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitFor("the writer wait for its chain head", `SELECT count(*) FROM pg_stat_activity
		WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'UPDATE audit_chains%'`)
	maintained := make(chan error, 1)
	go func() { maintained <- m.maintain(ctx, now) }()
	// Maintenance waits for the writer's lock on the partitions (it must
	// let the writer go within its lock timeout of a second).
	waitFor("maintenance wait for the writer", `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE a.datname = current_database() AND NOT l.granted AND l.locktype = 'relation'`)
	if err := stall.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-written; err != nil {
		t.Fatal(err)
	}
	if err := <-maintained; err != nil {
		t.Fatal(err)
	}
	rs, err := w.Verify(ctx, "", 0, 0)
	if err != nil || len(rs) != 1 || rs[0].Broken != nil || rs[0].RetainedAfter != 3 {
		t.Fatalf("verify after retention %+v %v", rs, err)
	}
}

// TestPostgresSharesARowAmongQuietTenants: a batch of many tenants is a
// few rows, not one per tenant: the busy tenant's own row and one row its
// quiet tenants share. Each tenant still lists and finds exactly its own
// entries, and a shared row that leaves a tenant off its list fails
// verification.
func TestPostgresSharesARowAmongQuietTenants(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	l := startPostgres(t, pool, Options{BatchSize: 300, FlushInterval: time.Minute})
	defer func() {
		if err := l.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	ids := map[string][]string{}
	for i := range 300 {
		tenant := "busy"
		if i%3 != 0 {
			tenant = fmt.Sprintf("quiet%03d", i%97) // 97 tenants of 2 or 3 entries
		}
		id, err := l.Record(ctx, decision(tenant, fmt.Sprintf("u%d", i), true))
		if err != nil {
			t.Fatal(err)
		}
		ids[tenant] = append(ids[tenant], id)
	}
	deadline := time.Now().Add(10 * time.Second) // the batch is written whole: one entry there is all
	for {
		if d, err := l.Decision(ctx, "quiet002", ids["quiet002"][len(ids["quiet002"])-1]); err == nil && d.ID != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var rows, shared, listed int
	if err := pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE tenant_id = ''), coalesce(sum(cardinality(tenants)), 0)
		FROM decision_batches WHERE chain_id = $1`, l.ChainID()).Scan(&rows, &shared, &listed); err != nil {
		t.Fatal(err)
	}
	if rows != 2 || shared != 1 || listed != 97 {
		t.Fatalf("%d rows, %d shared, listing %d tenants; want the busy tenant's row and one shared by 97", rows, shared, listed)
	}
	for _, tenant := range []string{"busy", "quiet000", "quiet001", "quiet077", "quiet096"} {
		got := listAll(t, l, Query{Tenant: tenant})
		if len(got) != len(ids[tenant]) {
			t.Fatalf("%s lists %d entries, recorded %d", tenant, len(got), len(ids[tenant]))
		}
		for i, d := range got {
			if d.ID != ids[tenant][i] || d.Tenant != tenant {
				t.Fatalf("%s: entry %d is %s of %s, want %s", tenant, i, d.ID, d.Tenant, ids[tenant][i])
			}
		}
		if d, err := l.Decision(ctx, tenant, ids[tenant][0]); err != nil || d.Tenant != tenant {
			t.Fatalf("%s finds its entry: %+v %v", tenant, d, err)
		}
	}
	if _, err := l.Decision(ctx, "quiet001", ids["quiet002"][0]); err == nil {
		t.Fatal("a tenant found another's entry in their shared row")
	}
	if rs, err := l.Verify(ctx, l.ChainID(), 0, 0); err != nil || rs[0].Broken != nil || rs[0].Checked != 300 {
		t.Fatalf("verification of the intact log: %+v %v", rs, err)
	}
	exec := func(sql string) {
		t.Helper()
		if _, err := pool.Exec(ctx, sql, l.ChainID()); err != nil {
			t.Fatal(err)
		}
	}
	exec("UPDATE decision_batches SET tenants = array_remove(tenants, 'quiet077') WHERE chain_id = $1 AND tenant_id = ''")
	if got := listAll(t, l, Query{Tenant: "quiet077"}); len(got) != 0 {
		t.Fatalf("the edit should hide quiet077's entries from its listing, which shows %d", len(got))
	}
	if rs, err := l.Verify(ctx, l.ChainID(), 0, 0); err != nil || rs[0].Broken == nil || rs[0].Broken.Kind != BreakIndexMismatch {
		t.Fatalf("a shared row hiding a tenant verified as %+v %v", rs, err)
	}
	exec("UPDATE decision_batches SET tenants = array_append(tenants, 'quiet077') WHERE chain_id = $1 AND tenant_id = ''")
	exec("UPDATE decision_batches SET tenants = (SELECT array_agg(x ORDER BY x) FROM unnest(tenants) x) WHERE chain_id = $1 AND tenant_id = ''")
	if rs, err := l.Verify(ctx, l.ChainID(), 0, 0); err != nil || rs[0].Broken != nil {
		t.Fatalf("the restored log: %+v %v", rs, err)
	}

	// The busy tenant's first entry moved into the shared row, every column
	// made to agree: listings read one row per tenant and batch and would
	// skip it, so verification must refuse it.
	type row struct {
		loggedAt time.Time
		data     []byte
	}
	read := func(tenant string) row {
		var r row
		if err := pool.QueryRow(ctx, "SELECT logged_at, data FROM decision_batches WHERE chain_id = $1 AND tenant_id = $2",
			l.ChainID(), tenant).Scan(&r.loggedAt, &r.data); err != nil {
			t.Fatal(err)
		}
		return r
	}
	busy, sharedRow := read("busy"), read("")
	n, k := binary.Uvarint(busy.data)
	first := busy.data[:k+int(n)+chain.HashSize]
	rest := busy.data[len(first):]
	moved := append(slices.Clone(first), sharedRow.data...)
	ranges := func(data []byte) (int64, int64, int64, time.Time, time.Time, int, []byte, []string) {
		var ds []Decision
		if err := decodeBatch(l.ChainID(), busy.loggedAt, data, 0, func(d *Decision) bool { ds = append(ds, *d); return true }); err != nil {
			t.Fatal(err)
		}
		minSeq, maxSeq, minAt, maxAt := ds[0].Seq, ds[0].Seq, ds[0].Time, ds[0].Time
		var tenants []string
		for _, d := range ds {
			minSeq, maxSeq, minAt, maxAt = min(minSeq, d.Seq), max(maxSeq, d.Seq), minTime(minAt, d.Time), maxTime(maxAt, d.Time)
			tenants = append(tenants, d.Tenant)
		}
		slices.Sort(tenants)
		return ds[0].Position, int64(minSeq), int64(maxSeq), minAt, maxAt, len(ds), ds[len(ds)-1].Hash, slices.Compact(tenants)
	}
	set := func(tenant string, data []byte, listed bool) {
		t.Helper()
		firstPos, minSeq, maxSeq, minAt, maxAt, entries, lastHash, tenants := ranges(data)
		if !listed {
			tenants = nil
		}
		if _, err := pool.Exec(ctx, `UPDATE decision_batches SET data = $3, first_pos = $4, min_seq = $5, max_seq = $6,
			min_at = $7, max_at = $8, entries = $9, last_hash = $10, tenants = $11 WHERE chain_id = $1 AND tenant_id = $2`,
			l.ChainID(), tenant, data, firstPos, minSeq, maxSeq, minAt, maxAt, entries, lastHash, tenants); err != nil {
			t.Fatal(err)
		}
	}
	set("busy", rest, false)
	set("", moved, true)
	if rs, err := l.Verify(ctx, l.ChainID(), 0, 0); err != nil || rs[0].Broken == nil || rs[0].Broken.Kind != BreakIndexMismatch ||
		!strings.Contains(rs[0].Broken.Message, "another row of its batch") {
		t.Fatalf("a tenant's entry moved into the shared row verified as %+v %v", rs, err)
	}
}

// TestPostgresStoresBatchesCompressed: a batch's row is stored lz4-
// compressed (migration 0016) at under half its size, and reads and
// verifies as written.
func TestPostgresStoresBatchesCompressed(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, "CREATE TEMP TABLE lz4_probe (b bytea COMPRESSION lz4)"); err != nil {
		t.Skipf("this PostgreSQL has no lz4: %v", err)
	}
	l := startPostgres(t, pool, Options{BatchSize: 500, FlushInterval: time.Minute})
	defer func() {
		if err := l.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var last string
	for i := range 500 {
		id, err := l.Record(ctx, decision("acme", fmt.Sprintf("user%d", i%40), i%7 != 0))
		if err != nil {
			t.Fatal(err)
		}
		last = id
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if d, err := l.Decision(ctx, "acme", last); err == nil && d.ID != "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	var method string
	var raw, stored int
	if err := pool.QueryRow(ctx, `SELECT coalesce(pg_column_compression(data), ''), octet_length(data), pg_column_size(data)
		FROM decision_batches WHERE chain_id = $1`, l.ChainID()).Scan(&method, &raw, &stored); err != nil {
		t.Fatal(err)
	}
	t.Logf("a batch of 500 entries: %d bytes, stored in %d", raw, stored)
	if method != "lz4" || stored*2 > raw {
		t.Errorf("a batch of %d bytes is stored in %d, compressed with %q; want lz4, under half", raw, stored, method)
	}
	if got := listAll(t, l, Query{Tenant: "acme"}); len(got) != 500 {
		t.Fatalf("acme lists %d entries, recorded 500", len(got))
	}
	if rs, err := l.Verify(ctx, l.ChainID(), 0, 0); err != nil || rs[0].Broken != nil || rs[0].Checked != 500 {
		t.Fatalf("verification: %+v %v", rs, err)
	}
}
