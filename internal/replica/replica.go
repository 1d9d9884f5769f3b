// Package replica keeps a replica's engine current with the writes every
// replica makes to the one PostgreSQL they share.
//
// Every write notifies the channel crmauthz_changes with its tenant and
// revision when it commits (store/postgres). A Follower keeps one dedicated
// connection listening to it and applies the tenant a notification names,
// and only that tenant, by reading it from the store; a tenant deleted
// elsewhere is unloaded, one created elsewhere loaded. Notifications can be
// lost (the connection drops; PostgreSQL drops them while no one listens),
// so the follower also compares every tenant's revision with the database:
// after every (re)connect, and every Reconcile interval. Revoked credentials
// notify crmauthz_credentials, and the follower refreshes them at once.
//
// A replica that has not been following for longer than StaleAfter says
// so: the health of its authorization service turns NOT_SERVING, so load
// balancers route around it, and it turns back once the follower has
// caught up.
package replica

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
)

// Engine is what the follower keeps current (engine.Engine).
type Engine interface {
	Load(st *model.TenantState) error
	Apply(st *model.TenantState, d model.Delta) error
	Revision(tenant string) (int64, error)
	Unload(tenant string, revision int64)
	Revisions() map[string]int64
}

// Credentials is what the follower refreshes (auth.Authenticator).
type Credentials interface {
	Reload(ctx context.Context) error
	Refresh(ctx context.Context, id string) error
}

// Options configures a Follower.
type Options struct {
	// URL is the database the replicas share.
	URL string
	// Reconcile is how often every tenant's revision is compared with the
	// database while connected (10s by default).
	Reconcile time.Duration
	// StaleAfter is how long the follower may go without following before
	// the replica reports NOT_SERVING (10s by default).
	StaleAfter time.Duration
	// OutageGrace is how long a replica that cannot reach the database at
	// all (every connection attempt fails) keeps reporting SERVING, as
	// long as StaleAfter if shorter. While the database is down no replica
	// can write, so none falls behind, and taking every replica out of
	// rotation would turn a database outage into an authorization outage;
	// but a replica cut off from a database the others still reach cannot
	// tell, and may answer from a stale policy until the grace ends. 0
	// (strict): StaleAfter alone.
	OutageGrace time.Duration
	// Origin is what this process's store names its writes with
	// (postgres.Store.WithOrigin): their notifications are skipped, since
	// the process applies its own writes before it answers them. Without
	// it, a notification that arrives before the writer has applied its
	// write made the follower read the tenant and apply it a second time.
	Origin string
	// OnFollowing is called with false when the replica stops following for
	// longer than StaleAfter, and with true when it follows again.
	OnFollowing func(bool)
	Logger      *zap.Logger
	Now         func() time.Time
}

// applyTimeout bounds one read of a tenant, or of every tenant's
// revision, by the follower.
const applyTimeout = 30 * time.Second

// Follower keeps an engine current.
type Follower struct {
	opts  Options
	store store.Store
	eng   Engine
	creds Credentials
	log   *zap.Logger

	mu      sync.Mutex
	dirty   map[string]int64 // tenants to apply, with the revision notified
	wake    chan struct{}
	status  Status
	healthy bool

	conn   *pgx.Conn // listening between Listen and Follow
	stop   context.CancelFunc
	done   chan struct{}
	stopMu sync.Mutex
}

// Status is what a replica reports of its following.
type Status struct {
	// Following is false while the listening connection is down.
	Following bool
	// ConnectedSince is when the listening connection was made.
	ConnectedSince time.Time
	// DisconnectedSince is when it was lost (zero while connected).
	DisconnectedSince time.Time
	// Unreachable says the last attempt to connect again could not reach
	// the database at all.
	Unreachable bool
	// Reconnects counts the connections made after the first.
	Reconnects int64
	// LastSync is when the follower last found every tenant at the
	// database's revision (after a comparison) or applied the last change
	// it knew of.
	LastSync time.Time
	// TenantsBehind is how many tenants the last comparison found behind,
	// until they are applied.
	TenantsBehind int
	// Applied counts tenants applied from notifications and comparisons.
	Applied int64
	// Deltas counts the changes among them applied as deltas, from the
	// rows their change-log entries carry.
	Deltas int64
}

