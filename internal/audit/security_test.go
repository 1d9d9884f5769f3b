package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// securityStorage builds security logs over one storage. The PostgreSQL
// logs one storage opens share its database, as replicas do.
type securityStorage struct {
	name     string
	postgres bool
	open     func(SecurityOptions) *SecurityLog
}

// forSecurityStorages runs fn over memory and PostgreSQL (a database of
// its own, also in the simple protocol that PgBouncer's transaction mode
// needs): the two storages behave the same.
func forSecurityStorages(t *testing.T, fn func(t *testing.T, st securityStorage)) {
	for _, name := range []string{"memory", "postgres", "postgres_simple_protocol"} {
		t.Run(name, func(t *testing.T) {
			st := securityStorage{name: name, postgres: name != "memory"}
			var pool *pgxpool.Pool
			st.open = func(opts SecurityOptions) *SecurityLog {
				opts.Logger = zaptest.NewLogger(t)
				if !st.postgres {
					return NewMemorySecurityLog(opts)
				}
				if pool == nil {
					pool = openSecurityPool(t, name == "postgres_simple_protocol")
				}
				return NewPostgresSecurityLog(pool, opts)
			}
			fn(t, st)
		})
	}
}

func openSecurityPool(t *testing.T, simple bool) *pgxpool.Pool {
	t.Helper()
	if !simple {
		return pgtest.NewPool(t)
	}
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.ConnConfig.DefaultQueryExecMode = pgx.QueryExecModeSimpleProtocol
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func startSecurity(t *testing.T, s *SecurityLog) {
	t.Helper()
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func closeSecurity(t *testing.T, s *SecurityLog) {
	t.Helper()
	if err := s.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// listSecurity pages through q with pages of size.
func listSecurity(t *testing.T, s *SecurityLog, q SecurityQuery, size int) []SecurityEvent {
	t.Helper()
	var out []SecurityEvent
	tok := ""
	for {
		p, err := s.List(context.Background(), q, size, tok)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Events) > size {
			t.Fatalf("a page of %d holds %d events", size, len(p.Events))
		}
		out = append(out, p.Events...)
		if tok = p.Next; tok == "" {
			return out
		}
	}
}

func eventIDs(evs []SecurityEvent) []int64 {
	ids := make([]int64, len(evs))
	for i := range evs {
		ids[i] = evs[i].ID
	}
	return ids
}

var securityBase = time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)

// TestSecurityLogStoresAndFilters: what is listed is what was recorded,
// in id order; the filters select the same on both storages, tenants
// included (nil: all and the tenantless; a list: only its tenants).
func TestSecurityLogStoresAndFilters(t *testing.T) {
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		ev := func(i int, kind, tenant, cred, actor string) SecurityEvent {
			return SecurityEvent{Time: securityBase.Add(time.Duration(i) * time.Second), Kind: kind, Tenant: tenant, Credential: cred, Actor: actor,
				Method: "/crmauthz.v1.AdminService/GrantRole", Reason: "MISSING_SCOPE", Message: fmt.Sprintf("event %d", i),
				RequestID: fmt.Sprintf("req-%d", i), Peer: "10.0.0.1:4242", Count: int64(i)}
		}
		recorded := []SecurityEvent{
			ev(1, EventAuthnRefused, "t1", "key:k1", ""),
			ev(2, EventAuthnRefused, "", "key:nope", ""),
			ev(3, EventCallRefused, "t2", "key:k2", "alice"),
			ev(4, EventCredentialCreated, "t1", "key:k3", "bob"),
			ev(5, EventCredentialRevoked, "t2", "key:k2", "alice"),
			ev(6, EventAuthnRefused, "", "", ""),
			ev(7, EventAuthnRefused, "t3", "cert:spiffe://crm/console", "console"),
		}
		s := st.open(SecurityOptions{})
		for _, e := range recorded {
			s.Record(e)
		}
		startSecurity(t, s)
		closeSecurity(t, s)

		all := listSecurity(t, s, SecurityQuery{}, 1000)
		if len(all) != len(recorded) {
			t.Fatalf("listed %d events, want %d", len(all), len(recorded))
		}
		for i := range all {
			want := recorded[i]
			want.ID, want.Time = all[i].ID, want.Time.Truncate(time.Microsecond)
			if all[i] != want || i > 0 && all[i].ID <= all[i-1].ID {
				t.Fatalf("event %d:\n%+v\nwant\n%+v", i, all[i], want)
			}
		}
		micro := securityBase.Truncate(time.Microsecond)
		byIndex := func(is ...int) []int64 {
			ids := []int64{}
			for _, i := range is {
				ids = append(ids, all[i-1].ID)
			}
			return ids
		}
		for _, tc := range []struct {
			name string
			q    SecurityQuery
			want []int64
		}{
			{"everything", SecurityQuery{}, byIndex(1, 2, 3, 4, 5, 6, 7)},
			{"one tenant", SecurityQuery{Tenants: []string{"t1"}}, byIndex(1, 4)},
			{"two tenants, repeated", SecurityQuery{Tenants: []string{"t2", "t1", "t2"}}, byIndex(1, 3, 4, 5)},
			{"no tenants", SecurityQuery{Tenants: []string{}}, byIndex()},
			{"the empty tenant is no tenant", SecurityQuery{Tenants: []string{""}}, byIndex()},
			{"empty tenant and t3", SecurityQuery{Tenants: []string{"", "t3"}}, byIndex(7)},
			{"unknown tenant", SecurityQuery{Tenants: []string{"t9"}}, byIndex()},
			{"kind", SecurityQuery{Kind: EventAuthnRefused}, byIndex(1, 2, 6, 7)},
			{"credential", SecurityQuery{Credential: "key:k2"}, byIndex(3, 5)},
			{"actor", SecurityQuery{Actor: "alice"}, byIndex(3, 5)},
			{"actor in a tenant", SecurityQuery{Actor: "alice", Tenants: []string{"t1"}}, byIndex()},
			{"time range", SecurityQuery{From: micro.Add(3 * time.Second), To: micro.Add(6 * time.Second)}, byIndex(3, 4, 5)},
			// Times are stored in microseconds, and compared as stored:
			// the event stored at 3s is before 3s+500ns, the one at 5s
			// too.
			{"time range, below microseconds", SecurityQuery{From: micro.Add(3*time.Second + 500), To: micro.Add(5*time.Second + 500)}, byIndex(4, 5)},
			{"newest first", SecurityQuery{NewestFirst: true, Tenants: []string{"t2", "t3"}}, byIndex(7, 5, 3)},
		} {
			for _, size := range []int{1, 2, 3, 1000} {
				if got := eventIDs(listSecurity(t, s, tc.q, size)); !slices.Equal(got, tc.want) {
					t.Errorf("%s, pages of %d: %v, want %v", tc.name, size, got, tc.want)
				}
			}
		}
		if st := s.Status(); st.Recorded != 7 || st.Written != 7 || st.Dropped != 0 || st.Queued != 0 {
			t.Errorf("status %+v", st)
		}
	})
}

