// Package app wires authzd together: the policy bundle, the store, the
// engine and the gRPC server, and runs them from start to graceful stop.
// cmd/authzd and the end-to-end tests start the service the same way.
package app

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel/trace"
	"go.uber.org/zap"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/authzen"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/gcpace"
	"github.com/crmauthz/crmauthz/internal/metrics"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/opshttp"
	"github.com/crmauthz/crmauthz/internal/replica"
	"github.com/crmauthz/crmauthz/internal/server"
	"github.com/crmauthz/crmauthz/internal/service"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/memory"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	"github.com/crmauthz/crmauthz/internal/tracing"
)

// App is one authzd process.
type App struct {
	cfg config.Config
	log *zap.Logger
	now func() time.Time
	// clocked logs decisions at now's time (WithClockedDecisions).
	clocked bool
	bundle  *bundle.Bundle
	store   store.Store
	closer  func() // closes the store: once, through Close
	closed  sync.Once
	engine  *engine.Engine
	audit   *audit.Log
	events  *audit.SecurityLog
	authn   *auth.Authenticator
	server  *server.Server
	// follower keeps the engine current with the other replicas' writes;
	// nil for the memory store, which no other process writes.
	follower *replica.Follower
	// governance closes access reviews at their deadline, every
	// reviewEvery.
	governance  *service.Governance
	reviewEvery time.Duration
	// metrics are served on cfg.MetricsAddr; nil when it is empty.
	metrics *metrics.Metrics
	opsAddr atomic.Pointer[net.Addr]
	// authzen serves the AuthZEN API on cfg.HTTPAddr; nil when it is
	// empty. tls is the gRPC server's TLS, which it serves with too.
	authzen  http.Handler
	tls      *tls.Config
	httpAddr atomic.Pointer[net.Addr]
	// tracing exports spans (cfg.OTLPEndpoint, or a test's provider);
	// nil traces nothing. stopTracing flushes and stops the exporter.
	tracing     trace.TracerProvider
	stopTracing func(context.Context) error
}

// Option adjusts an App; tests use them.
type Option func(*App)

// WithClock sets the clock for grant expiry (time.Now by default).
func WithClock(now func() time.Time) Option { return func(a *App) { a.now = now } }

// WithClockedDecisions logs decisions at the clock's time (WithClock)
// rather than the wall clock's, so that explanations after the fact decide
// at the time the engine decided at; with the wall clock the two agree.
func WithClockedDecisions() Option { return func(a *App) { a.clocked = true } }

// WithTracerProvider traces with tp instead of an OTLP exporter: tests
// record spans in memory.
func WithTracerProvider(tp trace.TracerProvider) Option { return func(a *App) { a.tracing = tp } }

// WithReviewInterval sets how often the access reviews past their deadline
// are closed (a minute by default).
func WithReviewInterval(d time.Duration) Option { return func(a *App) { a.reviewEvery = d } }