// New returns a follower; Start runs it.
func New(st store.Store, eng Engine, creds Credentials, opts Options) *Follower {
	if opts.Reconcile <= 0 {
		opts.Reconcile = 10 * time.Second
	}
	if opts.StaleAfter <= 0 {
		opts.StaleAfter = 10 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.OnFollowing == nil {
		opts.OnFollowing = func(bool) {}
	}
	return &Follower{opts: opts, store: st, eng: eng, creds: creds, log: opts.Logger.Named("replica"),
		dirty: map[string]int64{}, wake: make(chan struct{}, 1), healthy: true}
}

// Listen opens the listening connection. A replica listens before it
// loads its tenants, so that no write committed during the load goes
// unnoticed: the notifications wait on the connection until Follow.
func (f *Follower) Listen(ctx context.Context) error {
	conn, err := f.listen(ctx)
	if err != nil {
		return err
	}
	f.conn = conn
	return nil
}

// Follow compares every tenant with the database, then applies
// notifications and compares periodically until Close, reconnecting as
// needed. Listen must have succeeded.
func (f *Follower) Follow(ctx context.Context) {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f.stopMu.Lock()
	f.stop, f.done = cancel, make(chan struct{})
	f.stopMu.Unlock()
	conn := f.conn
	f.conn = nil
	var wg sync.WaitGroup
	wg.Go(func() { f.applyLoop(runCtx) })
	wg.Go(func() { f.listenLoop(runCtx, conn) })
	wg.Go(func() { f.staleLoop(runCtx) })
	go func() {
		wg.Wait()
		close(f.done)
	}()
}

// Close stops following and closes the listening connection.
func (f *Follower) Close() {
	f.stopMu.Lock()
	defer f.stopMu.Unlock()
	if f.stop != nil {
		f.stop()
		<-f.done
		f.stop = nil
	}
	if f.conn != nil {
		_ = f.conn.Close(context.Background())
		f.conn = nil
	}
}

// Status returns the follower's status.
func (f *Follower) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

// Poke asks the follower to read a tenant now, whatever it was notified:
// a caller waits for a revision this replica does not have yet.
func (f *Follower) Poke(tenant string) {
	f.mark(map[string]int64{tenant: 0})
}

// listen opens the listening connection.
func (f *Follower) listen(ctx context.Context) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(f.opts.URL)
	if err != nil {
		return nil, fmt.Errorf("replica: database URL: %w", err)
	}
	postgres.DefaultConnectTimeout(cfg)
	// Operators find the listening connection in pg_stat_activity by name.
	name := cfg.RuntimeParams["application_name"]
	if name == "" {
		name = "authzd"
	}
	cfg.RuntimeParams["application_name"] = name + " listener"
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("replica: connect the listener: %w", err)
	}
	for _, ch := range []string{postgres.NotifyChannel, postgres.CredentialsChannel} {
		if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{ch}.Sanitize()); err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("replica: listen to %s: %w", ch, err)
		}
	}
	now := f.opts.Now()
	f.mu.Lock()
	if !f.status.ConnectedSince.IsZero() || !f.status.DisconnectedSince.IsZero() {
		f.status.Reconnects++
	}
	f.status.Following, f.status.ConnectedSince, f.status.DisconnectedSince, f.status.Unreachable = true, now, time.Time{}, false
	f.mu.Unlock()
	return conn, nil
}

// listenLoop waits for notifications and reconciles after every connect
// and every Reconcile interval; a lost connection is made again with
// backoff.
func (f *Follower) listenLoop(ctx context.Context, conn *pgx.Conn) {
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = f.listen(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				var unreachable *pgconn.ConnectError
				f.mu.Lock()
				f.status.Unreachable = errors.As(err, &unreachable)
				f.mu.Unlock()
				f.log.Warn("reconnect the listener", zap.Error(err), zap.Duration("retry_in", backoff))
				sleep(ctx, backoff)
				// At most a second apart: one connection attempt a second
				// is cheap, and the replica follows again soon after the
				// database returns.
				backoff = min(2*backoff, time.Second)
				continue
			}
			f.log.Info("listening again; comparing every tenant with the database")
		}
		backoff = 50 * time.Millisecond
		// Every change made while no one listened is found by comparing.
		f.reconcile(ctx)
		err := f.follow(ctx, conn)
		_ = conn.Close(context.WithoutCancel(ctx))
		conn = nil
		if ctx.Err() != nil {
			return
		}
		f.mu.Lock()
		f.status.Following, f.status.DisconnectedSince = false, f.opts.Now()
		f.mu.Unlock()
		f.log.Warn("lost the listening connection; reconnecting", zap.Error(err))
	}
}