// TestSecurityLogPagesWhileWriting: auditors page while writers (several
// replicas on PostgreSQL) store events. A pass never repeats an event, and
// never skips one: it holds every event up to the last (oldest first) or
// the first (newest first) it listed.
func TestSecurityLogPagesWhileWriting(t *testing.T) {
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		ctx := context.Background()
		opts := SecurityOptions{BatchSize: 8, FlushInterval: time.Millisecond, QueueSize: 10000}
		logs := []*SecurityLog{st.open(opts)}
		if st.postgres {
			logs = append(logs, st.open(opts), st.open(opts))
		}
		for _, s := range logs {
			startSecurity(t, s)
		}
		const writers, each = 3, 200
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				s := logs[w%len(logs)]
				for i := range each {
					tenant := []string{"t1", "t2", ""}[i%3]
					s.Record(SecurityEvent{Kind: EventAuthnRefused, Tenant: tenant, Message: fmt.Sprintf("w%d-%d", w, i)})
					if i%4 == 0 {
						time.Sleep(time.Millisecond)
					}
				}
			})
		}
		written := func() int64 {
			n := int64(0)
			for _, s := range logs {
				n += s.Status().Written
			}
			return n
		}
		type pass struct {
			q   SecurityQuery
			ids []int64
		}
		var passes []pass
		queries := []SecurityQuery{{}, {NewestFirst: true}, {Tenants: []string{"t1"}}, {Tenants: []string{"t2", "t1"}, NewestFirst: true}}
		deadline := time.Now().Add(time.Minute)
		for last := false; !last; {
			last = written() == writers*each // one more round once all are written
			if time.Now().After(deadline) {
				t.Fatalf("written %d of %d events in a minute", written(), writers*each)
			}
			for _, q := range queries {
				passes = append(passes, pass{q: q, ids: eventIDs(listSecurity(t, logs[0], q, 7))})
			}
		}
		wg.Wait()
		for _, s := range logs {
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
		}
		total := int64(0)
		for _, s := range logs {
			st := s.Status()
			total += st.Written
			if st.Dropped != 0 || st.Lost != 0 {
				t.Fatalf("status %+v", st)
			}
		}
		if total != writers*each {
			t.Fatalf("%d events written, want %d", total, writers*each)
		}
		nonEmpty := 0
		for _, p := range passes {
			final := eventIDs(listSecurity(t, logs[0], p.q, 1000))
			if len(p.ids) == 0 {
				continue
			}
			nonEmpty++
			bound := p.ids[len(p.ids)-1]
			if p.q.NewestFirst {
				bound = p.ids[0]
			}
			want := slices.DeleteFunc(final, func(id int64) bool { return id > bound })
			if !slices.Equal(p.ids, want) {
				t.Fatalf("a pass over %+v listed %d events %v\nwant the %d up to %d: %v", p.q, len(p.ids), p.ids, len(want), bound, want)
			}
		}
		if nonEmpty == 0 {
			t.Fatal("no pass listed anything while the writers wrote")
		}
		t.Logf("%d passes checked", len(passes))
	})
}