// New builds the service from cfg. Nothing is loaded or served until Run.
func New(ctx context.Context, cfg config.Config, log *zap.Logger, opts ...Option) (*App, error) {
	a := &App{cfg: cfg, log: log, now: time.Now, reviewEvery: time.Minute}
	for _, o := range opts {
		o(a)
	}
	var err error
	if cfg.PoliciesDir != "" {
		a.bundle, err = bundle.Load(os.DirFS(cfg.PoliciesDir))
	} else {
		a.bundle, err = bundle.Default()
	}
	if err != nil {
		return nil, fmt.Errorf("policy bundle: %w", err)
	}
	keys, err := auditKeys(cfg, log, a.now)
	if err != nil {
		return nil, err
	}
	// Names this process in its writes' notifications: its follower skips
	// them, since the process applies its own writes.
	origin := rand.Text()
	var pool *pgxpool.Pool
	if a.store, pool, a.closer, err = openStore(ctx, cfg, log, a.now, keys, origin); err != nil {
		return nil, err
	}
	a.engine, err = engine.New(a.bundle.Catalog, a.bundle.ModelText, engine.WithClock(a.now))
	if err != nil {
		a.closer()
		return nil, err
	}
	onDegraded := func(degraded bool) { a.server.SetLogDegraded(degraded) }
	if a.audit, err = openDecisionLog(cfg, log, a.now, a.store, pool, keys, onDegraded); err != nil {
		a.closer()
		return nil, err
	}
	// A nil DecisionLog turns recording off; a typed nil would not.
	var decisions service.DecisionLog
	if a.audit.Mode() != audit.ModeOff {
		decisions = a.audit
	}
	eopts := audit.SecurityOptions{Now: a.now, Logger: log}
	if pool != nil {
		a.events = audit.NewPostgresSecurityLog(pool, eopts)
	} else {
		a.events = audit.NewMemorySecurityLog(eopts)
	}
	a.authn = auth.NewAuthenticator(auth.Options{Enabled: cfg.AuthEnabled(), Store: a.store, Refresh: cfg.AuthRefresh,
		Now: a.now, Logger: log, Events: a.events})
	sopts := server.Options{Logger: log, MaxRecvBytes: cfg.MaxRecvBytes, Auth: a.authn}
	switch {
	case a.tracing != nil:
		tracing.Use(a.tracing)
	case cfg.OTLPEndpoint != "":
		if a.tracing, a.stopTracing, err = tracing.Start(ctx, tracing.Options{Endpoint: cfg.OTLPEndpoint, Insecure: cfg.OTLPInsecure,
			SampleRatio: cfg.TraceSampleRatio}); err != nil {
			a.closer()
			return nil, err
		}
		log.Info("tracing to an OTLP collector", zap.String("endpoint", cfg.OTLPEndpoint), zap.Float64("sample_ratio", cfg.TraceSampleRatio))
	}
	sopts.Tracing = a.tracing
	if cfg.MetricsAddr != "" {
		a.metrics = metrics.New()
		sopts.Metrics = a.metrics
	}
	var tc *tls.Config
	if cfg.TLSCert != "" {
		tc, err = server.TLSConfig(cfg.TLSCert, cfg.TLSKey, cfg.TLSClientCA, func(err error) {
			log.Error("reload TLS files; serving the last good ones", zap.Error(err))
		})
		if err != nil {
			a.closer()
			return nil, err
		}
		sopts.Creds = credentials.NewTLS(tc)
	}
	a.tls = tc
	// A nil Follower means none runs; a typed nil would not.
	var follower service.Follower
	if pool != nil {
		listen := cfg.ListenDatabaseURL
		if listen == "" {
			listen = cfg.DatabaseURL
		}
		a.follower = replica.New(a.store, a.engine, a.authn, replica.Options{
			URL: listen, Reconcile: cfg.ReplicaReconcile, StaleAfter: cfg.ReplicaStaleAfter, OutageGrace: cfg.ReplicaOutageGrace, Origin: origin,
			OnFollowing: func(ok bool) { a.server.SetFollowing(ok) }, Logger: log, Now: a.now,
		})
		follower = a.follower
	}
	fresh := service.NewFreshness(a.engine, follower, cfg.MaxRevisionWait)
	admin := service.NewAdmin(a.engine, a.store, a.bundle, a.now)
	a.governance = service.NewGovernance(admin, a.audit)
	authz := service.NewAuthorization(a.engine, cfg.MaxBatchChecks, decisions, fresh).WithMetrics(a.metrics)
	if a.clocked {
		authz.WithClock(a.now)
	}
	if a.metrics != nil {
		a.metrics.Watch(a.metricSources())
	}
	if cfg.HTTPAddr != "" {
		a.authzen = authzen.New(a.authn, authz, a.engine, a.engine.Catalog(), func(err error) *status.Status {
			st, internal := service.ToStatus(err)
			if internal {
				log.Error("internal error", zap.String("method", "AuthZEN"), zap.Error(err))
			}
			return st
		})
	}
	a.server = server.New(sopts, server.Services{
		Authorization: authz,
		Admin:         admin,
		Governance:    a.governance,
		Audit:         service.NewAudit(a.audit, a.events, a.store, a.engine, follower, a.now, Authentication(cfg)),
		Platform:      service.NewPlatform(a.store, a.engine, a.bundle, a.authn, a.events, a.now),
	})
	return a, nil
}

// Authentication says how a server with cfg authenticates callers, as
// GetLogStatus reports it.
func Authentication(cfg config.Config) string {
	switch {
	case cfg.AuthEnabled():
		return "api_keys_and_certificates"
	case cfg.InsecureNoAuth:
		return "off (--insecure-no-auth)"
	}
	return "off (demo: memory store on loopback)"
}

// Store returns the App's store, for what is set up before Run: the first
// credential of a server serving from memory with authentication, say.
func (a *App) Store() store.Store { return a.store }

