package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
)

// Mode is how decisions are logged.
type Mode string

// Modes.
const (
	ModeOff   Mode = "off"   // nothing is recorded
	ModeAsync Mode = "async" // the call does not wait for the write
	ModeSync  Mode = "sync"  // the call waits until its entry is durable
)

// Overflow is what happens to a decision when the queue is full.
type Overflow string

// Overflow policies.
const (
	// OverflowBlock makes the call wait for room: nothing is lost.
	OverflowBlock Overflow = "block"
	// OverflowDropDeniesLast never waits: allowed decisions are dropped
	// first (the newest arriving or the oldest queued), denied ones only
	// when the queue holds nothing else.
	OverflowDropDeniesLast Overflow = "drop_denies_last"
)

// ErrClosed is returned by Record after Close.
var ErrClosed = errors.New("decision log closed")

// Options configures a Log. Zero values take the defaults.
type Options struct {
	Mode          Mode          // default async
	QueueSize     int           // entries; default 16384
	BatchSize     int           // entries per write; default 2000
	FlushInterval time.Duration // async: longest wait for a batch to fill; default 200ms
	Overflow      Overflow      // default block
	RetentionDays int           // PostgreSQL: days kept, 0 forever
	MaintainEvery time.Duration // PostgreSQL: partition maintenance period; default 1h
	Mask          []string      // attributes hashed before storage (MaskAttributes)
	MaskKey       string        // the HMAC key of masking
	MemoryEntries int           // memory storage: entries kept; default 100000
	// SpoolDir is the directory of the decision spool (PostgreSQL, async
	// mode): each decision is written there before Record returns, and
	// shipped from there. Empty: no spool (decisions wait in memory).
	SpoolDir       string
	SpoolMaxBytes  int64         // the spool's bound; default 1 GiB
	SpoolSyncEvery time.Duration // how often the spool is synced to disk; default 1s
	// OnDegraded is called with true when writes start failing (the
	// database is away) and with false when they succeed again.
	OnDegraded func(degraded bool)
	// Keys link the entries and seal the heads; new entries are linked
	// under the active key. Nil: fresh keys that die with the process,
	// enough for a log kept in memory.
	Keys *chain.Keyring
	// CheckpointEvery is how often the log issues a signed checkpoint
	// (PostgreSQL); 0 never.
	CheckpointEvery time.Duration
	Now             func() time.Time
	Logger          *zap.Logger
}

