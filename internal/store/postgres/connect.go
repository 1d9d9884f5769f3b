package postgres

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/tracelog"
	"go.uber.org/zap"
)

// Connect opens a connection pool to the database at url (a postgres:// URL
// or a keyword/value string) and checks that the database answers. pgx's
// own logs go to log at warn level and above, which in practice means
// failed queries. The caller owns the pool and closes it.
func Connect(ctx context.Context, url string, log *zap.Logger) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse database url: %w", err)
	}
	cfg.ConnConfig.Tracer = NewTracer(log, tracelog.LogLevelWarn)
	DefaultConnectTimeout(cfg.ConnConfig)
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open database pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to database: %w", err)
	}
	return pool, nil
}

// connectTimeout bounds a connection attempt when the URL sets no
// connect_timeout: a database whose packets are dropped, not refused, is
// then UNAVAILABLE after it, not after the operating system gives up.
const connectTimeout = 5 * time.Second

// DefaultConnectTimeout sets the connection timeout of cfg unless its URL
// set one.
func DefaultConnectTimeout(cfg *pgx.ConnConfig) {
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
}

// NewTracer returns a pgx tracer that logs through log (named "pgx") every
// pgx event at level or more severe. A nil log discards everything.
func NewTracer(log *zap.Logger, level tracelog.LogLevel) *tracelog.TraceLog {
	if log == nil {
		log = zap.NewNop()
	}
	return &tracelog.TraceLog{Logger: zapLogger{log.Named("pgx")}, LogLevel: level}
}

// zapLogger adapts a *zap.Logger to pgx's tracelog.Logger.
type zapLogger struct{ log *zap.Logger }

func (l zapLogger) Log(_ context.Context, level tracelog.LogLevel, msg string, data map[string]any) {
	fields := make([]zap.Field, 0, len(data))
	for _, k := range slices.Sorted(maps.Keys(data)) {
		fields = append(fields, zap.Any(k, data[k]))
	}
	switch level {
	case tracelog.LogLevelTrace, tracelog.LogLevelDebug:
		l.log.Debug(msg, fields...)
	case tracelog.LogLevelInfo:
		l.log.Info(msg, fields...)
	case tracelog.LogLevelWarn:
		l.log.Warn(msg, fields...)
	default:
		l.log.Error(msg, fields...)
	}
}