// Close stops the server and closes the store (and its pool). Run does it
// when it returns; Close releases an App that is never run, e.g. when its
// listener cannot be opened. Calling it again, or after Run, does nothing.
func (a *App) Close() {
	a.closed.Do(func() {
		a.server.Stop() // its stream workers run from New on
		a.closer()
		if a.stopTracing != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := a.stopTracing(ctx); err != nil {
				a.log.Warn("flush the traces", zap.Error(err))
			}
		}
	})
}

// openDecisionLog builds the decision log: in PostgreSQL when the store is
// there, else in memory (bounded, and it says so).
func openDecisionLog(cfg config.Config, log *zap.Logger, now func() time.Time, st store.Store, pool *pgxpool.Pool,
	keys *chain.Keyring, onDegraded func(bool)) (*audit.Log, error) {
	opts := audit.Options{
		Mode: audit.Mode(cfg.DecisionLog), QueueSize: cfg.DecisionLogQueueSize, BatchSize: cfg.DecisionLogBatchSize,
		FlushInterval: cfg.DecisionLogFlushInterval, Overflow: audit.Overflow(cfg.DecisionLogOverflow),
		RetentionDays: cfg.DecisionLogRetentionDays, MemoryEntries: cfg.DecisionLogMemoryEntries,
		Mask: cfg.DecisionLogMask, MaskKey: cfg.DecisionLogMaskKey, Now: now, Logger: log,
		Keys: keys, CheckpointEvery: cfg.AuditCheckpointInterval,
	}
	var (
		l   *audit.Log
		err error
	)
	if pool != nil {
		if cfg.DecisionSpoolDir != "off" {
			opts.SpoolDir = cfg.DecisionSpoolDir
		}
		opts.SpoolMaxBytes, opts.SpoolSyncEvery = int64(cfg.DecisionSpoolMaxMB)<<20, cfg.DecisionSpoolSyncInterval
		opts.OnDegraded = onDegraded
		l, err = audit.NewPostgres(pool, opts)
	} else {
		l, err = audit.NewMemory(st, opts)
	}
	if err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	return l, nil
}

// openStore opens PostgreSQL when a database URL is configured, refusing a
// schema this binary does not match, else the in-memory store. The pool is
// nil for the memory store.
func openStore(ctx context.Context, cfg config.Config, log *zap.Logger, now func() time.Time, keys *chain.Keyring,
	origin string) (store.Store, *pgxpool.Pool, func(), error) {
	if cfg.DatabaseURL == "" {
		st := memory.New(now)
		return st, nil, st.Close, nil
	}
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return nil, nil, nil, err
	}
	if err := postgres.CheckSchema(ctx, pool); err != nil {
		pool.Close()
		return nil, nil, nil, err
	}
	st := postgres.New(pool, now).WithKeys(keys).WithOrigin(origin)
	return st, pool, func() { st.Close(); pool.Close() }, nil
}

// auditKeys loads the audit keys. On PostgreSQL a missing file is created
// with new keys, loudly: the logs can be verified only with them. From
// memory without a file, the keys die with the process, as the logs do.
func auditKeys(cfg config.Config, log *zap.Logger, now func() time.Time) (*chain.Keyring, error) {
	path := cfg.AuditKeyFile
	if path == "" {
		if cfg.DatabaseURL == "" {
			return chain.ProcessKeyring(), nil
		}
		path = config.DefaultAuditKeyFile()
	}
	keys, created, err := chain.OpenKeyring(path, now())
	if err != nil {
		return nil, fmt.Errorf("%w (set --audit-key-file to a file of keys, e.g. a mounted secret)", err)
	}
	if created {
		log.Warn("created new audit keys: keep a copy of the file, and give every replica the same one; without it the logs cannot be verified",
			zap.String("file", path))
	}
	log.Info("audit keys loaded", zap.String("file", path), zap.String("link_key", keys.Active().ID),
		zap.String("signing_key", keys.Signer().ID), zap.Strings("keys", keys.KeyIDs()))
	return keys, nil
}

// Migrate applies the PostgreSQL schema migrations; running it again, or
// from two processes at once, is safe.
func Migrate(ctx context.Context, cfg config.Config, log *zap.Logger) error {
	if cfg.DatabaseURL == "" {
		return errors.New("migrate needs --database-url (or AUTHZ_DATABASE_URL)")
	}
	pool, err := postgres.Connect(ctx, cfg.DatabaseURL, log)
	if err != nil {
		return err
	}
	defer pool.Close()
	var applied []string
	err = postgres.MigrateReport(ctx, pool, func(name string) {
		applied = append(applied, name)
		log.Info("applied migration", zap.String("migration", name))
	})
	if err != nil {
		return err
	}
	if len(applied) == 0 {
		log.Info("schema is up to date: no migration to apply")
	} else {
		log.Info("schema is up to date", zap.Int("applied", len(applied)), zap.Strings("migrations", applied))
	}
	return nil
}