// follow handles notifications until the connection fails, comparing
// every Reconcile interval.
func (f *Follower) follow(ctx context.Context, conn *pgx.Conn) error {
	next := time.Now().Add(f.opts.Reconcile)
	for {
		wctx, cancel := context.WithDeadline(ctx, next)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded):
			// A timed-out wait leaves the connection usable; check it is.
			if err := conn.Ping(ctx); err != nil {
				return err
			}
			f.reconcile(ctx)
			next = time.Now().Add(f.opts.Reconcile)
			continue
		case err != nil:
			return err
		}
		f.handle(ctx, n.Channel, n.Payload)
	}
}

func (f *Follower) handle(ctx context.Context, channel, payload string) {
	switch channel {
	case postgres.CredentialsChannel:
		if err := f.creds.Refresh(ctx, payload); err != nil {
			f.log.Warn("refresh a revoked credential", zap.String("credential", payload), zap.Error(err))
		}
	case postgres.NotifyChannel:
		var n postgres.Notification
		if err := json.Unmarshal([]byte(payload), &n); err != nil {
			f.log.Warn("unreadable notification", zap.String("payload", payload), zap.Error(err))
			return
		}
		if n.Origin != "" && n.Origin == f.opts.Origin {
			return // this process's own write: the writer applies it
		}
		if cur, err := f.eng.Revision(n.Tenant); err == nil && cur >= n.Revision {
			return // applied already
		}
		f.mark(map[string]int64{n.Tenant: n.Revision})
	}
}

// mark queues tenants for the apply loop, each with the revision it was
// notified at (0: unknown, the apply reads the revision first).
func (f *Follower) mark(tenants map[string]int64) {
	f.mu.Lock()
	for tenant, rev := range tenants {
		if cur, ok := f.dirty[tenant]; !ok || rev > cur {
			f.dirty[tenant] = rev
		}
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// applyLoop reads and loads the tenants marked dirty, one at a time, so a
// slow tenant delays others but never blocks the listener.
func (f *Follower) applyLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
		}
		for {
			f.mu.Lock()
			var tenant string
			for t := range f.dirty {
				tenant = t
				break
			}
			if tenant == "" {
				// Everything known to be behind is applied.
				f.status.LastSync, f.status.TenantsBehind = f.opts.Now(), 0
				f.mu.Unlock()
				break
			}
			rev := f.dirty[tenant]
			delete(f.dirty, tenant)
			f.mu.Unlock()
			if err := f.apply(ctx, tenant, rev); err != nil {
				if ctx.Err() != nil {
					return
				}
				f.log.Warn("apply a tenant; retrying", zap.String("tenant", tenant), zap.Error(err))
				sleep(ctx, 200*time.Millisecond)
				f.mark(map[string]int64{tenant: rev})
			}
		}
	}
}

// apply loads a tenant at its latest revision, or unloads it when it was
// deleted. rev is the revision a notification or the comparison named; 0
// (a poke, a tenant gone from the comparison) reads the tenant's revision
// first, so that reads asking for a revision nobody wrote cost the
// database one row each, not a whole tenant.
func (f *Follower) apply(ctx context.Context, tenant string, rev int64) error {
	// A read under way finishes (within applyTimeout) when the follower
	// stops: Close waits for it rather than cutting a query short.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	if rev == 0 {
		info, err := f.store.TenantInfo(ctx, tenant)
		switch {
		case errors.Is(err, model.ErrTenantNotFound):
			return nil
		case err != nil:
			return err
		}
		rev = info.Revision
	}
	if cur, err := f.eng.Revision(tenant); err == nil && cur >= rev {
		return nil // loaded already (this replica's own write, or an earlier apply)
	}
	if c, ok := f.store.(catcher); ok {
		return f.catchUp(ctx, c, tenant)
	}
	st, err := f.store.Tenant(ctx, tenant)
	if errors.Is(err, model.ErrTenantNotFound) {
		return f.notFound(ctx, tenant)
	}
	if err != nil {
		return err
	}
	// Counted before the engine shows it: whoever sees the new revision
	// sees it counted.
	f.countApplied(1)
	if err := f.eng.Load(st); err != nil {
		f.countApplied(-1)
		return fmt.Errorf("load tenant %q: %w", tenant, err)
	}
	return nil
}

