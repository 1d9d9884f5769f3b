package audit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// flakyBackend is PostgreSQL that can be made unreachable: its writes and
// chain reads fail while down is set, as they do when the database is away.
type flakyBackend struct {
	backend
	down atomic.Bool
}

var errAway = errors.New("the database is away")

func (b *flakyBackend) write(ctx context.Context, chain string, batch []item, h head, retry bool, scratch *[][]byte) error {
	if b.down.Load() {
		return errAway
	}
	return b.backend.write(ctx, chain, batch, h, retry, scratch)
}

func (b *flakyBackend) readChain(ctx context.Context, chain string) (head, bool, error) {
	if b.down.Load() {
		return head{}, false, errAway
	}
	return b.backend.readChain(ctx, chain)
}

// spooledLog starts a log on PostgreSQL with a spool in dir.
func spooledLog(t testing.TB, pool *pgxpool.Pool, dir string, opts Options) (*Log, *flakyBackend) {
	t.Helper()
	opts.SpoolDir, opts.Logger = dir, zaptest.NewLogger(t)
	if opts.FlushInterval == 0 {
		opts.FlushInterval = 5 * time.Millisecond
	}
	opts.defaults()
	be := &flakyBackend{backend: &pgBackend{pool: pool, keys: chain.ProcessKeyring()}}
	l, err := newLog(be, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that failed while the database was away must still end:
		// the database comes back, and Close is bounded.
		be.down.Store(false)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = l.Close(ctx)
	})
	return l, be
}

// crash stops a log the way a killed process stops: nothing more is
// shipped, and the spool's files stay as they are.
func crash(l *Log) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = l.Close(ctx)
}

// recordN records n decisions of tenant t, numbered from first, and
// returns their ids.
func recordN(t *testing.T, l *Log, first, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for j := range ids {
		i := first + j
		d := decision("t", fmt.Sprintf("user%d", i), i%3 != 0)
		d.Perm = model.Permission{Kind: model.KindModule, Module: "account", Verb: "update", Record: &model.Record{ID: fmt.Sprint("a", i), Owner: "bob"}}
		d.Reasons = []string{"because"}
		id, err := l.Record(context.Background(), d)
		if err != nil || id == "" {
			t.Fatalf("record %d: %q, %v", i, id, err)
		}
		ids[j] = id
	}
	return ids
}

// waitWritten waits until the log has written n entries.
func waitWritten(t *testing.T, l *Log, n int64) {
	t.Helper()
	for start := time.Now(); l.written.Load() < n; time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatalf("written %d of %d", l.written.Load(), n)
		}
	}
}