// Run serves on lis until ctx ends, then stops gracefully: health turns
// NOT_SERVING, running calls finish within the shutdown timeout, the
// decision log writes what it still holds, and the store is closed last.
// Health reports SERVING once every tenant is loaded. A ctx that ends
// during start-up (the decision log's start, the tenants' load) is a
// clean stop too: Run returns nil. Run closes lis and the store whatever
// it returns.
func (a *App) Run(ctx context.Context, lis net.Listener) error {
	defer a.Close()
	if err := a.audit.Start(ctx); err != nil {
		_ = lis.Close()
		if ctx.Err() != nil {
			return a.stoppedStarting(err)
		}
		return fmt.Errorf("start the decision log: %w", err)
	}
	defer a.closeDecisionLog()
	if err := a.events.Start(ctx); err != nil {
		_ = lis.Close()
		if ctx.Err() != nil {
			return a.stoppedStarting(err)
		}
		return fmt.Errorf("start the security log: %w", err)
	}
	defer a.closeSecurityLog()
	if err := a.bootstrapKey(ctx); err != nil {
		_ = lis.Close()
		return err
	}
	if err := a.authn.Start(ctx); err != nil {
		_ = lis.Close()
		if ctx.Err() != nil {
			return a.stoppedStarting(err)
		}
		return err
	}
	if a.follower != nil {
		// Listening starts before the load, so that no write committed
		// meanwhile goes unnoticed.
		if err := a.follower.Listen(ctx); err != nil {
			_ = lis.Close()
			if ctx.Err() != nil {
				return a.stoppedStarting(err)
			}
			return err
		}
		defer a.follower.Close()
	}
	stopOps, err := a.serveOps()
	if err != nil {
		_ = lis.Close()
		return err
	}
	defer stopOps()
	a.warnInsecure(lis.Addr())
	served := make(chan error, 1)
	go func() { served <- a.server.Serve(lis) }()
	a.log.Info("listening", zap.Stringer("addr", lis.Addr()))

	start := time.Now()
	n, err := a.load(ctx)
	if err != nil {
		a.server.Shutdown(a.cfg.ShutdownTimeout)
		if serr := <-served; serr != nil {
			a.log.Warn("serve", zap.Error(serr))
		}
		if ctx.Err() != nil {
			return a.stoppedStarting(err)
		}
		return err
	}
	loadTime := time.Since(start)
	// The load's garbage (rows read, tables outgrown) is several times
	// what it keeps: hand it back to the system before serving rather
	// than keep it as the process's resident size.
	debug.FreeOSMemory()
	// Pace the collector from what the load left live (the collection
	// above found it).
	defer gcpace.Start(uint64(a.cfg.GCHeadroomMB) << 20).Stop()
	a.server.SetReady()
	if a.follower != nil {
		a.follower.Follow(ctx)
	}
	// AuthZEN listens once every tenant is loaded: it has no health of its
	// own to say it is not ready yet.
	stopAuthZEN, err := a.serveAuthZEN()
	if err != nil {
		a.server.Shutdown(a.cfg.ShutdownTimeout)
		if serr := <-served; serr != nil {
			a.log.Warn("serve", zap.Error(serr))
		}
		return err
	}
	defer stopAuthZEN()
	a.log.Info("serving", zap.Int("tenants", n), zap.Duration("load_time", loadTime))
	reviewsDone := make(chan struct{})
	reviewCtx, stopReviews := context.WithCancel(ctx)
	go func() {
		defer close(reviewsDone)
		a.closeDueReviews(reviewCtx)
	}()
	defer func() {
		stopReviews()
		<-reviewsDone
	}()

	select {
	case <-ctx.Done():
		a.log.Info("shutting down")
	case err := <-served:
		// Serving failed (Accept did); stop serving the connections
		// already open before the store closes under them.
		a.server.Shutdown(a.cfg.ShutdownTimeout)
		return fmt.Errorf("serve: %w", err)
	}
	a.server.Shutdown(a.cfg.ShutdownTimeout)
	return <-served
}

