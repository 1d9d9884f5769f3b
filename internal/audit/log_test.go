package audit

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store/memory"
)

// The batcher and maintenance goroutines stop with Close: pgtest.Main
// checks for leaked goroutines.
func TestMain(m *testing.M) { pgtest.Main(m) }

func newMemoryLog(t *testing.T, opts Options) *Log {
	t.Helper()
	opts.Logger = zaptest.NewLogger(t)
	l, err := NewMemory(memory.New(nil), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func decision(tenant, subject string, allowed bool) Decision {
	return Decision{Time: time.Now(), Method: MethodCheck, Caller: "10.0.0.1:4242", RequestID: "r1", Tenant: tenant, Subject: subject,
		Perm: model.ModulePerm("account", "read"), Allowed: allowed, Revision: 3, Latency: 2 * time.Microsecond}
}

func listAll(t *testing.T, l *Log, q Query) []Decision {
	t.Helper()
	var out []Decision
	tok := ""
	for {
		p, err := l.ListDecisions(context.Background(), q, 3, tok)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, p.Decisions...)
		if tok = p.Next; tok == "" {
			return out
		}
	}
}

// TestDropDeniesLast fills the queue while the batcher is not running:
// allowed decisions go first, a deny only when nothing else is queued, and
// the batcher records one marker per tenant for what was dropped.
func TestDropDeniesLast(t *testing.T) {
	ctx := context.Background()
	l := newMemoryLog(t, Options{Overflow: OverflowDropDeniesLast, QueueSize: 3, BatchSize: 3})
	record := func(tenant string, allowed bool) string {
		id, err := l.Record(ctx, decision(tenant, "bob", allowed))
		if err != nil {
			t.Fatal(err)
		}
		return id
	}
	a1, a2, a3 := record("t1", true), record("t1", true), record("t2", true)
	if a4 := record("t1", true); a4 != "" {
		t.Fatalf("an allow beyond a full queue got id %q", a4)
	}
	d1, d2, d3 := record("t1", false), record("t2", false), record("t1", false) // each evicts the oldest allow
	if d4 := record("t2", false); d4 != "" {
		t.Fatalf("a deny beyond a queue of denies got id %q", d4)
	}
	if st := l.Status(); st.DroppedAllowed != 4 || st.DroppedDenied != 1 || st.Queued != 3 {
		t.Fatalf("status %+v", st)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	t1 := listAll(t, l, Query{Tenant: "t1"})
	var got []string
	for _, d := range t1 {
		got = append(got, d.ID)
	}
	if len(t1) != 3 || !slices.Contains(got, d1) || !slices.Contains(got, d3) || t1[2].Method != MethodDropped ||
		!strings.HasPrefix(t1[2].Reasons[0], "3 allowed and 0 denied decisions") {
		t.Fatalf("tenant t1: %+v", t1)
	}
	t2 := listAll(t, l, Query{Tenant: "t2"})
	if len(t2) != 2 || t2[0].ID != d2 || t2[1].Method != MethodDropped || !strings.HasPrefix(t2[1].Reasons[0], "1 allowed and 1 denied") {
		t.Fatalf("tenant t2: %+v", t2)
	}
	for _, id := range []string{a1, a2, a3} {
		if _, err := l.Decision(ctx, "t1", id); err == nil {
			t.Errorf("evicted %s is in the log", id)
		}
	}
	if _, err := l.Record(ctx, decision("t1", "bob", true)); !errors.Is(err, ErrClosed) {
		t.Fatalf("record after close: %v", err)
	}
}

// TestMemoryRingEvictsAndVerifies: the memory log keeps its newest entries;
// the chain verifies from the last evicted link, and an edit breaks it.
func TestMemoryRingEvictsAndVerifies(t *testing.T) {
	ctx := context.Background()
	l := newMemoryLog(t, Options{Mode: ModeSync, MemoryEntries: 10})
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close(ctx) }()
	var ids []string
	for i := range 25 {
		id, err := l.Record(ctx, decision("t", fmt.Sprintf("u%d", i), i%2 == 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	got := listAll(t, l, Query{Tenant: "t"})
	if len(got) != 10 || got[0].ID != ids[15] || got[9].ID != ids[24] {
		t.Fatalf("kept %d entries from %s", len(got), got[0].ID)
	}
	rs, err := l.Verify(ctx, "", 0, 0)
	if err != nil || len(rs) != 1 || rs[0].Broken != nil || rs[0].RetainedAfter != 15 || rs[0].Checked != 10 || rs[0].First != 16 {
		t.Fatalf("verify %+v %v", rs, err)
	}
	if st := l.Status(); st.MemoryEvicted != 15 || st.Storage != "memory" || st.Written != 25 {
		t.Fatalf("status %+v", st)
	}
	m := l.be.(*memoryBackend)
	m.mu.Lock()
	m.at(m.firstKey + 4).Subject = "mallory"
	m.mu.Unlock()
	rs, err = l.Verify(ctx, l.ChainID(), 0, 0)
	if err != nil || rs[0].Broken == nil || rs[0].Broken.Kind != BreakHashMismatch || rs[0].Broken.Position != 20 || rs[0].Broken.DecisionID != ids[19] {
		t.Fatalf("verify after an edit %+v %v", rs, err)
	}
	if _, err := l.Verify(ctx, "0000000000000000", 0, 0); err == nil {
		t.Fatal("an unknown chain verified")
	}
}

// TestDecisionEncodingRoundTrip: what is hashed is what is stored.
func TestDecisionEncodingRoundTrip(t *testing.T) {
	d := decision("t", "bob", true)
	d.Perm = model.Permission{Kind: model.KindModule, Module: "account", Verb: "update", Record: &model.Record{ID: "a1", Owner: "bob", Department: "east"}}
	d.Reasons = []string{"role x grants it", ""}
	d.ID, d.Chain, d.Seq, d.Position, d.LoggedAt = "0123456789abcdef-7", "0123456789abcdef", 7, 5, time.Now()
	d.complete()
	d.Time, d.LoggedAt = d.Time.UTC().Truncate(time.Microsecond), d.LoggedAt.UTC().Truncate(time.Microsecond)
	d.Perm = model.Permission{}
	var e encoderFor
	got, err := decodeDecision(e.encode(&d))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(d) {
		t.Fatalf("round trip\n%+v\nwant\n%+v", got, d)
	}
	if d.Permission != "module account update" || d.RecordID != "a1" || d.RecordDepartment != "east" || d.Result != ResultAllow {
		t.Fatalf("derived fields %+v", d)
	}
}

type encoderFor struct{ l Log }

func (e *encoderFor) encode(d *Decision) []byte {
	d.encode(&e.l.w.enc)
	return slices.Clone(e.l.w.enc.Bytes())
}

func TestMasker(t *testing.T) {
	if _, err := newMasker([]string{"subject"}, "short"); err == nil {
		t.Fatal("a short key was accepted")
	}
	if _, err := newMasker([]string{"password"}, "0123456789abcdef"); err == nil {
		t.Fatal("an unknown attribute was accepted")
	}
	m, err := newMasker([]string{"subject", "record_owner", "subject"}, "0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newMasker([]string{"subject"}, "fedcba9876543210")
	d := Decision{Subject: "bob", RecordOwner: "bob", RecordID: "r1", Caller: "c"}
	m.apply(&d)
	if !strings.HasPrefix(d.Subject, "~") || len(d.Subject) != 33 || d.RecordOwner != d.Subject || d.RecordID != "r1" || d.Caller != "c" ||
		other.value("bob") == d.Subject || m.maybe("subject", "bob") != d.Subject || m.maybe("caller", "c") != "c" {
		t.Fatalf("masked %+v", d)
	}
	if !slices.Equal(m.attrs, []string{"subject", "record_owner"}) {
		t.Fatalf("attributes %v", m.attrs)
	}
}

func TestPageTokens(t *testing.T) {
	q := Query{Tenant: "t", Subject: "bob"}
	c := cursor{fp: q.fingerprint(), key: [2]uint64{7, 9}}
	got, err := parseToken(c.token(), q.fingerprint(), false)
	if err != nil || got != c {
		t.Fatalf("round trip %+v %v", got, err)
	}
	other := Query{Tenant: "t", Subject: "alice"}
	for _, tc := range []struct {
		name, tok string
		fp        uint64
		desc      bool
		reason    string
	}{
		{"not base64", "!!", q.fingerprint(), false, model.ReasonInvalidValue},
		{"short", c.token()[:10], q.fingerprint(), false, model.ReasonInvalidValue},
		{"other filters", c.token(), other.fingerprint(), false, ReasonCursorMismatch},
		{"other order", c.token(), q.fingerprint(), true, ReasonCursorMismatch},
	} {
		_, err := parseToken(tc.tok, tc.fp, tc.desc)
		var inv *model.InvalidError
		if !errors.As(err, &inv) || inv.Field != "page_token" || inv.Reason != tc.reason {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
}

// TestRoleGrants: a role is used by the permissions it or the roles it
// inherits grant, fields through module verbs or field rules.
func TestRoleGrants(t *testing.T) {
	st := model.NewTenantState("t", "T")
	st.Roles["base"] = model.Role{ID: "base", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}}}}}
	st.Roles["rep"] = model.Role{ID: "rep", Inherits: []string{"base"}, Permissions: model.Permissions{
		Functions: []string{"report.view"},
		Fields:    []model.FieldRule{{Module: "lead", Field: "budget", State: model.FieldReadWrite}, {Module: "lead", Field: "secret", State: model.FieldHidden}},
	}}
	rg := newRoleGrants(st, "rep")
	for perm, want := range map[string]bool{
		"module account read":              true,
		"module account update":            false,
		"function report.view":             true,
		"function report.export":           false,
		"field account.credit_limit read":  true,
		"field account.credit_limit write": false,
		"field lead.budget write":          true,
		"field lead.secret read":           false,
	} {
		if got := rg.grants(perm); got != want {
			t.Errorf("%s: %v, want %v", perm, got, want)
		}
	}
}

// TestDropMarkerSpansEveryDroppedEntry: a deny evicts the oldest queued
// allow, which is older than the allows already dropped on arrival; the
// marker still names the first and last time of what was dropped, and is
// dated at the last.
func TestDropMarkerSpansEveryDroppedEntry(t *testing.T) {
	ctx := context.Background()
	l := newMemoryLog(t, Options{Overflow: OverflowDropDeniesLast, QueueSize: 2, BatchSize: 2})
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	record := func(sec int, allowed bool) {
		d := decision("t", "bob", allowed)
		d.Time = base.Add(time.Duration(sec) * time.Second)
		if _, err := l.Record(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	record(10, true)  // queued, later evicted
	record(20, true)  // queued
	record(30, true)  // dropped: the queue is full
	record(40, false) // evicts the allow of second 10
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	markers := listAll(t, l, Query{Tenant: "t", Method: MethodDropped})
	want := fmt.Sprintf("2 allowed and 0 denied decisions of this tenant made between %s and %s were not recorded",
		base.Add(10*time.Second).Format(time.RFC3339Nano), base.Add(30*time.Second).Format(time.RFC3339Nano))
	if len(markers) != 1 || !strings.HasPrefix(markers[0].Reasons[0], want) || !markers[0].Time.Equal(base.Add(30*time.Second)) {
		t.Fatalf("markers %+v, want one at %s: %q", markers, base.Add(30*time.Second), want)
	}
}

// TestSyncModeCountsWaits: a sync-mode call that finds the queue full waits
// for room, and is counted like one in the async mode.
func TestSyncModeCountsWaits(t *testing.T) {
	ctx := context.Background()
	l := newMemoryLog(t, Options{Mode: ModeSync, QueueSize: 1})
	errs := make(chan error, 2)
	record := func() {
		_, err := l.Record(ctx, decision("t", "bob", true))
		errs <- err
	}
	go record() // queued; waits for the batcher, which has not started
	for l.Status().Queued != 1 {
		time.Sleep(time.Millisecond)
	}
	go record() // waits for room
	deadline := time.Now().Add(5 * time.Second)
	for l.Status().Waited != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	waited := l.Status().Waited
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if waited != 1 {
		t.Fatalf("waited %d, want 1", waited)
	}
}

// TestMemoryEvidenceAfterOutOfOrderEviction: entries reach the ring nearly,
// not exactly, in time order. An evicted entry younger than an entry still
// held bounds the evidence, not the oldest entry held.
func TestMemoryEvidenceAfterOutOfOrderEviction(t *testing.T) {
	ctx := context.Background()
	l := newMemoryLog(t, Options{Mode: ModeSync, MemoryEntries: 2})
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = l.Close(ctx) }()
	base := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, e := range []struct {
		user string
		sec  int
	}{{"alice", 10}, {"bob", 0}, {"carol", 20}} { // alice's entry is evicted
		d := decision("t", e.user, true)
		d.Time = base.Add(time.Duration(e.sec) * time.Second)
		if _, err := l.Record(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	st := model.NewTenantState("t", "T")
	st.Roles["reader"] = model.Role{ID: "reader", Permissions: model.Permissions{Modules: []model.ModuleGrant{{Module: "account", Verbs: []string{"read"}}}}}
	st.Grants[model.GrantKey{UserID: "alice", RoleID: "reader"}] = model.Grant{UserID: "alice", RoleID: "reader"}
	r, err := l.UnusedGrants(ctx, st, base.Add(-time.Hour), base.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	// alice used her grant at second 10, but the log no longer holds it:
	// the report must not claim evidence from before then.
	if len(r.Grants) != 1 || !r.EvidenceSince.After(base.Add(10*time.Second)) {
		t.Fatalf("unused %v, evidence since %s; alice's use at %s was evicted", r.Grants, r.EvidenceSince, base.Add(10*time.Second))
	}
}

// TestStatusCountsOnlyQueuedCalls: a call that gives up waiting for room
// (its context ends) hands nothing to the log: it is not counted recorded,
// so what was recorded is what was written, dropped or is queued.
func TestStatusCountsOnlyQueuedCalls(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []Mode{ModeAsync, ModeSync} {
		l := newMemoryLog(t, Options{Mode: mode, QueueSize: 1})
		done := make(chan error, 1)
		go func() {
			_, err := l.Record(ctx, decision("t", "bob", true))
			done <- err
		}()
		for l.Status().Queued != 1 {
			time.Sleep(time.Millisecond)
		}
		short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		if _, err := l.Record(short, decision("t", "bob", true)); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("%s: a call on a full queue: %v", mode, err)
		}
		cancel()
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if err := l.Close(ctx); err != nil {
			t.Fatal(err)
		}
		if st := l.Status(); st.Recorded != 1 || st.Written != 1 || st.Waited != 1 {
			t.Errorf("%s: status %+v, want 1 recorded, written and waited", mode, st)
		}
	}
}

// pauseCtx holds a Record call where it is about to wait for room in a
// full queue: a select evaluates its operands, ctx.Done() among them,
// before it blocks.
type pauseCtx struct {
	context.Context
	once           sync.Once
	paused, resume chan struct{}
}

func newPauseCtx(ctx context.Context) *pauseCtx {
	return &pauseCtx{Context: ctx, paused: make(chan struct{}), resume: make(chan struct{})}
}

func (c *pauseCtx) Done() <-chan struct{} {
	c.once.Do(func() {
		close(c.paused)
		<-c.resume
	})
	return c.Context.Done()
}

type recordResult struct {
	id  string
	err error
}

// wroteBackend tells of each batch written.
type wroteBackend struct {
	backend
	wrote chan struct{}
}

func (b *wroteBackend) write(ctx context.Context, chain string, batch []item, h head, retry bool, scratch *[][]byte) error {
	err := b.backend.write(ctx, chain, batch, h, retry, scratch)
	if err == nil {
		b.wrote <- struct{}{}
	}
	return err
}

// TestCloseAnswersCallsWaitingForRoom: a call finds the queue full, and
// Close, with an expired context, begins before the call waits for room.
// The call either has its entry written or gets ErrClosed, without waiting
// for its own context to end, and what is counted recorded is written.
// The bubble orders the steps: Close and the batcher go as far as they can
// before the call goes on.
func TestCloseAnswersCallsWaitingForRoom(t *testing.T) {
	for _, mode := range []Mode{ModeAsync, ModeSync} {
		t.Run(string(mode), func(t *testing.T) {
			// The answer channels are made in the bubble: they must not
			// outlive it in the shared pool.
			defer func(p *sync.Pool) { waiters = p }(waiters)
			waiters = &sync.Pool{New: func() any { return make(chan error, 1) }}
			synctest.Test(t, func(t *testing.T) {
				ctx := context.Background()
				l := newMemoryLog(t, Options{Mode: mode, QueueSize: 1})
				first := make(chan error, 1)
				go func() {
					_, err := l.Record(ctx, decision("t", "alice", true))
					first <- err
				}()
				synctest.Wait() // alice's entry fills the queue
				callCtx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				pc := newPauseCtx(callCtx)
				late := make(chan recordResult, 1)
				go func() {
					id, err := l.Record(pc, decision("t", "bob", true))
					late <- recordResult{id, err}
				}()
				<-pc.paused // bob's call found the queue full
				if err := l.Start(ctx); err != nil {
					t.Fatal(err)
				}
				if err := <-first; err != nil {
					t.Fatal(err)
				}
				synctest.Wait() // alice's entry is written
				expired, cancelClose := context.WithCancel(ctx)
				cancelClose()
				closed := make(chan error, 1)
				go func() { closed <- l.Close(expired) }()
				synctest.Wait() // Close has gone as far as it can without bob's call
				start := time.Now()
				close(pc.resume)
				r := <-late
				if err := <-closed; err != nil {
					t.Errorf("close: %v", err)
				}
				switch {
				case r.err == nil:
					if _, err := l.Decision(ctx, "t", r.id); err != nil {
						t.Errorf("the call returned id %s, but its entry was not written: %v", r.id, err)
					}
				case errors.Is(r.err, ErrClosed):
				default:
					t.Errorf("the call returned %v after %s, want its entry written or ErrClosed", r.err, time.Since(start))
				}
				if st := l.Status(); st.Recorded != st.Written || st.Queued != 0 {
					t.Errorf("status %+v: recorded is not what was written", st)
				}
			})
		})
	}
}

// TestCloseAnswersCallsWaitingForRoomPostgres: the same on PostgreSQL,
// where the writes Close's context cuts short fail, and without the
// bubble's ordering: however the call, Close and the batcher interleave,
// the call is answered at once, with its entry written or ErrClosed (also
// when its entry was queued but could not be written: counted lost, and
// reported by Close).
func TestCloseAnswersCallsWaitingForRoomPostgres(t *testing.T) {
	pool := pgtest.NewPool(t)
	for _, mode := range []Mode{ModeAsync, ModeSync} {
		t.Run(string(mode), func(t *testing.T) {
			for range 10 {
				ctx := context.Background()
				l, err := NewPostgres(pool, Options{Mode: mode, QueueSize: 1, Logger: zaptest.NewLogger(t)})
				if err != nil {
					t.Fatal(err)
				}
				wb := &wroteBackend{backend: l.be, wrote: make(chan struct{}, 2)}
				l.be = wb
				dctx, first := WithDeferred(ctx)
				if _, err := l.Record(dctx, decision("t", "alice", true)); err != nil { // fills the queue
					t.Fatal(err)
				}
				callCtx, cancel := context.WithTimeout(ctx, time.Minute)
				defer cancel()
				pc := newPauseCtx(callCtx)
				late := make(chan recordResult, 1)
				go func() {
					id, err := l.Record(pc, decision("t", "bob", true))
					late <- recordResult{id, err}
				}()
				<-pc.paused // bob's call found the queue full
				if err := l.Start(ctx); err != nil {
					t.Fatal(err)
				}
				<-wb.wrote
				if err := first.Wait(ctx); err != nil {
					t.Fatal(err)
				}
				expired, cancelClose := context.WithCancel(ctx)
				cancelClose()
				closed := make(chan error, 1)
				go func() { closed <- l.Close(expired) }()
				close(pc.resume)
				var r recordResult
				select {
				case r = <-late:
				case <-time.After(30 * time.Second):
					t.Fatal("the call is still waiting after Close")
				}
				closeErr := <-closed
				lost := l.lost.Load()
				switch {
				case r.err == nil:
					if _, err := l.Decision(ctx, "t", r.id); err != nil && (mode == ModeSync || lost == 0) {
						t.Errorf("the call returned id %s, but its entry was neither written nor counted lost: %v", r.id, err)
					}
				case errors.Is(r.err, ErrClosed):
				default:
					t.Errorf("the call returned %v, want its entry written or ErrClosed", r.err)
				}
				if st := l.Status(); st.Recorded != st.Written+lost || st.Queued != 0 || (closeErr != nil) != (lost > 0) {
					t.Errorf("status %+v, %d lost, close: %v", st, lost, closeErr)
				}
			}
		})
	}
}

// TestPageReasons: a page's entry counts its items and names its denied
// ones, at most MaxPageReasons of them.
func TestPageReasons(t *testing.T) {
	var denied []model.Permission
	for i := range MaxPageReasons + 50 {
		p := model.ModulePerm("account", "read")
		p.Record = &model.Record{ID: fmt.Sprintf("acc-%d", i), Owner: "bob"}
		denied = append(denied, p)
	}
	denied[0] = model.FunctionPerm("report.export")
	got := PageReasons(3, MaxPageReasons+47, denied)
	if len(got) != MaxPageReasons+2 || got[0] != "page of 3 permissions and 147 records: 0 allowed, 150 denied" ||
		got[1] != "denied: function report.export" || got[2] != "denied: record acc-1" || got[len(got)-1] != "and 50 more denied" {
		t.Fatalf("reasons %d: %q ... %q", len(got), got[:3], got[len(got)-1])
	}
}