func (o *Options) defaults() {
	if o.Mode == "" {
		o.Mode = ModeAsync
	}
	if o.QueueSize <= 0 {
		o.QueueSize = 16384
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 2000
	}
	o.BatchSize = min(o.BatchSize, o.QueueSize)
	if o.FlushInterval <= 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.Overflow == "" {
		o.Overflow = OverflowBlock
	}
	if o.MaintainEvery <= 0 {
		o.MaintainEvery = time.Hour
	}
	if o.MemoryEntries <= 0 {
		o.MemoryEntries = 100000
	}
	if o.SpoolMaxBytes <= 0 {
		o.SpoolMaxBytes = 1 << 30
	}
	if o.SpoolSyncEvery == 0 {
		o.SpoolSyncEvery = time.Second
	}
	if o.OnDegraded == nil {
		o.OnDegraded = func(bool) {}
	}
	if o.Keys == nil {
		o.Keys = chain.ProcessKeyring()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// item is one queued entry; done is set in the sync mode. canon is the
// entry's canonical encoding, set by the batcher.
type item struct {
	d     Decision
	done  chan error
	canon []byte
}

// head is a chain's last link.
type head struct {
	pos      int64
	hash     []byte
	loggedAt time.Time
	seq      uint64 // the highest sequence number written (entries go in seq order)
	key      *chain.Key
}

// chainState is where a writer chain stands, as the goroutine extending it
// knows it.
type chainState struct {
	id         string
	pos        int64
	prev       []byte
	lastLogged time.Time
	lastSeq    uint64
}

// writer is one writing goroutine's reusable buffers.
type writer struct {
	enc     chain.Encoder
	link    *chain.Linker
	arena   []byte // the batch's canonical encodings
	ends    []int
	scratch [][]byte // the storage's row buffers
}

// dropCount tallies one tenant's dropped entries until the next marker.
type dropCount struct {
	allowed, denied int64
	first, last     time.Time
}

// Log is the decision log: the hot path's Record, the batcher that writes,
// and the queries auditors run. It is safe for concurrent use.
type Log struct {
	opts   Options
	log    *zap.Logger
	be     backend
	masker masker
	chain  string
	prefix string // chain + "-"

	seq      atomic.Uint64
	q        chan item     // every entry; with drop_denies_last only allowed ones
	denyQ    chan item     // drop_denies_last: denied entries
	full     chan struct{} // async: a batch is waiting; wakes the batcher early
	queued   atomic.Int64
	inflight atomic.Int64
	closed   atomic.Bool

	started   bool
	startedAt time.Time
	closing   chan struct{}
	done      chan struct{}
	abort     context.CancelFunc
	maintStop chan struct{}
	maintDone chan struct{}

	// abandoned counts the calls whose context ended before their entry
	// was queued: they took an id, but handed nothing to the log.
	written, markers, droppedAllowed, droppedDenied, writeErrors, lost, waited, abandoned atomic.Int64

	dropMu      sync.Mutex
	drops       map[string]*dropCount
	dropPending atomic.Bool

	// The batcher's own state: this process's chain and buffers.
	own *chainState
	w   writer

	// The spool, when decisions go through one: this process's first, then
	// those of earlier processes being shipped.
	spools      []*spoolShipper
	unread      atomic.Int64 // entries appended to this process's spool and not yet shipped
	room        atomic.Pointer[chan struct{}]
	spoolErrors atomic.Int64
	workers     sync.WaitGroup

	degradedSince atomic.Int64 // unix nanoseconds; 0 while writes succeed
	degradedMu    sync.Mutex   // orders the changes of degradedSince with their reports
	lastError     atomic.Pointer[string]
}

// waiters holds the sync mode's answer channels for reuse. A pointer, so
// that a test running in a synctest bubble can use a pool of its own.
var waiters = &sync.Pool{New: func() any { return make(chan error, 1) }}

func newLog(be backend, opts Options) (*Log, error) {
	opts.defaults()
	m, err := newMasker(opts.Mask, opts.MaskKey)
	if err != nil {
		return nil, err
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("chain id: %w", err)
	}
	l := &Log{
		opts: opts, log: opts.Logger.Named("audit"), be: be, masker: m,
		chain: hex.EncodeToString(id[:]), drops: map[string]*dropCount{},
		closing: make(chan struct{}), done: make(chan struct{}), full: make(chan struct{}, 1),
		maintStop: make(chan struct{}), maintDone: make(chan struct{}),
	}
	l.prefix = l.chain + "-"
	l.own = &chainState{id: l.chain}
	room := make(chan struct{})
	l.room.Store(&room)
	if opts.Mode != ModeOff {
		l.q = make(chan item, opts.QueueSize)
		if opts.Mode == ModeAsync && opts.Overflow == OverflowDropDeniesLast {
			l.denyQ = make(chan item, opts.QueueSize)
		}
	}
	return l, nil
}

// Mode returns the log's mode.
func (l *Log) Mode() Mode { return l.opts.Mode }

// ChainID returns this process's chain id.
func (l *Log) ChainID() string { return l.chain }

// Start registers the process's chain, runs the storage's maintenance once
// (PostgreSQL: creates the coming days' partitions and drops those past
// retention) and starts the batcher and the maintenance goroutines. Close
// stops them. A failed maintenance does not stop the start: the batcher
// creates a missing partition itself, and maintenance runs again hourly.
func (l *Log) Start(ctx context.Context) error {
	l.startedAt = l.opts.Now().UTC()
	if err := l.be.maintain(ctx, l.startedAt); err != nil {
		l.log.Error("decision log maintenance failed; retrying later", zap.Error(err))
	}
	if l.opts.Mode != ModeOff {
		if err := l.be.startChain(ctx, l.chain, l.startedAt); err != nil {
			return err
		}
	}
	if l.opts.Mode != ModeOff && l.opts.SpoolDir != "" {
		db, err := l.be.identity(ctx)
		if err != nil {
			return err
		}
		if l.spools, err = l.openSpools(ctx, db); err != nil {
			return err
		}
	}
	l.started = true
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	l.abort = cancel
	if l.opts.Mode == ModeSync || l.opts.Mode == ModeAsync && l.spools == nil {
		l.workers.Go(func() { l.run(wctx) })
	}
	for _, s := range l.spools {
		l.workers.Go(func() { l.ship(wctx, s) })
	}
	go func() {
		l.workers.Wait()
		close(l.done)
	}()
	go l.maintainLoop(wctx)
	spoolDir := ""
	if l.spools != nil {
		spoolDir = l.spools[0].dir
	}
	l.log.Info("decision log started", zap.String("mode", string(l.opts.Mode)), zap.String("storage", l.be.kind()),
		zap.String("chain_id", l.chain), zap.String("overflow", string(l.opts.Overflow)), zap.Strings("masked", l.masker.attrs),
		zap.String("spool", spoolDir), zap.Int("spools_to_ship", max(len(l.spools)-1, 0)))
	return nil
}

// Close stops accepting decisions, writes every queued entry and stops the
// goroutines. If ctx ends first, the calls still waiting for room in the
// queue get ErrClosed, and the entries still queued are abandoned: they are
// counted as lost, logged, and reported in the error.
func (l *Log) Close(ctx context.Context) error {
	if !l.closed.CompareAndSwap(false, true) || !l.started {
		return nil
	}
	defer l.abort()
	close(l.maintStop)
	<-l.maintDone
	for l.inflight.Load() > 0 && ctx.Err() == nil {
		time.Sleep(50 * time.Microsecond)
	}
	close(l.closing)
	select {
	case <-l.done:
	case <-ctx.Done():
		l.abort()
		<-l.done
	}
	for _, s := range l.spools {
		if err := s.sp.Close(); err != nil {
			l.log.Error("close the decision spool", zap.String("dir", s.dir), zap.Error(err))
		}
		if n := s.entries.Load(); n > 0 {
			l.log.Warn("decisions left in the spool, for the next start to ship", zap.String("dir", s.dir), zap.Int64("entries", n))
		}
	}
	if n := l.lost.Load(); n > 0 {
		return fmt.Errorf("decision log: %d entries could not be written before shutdown", n)
	}
	return nil
}

// Record puts a decision on the log's queue and returns its id. In the
// async mode it does not wait for I/O: it waits only when the queue is full
// and the overflow policy is block. In the sync mode it returns once the
// entry is durable, unless the request defers its waits (RequestInfo). An
// entry dropped by the overflow policy gets no id.
func (l *Log) Record(ctx context.Context, d Decision) (string, error) {
	if l.closed.Load() {
		return "", ErrClosed
	}
	// Close and the batcher's drain wait for the calls counted here: one
	// counted before Close closed the log queues its entry or gives up
	// first, one counted after finds the log closed. The check above keeps
	// the calls made after Close from holding the drain up.
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if l.closed.Load() {
		return "", ErrClosed
	}
	if l.q == nil {
		return "", nil
	}
	if l.spools != nil && l.opts.Mode == ModeAsync {
		return l.recordSpooled(ctx, &d)
	}
	return l.recordQueued(ctx, &d)
}

// recordQueued puts d on the queue: the log without a spool. Its frame
// stays out of Record's, whose callers' stacks the spooled path keeps
// small.
//
//go:noinline
func (l *Log) recordQueued(ctx context.Context, d *Decision) (string, error) {
	seq := l.seq.Add(1)
	var buf [48]byte
	id := string(strconv.AppendUint(append(buf[:0], l.prefix...), seq, 10))
	d.ID, d.Chain, d.Seq = id, l.chain, seq
	switch {
	case l.opts.Mode == ModeSync:
		return id, l.recordSync(ctx, d)
	case l.denyQ != nil:
		if !l.enqueueOrDrop(d) {
			return "", nil
		}
		l.signalFull()
		return id, nil
	}
	it := item{d: *d} // one copy, sent from either case
	select {
	case l.q <- it:
	default:
		l.waited.Add(1)
		select {
		case l.q <- it:
		case <-ctx.Done():
			l.abandoned.Add(1)
			return "", ctx.Err()
		case <-l.closing: // Close's context ended before there was room
			l.abandoned.Add(1)
			return "", ErrClosed
		}
	}
	l.signalFull()
	return id, nil
}

// signalFull wakes the async batcher once a batch is waiting, so it wakes
// per batch rather than per entry. The batcher already holds the batch's
// first entry while it waits, so the queue needs one less than a batch.
func (l *Log) signalFull() {
	if len(l.q)+len(l.denyQ) >= l.opts.BatchSize-1 {
		select {
		case l.full <- struct{}{}:
		default:
		}
	}
}

// recordSync queues d and waits until it is durable, or hands the wait to
// the request's Deferred.
func (l *Log) recordSync(ctx context.Context, d *Decision) error {
	done := waiters.Get().(chan error)
	it := item{d: *d, done: done}
	select {
	case l.q <- it:
	default:
		l.waited.Add(1)
		select {
		case l.q <- it:
		case <-ctx.Done():
			waiters.Put(done)
			l.abandoned.Add(1)
			return ctx.Err()
		case <-l.closing: // Close's context ended before there was room
			waiters.Put(done)
			l.abandoned.Add(1)
			return ErrClosed
		}
	}
	if def := Request(ctx).Deferred; def != nil {
		def.add(done)
		return nil
	}
	select {
	case err := <-done:
		waiters.Put(done)
		return err
	case <-ctx.Done():
		// The batcher still answers on done; the channel is left to it.
		return ctx.Err()
	}
}

// enqueueOrDrop applies drop_denies_last. It reports whether d was queued.
// The two queues share one bound, held by queued; each has the whole bound
// as capacity, so a send after a successful reservation never blocks.
func (l *Log) enqueueOrDrop(d *Decision) bool {
	if l.queued.Add(1) <= int64(l.opts.QueueSize) {
		if d.Allowed {
			l.q <- item{d: *d}
		} else {
			l.denyQ <- item{d: *d}
		}
		return true
	}
	l.queued.Add(-1)
	if d.Allowed {
		l.drop(d)
		return false
	}
	select {
	case old := <-l.q:
		// The evicted allow's reservation passes to the deny.
		l.drop(&old.d)
		l.denyQ <- item{d: *d}
		return true
	default:
		l.drop(d)
		return false
	}
}

// drop counts a dropped entry; the batcher logs it and writes a marker.
func (l *Log) drop(d *Decision) {
	if d.Allowed {
		l.droppedAllowed.Add(1)
	} else {
		l.droppedDenied.Add(1)
	}
	l.dropMu.Lock()
	c := l.drops[d.Tenant]
	if c == nil {
		c = &dropCount{first: d.Time, last: d.Time}
		l.drops[d.Tenant] = c
	}
	if d.Allowed {
		c.allowed++
	} else {
		c.denied++
	}
	// An evicted entry is older than those dropped on arrival before it.
	c.first, c.last = minTime(c.first, d.Time), maxTime(c.last, d.Time)
	l.dropMu.Unlock()
	l.dropPending.Store(true)
}

// run is the batcher: it takes entries off the queue in batches and writes
// them until Close, then drains the queue.
func (l *Log) run(ctx context.Context) {
	batch := make([]item, 0, l.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var it item
		select {
		case it = <-l.q:
		case it = <-l.denyQ:
		case <-l.closing:
			l.drain(ctx, batch)
			return
		}
		batch = append(batch, it)
		if l.opts.Mode == ModeAsync {
			select {
			case <-l.full: // left from the previous batch
			default:
			}
		}
		if l.opts.Mode == ModeAsync && len(l.q)+len(l.denyQ) < cap(batch)-1 {
			// Sleep until the batch can fill or the interval ends, rather
			// than waking for every entry.
			timer.Reset(l.opts.FlushInterval)
			select {
			case <-timer.C:
			case <-l.full:
			case <-l.closing:
			}
			timer.Stop()
		}
		batch = l.fillNow(batch)
		l.flushQueued(ctx, batch)
		batch = resetBatch(batch)
	}
}

// fillNow adds what is queued now, without waiting: the group commit of the
// sync mode.
func (l *Log) fillNow(batch []item) []item {
	for len(batch) < cap(batch) {
		select {
		case it := <-l.q:
			batch = append(batch, it)
		case it := <-l.denyQ:
			batch = append(batch, it)
		default:
			return batch
		}
	}
	return batch
}

// drain writes everything still queued. No call starts any more, but if
// Close's context ended it did not wait for the calls in flight: one may
// still queue its entry, so drain ends only when none is in flight and the
// queue is empty. None waits for room now (closing), so that is soon.
func (l *Log) drain(ctx context.Context, batch []item) {
	for {
		// Loaded before the queue is read: a call no longer in flight has
		// queued its entry, or given up, by then.
		idle := l.inflight.Load() == 0
		batch = l.fillNow(batch)
		if len(batch) == 0 && !l.dropPending.Load() {
			if idle {
				return
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		l.flushQueued(ctx, batch)
		batch = resetBatch(batch)
	}
}

func resetBatch(b []item) []item {
	clear(b)
	return b[:0]
}

// flushQueued writes a batch taken off the queues, with the markers of the
// entries dropped meanwhile, on this process's chain.
func (l *Log) flushQueued(ctx context.Context, batch []item) {
	if l.denyQ != nil {
		l.queued.Add(-int64(len(batch)))
	}
	l.flush(ctx, &l.w, l.own, l.appendMarkers(batch, true))
}

// flush chains a batch onto cs and writes it with w's buffers, retrying
// until it is written or the log is abandoned, then answers the batch's
// sync callers. It reports whether the batch was written.
func (l *Log) flush(ctx context.Context, w *writer, cs *chainState, batch []item) bool {
	if len(batch) == 0 {
		return true
	}
	loggedAt := l.opts.Now().UTC().Truncate(time.Microsecond)
	if loggedAt.Before(cs.lastLogged) {
		loggedAt = cs.lastLogged
	}
	for i := range batch {
		d := &batch[i].d
		d.Time = d.Time.UTC().Truncate(time.Microsecond)
		if d.Time.After(loggedAt) {
			loggedAt = d.Time
		}
	}
	w.arena, w.ends = w.arena[:0], w.ends[:0]
	if key := l.opts.Keys.Active(); w.link == nil || w.link.KeyID() != key.ID {
		w.link = chain.NewLinker(key)
	}
	pos, prev := cs.pos, cs.prev
	for i := range batch {
		d := &batch[i].d
		d.complete()
		l.masker.apply(d)
		pos++
		d.Position, d.LoggedAt = pos, loggedAt
		d.encode(&w.enc)
		d.Hash, d.linkKey = w.link.Link(prev, w.enc.Bytes()), w.link.KeyID()
		prev = d.Hash
		w.arena = append(w.arena, w.enc.Bytes()...)
		w.ends = append(w.ends, len(w.arena))
	}
	start := 0
	for i, end := range w.ends {
		batch[i].canon = w.arena[start:end:end]
		start = end
	}
	h := head{pos: pos, hash: prev, loggedAt: loggedAt, seq: cs.lastSeq, key: l.opts.Keys.Active()}
	for i := range batch {
		h.seq = max(h.seq, batch[i].d.Seq)
	}
	err := retryWrite(ctx, func(attempt int) error {
		return l.be.write(ctx, cs.id, batch, h, attempt > 0, &w.scratch)
	}, func(err error, attempt int, retryIn time.Duration) {
		l.writeErrors.Add(1)
		l.writeFailing(err)
		if attempt&(attempt-1) == 0 || attempt%100 == 0 { // 1, 2, 4, ... then every 100th: an outage is not a flood
			l.log.Warn("decision log write failed; retrying", zap.Error(err), zap.Int("entries", len(batch)),
				zap.Int("attempt", attempt), zap.Duration("retry_in", retryIn))
		}
	})
	if err != nil {
		if l.spools != nil && batch[0].done == nil {
			// The entries stay in the spool for the next start.
			l.log.Warn("decision log closed while the database was unreachable: entries left in the spool for the next start",
				zap.Error(err), zap.Int("entries", len(batch)))
			return false
		}
		l.lost.Add(int64(len(batch)))
		l.log.Error("decision log entries lost: the log was closed before they could be written", zap.Error(err),
			zap.Int("entries", len(batch)), zap.Int64("first_position", batch[0].d.Position), zap.Int64("last_position", h.pos))
		// The write ended with Close's context, not the caller's: say so,
		// rather than pass the cancellation on as the caller's own.
		err = fmt.Errorf("%w before the entry was written: %v", ErrClosed, err) //nolint:errorlint // the cause is Close's; wrapped, it would read as the caller's own cancellation
	} else {
		cs.pos, cs.prev, cs.lastLogged, cs.lastSeq = pos, prev, loggedAt, h.seq
		l.written.Add(int64(len(batch)))
		l.writeRecovered()
	}
	for _, it := range batch {
		if it.done != nil {
			it.done <- err
		}
	}
	return err == nil
}

// retryWrite calls write until it succeeds or ctx ends, waiting between
// attempts with a backoff that doubles from 50ms to maxRetryWait, and tells
// failed of each failure it retries (attempts count from 1 there). The
// attempt number starts at 0; a later attempt must find out whether an
// earlier one committed after all, so that nothing is written twice. It
// returns the last error when ctx ended first.
func retryWrite(ctx context.Context, write func(attempt int) error, failed func(err error, attempt int, retryIn time.Duration)) error {
	backoff := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		err := write(attempt)
		if err == nil || ctx.Err() != nil {
			return err
		}
		failed(err, attempt+1, backoff)
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
		}
		backoff = min(2*backoff, maxRetryWait)
	}
}

// maxRetryWait caps the wait between attempts at a failing write: shipping
// resumes within it of the database's return.
const maxRetryWait = 500 * time.Millisecond

// appendMarkers turns the drops counted since the last batch into one
// marker entry per tenant, logged and written with the batch. With
// numbered false the markers get no sequence number (the spool numbers
// them as it writes them).
func (l *Log) appendMarkers(batch []item, numbered bool) []item {
	if !l.dropPending.Swap(false) {
		return batch
	}
	l.dropMu.Lock()
	drops := l.drops
	l.drops = map[string]*dropCount{}
	l.dropMu.Unlock()
	tenants := make([]string, 0, len(drops))
	for t := range drops {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	for _, t := range tenants {
		c := drops[t]
		l.log.Warn("decision log queue full: entries dropped", zap.String("tenant", t), zap.Int64("allowed", c.allowed),
			zap.Int64("denied", c.denied), zap.Time("first", c.first), zap.Time("last", c.last), zap.String("policy", string(l.opts.Overflow)))
		var seq uint64
		if numbered {
			seq = l.seq.Add(1)
			l.markers.Add(1)
		}
		batch = append(batch, item{d: Decision{
			Time: c.last, Method: MethodDropped, Tenant: t, Result: ResultDropped,
			Reasons: []string{fmt.Sprintf("%d allowed and %d denied decisions of this tenant made between %s and %s were not recorded: the decision log's queue was full (overflow policy %s)",
				c.allowed, c.denied, c.first.UTC().Format(time.RFC3339Nano), c.last.UTC().Format(time.RFC3339Nano), l.opts.Overflow)},
			ID: l.prefix + strconv.FormatUint(seq, 10), Chain: l.chain, Seq: seq,
		}})
	}
	return batch
}

// maintainLoop runs the storage's maintenance periodically until Close.
func (l *Log) maintainLoop(ctx context.Context) {
	defer close(l.maintDone)
	t := time.NewTicker(l.opts.MaintainEvery)
	defer t.Stop()
	var checkpoints <-chan time.Time // nil: never
	if _, ok := l.be.(*pgBackend); ok && l.opts.CheckpointEvery > 0 {
		ct := time.NewTicker(l.opts.CheckpointEvery)
		defer ct.Stop()
		checkpoints = ct.C
	}
	for {
		select {
		case <-l.maintStop:
			return
		case <-t.C:
			if err := l.Maintain(ctx); err != nil {
				l.log.Error("decision log maintenance failed", zap.Error(err))
			}
		case <-checkpoints:
			if cp, id, err := l.Checkpoint(ctx); err != nil {
				l.log.Error("scheduled audit checkpoint failed", zap.Error(err))
			} else {
				l.log.Info("audit checkpoint issued", zap.Int64("id", id), zap.Int("decision_chains", len(cp.Decisions)),
					zap.Int("tenants", len(cp.Changes)))
			}
		}
	}
}

// Maintain runs the storage's maintenance now: on PostgreSQL it creates the
// partitions of the coming days and drops those past the retention.
func (l *Log) Maintain(ctx context.Context) error {
	return l.be.maintain(ctx, l.opts.Now().UTC())
}

// encode writes the canonical content of d, which its hash covers. It starts
// with what all entries of a batch share (entryPrefix), which storage keeps
// once per batch.
func (d *Decision) encode(e *chain.Encoder) {
	encodePrefix(e, d.Chain, d.LoggedAt)
	e.Int(d.Position)
	e.Int(int64(d.Seq))
	e.Time(d.Time)
	e.String(d.Method)
	e.String(d.Caller)
	e.String(d.RequestID)
	e.String(d.Tenant)
	e.String(d.Subject)
	e.String(d.Permission)
	e.String(d.Module)
	e.String(d.RecordID)
	e.String(d.RecordOwner)
	e.String(d.RecordDepartment)
	e.Bool(d.Allowed)
	e.String(d.Result)
	e.Strings(d.Reasons)
	e.Int(d.Revision)
	e.Int(int64(d.Latency))
}

// encodePrefix writes the start of the canonical content the entries of
// one batch share: the tag, the chain and the time the batch was logged.
func encodePrefix(e *chain.Encoder, chainID string, loggedAt time.Time) {
	e.Reset(chain.DecisionTag)
	e.String(chainID)
	e.Time(loggedAt)
}

// decodeDecision reads an entry from its canonical encoding.
func decodeDecision(canon []byte) (Decision, error) {
	dec := chain.NewDecoder(canon, chain.DecisionTag)
	var d Decision
	d.Chain = dec.String()
	d.LoggedAt = dec.Time()
	d.Position = dec.Int()
	d.Seq = uint64(dec.Int())
	d.Time = dec.Time()
	d.Method = dec.String()
	d.Caller = dec.String()
	d.RequestID = dec.String()
	d.Tenant = dec.String()
	d.Subject = dec.String()
	d.Permission = dec.String()
	d.Module = dec.String()
	d.RecordID = dec.String()
	d.RecordOwner = dec.String()
	d.RecordDepartment = dec.String()
	d.Allowed = dec.Bool()
	d.Result = dec.String()
	d.Reasons = dec.Strings()
	d.Revision = dec.Int()
	d.Latency = time.Duration(dec.Int())
	if err := dec.Err(); err != nil {
		return Decision{}, err
	}
	d.ID = d.Chain + "-" + strconv.FormatUint(d.Seq, 10)
	return d, nil
}

// Status is the decision log's state on this process.
type Status struct {
	Mode           Mode
	Storage        string
	ChainID        string
	QueueCapacity  int
	Queued         int
	Recorded       int64
	Written        int64
	DroppedAllowed int64
	DroppedDenied  int64
	WriteErrors    int64
	Waited         int64 // calls that waited for room in a full queue (policy block)
	Overflow       Overflow
	RetentionDays  int
	Masked         []string
	MemoryCapacity int
	MemoryEvicted  int64
	// The spool: where, what waits in it (entries and bytes, earlier
	// processes' included) and its bound; empty without a spool.
	SpoolDir      string
	SpoolEntries  int64
	SpoolBytes    int64
	SpoolCapacity int64
	SpoolErrors   int64
	// DegradedSince is when writes started failing; zero while they succeed.
	DegradedSince time.Time
	LastError     string
}

// Status reports the log's counters.
func (l *Log) Status() Status {
	s := Status{
		Mode: l.opts.Mode, Storage: l.be.kind(), ChainID: l.chain, Overflow: l.opts.Overflow,
		Recorded: int64(l.seq.Load()) - l.markers.Load() - l.abandoned.Load(), Written: l.written.Load(),
		DroppedAllowed: l.droppedAllowed.Load(), DroppedDenied: l.droppedDenied.Load(), WriteErrors: l.writeErrors.Load(),
		Waited: l.waited.Load(), RetentionDays: l.opts.RetentionDays, Masked: slices.Clone(l.masker.attrs),
	}
	if l.q != nil {
		s.QueueCapacity = l.opts.QueueSize
		s.Queued = len(l.q)
		if l.denyQ != nil {
			s.Queued += len(l.denyQ)
		}
	}
	if m, ok := l.be.(*memoryBackend); ok {
		s.MemoryCapacity, s.MemoryEvicted = m.capacity, m.evictedCount()
	}
	if len(l.spools) > 0 {
		s.SpoolDir, s.SpoolCapacity, s.SpoolErrors = l.spools[0].dir, l.opts.SpoolMaxBytes, l.spoolErrors.Load()
		for _, sp := range l.spools {
			s.SpoolEntries += sp.entries.Load()
			s.SpoolBytes += max(sp.sp.End()-sp.shipped.Load(), 0)
		}
	}
	if since := l.degradedSince.Load(); since != 0 {
		s.DegradedSince = time.Unix(0, since).UTC()
		if e := l.lastError.Load(); e != nil {
			s.LastError = *e
		}
	}
	return s
}