// checkLogged finds every id in the log once, with every field, and the
// chains intact.
func checkLogged(t *testing.T, l *Log, ids []string) {
	t.Helper()
	got := listAll(t, l, Query{Tenant: "t"})
	byID := map[string]Decision{}
	for _, d := range got {
		if _, dup := byID[d.ID]; dup {
			t.Fatalf("%s logged twice", d.ID)
		}
		byID[d.ID] = d
	}
	for i, id := range ids {
		d, ok := byID[id]
		if !ok {
			t.Fatalf("decision %d (%s) is not in the log; %d of %d are", i, id, len(got), len(ids))
		}
		if d.Subject != fmt.Sprintf("user%d", i) || d.RecordID != fmt.Sprint("a", i) || d.Permission != "module account update" ||
			d.Allowed != (i%3 != 0) || !slices.Equal(d.Reasons, []string{"because"}) {
			t.Fatalf("decision %d logged as %+v", i, d)
		}
	}
	if len(got) != len(ids) {
		t.Fatalf("the log holds %d entries, want %d", len(got), len(ids))
	}
	chains := map[string]bool{}
	for _, d := range got {
		chains[d.Chain] = true
	}
	for c := range chains {
		reports, err := l.Verify(context.Background(), c, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range reports {
			if r.Broken != nil {
				t.Fatalf("chain %s broken: %+v", c, r.Broken)
			}
		}
	}
}

// TestSpoolShips: decisions go through the spool to PostgreSQL in order,
// each once, and the spool empties.
func TestSpoolShips(t *testing.T) {
	pool := pgtest.NewPool(t)
	l, _ := spooledLog(t, pool, t.TempDir(), Options{BatchSize: 50})
	ids := recordN(t, l, 0, 500)
	waitWritten(t, l, 500)
	checkLogged(t, l, ids)
	if st := l.Status(); st.SpoolEntries != 0 || st.SpoolBytes != 0 || st.SpoolDir == "" || !st.DegradedSince.IsZero() {
		t.Errorf("status after shipping: %+v", st)
	}
}

// TestSpoolSurvivesCrash: a process that dies with decisions spooled and
// not written (the database was away), or half written, loses none: the
// next process on the spool ships them, continuing the dead process's
// chain and writing nothing twice.
func TestSpoolSurvivesCrash(t *testing.T) {
	pool := pgtest.NewPool(t)
	dir := t.TempDir()
	l1, be1 := spooledLog(t, pool, dir, Options{BatchSize: 20})
	first := recordN(t, l1, 0, 100)
	waitWritten(t, l1, 100)
	be1.down.Store(true)
	second := recordN(t, l1, 100, 150) // spooled, not written
	crash(l1)
	if n := l1.written.Load(); n != 100 {
		t.Fatalf("the first process wrote %d entries, want 100", n)
	}

	// The next process ships what the first left, then its own.
	l2, _ := spooledLog(t, pool, dir, Options{BatchSize: 20})
	third := recordN(t, l2, 250, 30)
	waitWritten(t, l2, 180)
	checkLogged(t, l2, slices.Concat(first, second, third))
	if st := l2.Status(); st.SpoolEntries != 0 {
		t.Errorf("status after shipping the dead process's spool: %+v", st)
	}
}

// TestSpoolDuringOutage: while the database is away, Record answers at
// once from the spool, the log says it is degraded, and everything ships
// when the database returns.
func TestSpoolDuringOutage(t *testing.T) {
	pool := pgtest.NewPool(t)
	var degraded atomic.Int32
	l, be := spooledLog(t, pool, t.TempDir(), Options{BatchSize: 20, OnDegraded: func(d bool) {
		if d {
			degraded.Add(1)
		} else {
			degraded.Add(-1)
		}
	}})
	be.down.Store(true)
	ids := recordN(t, l, 0, 2000) // far more than a queue in memory would hold before it blocks
	for start := time.Now(); l.Status().DegradedSince.IsZero(); time.Sleep(time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			t.Fatal("the log never said it is degraded")
		}
	}
	st := l.Status()
	if degraded.Load() != 1 || st.SpoolEntries < 1980 || st.SpoolBytes == 0 || st.LastError == "" {
		t.Fatalf("status during the outage: %+v (degraded %d)", st, degraded.Load())
	}
	be.down.Store(false)
	waitWritten(t, l, 2000)
	checkLogged(t, l, ids)
	if st := l.Status(); !st.DegradedSince.IsZero() || degraded.Load() != 0 || st.SpoolEntries != 0 {
		t.Fatalf("status after the outage: %+v (degraded %d)", st, degraded.Load())
	}
}

// TestSpoolFull: a full spool applies the overflow policy. block waits for
// room and loses nothing; drop_denies_last drops allowed decisions, keeps
// denied ones in the room kept for them, and records a marker.
func TestSpoolFull(t *testing.T) {
	pool := pgtest.NewPool(t)
	t.Run("block", func(t *testing.T) {
		l, be := spooledLog(t, pool, t.TempDir(), Options{BatchSize: 20, SpoolMaxBytes: 8 << 10})
		be.down.Store(true)
		ids := recordN(t, l, 0, 40) // fits
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		var filled int64
		for {
			if _, err := l.Record(ctx, decision("t", "x", true)); errors.Is(err, context.DeadlineExceeded) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			filled++
		}
		if l.Status().Waited == 0 {
			t.Fatal("no call waited for room")
		}
		type recorded struct {
			ids []string
			err error
		}
		done := make(chan recorded, 1)
		go func() { // waits for room
			var r recorded
			for i := 40; i < 45 && r.err == nil; i++ {
				var id string
				id, r.err = l.Record(context.Background(), decision("t", fmt.Sprint("user", i), true))
				r.ids = append(r.ids, id)
			}
			done <- r
		}()
		be.down.Store(false)
		r := <-done
		if r.err != nil {
			t.Fatal(r.err)
		}
		more := r.ids
		// The call that gave up is not recorded; every other one is.
		if got, want := l.Status().Recorded, 45+filled; got != want {
			t.Fatalf("status says %d recorded, want %d", got, want)
		}
		waitWritten(t, l, 45+filled)
		got := map[string]bool{}
		for _, d := range listAll(t, l, Query{Tenant: "t"}) {
			got[d.ID] = true
		}
		for _, id := range slices.Concat(ids, more) {
			if !got[id] {
				t.Fatalf("%s lost", id)
			}
		}
	})
	t.Run("drop_denies_last", func(t *testing.T) {
		l, be := spooledLog(t, pool, t.TempDir(), Options{BatchSize: 20, SpoolMaxBytes: 8 << 10, Overflow: OverflowDropDeniesLast})
		be.down.Store(true)
		var allowed, denied int
		for range 200 {
			if id, _ := l.Record(context.Background(), decision("t", "x", true)); id != "" {
				allowed++
			}
		}
		// The shipper may spool the drops' marker before the denied
		// decisions come: it must not take their room.
		l.spoolMarkers(l.spools[0])
		for range 5 {
			if id, _ := l.Record(context.Background(), decision("t", "x", false)); id != "" {
				denied++
			}
		}
		st := l.Status()
		if denied != 5 || st.DroppedAllowed == 0 || st.DroppedAllowed+int64(allowed) != 200 {
			t.Fatalf("allowed %d kept, denied %d kept, status %+v", allowed, denied, st)
		}
		be.down.Store(false)
		// The shipper may spool a marker while the drops go on, and the
		// call above spools one for those after it: every drop is counted
		// in one marker or another.
		waitWritten(t, l, int64(allowed+denied)+l.markers.Load())
		var markers, counted int64
		for _, d := range listAll(t, l, Query{Tenant: "t"}) {
			if d.Method != MethodDropped {
				continue
			}
			markers++
			var a, dn int64
			if _, err := fmt.Sscanf(d.Reasons[0], "%d allowed and %d denied", &a, &dn); err != nil || dn != 0 {
				t.Fatalf("marker %q: %v", d.Reasons[0], err)
			}
			counted += a
		}
		if markers == 0 || markers != l.markers.Load() || counted != st.DroppedAllowed {
			t.Fatalf("%d markers (%d spooled) count %d dropped decisions; status says %d", markers, l.markers.Load(), counted, st.DroppedAllowed)
		}
	})
}