// TestSecurityLogRecordsDrops: Record never waits; what a full queue has
// no room for is counted, and stored as one events.dropped event per
// tenant saying how many, which that tenant's auditors see.
func TestSecurityLogRecordsDrops(t *testing.T) {
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		s := st.open(SecurityOptions{QueueSize: 2})
		at := func(sec int) time.Time { return securityBase.Add(time.Duration(sec) * time.Second) }
		s.Record(SecurityEvent{Time: at(1), Kind: EventAuthnRefused, Tenant: "t1", Message: "kept 1"})
		s.Record(SecurityEvent{Time: at(2), Kind: EventAuthnRefused, Tenant: "t1", Message: "kept 2"})
		s.Record(SecurityEvent{Time: at(3), Kind: EventAuthnRefused, Tenant: "t2", Count: 5}) // the queue is full: dropped
		s.Record(SecurityEvent{Time: at(4), Kind: EventCallRefused, Tenant: "t2"})
		s.Record(SecurityEvent{Time: at(5), Kind: EventAuthnRefused})
		if st := s.Status(); st.Recorded != 5 || st.Dropped != 3 || st.Queued != 2 {
			t.Fatalf("status %+v", st)
		}
		startSecurity(t, s)
		closeSecurity(t, s)
		all := listSecurity(t, s, SecurityQuery{}, 10)
		if len(all) != 4 || all[0].Message != "kept 1" || all[1].Message != "kept 2" {
			t.Fatalf("stored %+v", all)
		}
		for i, want := range []SecurityEvent{
			{Kind: EventDropped, Tenant: "", Count: 1, Time: at(5).Truncate(time.Microsecond), Reason: reasonQueueFull},
			{Kind: EventDropped, Tenant: "t2", Count: 2, Time: at(4).Truncate(time.Microsecond), Reason: reasonQueueFull},
		} {
			got := all[2+i]
			want.ID, want.Message = got.ID, got.Message
			if got != want {
				t.Errorf("drop event %d: %+v, want %+v", i, got, want)
			}
		}
		if want := fmt.Sprintf("2 security events (6 occurrences) recorded between %s and %s were not stored",
			at(3).Format(time.RFC3339Nano), at(4).Format(time.RFC3339Nano)); !strings.HasPrefix(all[3].Message, want) {
			t.Errorf("message %q, want %q...", all[3].Message, want)
		}
		if got := listSecurity(t, s, SecurityQuery{Tenants: []string{"t2"}, Kind: EventDropped}, 10); len(got) != 1 || got[0].Count != 2 {
			t.Errorf("tenant t2's drops: %+v", got)
		}
		if got := listSecurity(t, s, SecurityQuery{Tenants: []string{"t1"}, Kind: EventDropped}, 10); len(got) != 0 {
			t.Errorf("tenant t1 dropped nothing: %+v", got)
		}
		if st := s.Status(); st.Written != 2 || st.DropEvents != 2 || st.Recorded != st.Written+st.Dropped+st.Lost {
			t.Errorf("status %+v", st)
		}
	})
}

