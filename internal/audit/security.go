package audit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
)

// Kinds of security events.
const (
	EventAuthnRefused      = "authn.refused"      // a call whose credential was missing, unknown, expired or out of scope
	EventCallRefused       = "call.refused"       // a call refused for want of a scope, a tenant or a permission, or as an escalation
	EventCredentialCreated = "credential.created" //nolint:gosec // an event name: an API key or certificate identity was created
	EventCredentialRevoked = "credential.revoked" //nolint:gosec // an event name: an API key or certificate identity was revoked
	// EventDropped is written by the log itself: Count events of its tenant
	// were dropped because the queue was full. Its Reason is QUEUE_FULL.
	EventDropped = "events.dropped"
)

// reasonQueueFull is the Reason of EventDropped events.
const reasonQueueFull = "QUEUE_FULL"

// SecurityEvent is one refused authentication, refused admin call, or
// credential change.
//
// No field may hold a secret: name an API key by its id ("key:<id>"),
// never by its secret, and put no password, token or private key in the
// message. The caller guarantees it; the log stores what it is given.
//
// The log bounds every text field before storing it: invalid UTF-8,
// control characters and invisible format characters (bidirectional
// overrides, zero-width characters) become U+FFFD, and an overlong value is
// cut at a character boundary and ends in "…". A value so changed is never
// a valid identifier, so an overlong tenant named in a refused call cannot
// pass for a real tenant.
type SecurityEvent struct {
	ID         int64     // assigned when stored; increasing
	Time       time.Time // the time of the event; zero means when Record was called
	Kind       string    // "authn.refused", "call.refused", "credential.created", "credential.revoked", "events.dropped"
	Tenant     string    // "" when the event concerns no tenant (e.g. an unknown key)
	Credential string    // "key:<id>", "cert:<identity>", or "" when none was presented
	Actor      string
	Method     string // full gRPC method, e.g. /crmauthz.v1.AdminService/GrantRole
	Reason     string // machine reason, e.g. UNKNOWN_CREDENTIAL, MISSING_SCOPE, ESCALATION
	Message    string
	RequestID  string
	Peer       string // remote address
	Count      int64  // occurrences this event stands for (>= 1; rate-limited refusals are summarised)
}

// Bounds of the stored text fields, in bytes. Migration 0005 repeats them.
const (
	maxEventKind       = 64
	maxEventTenant     = model.MaxIDLength
	maxEventCredential = 256
	maxEventActor      = 256
	maxEventMethod     = 256
	maxEventReason     = 64
	maxEventMessage    = model.MaxReasonLength
	maxEventRequestID  = 128
	maxEventPeer       = 128
)

// bound makes ev fit its columns: bounded text, a time PostgreSQL holds at
// its precision, a count of at least 1.
func (ev *SecurityEvent) bound(now time.Time) {
	if ev.Time.Year() < 1 || ev.Time.Year() > 9999 {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC().Truncate(time.Microsecond)
	ev.Kind = boundText(ev.Kind, maxEventKind)
	ev.Tenant = boundText(ev.Tenant, maxEventTenant)
	ev.Credential = boundText(ev.Credential, maxEventCredential)
	ev.Actor = boundText(ev.Actor, maxEventActor)
	ev.Method = boundText(ev.Method, maxEventMethod)
	ev.Reason = boundText(ev.Reason, maxEventReason)
	ev.Message = boundText(ev.Message, maxEventMessage)
	ev.RequestID = boundText(ev.RequestID, maxEventRequestID)
	ev.Peer = boundText(ev.Peer, maxEventPeer)
	ev.Count = max(ev.Count, 1)
}

// ellipsis ends a value that was cut.
const ellipsis = "…"

// unsafeRune reports the characters boundText replaces: invalid UTF-8
// (which ranging over a string yields as utf8.RuneError), control
// characters and format characters.
func unsafeRune(r rune) bool {
	return r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r)
}

