package audit

import (
	"context"
	"errors"
	"fmt"
	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// TestPostgresSecurityIDsCommitInOrder: a replica has drawn an id and not
// committed yet when another writes. The other waits for it, so an auditor
// paging meanwhile cannot list the later id and then miss the earlier one
// when it commits.
func TestPostgresSecurityIDsCommitInOrder(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := NewPostgresSecurityLog(pool, SecurityOptions{FlushInterval: time.Millisecond, Logger: zaptest.NewLogger(t)})
	for i := range 3 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused, Message: fmt.Sprintf("before %d", i)})
	}
	startSecurity(t, s)
	waitCount(t, pool, "SELECT count(*) FROM security_events", 3)

	// The other replica's write: it holds the lock and has drawn its id.
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", securityLockKey); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO security_events (at, kind, tenant_id, credential, actor, method, reason, message, request_id, peer, count)
		VALUES (now(), 'authn.refused', '', '', '', '', '', 'the other replica', '', '', 1)`); err != nil {
		t.Fatal(err)
	}
	s.Record(SecurityEvent{Kind: EventAuthnRefused, Message: "after"})
	// The log's write waits for the lock (or, were there none, has
	// committed).
	waitCount(t, pool, `SELECT (SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE a.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted)
		+ (SELECT count(*) FROM security_events WHERE message = 'after')`, 1)

	var listed []int64
	tok := ""
	for {
		p, err := s.List(ctx, SecurityQuery{}, 1, tok)
		if err != nil {
			t.Fatal(err)
		}
		listed = append(listed, eventIDs(p.Events)...)
		if tok = p.Next; tok == "" {
			break
		}
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	closeSecurity(t, s)
	all := eventIDs(listSecurity(t, s, SecurityQuery{}, 1000))
	if len(all) != 5 {
		t.Fatalf("stored %v, want 5 events", all)
	}
	if want := slices.DeleteFunc(slices.Clone(all), func(id int64) bool { return id > listed[len(listed)-1] }); !slices.Equal(listed, want) {
		t.Fatalf("listed %v while the other replica wrote; the events up to its last are %v", listed, want)
	}
}

// waitCount waits until the query's count reaches want.
func waitCount(t *testing.T, pool *pgxpool.Pool, sql string, want int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n >= want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d", sql, n, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPostgresSecurityCloseBoundedByContext: when the database does not
// take the events before Close's context ends, Close returns, reporting
// them lost.
func TestPostgresSecurityCloseBoundedByContext(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", securityLockKey); err != nil {
		t.Fatal(err)
	}
	s := NewPostgresSecurityLog(pool, SecurityOptions{FlushInterval: time.Millisecond, Logger: zaptest.NewLogger(t)})
	for range 3 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused})
	}
	startSecurity(t, s)
	waitCount(t, pool, `SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE a.datname = current_database() AND l.locktype = 'advisory' AND NOT l.granted`, 1)
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Close(short)
	if err == nil || !strings.Contains(err.Error(), "3 events") || time.Since(start) > 10*time.Second {
		t.Fatalf("close after %s: %v", time.Since(start), err)
	}
	if st := s.Status(); st.Lost != 3 || st.Written != 0 || st.Recorded != st.Written+st.Dropped+st.Lost {
		t.Fatalf("status %+v", st)
	}
}

// flakySecurity fails writes: before they reach the database, or after
// they committed.
type flakySecurity struct {
	securityBackend
	failBefore, failAfter int
}

func (f *flakySecurity) write(ctx context.Context, batch []SecurityEvent, a *writeAttempt) error {
	if f.failBefore > 0 {
		f.failBefore--
		return errors.New("connection refused")
	}
	err := f.securityBackend.write(ctx, batch, a)
	if err == nil && f.failAfter > 0 {
		f.failAfter--
		return errors.New("connection lost before the commit was acknowledged")
	}
	return err
}

// TestPostgresSecurityRetriesWithoutDuplicates: a failed write is retried;
// one that committed although it reported a failure is not written again.
func TestPostgresSecurityRetriesWithoutDuplicates(t *testing.T) {
	pool := pgtest.NewPool(t)
	s := NewPostgresSecurityLog(pool, SecurityOptions{BatchSize: 5, FlushInterval: time.Hour, Logger: zaptest.NewLogger(t)})
	s.be = &flakySecurity{securityBackend: s.be, failBefore: 1, failAfter: 1}
	for i := range 5 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused, Message: fmt.Sprintf("e%d", i)})
	}
	startSecurity(t, s)
	closeSecurity(t, s)
	got := listSecurity(t, s, SecurityQuery{}, 100)
	if len(got) != 5 || got[4].Message != "e4" {
		t.Fatalf("stored %+v", got)
	}
	if st := s.Status(); st.Written != 5 || st.WriteErrors != 2 {
		t.Fatalf("status %+v", st)
	}
}

// TestPostgresSecurityRetryAsksTheOutcome: a retry writes again only when
// the failed attempt's transaction did not commit, and waits while it has
// not ended.
func TestPostgresSecurityRetryAsksTheOutcome(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	p := &securityPostgres{pool: pool}
	xidOf := func(tx pgx.Tx) string {
		var xid string
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text").Scan(&xid); err != nil {
			t.Fatal(err)
		}
		return xid
	}
	count := func() int {
		var n int
		if err := pool.QueryRow(ctx, "SELECT count(*) FROM security_events").Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}
	batch := []SecurityEvent{{Time: securityBase, Kind: EventAuthnRefused, Count: 1}}

	committed, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a := writeAttempt{xid: xidOf(committed)}
	if err := committed.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.write(ctx, batch, &a); err != nil || count() != 0 {
		t.Fatalf("retry after a committed attempt: %v, %d rows", err, count())
	}

	aborted, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	a = writeAttempt{xid: xidOf(aborted)}
	if err := aborted.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if err := p.write(ctx, batch, &a); err != nil || count() != 1 {
		t.Fatalf("retry after an aborted attempt: %v, %d rows", err, count())
	}

	running, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = running.Rollback(ctx) }()
	a = writeAttempt{xid: xidOf(running)}
	if err := p.write(ctx, batch, &a); err == nil || count() != 1 {
		t.Fatalf("retry while the attempt runs: %v, %d rows", err, count())
	}
}

// TestPostgresSecurityRetention: the decision log's housekeeping deletes
// the security events older than its retention.
func TestPostgresSecurityRetention(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	s := NewPostgresSecurityLog(pool, SecurityOptions{Logger: zaptest.NewLogger(t)})
	now := time.Date(2024, 5, 10, 15, 0, 0, 0, time.UTC)
	for _, at := range []time.Time{
		now.AddDate(0, 0, -5),                          // past retention
		time.Date(2024, 5, 7, 23, 59, 59, 0, time.UTC), // the last moment past retention
		time.Date(2024, 5, 8, 0, 0, 0, 0, time.UTC),    // kept
		now,
	} {
		s.Record(SecurityEvent{Time: at, Kind: EventAuthnRefused})
	}
	startSecurity(t, s)
	closeSecurity(t, s)
	keep := &pgBackend{pool: pool, keys: chain.ProcessKeyring()}
	if err := keep.maintain(ctx, now); err != nil {
		t.Fatal(err)
	}
	if n := len(listSecurity(t, s, SecurityQuery{}, 10)); n != 4 {
		t.Fatalf("without retention, %d events are left, want 4", n)
	}
	two := &pgBackend{pool: pool, retention: 2, keys: chain.ProcessKeyring()}
	if err := two.maintain(ctx, now); err != nil {
		t.Fatal(err)
	}
	got := listSecurity(t, s, SecurityQuery{}, 10)
	if len(got) != 2 || !got[0].Time.Equal(time.Date(2024, 5, 8, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after retention of 2 days: %+v", got)
	}
}