// TestSecurityLogDropsAreReportedWithoutLaterEvents: drops are stored soon
// even when no event follows them.
func TestSecurityLogDropsAreReportedWithoutLaterEvents(t *testing.T) {
	s := NewMemorySecurityLog(SecurityOptions{QueueSize: 1, FlushInterval: time.Hour, Logger: zaptest.NewLogger(t)})
	startSecurity(t, s)
	defer closeSecurity(t, s)
	// The writer takes events as they come; record until one is dropped.
	for s.Status().Dropped == 0 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused, Tenant: "t"})
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(listSecurity(t, s, SecurityQuery{Kind: EventDropped}, 10)) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no events.dropped event stored; status %+v", s.Status())
		}
		time.Sleep(time.Millisecond)
	}
}

// TestSecurityLogCloseFlushes: Close writes what waits in the queue; an
// event recorded after Close is dropped and counted.
func TestSecurityLogCloseFlushes(t *testing.T) {
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		s := st.open(SecurityOptions{FlushInterval: time.Hour, BatchSize: 100})
		startSecurity(t, s)
		if err := s.Start(context.Background()); err == nil {
			t.Error("a second Start succeeded")
		}
		for i := range 10 {
			s.Record(SecurityEvent{Kind: EventCredentialCreated, Tenant: "t", Credential: fmt.Sprintf("key:k%d", i)})
		}
		closeSecurity(t, s)
		closeSecurity(t, s) // again: nothing to do
		s.Record(SecurityEvent{Kind: EventCredentialRevoked, Tenant: "t"})
		if got := listSecurity(t, s, SecurityQuery{}, 100); len(got) != 10 || got[9].Credential != "key:k9" {
			t.Fatalf("stored %+v", got)
		}
		if st := s.Status(); st.Written != 10 || st.Dropped != 1 || st.Recorded != 11 || st.Queued != 0 {
			t.Fatalf("status %+v", st)
		}
	})
}

// TestSecurityLogCloseNeverStarted: Close of a log never started reports
// the events it could not write.
func TestSecurityLogCloseNeverStarted(t *testing.T) {
	s := NewMemorySecurityLog(SecurityOptions{Logger: zaptest.NewLogger(t)})
	closeSecurity(t, NewMemorySecurityLog(SecurityOptions{Logger: zaptest.NewLogger(t)}))
	s.Record(SecurityEvent{Kind: EventAuthnRefused})
	if err := s.Close(context.Background()); err == nil || s.Status().Lost != 1 {
		t.Fatalf("close: %v, status %+v", err, s.Status())
	}
	if err := s.Start(context.Background()); err == nil {
		t.Fatal("Start after Close succeeded")
	}
}

// TestSecurityListRefusesBadInput: bad page sizes, inverted ranges and
// tokens that are not this listing's are invalid arguments naming the
// field.
func TestSecurityListRefusesBadInput(t *testing.T) {
	s := NewMemorySecurityLog(SecurityOptions{Logger: zaptest.NewLogger(t)})
	for i := range 5 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused, Tenant: "t", Time: securityBase.Add(time.Duration(i) * time.Second)})
	}
	startSecurity(t, s)
	closeSecurity(t, s)
	ctx := context.Background()
	q := SecurityQuery{Tenants: []string{"t", "u"}}
	p, err := s.List(ctx, q, 2, "")
	if err != nil || p.Next == "" {
		t.Fatalf("first page %+v %v", p, err)
	}
	// The tenants' order and repetitions do not change the filters.
	if _, err := s.List(ctx, SecurityQuery{Tenants: []string{"u", "t", "u"}}, 2, p.Next); err != nil {
		t.Fatalf("same tenants in another order: %v", err)
	}
	dp := cursor{fp: Query{Tenant: "t"}.fingerprint(), key: [2]uint64{1, 0}}
	for _, tc := range []struct {
		name   string
		q      SecurityQuery
		size   int
		token  string
		field  string
		reason string
	}{
		{"page size 0", q, 0, "", "page_size", model.ReasonInvalidValue},
		{"page size 1001", q, 1001, "", "page_size", model.ReasonInvalidValue},
		{"inverted range", SecurityQuery{From: securityBase, To: securityBase.Add(-time.Second)}, 10, "", "end_time", model.ReasonInvalidValue},
		{"empty range", SecurityQuery{From: securityBase, To: securityBase}, 10, "", "end_time", model.ReasonInvalidValue},
		{"malformed token", q, 10, "not-a-token", "page_token", model.ReasonInvalidValue},
		{"truncated token", q, 10, p.Next[:20], "page_token", model.ReasonInvalidValue},
		{"other tenants", SecurityQuery{Tenants: []string{"t"}}, 10, p.Next, "page_token", ReasonCursorMismatch},
		{"every tenant", SecurityQuery{}, 10, p.Next, "page_token", ReasonCursorMismatch},
		{"other kind", SecurityQuery{Tenants: q.Tenants, Kind: EventCallRefused}, 10, p.Next, "page_token", ReasonCursorMismatch},
		{"other order", SecurityQuery{Tenants: q.Tenants, NewestFirst: true}, 10, p.Next, "page_token", ReasonCursorMismatch},
		{"a decision listing's token", SecurityQuery{}, 10, dp.token(), "page_token", ReasonCursorMismatch},
		{"an id out of range", SecurityQuery{}, 10, cursor{fp: newFilterFP(SecurityQuery{}), key: [2]uint64{1 << 63, 0}}.token(), "page_token", model.ReasonInvalidValue},
	} {
		_, err := s.List(ctx, tc.q, tc.size, tc.token)
		var inv *model.InvalidError
		if !errors.As(err, &inv) || inv.Field != tc.field || inv.Reason != tc.reason {
			t.Errorf("%s: %v, want an invalid %s (%s)", tc.name, err, tc.field, tc.reason)
		}
	}
}

