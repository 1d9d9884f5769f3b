package audit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// NewPostgresSecurityLog returns a security event log kept in PostgreSQL
// (the table of migration 0005_security_events). The decision log's
// housekeeping deletes the events older than its retention. The pool stays
// the caller's; close it after the log.
func NewPostgresSecurityLog(pool *pgxpool.Pool, opts SecurityOptions) *SecurityLog {
	opts.defaults()
	return newSecurityLog(&securityPostgres{pool: pool}, opts)
}

// securityLockKey serialises the writes of security events across
// replicas (pg_advisory_xact_lock; "crmsecev" in ASCII).
const securityLockKey int64 = 0x63726d7365636576

var securityCopyColumns = []string{
	"at", "kind", "tenant_id", "credential", "actor", "method", "reason", "message", "request_id", "peer", "count",
}

const securityColumns = "id, at, kind, tenant_id, credential, actor, method, reason, message, request_id, peer, count"

type securityPostgres struct {
	pool *pgxpool.Pool
}

var _ securityBackend = (*securityPostgres)(nil)

func (p *securityPostgres) kind() string { return storagePostgres }

// write inserts a batch in one transaction, under an advisory lock taken
// before the ids are drawn: every writer's ids are then drawn and
// committed in the same order, so an id listed is never followed by a
// smaller one committing later (listings page by id). The identity keeps
// PostgreSQL's default cache of one id for the same reason.
//
// A failed attempt may have committed all the same (the connection broke
// while the commit was acknowledged): the retry asks PostgreSQL for the
// outcome of the attempt's transaction, and writes again only if it did
// not commit.
func (p *securityPostgres) write(ctx context.Context, batch []SecurityEvent, a *writeAttempt) error {
	if a.xid != "" {
		var status *string
		if err := p.pool.QueryRow(ctx, "SELECT pg_xact_status($1::text::xid8)", a.xid).Scan(&status); err != nil {
			return pgerr.Wrap(fmt.Errorf("read the outcome of the last security event write: %w", err))
		}
		switch {
		case status != nil && *status == "committed":
			return nil
		case status != nil && *status == "in progress":
			return errors.New("the last security event write has not ended yet")
		}
		// Aborted, or (NULL) too old to tell, which a retry within minutes
		// never is.
		a.xid = ""
	}
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text FROM pg_advisory_xact_lock($1)", securityLockKey).Scan(&a.xid); err != nil {
			return fmt.Errorf("lock security events: %w", err)
		}
		src := pgx.CopyFromSlice(len(batch), func(i int) ([]any, error) {
			ev := &batch[i]
			return []any{ev.Time, ev.Kind, ev.Tenant, ev.Credential, ev.Actor, ev.Method, ev.Reason, ev.Message, ev.RequestID, ev.Peer, ev.Count}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"security_events"}, securityCopyColumns, src); err != nil {
			return fmt.Errorf("copy security events: %w", err)
		}
		return nil
	})
	return pgerr.Wrap(err)
}

func (p *securityPostgres) scan(ctx context.Context, tenants []string, after int64, desc bool, limit int) ([]SecurityEvent, error) {
	var w where
	order := " ORDER BY id"
	switch {
	case desc:
		order = " ORDER BY id DESC"
		if after != 0 {
			w.add("id < ?", after)
		}
	default:
		w.add("id > ?", after)
	}
	if tenants != nil {
		w.add("tenant_id = ANY(?)", tenants)
	}
	sql := "SELECT " + securityColumns + " FROM security_events"
	if len(w.conds) > 0 {
		sql += w.String()
	}
	w.args = append(w.args, limit)
	sql += order + " LIMIT $" + strconv.Itoa(len(w.args))
	rows, _ := p.pool.Query(ctx, sql, w.args...)
	evs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (SecurityEvent, error) {
		var ev SecurityEvent
		err := row.Scan(&ev.ID, &ev.Time, &ev.Kind, &ev.Tenant, &ev.Credential, &ev.Actor, &ev.Method, &ev.Reason,
			&ev.Message, &ev.RequestID, &ev.Peer, &ev.Count)
		ev.Time = ev.Time.UTC()
		return ev, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read security events: %w", err))
	}
	return evs, nil
}

// retainSecurityEvents deletes the security events from before the
// decision log's retention (the days before today less the retention, as
// for decision partitions). It is part of the decision log's housekeeping.
func (p *pgBackend) retainSecurityEvents(ctx context.Context, now time.Time) error {
	if p.retention <= 0 {
		return nil
	}
	if _, err := p.pool.Exec(ctx, "DELETE FROM security_events WHERE at < $1", day(now).AddDate(0, 0, -p.retention)); err != nil {
		return fmt.Errorf("delete security events past retention: %w", err)
	}
	return nil
}