// boundText returns s with invalid UTF-8, control and format characters
// replaced by U+FFFD, cut at a character boundary to at most maxLen bytes
// (at least 4), ending in "…" when cut.
func boundText(s string, maxLen int) string {
	if len(s) <= maxLen && !strings.ContainsFunc(s, unsafeRune) {
		return s
	}
	// Replacing never shortens a value, so a value longer than maxLen is
	// cut whatever it holds: only its first maxLen+1 bytes matter. A
	// character split there yields U+FFFD past the cut.
	if len(s) > maxLen {
		s = s[:maxLen+1]
	}
	var b strings.Builder
	b.Grow(len(s) + 8)
	for _, r := range s {
		if unsafeRune(r) {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	out := b.String()
	if len(out) <= maxLen {
		return out
	}
	cut := maxLen - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(out[cut]) {
		cut--
	}
	return out[:cut] + ellipsis
}

// SecurityQuery filters the security events; empty fields match everything.
type SecurityQuery struct {
	// Tenants nil selects every tenant's events and the tenantless ones.
	// Non-nil, it selects only the events of the tenants it lists: never a
	// tenantless event (not even for ""), and nothing when it is empty.
	Tenants           []string
	Kind              string
	Credential, Actor string
	From, To          time.Time // [From, To); zero: unbounded
	NewestFirst       bool
}

// SecurityPage is one page of security events.
type SecurityPage struct {
	Events []SecurityEvent
	Next   string // empty at the end
}

// securityFilter is a SecurityQuery prepared for matching.
type securityFilter struct {
	q       *SecurityQuery
	tenants []string // sorted, distinct, without ""; nil for every tenant
	in      map[string]bool
}

func newSecurityFilter(q *SecurityQuery) securityFilter {
	f := securityFilter{q: q}
	if q.Tenants != nil {
		f.tenants = make([]string, 0, len(q.Tenants))
		f.in = make(map[string]bool, len(q.Tenants))
		for _, t := range q.Tenants {
			if t != "" && !f.in[t] {
				f.in[t] = true
				f.tenants = append(f.tenants, t)
			}
		}
		slices.Sort(f.tenants)
	}
	return f
}

// fingerprint identifies the query's filters in its page tokens. The order
// and repetitions of the tenants do not matter.
func (f *securityFilter) fingerprint() uint64 {
	var e chain.Encoder
	e.Reset("security")
	e.Bool(f.tenants != nil)
	e.Strings(f.tenants)
	e.String(f.q.Kind)
	e.String(f.q.Credential)
	e.String(f.q.Actor)
	e.Time(f.q.From)
	e.Time(f.q.To)
	e.Bool(f.q.NewestFirst)
	return fingerprint(e.Bytes())
}

func (f *securityFilter) matches(ev *SecurityEvent) bool {
	q := f.q
	return (f.tenants == nil || f.in[ev.Tenant]) &&
		(q.Kind == "" || ev.Kind == q.Kind) &&
		(q.Credential == "" || ev.Credential == q.Credential) &&
		(q.Actor == "" || ev.Actor == q.Actor) &&
		(q.From.IsZero() || !ev.Time.Before(q.From)) &&
		(q.To.IsZero() || ev.Time.Before(q.To))
}

// securityBackend is where security events are kept: memory or PostgreSQL.
// Both assign ids in the order events become visible to scan, so a listing
// that has seen an id never meets a smaller one later.
type securityBackend interface {
	kind() string
	// write stores a batch, assigning ids in batch order. a carries what
	// an attempt leaves for the next: a retry must find out whether the
	// failed attempt committed after all, so that nothing is stored twice.
	write(ctx context.Context, batch []SecurityEvent, a *writeAttempt) error
	// scan returns up to limit events of the tenants (nil: all), in id
	// order after the id after (0: from the start), or newest first before
	// it (0: from the newest).
	scan(ctx context.Context, tenants []string, after int64, desc bool, limit int) ([]SecurityEvent, error)
}

// writeAttempt is what a write attempt leaves for its retry.
type writeAttempt struct {
	xid string // PostgreSQL: the attempt's transaction, whose outcome may be unknown
}

// SecurityOptions configures a SecurityLog. Zero values take the defaults.
type SecurityOptions struct {
	QueueSize     int           // events waiting to be written; default 4096
	BatchSize     int           // events per write; default 256, at most QueueSize
	FlushInterval time.Duration // longest wait for a batch to fill; default 200ms
	MemoryEvents  int           // memory storage: events kept; default 10000
	Now           func() time.Time
	Logger        *zap.Logger
}

func (o *SecurityOptions) defaults() {
	if o.QueueSize <= 0 {
		o.QueueSize = 4096
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 256
	}
	o.BatchSize = min(o.BatchSize, o.QueueSize)
	if o.FlushInterval <= 0 {
		o.FlushInterval = 200 * time.Millisecond
	}
	if o.MemoryEvents <= 0 {
		o.MemoryEvents = 10000
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
}

// maxDropTenants bounds the tenants whose drops are told apart: the drops
// of further tenants are reported in the tenantless events.dropped event.
const maxDropTenants = 1000

// securityDrops tallies one tenant's dropped events until they are reported.
type securityDrops struct {
	events, occurrences int64
	first, last         time.Time
}

// SecurityLog keeps the security events: Record on the calls' path, a
// writer goroutine that stores them in batches, and List for auditors. It
// is safe for concurrent use.
type SecurityLog struct {
	opts SecurityOptions
	log  *zap.Logger
	be   securityBackend

	q        chan SecurityEvent
	wake     chan struct{} // a batch is waiting, or drops were counted
	inflight atomic.Int64
	closed   atomic.Bool

	life    sync.Mutex // Start and Close
	started bool
	closing chan struct{}
	done    chan struct{}
	abort   context.CancelFunc

	recorded, written, dropped, lost, writeErrors, dropMarkers atomic.Int64
	closedDropLogged                                           atomic.Bool

	dropMu      sync.Mutex
	drops       map[string]*securityDrops
	dropPending atomic.Bool
}

func newSecurityLog(be securityBackend, opts SecurityOptions) *SecurityLog {
	return &SecurityLog{
		opts: opts, log: opts.Logger.Named("security"), be: be,
		q: make(chan SecurityEvent, opts.QueueSize), wake: make(chan struct{}, 1),
		closing: make(chan struct{}), done: make(chan struct{}), drops: map[string]*securityDrops{},
	}
}

// Start starts the writer. Events recorded before wait in the queue.
func (s *SecurityLog) Start(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.started || s.closed.Load() {
		return errors.New("security event log: started twice, or after Close")
	}
	s.started = true
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.abort = cancel
	go s.run(wctx)
	s.log.Info("security event log started", zap.String("storage", s.be.kind()), zap.Int("queue", s.opts.QueueSize))
	return nil
}

// Close stops accepting events and writes what is queued, with the drops
// counted so far. If ctx ends first, the events still queued are abandoned:
// counted as lost, logged, and reported in the error.
func (s *SecurityLog) Close(ctx context.Context) error {
	s.life.Lock()
	defer s.life.Unlock()
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.closing)
	if !s.started {
		// No writer: wait for the calls in flight (they never wait), then
		// count what they left as lost.
		for s.inflight.Load() > 0 {
			time.Sleep(50 * time.Microsecond)
		}
		n := int64(len(s.q))
		for range n {
			<-s.q
		}
		if n == 0 && !s.dropPending.Load() {
			return nil
		}
		s.lost.Add(n)
		s.log.Error("security events lost: the log was closed without being started", zap.Int64("queued", n), zap.Int64("dropped", s.dropped.Load()))
		if n == 0 {
			return nil
		}
		return fmt.Errorf("security event log: closed before it was started: %d queued events were not written", n)
	}
	defer s.abort()
	select {
	case <-s.done:
	case <-ctx.Done():
		s.abort()
		<-s.done
	}
	if n := s.lost.Load(); n > 0 {
		return fmt.Errorf("security event log: %d events could not be written before shutdown", n)
	}
	return nil
}

// Record hands an event to the log. It never waits: the event goes on a
// bounded queue, or, when the queue is full (or the log closed), it is
// dropped and counted. The drops of each tenant are later stored as one
// events.dropped event whose Count says how many, so none goes unrecorded.
func (s *SecurityLog) Record(ev SecurityEvent) {
	s.recorded.Add(1)
	if ev.Time.IsZero() {
		ev.Time = s.opts.Now()
	}
	if s.closed.Load() {
		s.dropClosed(&ev)
		return
	}
	// The writer's drain waits for the calls counted here, as the decision
	// log's does.
	s.inflight.Add(1)
	defer s.inflight.Add(-1)
	if s.closed.Load() {
		s.dropClosed(&ev)
		return
	}
	select {
	case s.q <- ev:
		if len(s.q) >= s.opts.BatchSize-1 {
			s.signal()
		}
	default:
		s.drop(&ev)
	}
}

func (s *SecurityLog) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// drop counts an event the full queue had no room for; the writer stores
// the count.
func (s *SecurityLog) drop(ev *SecurityEvent) {
	s.dropped.Add(1)
	// The tenant as it would have been stored: attacker-chosen tenants
	// named in refused calls are bounded, and so are the tenants told
	// apart.
	t := boundText(ev.Tenant, maxEventTenant)
	s.dropMu.Lock()
	c := s.drops[t]
	if c == nil && len(s.drops) >= maxDropTenants {
		t = ""
		c = s.drops[t]
	}
	if c == nil {
		c = &securityDrops{first: ev.Time, last: ev.Time}
		s.drops[t] = c
	}
	c.events++
	c.occurrences += max(ev.Count, 1)
	c.first, c.last = minTime(c.first, ev.Time), maxTime(c.last, ev.Time)
	s.dropMu.Unlock()
	s.dropPending.Store(true)
	s.signal()
}

// dropClosed counts an event recorded after Close: nothing writes it any
// more. The first is logged.
func (s *SecurityLog) dropClosed(ev *SecurityEvent) {
	s.dropped.Add(1)
	if !s.closedDropLogged.Swap(true) {
		s.log.Warn("security event recorded after the log was closed: dropped", zap.String("kind", ev.Kind),
			zap.String("tenant", boundText(ev.Tenant, maxEventTenant)))
	}
}

// run is the writer: it takes events off the queue in batches and writes
// them until Close, then drains the queue.
func (s *SecurityLog) run(ctx context.Context) {
	defer close(s.done)
	batch := make([]SecurityEvent, 0, s.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		select {
		case ev := <-s.q:
			batch = append(batch, ev)
			select {
			case <-s.wake: // left from the previous batch
			default:
			}
			if len(s.q) < cap(batch)-1 && !s.dropPending.Load() {
				// Sleep until the batch can fill, drops are to be
				// reported, or the interval ends.
				timer.Reset(s.opts.FlushInterval)
				select {
				case <-timer.C:
				case <-s.wake:
				case <-s.closing:
				}
				timer.Stop()
			}
		case <-s.wake: // drops to report, or a batch waiting
		case <-s.closing:
			s.drain(ctx, batch)
			return
		}
		batch = s.fillNow(batch)
		s.flush(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// fillNow adds what is queued now, without waiting.
func (s *SecurityLog) fillNow(batch []SecurityEvent) []SecurityEvent {
	for len(batch) < cap(batch) {
		select {
		case ev := <-s.q:
			batch = append(batch, ev)
		default:
			return batch
		}
	}
	return batch
}

// drain writes everything still queued, and the drops still to report,
// once no call is in flight.
func (s *SecurityLog) drain(ctx context.Context, batch []SecurityEvent) {
	for {
		// Loaded before the queue is read: a call no longer in flight has
		// queued its event, or dropped it, by then.
		idle := s.inflight.Load() == 0
		batch = s.fillNow(batch)
		if len(batch) == 0 && !s.dropPending.Load() {
			if idle {
				return
			}
			time.Sleep(50 * time.Microsecond)
			continue
		}
		s.flush(ctx, batch)
		clear(batch)
		batch = batch[:0]
	}
}

// flush writes one batch and the events.dropped events of the drops
// counted since the last, retrying until they are written or the log is
// abandoned.
func (s *SecurityLog) flush(ctx context.Context, batch []SecurityEvent) {
	recorded := len(batch)
	batch = s.appendDropEvents(batch)
	if len(batch) == 0 {
		return
	}
	now := s.opts.Now()
	for i := range batch {
		batch[i].bound(now)
	}
	var a writeAttempt
	err := retryWrite(ctx, func(int) error {
		return s.be.write(ctx, batch, &a)
	}, func(err error, _ int, retryIn time.Duration) {
		s.writeErrors.Add(1)
		s.log.Warn("security event write failed; retrying", zap.Error(err), zap.Int("events", len(batch)), zap.Duration("retry_in", retryIn))
	})
	if err != nil {
		s.lost.Add(int64(recorded))
		s.log.Error("security events lost: the log was closed before they could be written", zap.Error(err),
			zap.Int("events", recorded), zap.Int("dropped_reports", len(batch)-recorded))
		return
	}
	s.written.Add(int64(recorded))
	s.dropMarkers.Add(int64(len(batch) - recorded))
}

// appendDropEvents turns the drops counted since the last batch into one
// events.dropped event per tenant, logged and written with the batch.
func (s *SecurityLog) appendDropEvents(batch []SecurityEvent) []SecurityEvent {
	if !s.dropPending.Swap(false) {
		return batch
	}
	s.dropMu.Lock()
	drops := s.drops
	s.drops = map[string]*securityDrops{}
	s.dropMu.Unlock()
	tenants := make([]string, 0, len(drops))
	for t := range drops {
		tenants = append(tenants, t)
	}
	slices.Sort(tenants)
	for _, t := range tenants {
		c := drops[t]
		s.log.Warn("security event queue full: events dropped", zap.String("tenant", t), zap.Int64("events", c.events),
			zap.Int64("occurrences", c.occurrences), zap.Time("first", c.first), zap.Time("last", c.last))
		batch = append(batch, SecurityEvent{
			Time: c.last, Kind: EventDropped, Tenant: t, Reason: reasonQueueFull, Count: c.events,
			Message: fmt.Sprintf("%d security events (%d occurrences) recorded between %s and %s were not stored: the queue was full",
				c.events, c.occurrences, c.first.UTC().Format(time.RFC3339Nano), c.last.UTC().Format(time.RFC3339Nano)),
		})
	}
	return batch
}

// Rows one listing reads at a time, and at most in one call: a filter that
// matches few of many events returns a short page and a token rather than
// reading on.
var (
	securityRowsPerQuery = 256
	securityRowsPerCall  = 4096
)

// List returns one page of the events q selects, at most pageSize (1 to
// MaxPageSize), continuing from pageToken (empty: from the start). Pages
// follow the ids, oldest first unless q.NewestFirst; an event stored while
// an auditor pages is never skipped nor listed twice: oldest first it
// comes on a later page, newest first it is above the first page and not
// listed. A call reads a bounded number of events, so a page can be short,
// even empty, and still have a Next token. Page tokens carry a fingerprint
// of q's filters. A bad page size, an inverted time range, a malformed
// token or one issued for other filters is a *model.InvalidError naming the
// field (page_size, end_time, page_token).
func (s *SecurityLog) List(ctx context.Context, q SecurityQuery, pageSize int, pageToken string) (SecurityPage, error) {
	if pageSize < 1 || pageSize > MaxPageSize {
		return SecurityPage{}, model.Invalid("page_size", model.ReasonInvalidValue, fmt.Sprintf("must be between 1 and %d", MaxPageSize))
	}
	if !q.From.IsZero() && !q.To.IsZero() && !q.To.After(q.From) {
		return SecurityPage{}, model.Invalid("end_time", model.ReasonInvalidValue, "must be after start_time")
	}
	f := newSecurityFilter(&q)
	c, err := parseToken(pageToken, f.fingerprint(), q.NewestFirst)
	if err != nil {
		return SecurityPage{}, err
	}
	if c.key[0] > math.MaxInt64 || c.key[1] != 0 || c.horizon != 0 {
		return SecurityPage{}, model.Invalid("page_token", model.ReasonInvalidValue, "is not a token this service issued")
	}
	var page SecurityPage
	if f.tenants != nil && len(f.tenants) == 0 {
		return page, nil
	}
	after := int64(c.key[0])
	for scanned := 0; scanned < securityRowsPerCall; {
		evs, err := s.be.scan(ctx, f.tenants, after, q.NewestFirst, securityRowsPerQuery)
		if err != nil {
			return SecurityPage{}, err
		}
		for i := range evs {
			ev := &evs[i]
			if !f.matches(ev) {
				after = ev.ID
				continue
			}
			if len(page.Events) == pageSize { // one more than the page: more follow
				c.key[0] = uint64(page.Events[pageSize-1].ID)
				page.Next = c.token()
				return page, nil
			}
			page.Events = append(page.Events, *ev)
			after = ev.ID
		}
		if len(evs) < securityRowsPerQuery {
			return page, nil // the end of the log
		}
		scanned += len(evs)
	}
	// As much as one call may read: the next page goes on from here.
	c.key[0] = uint64(after)
	page.Next = c.token()
	return page, nil
}

// SecurityStatus is the security event log's state on this process. At
// rest (Queued 0), Recorded = Written + Dropped + Lost.
type SecurityStatus struct {
	Storage        string // "memory" or "postgres"
	QueueCapacity  int
	Queued         int
	Recorded       int64 // events handed to Record
	Written        int64 // recorded events stored
	Dropped        int64 // recorded events dropped: the queue was full, or the log closed
	Lost           int64 // recorded events queued but not written: Close's context ended first
	WriteErrors    int64 // failed write attempts, each retried
	DropEvents     int64 // events.dropped events stored to report the drops
	MemoryCapacity int   // memory storage: events kept
	MemoryEvicted  int64 // memory storage: events evicted to make room
}

// Status reports the log's counters.
func (s *SecurityLog) Status() SecurityStatus {
	st := SecurityStatus{
		Storage: s.be.kind(), QueueCapacity: s.opts.QueueSize, Queued: len(s.q),
		Recorded: s.recorded.Load(), Written: s.written.Load(), Dropped: s.dropped.Load(), Lost: s.lost.Load(),
		WriteErrors: s.writeErrors.Load(), DropEvents: s.dropMarkers.Load(),
	}
	if m, ok := s.be.(*securityMemory); ok {
		st.MemoryCapacity, st.MemoryEvicted = m.capacity, m.evictedCount()
	}
	return st
}