func newFilterFP(q SecurityQuery) uint64 {
	f := newSecurityFilter(&q)
	return f.fingerprint()
}

// TestSecurityEventsAreBoundedWhenStored: whatever a caller passes is
// stored, bounded: overlong, invalid or control-laden text, counts below
// one, times PostgreSQL cannot hold.
func TestSecurityEventsAreBoundedWhenStored(t *testing.T) {
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		now := securityBase
		s := st.open(SecurityOptions{Now: func() time.Time { return now }})
		long := strings.Repeat("é", 700) // 1400 bytes
		s.Record(SecurityEvent{
			Kind: "authn.refused\x00", Tenant: "acme-" + strings.Repeat("x", 100), Credential: "key:\xff\xfe", Actor: long,
			Method: "/a\u202eb", Reason: long, Message: long + "\n", RequestID: long, Peer: long, Count: -3,
		})
		s.Record(SecurityEvent{Time: time.Date(20000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: EventAuthnRefused})
		s.Record(SecurityEvent{Kind: EventAuthnRefused})
		startSecurity(t, s)
		closeSecurity(t, s)
		got := listSecurity(t, s, SecurityQuery{}, 10)
		if len(got) != 3 {
			t.Fatalf("stored %d events, want 3: %+v", len(got), s.Status())
		}
		e := got[0]
		for _, f := range []struct {
			name, v string
			max     int
		}{
			{"kind", e.Kind, maxEventKind}, {"tenant", e.Tenant, maxEventTenant}, {"credential", e.Credential, maxEventCredential},
			{"actor", e.Actor, maxEventActor}, {"method", e.Method, maxEventMethod}, {"reason", e.Reason, maxEventReason},
			{"message", e.Message, maxEventMessage}, {"request id", e.RequestID, maxEventRequestID}, {"peer", e.Peer, maxEventPeer},
		} {
			if len(f.v) > f.max || !utf8.ValidString(f.v) || strings.ContainsFunc(f.v, func(r rune) bool { return r != utf8.RuneError && unsafeRune(r) }) {
				t.Errorf("%s stored as %q", f.name, f.v)
			}
		}
		if e.Kind != "authn.refused\uFFFD" || e.Credential != "key:\uFFFD\uFFFD" || e.Method != "/a\uFFFDb" ||
			!strings.HasSuffix(e.Tenant, ellipsis) || !strings.HasSuffix(e.Message, ellipsis) || e.Count != 1 {
			t.Errorf("stored %+v", e)
		}
		for _, e := range got[1:] {
			if !e.Time.Equal(now.Truncate(time.Microsecond)) {
				t.Errorf("an event without a usable time is stored at %s, want %s", e.Time, now)
			}
		}
	})
}