// catcher is a store that brings a tenant's state up to date from the
// rows of its change log (store/postgres).
type catcher interface {
	CatchUp(ctx context.Context, tenant string, applied func(*model.TenantState, model.Delta) error) (int64, error)
}

// catchUp applies a peer's writes to a tenant, each as the delta its
// change-log entry carries when the store keeps the tenant's state, or
// loads the tenant read again.
func (f *Follower) catchUp(ctx context.Context, c catcher, tenant string) error {
	_, err := c.CatchUp(ctx, tenant, func(st *model.TenantState, d model.Delta) error {
		if cur, err := f.eng.Revision(tenant); err == nil && cur >= st.Revision {
			return nil // this replica's own write, applied when it was made
		}
		// Counted before the engine shows it: whoever sees the new
		// revision sees it counted.
		f.countApplied(1)
		if err := f.eng.Apply(st, d); err != nil {
			f.countApplied(-1)
			return fmt.Errorf("load tenant %q: %w", tenant, err)
		}
		if !d.Whole {
			f.mu.Lock()
			f.status.Deltas++
			f.mu.Unlock()
		}
		return nil
	})
	if errors.Is(err, model.ErrTenantNotFound) {
		return f.notFound(ctx, tenant)
	}
	return err
}

// notFound handles a tenant the store no longer has: deleted on another
// replica (unloaded here), or never committed.
func (f *Follower) notFound(ctx context.Context, tenant string) error {
	info, err := f.store.TenantInfo(ctx, tenant)
	switch {
	case err == nil && info.Deleted():
		f.eng.Unload(tenant, info.Revision)
		f.log.Info("tenant deleted on another replica", zap.String("tenant", tenant), zap.Int64("revision", info.Revision))
		return nil
	case errors.Is(err, model.ErrTenantNotFound):
		return nil // a notification of a tenant rolled back or never committed
	}
	return err
}

func (f *Follower) countApplied(n int64) {
	f.mu.Lock()
	f.status.Applied += n
	f.mu.Unlock()
}

// reconcile compares every tenant's revision with the database and marks
// those behind (or new, or gone) for the apply loop; it also reads the
// credentials again.
func (f *Follower) reconcile(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), applyTimeout)
	defer cancel()
	revs, err := f.store.Revisions(ctx)
	if err != nil {
		f.log.Warn("compare revisions with the database", zap.Error(err))
		return
	}
	mine := f.eng.Revisions()
	behind := map[string]int64{}
	for id, rev := range revs {
		if cur, ok := mine[id]; !ok || cur < rev {
			behind[id] = rev
		}
	}
	for id := range mine {
		if _, ok := revs[id]; !ok {
			behind[id] = 0 // gone: apply unloads it
		}
	}
	// The count is set with the marks, before the apply loop can clear it.
	f.mu.Lock()
	f.status.TenantsBehind = len(behind)
	if len(behind) == 0 && len(f.dirty) == 0 {
		f.status.LastSync = f.opts.Now()
	}
	f.mu.Unlock()
	f.mark(behind)
	if len(behind) > 0 {
		f.log.Info("tenants behind the database", zap.Int("tenants", len(behind)))
	}
	if err := f.creds.Reload(ctx); err != nil {
		f.log.Warn("read the credentials again", zap.Error(err))
	}
}

// staleLoop reports a replica that has not been following for longer
// than StaleAfter, and its return.
func (f *Follower) staleLoop(ctx context.Context) {
	t := time.NewTicker(min(f.opts.StaleAfter/4, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		st := f.status
		var stale bool
		if f.healthy {
			limit := f.opts.StaleAfter
			if st.Unreachable {
				limit = max(limit, f.opts.OutageGrace)
			}
			stale = !st.Following && f.opts.Now().Sub(st.DisconnectedSince) > limit
		} else {
			// Back only once current: synced since the connection was made.
			stale = !st.Following || st.LastSync.Before(st.ConnectedSince)
		}
		changed := stale == f.healthy
		f.healthy = !stale
		f.mu.Unlock()
		if changed {
			if stale {
				f.log.Error("not following the database; reporting NOT_SERVING", zap.Time("since", st.DisconnectedSince),
					zap.Bool("database_unreachable", st.Unreachable))
			} else {
				f.log.Info("following the database again; reporting SERVING")
			}
			f.opts.OnFollowing(!stale)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	d += time.Duration(rand.Int64N(int64(d)/4 + 1)) //nolint:gosec // jitter, not a secret
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