// metricSources is what the metrics read when scraped: the engine's
// revisions, the follower's state and the decision log's.
func (a *App) metricSources() metrics.Sources {
	src := metrics.Sources{
		Revisions: a.engine.Revisions,
		Log: func() metrics.Log {
			st := a.audit.Status()
			return metrics.Log{QueueCapacity: st.QueueCapacity, Queued: st.Queued, Recorded: st.Recorded, Written: st.Written,
				DroppedAllowed: st.DroppedAllowed, DroppedDenied: st.DroppedDenied, WriteErrors: st.WriteErrors,
				SpoolEntries: st.SpoolEntries, SpoolBytes: st.SpoolBytes, SpoolCapacity: st.SpoolCapacity, SpoolErrors: st.SpoolErrors,
				Degraded: !st.DegradedSince.IsZero()}
		},
	}
	if a.follower != nil {
		src.Replica = func() (metrics.Replica, bool) {
			st := a.follower.Status()
			var lag time.Duration
			if !st.LastSync.IsZero() {
				lag = max(a.now().Sub(st.LastSync), 0)
			}
			return metrics.Replica{Following: st.Following, Lag: lag, TenantsBehind: st.TenantsBehind, Reconnects: st.Reconnects, Applied: st.Applied}, true
		}
	}
	return src
}

// MetricsAddr is the address the operator endpoint listens on, once Run
// has opened it; nil before, and when no metrics address is configured.
func (a *App) MetricsAddr() net.Addr {
	if p := a.opsAddr.Load(); p != nil {
		return *p
	}
	return nil
}

// HTTPAddr is the address the AuthZEN endpoint listens on, once Run has
// opened it; nil before, and when no HTTP address is configured.
func (a *App) HTTPAddr() net.Addr {
	if p := a.httpAddr.Load(); p != nil {
		return *p
	}
	return nil
}

// serveOps serves the operator endpoint (metrics, pprof) on
// cfg.MetricsAddr until stopped; nothing when it is empty.
func (a *App) serveOps() (stop func(), err error) {
	if a.metrics == nil {
		return func() {}, nil
	}
	return a.serveHTTP("operator endpoint: metrics and pprof", a.cfg.MetricsAddr, opshttp.New(a.metrics.Registry), &a.opsAddr)
}

// serveAuthZEN serves the AuthZEN API on cfg.HTTPAddr until stopped;
// nothing when it is empty.
func (a *App) serveAuthZEN() (stop func(), err error) {
	if a.authzen == nil {
		return func() {}, nil
	}
	return a.serveHTTP("AuthZEN endpoint", a.cfg.HTTPAddr, opshttp.NewServer(a.authzen, a.tls), &a.httpAddr)
}

// serveHTTP serves srv on addr, keeping the address it listens on in at,
// and returns how to stop it.
func (a *App) serveHTTP(what, addr string, srv *opshttp.Server, at *atomic.Pointer[net.Addr]) (stop func(), err error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	bound := lis.Addr()
	at.Store(&bound)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(lis); err != nil {
			a.log.Error(what, zap.Error(err))
		}
	}()
	a.log.Info(what, zap.Stringer("addr", bound))
	return func() {
		srv.Shutdown(a.cfg.ShutdownTimeout)
		<-done
	}, nil
}

// closeDueReviews closes the access reviews past their deadline every
// reviewEvery until ctx ends. Every replica does it; a review closes once.
func (a *App) closeDueReviews(ctx context.Context) {
	t := time.NewTicker(a.reviewEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		closed, err := a.governance.CloseDueReviews(ctx)
		for _, r := range closed {
			a.log.Info("access review closed at its deadline", zap.String("tenant", r.Tenant), zap.String("review", r.Review))
		}
		if err != nil && ctx.Err() == nil {
			a.log.Warn("close the access reviews past their deadline", zap.Error(err))
		}
	}
}

// bootstrapKey gives a server that authenticates callers from memory
// (--require-auth) its first platform key when it has none, printed once in
// the log: memory holds nothing from before the start, and no other way in
// exists. With a database the first key comes from authzd keys create.
func (a *App) bootstrapKey(ctx context.Context) error {
	if !a.cfg.AuthEnabled() || a.cfg.DatabaseURL != "" {
		return nil
	}
	if cs, err := a.store.Credentials(ctx, "", 1, true); err != nil || len(cs) > 0 {
		return err
	}
	id, key, hash, err := auth.NewKey()
	if err != nil {
		return err
	}
	c := store.Credential{ID: id, Name: "bootstrap", SecretHash: hash, Scopes: []string{string(auth.ScopePlatform)},
		CreatedAt: a.now(), CreatedBy: "authzd (memory store)"}
	if err := a.store.CreateCredential(ctx, c); err != nil {
		return err
	}
	a.log.Warn("serving from memory with authentication: a platform key for this process only, shown once", zap.String("key", key))
	return nil
}