// TestSpoolSlots: processes beside each other take slots of their own; a
// process starting after two died ships both spools; a slot of another
// database is left alone, one of a dropped database emptied.
func TestSpoolSlots(t *testing.T) {
	pool := pgtest.NewPool(t)
	dir := t.TempDir()
	a, beA := spooledLog(t, pool, dir, Options{})
	b, beB := spooledLog(t, pool, dir, Options{})
	if a.Status().SpoolDir == b.Status().SpoolDir {
		t.Fatal("two processes share a slot")
	}
	beA.down.Store(true)
	beB.down.Store(true)
	ids := slices.Concat(recordN(t, a, 0, 30), recordN(t, b, 30, 40))
	crash(a)
	crash(b)
	// A slot whose entries belong to another database.
	other := filepath.Join(dir, "slot-7")
	if err := os.MkdirAll(other, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, slotDatabase), []byte("another/db"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(other, "00000000000000000000.spool"), []byte("not ours"), 0o600); err != nil {
		t.Fatal(err)
	}

	// And one of a database of this server that was dropped.
	var sys string
	if err := pool.QueryRow(context.Background(), "SELECT system_identifier::text FROM pg_control_system()").Scan(&sys); err != nil {
		t.Fatal(err)
	}
	dropped := filepath.Join(dir, "slot-8")
	if err := os.MkdirAll(dropped, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropped, slotDatabase), []byte(sys+"/crmauthz_dropped_long_ago"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dropped, "00000000000000000000.spool"), []byte("never to ship"), 0o600); err != nil {
		t.Fatal(err)
	}

	c, _ := spooledLog(t, pool, dir, Options{})
	waitWritten(t, c, 70)
	checkLogged(t, c, ids)
	if data, err := os.ReadFile(filepath.Join(other, "00000000000000000000.spool")); err != nil || string(data) != "not ours" {
		t.Fatalf("another database's spool was touched: %q %v", data, err)
	}
	if data, err := os.ReadFile(filepath.Join(dropped, "00000000000000000000.spool")); err == nil && len(data) > 0 {
		t.Fatalf("the spool of a dropped database is still there: %q", data)
	}
}

// BenchmarkSpoolDuringOutage records decisions, from as many goroutines
// as the server's callers, while the database is away: every decision
// goes to the spool and none can ship. It reports how many decisions a
// second the spool takes (the outage's pace is the callers', not the
// database's) and how many bytes each takes in it, which sizes the spool
// for an outage: --decision-spool-max-mb / bytes per decision.
func BenchmarkSpoolDuringOutage(b *testing.B) {
	pool := pgtest.NewPool(b)
	l, be := spooledLog(b, pool, b.TempDir(), Options{SpoolMaxBytes: 8 << 30})
	be.down.Store(true)
	d := decision("acme-industries", "alice.nguyen@example.com", true)
	d.Perm = model.Permission{Kind: model.KindModule, Module: "opportunity", Verb: "update",
		Record: &model.Record{ID: "opp-000482913", Owner: "bob.smith@example.com", Department: "sales_emea_north"}}
	d.Caller = "key:4f3a9c2e81b7d605"
	d.RequestID = "0c9e4b1f-7d2a-4e88-9b3c-5f1a2d6e7c90"
	b.SetParallelism(25) // 50 callers on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := l.Record(context.Background(), d); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	st := l.Status()
	if st.SpoolEntries > 0 {
		b.ReportMetric(float64(st.SpoolBytes)/float64(st.SpoolEntries), "spool-bytes/decision")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "decisions/s")
	crash(l) // the spool stays; nothing is shipped
}