func TestBoundText(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"", 8, ""},
		{"key:abc", 8, "key:abc"},
		{"12345678", 8, "12345678"},
		{"123456789", 8, "12345…"},
		{"ééééé", 8, "éé…"},   // 10 bytes: cut after 4
		{"aaéééé", 8, "aaé…"}, // a cut inside a character moves back
		{"a\x00b", 8, "a\uFFFDb"},
		{"a\xffb", 8, "a\uFFFDb"},
		{"a\u200bb\u202e", 16, "a\uFFFDb\uFFFD"},
		{"\x01\x01\x01", 8, "\uFFFD…"}, // 9 bytes once replaced
		{"日本語", 9, "日本語"},
		{"日本語x", 9, "日本…"},
	} {
		if got := boundText(tc.in, tc.max); got != tc.want {
			t.Errorf("boundText(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

func FuzzBoundText(f *testing.F) {
	for _, s := range []string{"", "key:abc", "ééééé", "a\x00b\xff", "\u202e\u200b", strings.Repeat("日", 50)} {
		f.Add(s, 8)
	}
	f.Fuzz(func(t *testing.T, s string, maxLen int) {
		if maxLen < 4 || maxLen > 2048 {
			return
		}
		got := boundText(s, maxLen)
		if len(got) > maxLen || !utf8.ValidString(got) || strings.ContainsFunc(got, func(r rune) bool { return r != utf8.RuneError && unsafeRune(r) }) {
			t.Fatalf("boundText(%q, %d) = %q", s, maxLen, got)
		}
		if len(s) <= maxLen && !strings.ContainsFunc(s, unsafeRune) && got != s {
			t.Fatalf("boundText(%q, %d) changed a clean value to %q", s, maxLen, got)
		}
		if got != s && isASCIIIdentifier(got) {
			t.Fatalf("boundText(%q, %d) = %q: a changed value passes for an identifier", s, maxLen, got)
		}
	})
}

func isASCIIIdentifier(s string) bool {
	return model.ValidateTenantID("t", s) == nil || model.ValidateSubjectID("s", s) == nil
}

// TestMemorySecurityRingEvicts: memory keeps the newest events and counts
// the evicted.
func TestMemorySecurityRingEvicts(t *testing.T) {
	s := NewMemorySecurityLog(SecurityOptions{MemoryEvents: 5, BatchSize: 3, Logger: zaptest.NewLogger(t)})
	for i := range 12 {
		s.Record(SecurityEvent{Kind: EventAuthnRefused, Tenant: []string{"a", "b"}[i%2], Message: fmt.Sprint(i)})
	}
	startSecurity(t, s)
	closeSecurity(t, s)
	if got := eventIDs(listSecurity(t, s, SecurityQuery{}, 2)); !slices.Equal(got, []int64{8, 9, 10, 11, 12}) {
		t.Fatalf("kept %v", got)
	}
	if got := eventIDs(listSecurity(t, s, SecurityQuery{Tenants: []string{"b"}, NewestFirst: true}, 1)); !slices.Equal(got, []int64{12, 10, 8}) {
		t.Fatalf("tenant b newest first: %v", got)
	}
	if st := s.Status(); st.MemoryEvicted != 7 || st.MemoryCapacity != 5 || st.Storage != "memory" || st.Written != 12 {
		t.Fatalf("status %+v", st)
	}
}

// TestSecurityListReadsBoundedAmounts: a filter matching little of many
// events returns short pages with tokens, and paging still finds each
// match once.
func TestSecurityListReadsBoundedAmounts(t *testing.T) {
	defer func(q, c int) { securityRowsPerQuery, securityRowsPerCall = q, c }(securityRowsPerQuery, securityRowsPerCall)
	securityRowsPerQuery, securityRowsPerCall = 4, 8
	forSecurityStorages(t, func(t *testing.T, st securityStorage) {
		s := st.open(SecurityOptions{})
		for i := range 50 {
			actor := "bob"
			if i%20 == 7 {
				actor = "mallory"
			}
			s.Record(SecurityEvent{Kind: EventCallRefused, Tenant: "t", Actor: actor})
		}
		startSecurity(t, s)
		closeSecurity(t, s)
		for _, desc := range []bool{false, true} {
			calls, short := 0, 0
			var got []int64
			tok := ""
			for {
				p, err := s.List(context.Background(), SecurityQuery{Actor: "mallory", NewestFirst: desc}, 10, tok)
				if err != nil {
					t.Fatal(err)
				}
				calls++
				if len(p.Events) == 0 && p.Next != "" {
					short++
				}
				got = append(got, eventIDs(p.Events)...)
				if tok = p.Next; tok == "" {
					break
				}
			}
			want := []int64{8, 28, 48}
			if desc {
				want = []int64{48, 28, 8}
			}
			if !slices.Equal(got, want) || short == 0 || calls < 6 {
				t.Errorf("newest first %v: %v in %d calls (%d short), want %v", desc, got, calls, short, want)
			}
		}
	})
}