// warnInsecure says loudly, at start, when callers are not authenticated.
func (a *App) warnInsecure(addr net.Addr) {
	if a.cfg.AuthEnabled() {
		a.log.Info("callers authenticate with API keys or client certificates", zap.Bool("tls", a.cfg.TLSCert != ""),
			zap.Bool("client_certificates", a.cfg.TLSClientCA != ""))
		return
	}
	a.log.Warn("AUTHENTICATION IS OFF: every caller that reaches this port may check, administer and audit every tenant "+
		"as any actor it names; serve with a database (or --require-auth) and API keys in production",
		zap.String("mode", Authentication(a.cfg)), zap.Stringer("addr", addr))
}

// stoppedStarting reports a start cut short by the end of Run's context: a
// stop asked for during start-up is a clean stop, not a failure.
func (a *App) stoppedStarting(err error) error {
	a.log.Info("stopped during start-up", zap.NamedError("cause", err))
	return nil
}

// closeDecisionLog flushes the decision log after the server has stopped
// (no decision is made any more) and before the store's pool closes.
func (a *App) closeDecisionLog() {
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.audit.Close(ctx); err != nil {
		a.log.Error("decision log", zap.Error(err))
	}
}

// closeSecurityLog writes the security events still queued, after the
// server stopped and before the pool closes.
func (a *App) closeSecurityLog() {
	a.authn.Close() // its last summary of refusals goes to the log
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.ShutdownTimeout)
	defer cancel()
	if err := a.events.Close(ctx); err != nil {
		a.log.Error("security log", zap.Error(err))
	}
}

// load seeds the demo tenant when configured and loads every tenant.
func (a *App) load(ctx context.Context) (int, error) {
	if a.cfg.ShouldSeedDemo() {
		if err := a.seedDemo(ctx); err != nil {
			return 0, err
		}
	}
	ids, err := a.store.TenantIDs(ctx)
	if err != nil {
		return 0, fmt.Errorf("list tenants: %w", err)
	}
	// Tenants are read and built by several workers at once, a batch of
	// them at a time: a batch's read waits on the database while another's
	// indexes are built, building uses every core, the database answers one
	// query per table for the batch, and the engine's tenant map is copied
	// once per batch.
	const batch = 32
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   atomic.Bool
	)
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	keep, _ := a.store.(interface{ Keep(*model.TenantState) })
	for range 2 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for {
				i := int(next.Add(batch)) - batch
				if i >= len(ids) || ctx.Err() != nil || failed.Load() {
					return
				}
				states, err := a.store.TenantStates(ctx, ids[i:min(i+batch, len(ids))])
				if err != nil {
					fail(fmt.Errorf("load tenants %s...: %w", ids[i], err))
					return
				}
				if err := a.engine.Preload(states); err != nil {
					fail(fmt.Errorf("load tenants: %w", err))
					return
				}
				// A large tenant's state is kept for its writes
				// (store/postgres).
				if keep != nil {
					for _, st := range states {
						keep.Keep(st)
					}
				}
			}
		})
	}
	wg.Wait()
	// The tables of every tenant go into one block once, now.
	a.engine.Pack()
	if firstErr != nil {
		return 0, firstErr
	}
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	return len(ids), nil
}

func (a *App) seedDemo(ctx context.Context) error {
	demo, err := a.bundle.TenantState(a.bundle.Demo, a.now())
	if err != nil {
		return fmt.Errorf("demo tenant: %w", err)
	}
	// Asked first: a create that fails on the tenant's key would be logged
	// by the database driver as an error, at every restart.
	if _, err := a.store.TenantInfo(ctx, demo.ID); err == nil {
		return nil // there from an earlier start (or deleted, and not to be made again)
	} else if !errors.Is(err, model.ErrTenantNotFound) {
		return fmt.Errorf("seed demo tenant: %w", err)
	}
	_, err = a.store.CreateTenant(ctx, store.Write{Tenant: demo.ID, Actor: "system", Reason: "seed the demo tenant"}, demo)
	var conflict *model.ConflictError
	if errors.As(err, &conflict) {
		return nil // already there from an earlier start
	}
	if err != nil {
		return fmt.Errorf("seed demo tenant: %w", err)
	}
	a.log.Info("seeded demo tenant", zap.String("tenant", demo.ID))
	return nil
}
