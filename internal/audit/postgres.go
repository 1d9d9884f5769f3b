package audit

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// NewPostgres returns a decision log kept in PostgreSQL (the tables of
// migration 0003_audit): batches written with COPY, daily partitions
// created ahead and dropped after opts.RetentionDays. The change log is
// read from the same database. The pool stays the caller's; close it after
// the log. An error that means the database could not be reached or the
// connection to it was lost also matches store.ErrUnavailable.
func NewPostgres(pool *pgxpool.Pool, opts Options) (*Log, error) {
	opts.defaults()
	opts.defaults()
	return newLog(&pgBackend{pool: pool, retention: opts.RetentionDays, keys: opts.Keys}, opts)
}

// SQLSTATEs the log classifies.
const (
	sqlstateCheckViolation = "23514" // also: no partition holds the row
)

// auditLockKey serialises partition maintenance across replicas
// (pg_advisory_xact_lock; "crmaudit" in ASCII).
const auditLockKey int64 = 0x63726d6175646974

// partitionPrefix names the daily partitions: decision_batches_YYYYMMDD.
const partitionPrefix = "decision_batches_"

// daysAhead is how many days of partitions exist ahead of today.
const daysAhead = 2

var batchColumns = []string{
	"logged_at", "chain_id", "batch_first", "tenant_id", "first_pos", "last_pos", "min_seq", "max_seq",
	"min_at", "max_at", "entries", "last_hash", "data", "key_id", "tenants",
}

type pgBackend struct {
	pool      *pgxpool.Pool
	retention int
	keys      *chain.Keyring
}

// registryLockKey serialises the registration of decision chains
// (pg_advisory_xact_lock; "crmchain" in ASCII).
const registryLockKey int64 = 0x63726d636861696e

var _ backend = (*pgBackend)(nil)

func (p *pgBackend) kind() string { return storagePostgres }

// startChain registers a chain after the last one registered: its
// registration is sealed together with that one's seal, and its empty head
// is sealed too.
func (p *pgBackend) startChain(ctx context.Context, chainID string, at time.Time) error {
	at = at.UTC().Truncate(time.Microsecond)
	key := p.keys.Active()
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", registryLockKey); err != nil {
			return err
		}
		var (
			seq  int64
			prev []byte
		)
		err := tx.QueryRow(ctx, "SELECT reg_seq, reg_mac FROM audit_chains ORDER BY reg_seq DESC LIMIT 1").Scan(&seq, &prev)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		seq++
		_, err = tx.Exec(ctx, `INSERT INTO audit_chains (chain_id, started_at, reg_seq, reg_key, reg_mac, head_key, head_mac)
			VALUES ($1, $2, $3, $4, $5, $4, $6)`, chainID, at, seq, key.ID,
			key.MAC(chain.ChainRegistration(chainID, at, seq, prev)), key.MAC(chain.ChainHead(chainID, 0, nil, 0)))
		return err
	})
	if err != nil {
		return pgerr.Wrap(fmt.Errorf("register decision log chain %s: %w", chainID, err))
	}
	return nil
}

func (p *pgBackend) identity(ctx context.Context) (string, error) {
	var id string
	err := p.pool.QueryRow(ctx, "SELECT system_identifier::text || '/' || current_database() FROM pg_control_system()").Scan(&id)
	if err != nil {
		return "", pgerr.Wrap(fmt.Errorf("identify the database: %w", err))
	}
	return id, nil
}

func (p *pgBackend) gone(ctx context.Context, identity string) (bool, error) {
	ours, err := p.identity(ctx)
	if err != nil {
		return false, err
	}
	sys, _, _ := strings.Cut(ours, "/")
	theirSys, name, ok := strings.Cut(identity, "/")
	if !ok || theirSys != sys {
		return false, nil // another server's: not for this one to judge
	}
	var exists bool
	if err := p.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return false, pgerr.Wrap(fmt.Errorf("look the database up: %w", err))
	}
	return !exists, nil
}

func (p *pgBackend) readChain(ctx context.Context, chainID string) (head, bool, error) {
	var (
		h      head
		seq    int64
		logged *time.Time
	)
	err := p.pool.QueryRow(ctx, "SELECT last_pos, last_hash, last_logged_at, last_seq FROM audit_chains WHERE chain_id = $1", chainID).
		Scan(&h.pos, &h.hash, &logged, &seq)
	if errors.Is(err, pgx.ErrNoRows) {
		return head{}, false, nil
	}
	if err != nil {
		return head{}, false, pgerr.Wrap(fmt.Errorf("read decision log chain %s: %w", chainID, err))
	}
	if logged != nil {
		h.loggedAt = *logged
	}
	h.seq = uint64(seq)
	return h, true, nil
}

// tenantRow is one row of decision_batches: a tenant's entries of a batch,
// or (tenant "") the batch's shared row, holding the entries of the
// tenants listed in tenants.
type tenantRow struct {
	tenant         string
	tenants        []string // the shared row's tenants, sorted; nil for a tenant's own row
	first, last    int64
	minSeq, maxSeq uint64
	minAt, maxAt   time.Time
	n              int
	lastHash       []byte
	data           []byte
}

// ownRowMin is how many entries a tenant has in a batch to get a row of its
// own; the entries of tenants with fewer share one row. A batch is then at
// most its size / ownRowMin + 1 rows however many tenants it holds, while a
// busy tenant's entries are still read without the others'.
const ownRowMin = 4

// batchRows groups a batch into rows (its busy tenants' own rows and one
// shared row), keeping position order. Each entry is stored as the length
// (uvarint) of its canonical encoding less the prefix the whole batch
// shares (the row's chain_id and logged_at give it back), that part of the
// encoding, and the entry's hash. The rows' data reuses scratch, which it
// returns grown.
func batchRows(batch []item, prefixLen int, scratch *[][]byte) []*tenantRow {
	count := map[string]int{}
	for i := range batch {
		count[batch[i].d.Tenant]++
	}
	byTenant := make(map[string]*tenantRow, len(count))
	var rows []*tenantRow
	var shared *tenantRow
	size := map[*tenantRow]int{}
	rowOf := func(tenant string) *tenantRow {
		if r := byTenant[tenant]; r != nil {
			return r
		}
		r := shared
		if count[tenant] >= ownRowMin {
			r = &tenantRow{tenant: tenant}
			rows = append(rows, r)
		} else if r == nil {
			r = &tenantRow{tenants: []string{}}
			shared = r
			rows = append(rows, r)
		}
		if r.tenants != nil {
			r.tenants = append(r.tenants, tenant)
		}
		byTenant[tenant] = r
		return r
	}
	for i := range batch {
		d := &batch[i].d
		r := rowOf(d.Tenant)
		if r.n == 0 {
			r.first, r.minSeq, r.maxSeq, r.minAt, r.maxAt = d.Position, d.Seq, d.Seq, d.Time, d.Time
		}
		r.last, r.lastHash = d.Position, d.Hash
		r.minSeq, r.maxSeq = min(r.minSeq, d.Seq), max(r.maxSeq, d.Seq)
		r.minAt, r.maxAt = minTime(r.minAt, d.Time), maxTime(r.maxAt, d.Time)
		r.n++
		size[r] += binary.MaxVarintLen64 + len(batch[i].canon) - prefixLen + len(d.Hash)
	}
	if shared != nil {
		slices.Sort(shared.tenants)
	}
	for i, r := range rows {
		if i == len(*scratch) {
			*scratch = append(*scratch, nil)
		}
		if cap((*scratch)[i]) < size[r] {
			(*scratch)[i] = make([]byte, 0, size[r])
		}
		r.data = (*scratch)[i][:0]
	}
	for i := range batch {
		r := byTenant[batch[i].d.Tenant]
		own := batch[i].canon[prefixLen:]
		r.data = binary.AppendUvarint(r.data, uint64(len(own)))
		r.data = append(r.data, own...)
		r.data = append(r.data, batch[i].d.Hash...)
	}
	if len(*scratch) > 64 {
		*scratch = (*scratch)[:64]
	}
	return rows
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// decodeBatch calls fn with each entry of a row's data, in position order,
// until fn returns false. chainID and loggedAt are the row's.
func decodeBatch(chainID string, loggedAt time.Time, data []byte, txid uint64, fn func(d *Decision) bool) error {
	var e chain.Encoder
	encodePrefix(&e, chainID, loggedAt.UTC())
	canon := e.Bytes()
	prefixLen := len(canon)
	for len(data) > 0 {
		n, k := binary.Uvarint(data)
		if k <= 0 || n > uint64(len(data)-k) || uint64(len(data)-k)-n < chain.HashSize {
			return fmt.Errorf("decision log row: %w", chain.ErrMalformed)
		}
		canon = append(canon[:prefixLen], data[k:k+int(n)]...)
		hash := data[k+int(n) : k+int(n)+chain.HashSize]
		data = data[k+int(n)+chain.HashSize:]
		d, err := decodeDecision(canon)
		if err != nil {
			return fmt.Errorf("decision log row: %w", err)
		}
		d.Hash = hash
		d.key = [2]uint64{txid, uint64(d.Position)}
		if !fn(&d) {
			return nil
		}
	}
	return nil
}

func (p *pgBackend) write(ctx context.Context, chainID string, batch []item, h head, retry bool, scratch *[][]byte) (err error) {
	ctx, span := tracer.Start(ctx, "decisionlog.write", trace.WithAttributes(
		attribute.String("crmauthz.chain", chainID), attribute.Int("crmauthz.decisions", len(batch)), attribute.Bool("crmauthz.retry", retry)))
	defer func() { endSpan(span, err) }()
	return p.writeBatch(ctx, chainID, batch, h, retry, scratch)
}

// writeBatch is write, inside its span.
func (p *pgBackend) writeBatch(ctx context.Context, chainID string, batch []item, h head, retry bool, scratch *[][]byte) error {
	if retry {
		var last int64
		if err := p.pool.QueryRow(ctx, "SELECT last_pos FROM audit_chains WHERE chain_id = $1", chainID).Scan(&last); err != nil {
			return pgerr.Wrap(fmt.Errorf("read decision log chain head: %w", err))
		}
		if last >= h.pos {
			return nil // the failed attempt committed after all
		}
	}
	var e chain.Encoder
	encodePrefix(&e, chainID, h.loggedAt)
	rows := batchRows(batch, len(e.Bytes()), scratch)
	err := p.copy(ctx, chainID, batch[0].d.Position, rows, h)
	if missingPartition(err) {
		if err := p.ensurePartitions(ctx, h.loggedAt); err != nil {
			return pgerr.Wrap(err)
		}
		err = p.copy(ctx, chainID, batch[0].d.Position, rows, h)
	}
	return pgerr.Wrap(err)
}

// missingPartition reports the error of a row no partition holds: a check
// violation without a constraint.
func missingPartition(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == sqlstateCheckViolation && pgErr.ConstraintName == ""
}

// copy writes the rows of one batch and moves the chain's head, in one
// transaction. The head moves only from where the batch starts, so two
// writers can never extend one chain.
func (p *pgBackend) copy(ctx context.Context, chainID string, batchFirst int64, rows []*tenantRow, h head) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		src := pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			r := rows[i]
			return []any{h.loggedAt, chainID, batchFirst, r.tenant, r.first, r.last, int64(r.minSeq), int64(r.maxSeq),
				r.minAt, r.maxAt, r.n, r.lastHash, r.data, h.key.ID, r.tenants}, nil
		})
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{"decision_batches"}, batchColumns, src); err != nil {
			return fmt.Errorf("copy decisions: %w", err)
		}
		tag, err := tx.Exec(ctx, `UPDATE audit_chains SET last_pos = $2, last_hash = $3, last_logged_at = $4, last_seq = $6,
				head_key = $7, head_mac = $8
			WHERE chain_id = $1 AND last_pos = $5`, chainID, h.pos, h.hash, h.loggedAt, batchFirst-1, int64(h.seq),
			h.key.ID, h.key.MAC(chain.ChainHead(chainID, h.pos, h.hash, h.seq)))
		if err != nil {
			return fmt.Errorf("update decision log chain head: %w", err)
		}
		if tag.RowsAffected() != 1 {
			return fmt.Errorf("decision log chain %s: its head is not at position %d", chainID, batchFirst-1)
		}
		return nil
	})
}

// day returns the start of t's UTC day.
func day(t time.Time) time.Time {
	y, m, d := t.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

func partitionName(d time.Time) string { return partitionPrefix + d.Format("20060102") }

// createPartition creates the partition of day d unless it exists.
func createPartition(ctx context.Context, tx pgx.Tx, d time.Time) error {
	sql := fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s PARTITION OF decision_batches FOR VALUES FROM ('%s') TO ('%s')",
		pgx.Identifier{partitionName(d)}.Sanitize(), d.Format(time.RFC3339), d.AddDate(0, 0, 1).Format(time.RFC3339))
	if _, err := tx.Exec(ctx, sql); err != nil {
		return fmt.Errorf("create decision log partition %s: %w", partitionName(d), err)
	}
	return nil
}

// ensurePartitions creates the partition holding t.
func (p *pgBackend) ensurePartitions(ctx context.Context, t time.Time) error {
	return pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", auditLockKey); err != nil {
			return fmt.Errorf("lock decision log partitions: %w", err)
		}
		return createPartition(ctx, tx, day(t))
	})
}

// maintain keeps the decision partitions (maintainPartitions) and deletes
// the security events past the same retention. Each part runs whether the
// other failed or not.
func (p *pgBackend) maintain(ctx context.Context, now time.Time) error {
	return errors.Join(p.maintainPartitions(ctx, now), p.retainSecurityEvents(ctx, now))
}

// maintainPartitions creates the partitions from yesterday to daysAhead
// days ahead and drops every partition whose whole day is older than the
// retention, first recording each chain's last link in it as an anchor.
// Replicas run it one at a time under an advisory lock. Dropping a
// partition locks the whole table, and writers queue behind the lock while
// it waits for readers (a long VerifyLog): it waits at most a second, and
// otherwise fails and is retried at the next run.
func (p *pgBackend) maintainPartitions(ctx context.Context, now time.Time) error {
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", auditLockKey); err != nil {
			return fmt.Errorf("lock decision log partitions: %w", err)
		}
		if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '1s'"); err != nil {
			return fmt.Errorf("decision log maintenance: %w", err)
		}
		today := day(now)
		for i := -1; i <= daysAhead; i++ {
			if err := createPartition(ctx, tx, today.AddDate(0, 0, i)); err != nil {
				return err
			}
		}
		if p.retention <= 0 {
			return nil
		}
		cutoff := today.AddDate(0, 0, -p.retention)
		parts, err := partitions(ctx, tx)
		if err != nil {
			return err
		}
		locked := false
		for _, d := range parts {
			end := d.AddDate(0, 0, 1)
			if end.After(cutoff) {
				continue
			}
			// Lock out writers before reading the anchors, as the drop
			// does (the parent first): a batch still being written into
			// the partition would otherwise commit after its anchor was
			// read, and be dropped unanchored.
			if !locked {
				if _, err := tx.Exec(ctx, "LOCK TABLE ONLY decision_batches IN ACCESS EXCLUSIVE MODE"); err != nil {
					return fmt.Errorf("lock decision log for retention: %w", err)
				}
				locked = true
			}
			name := pgx.Identifier{partitionName(d)}.Sanitize()
			if err := p.anchor(ctx, tx, name, end, now); err != nil {
				return fmt.Errorf("anchor decision log partition %s: %w", partitionName(d), err)
			}
			if _, err := tx.Exec(ctx, "DROP TABLE "+name); err != nil {
				return fmt.Errorf("drop decision log partition %s: %w", partitionName(d), err)
			}
		}
		return nil
	})
	return pgerr.Wrap(err)
}

// anchor records, sealed, each chain's last link in the partition table
// about to be dropped.
func (p *pgBackend) anchor(ctx context.Context, tx pgx.Tx, table string, keptFrom, now time.Time) error {
	rows, _ := tx.Query(ctx, `SELECT DISTINCT ON (chain_id) chain_id, last_pos, last_hash FROM `+table+`
		ORDER BY chain_id, last_pos DESC`)
	links, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (chain.Head, error) {
		var h chain.Head
		err := row.Scan(&h.Chain, &h.Position, &h.Hash)
		return h, err
	})
	if err != nil {
		return err
	}
	key := p.keys.Active()
	b := &pgx.Batch{}
	for _, h := range links {
		b.Queue(`INSERT INTO audit_anchors (chain_id, pos, hash, kept_from, dropped_at, key_id, mac)
			VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING`,
			h.Chain, h.Position, h.Hash, keptFrom, now, key.ID, key.MAC(chain.Anchor(h.Chain, h.Position, h.Hash)))
	}
	return tx.SendBatch(ctx, b).Close()
}

// partitions lists the days of the existing partitions, oldest first.
func partitions(ctx context.Context, tx pgx.Tx) ([]time.Time, error) {
	rows, _ := tx.Query(ctx, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'decision_batches'::regclass`)
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("list decision log partitions: %w", err)
	}
	var days []time.Time
	for _, n := range names {
		d, err := time.Parse("20060102", strings.TrimPrefix(n, partitionPrefix))
		if err == nil && strings.HasPrefix(n, partitionPrefix) {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, func(a, b time.Time) int { return a.Compare(b) })
	return days, nil
}

// Partitions lists the days of the decision log's partitions (PostgreSQL
// only), oldest first.
func (l *Log) Partitions(ctx context.Context) ([]time.Time, error) {
	p, ok := l.be.(*pgBackend)
	if !ok {
		return nil, nil
	}
	var days []time.Time
	err := pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		var err error
		days, err = partitions(ctx, tx)
		return err
	})
	return days, pgerr.Wrap(err)
}

// horizonSQL computes the listing horizon: the oldest transaction that may
// still write decisions, or the snapshot's xmax when none may. Every
// transaction below it has ended, and every later one gets a larger id, so
// listing below it never skips an entry that commits later.
//
// The snapshot's in-progress transactions count unless pg_stat_activity
// shows them running in another database (they cannot write this one's
// decisions), so a long transaction elsewhere on the cluster does not hold
// listings back. Where the service's role may not see other users' sessions
// (pg_read_all_stats), their transactions count: listings then lag behind
// them, never skip.
const horizonSQL = `WITH q AS MATERIALIZED (SELECT pg_current_snapshot() AS s),
	elsewhere AS (SELECT backend_xid::text::numeric AS x FROM pg_stat_activity
		WHERE backend_xid IS NOT NULL AND datname IS DISTINCT FROM current_database())
	SELECT coalesce(
		(SELECT min(x::text::numeric) FROM q, pg_snapshot_xip(q.s) AS x
			WHERE x::text::numeric % 4294967296 NOT IN (SELECT x FROM elsewhere)),
		(SELECT pg_snapshot_xmax(s)::text::numeric FROM q))::text`

func (p *pgBackend) horizon(ctx context.Context) (uint64, error) {
	var s string
	if err := p.pool.QueryRow(ctx, horizonSQL).Scan(&s); err != nil {
		return 0, pgerr.Wrap(fmt.Errorf("read transaction horizon: %w", err))
	}
	return strconv.ParseUint(s, 10, 64)
}

// where builds a parameterised WHERE clause.
type where struct {
	conds []string
	args  []any
}

// add appends cond with each "?" replaced by the next parameter.
func (w *where) add(cond string, args ...any) {
	for _, a := range args {
		w.args = append(w.args, a)
		cond = strings.Replace(cond, "?", "$"+strconv.Itoa(len(w.args)), 1)
	}
	w.conds = append(w.conds, cond)
}

func (w *where) String() string { return " WHERE " + strings.Join(w.conds, " AND ") }

// rowsPerQuery is how many rows one listing query reads at a time, and
// rowsPerCall how many one call reads at most: a filter that matches little
// of a large log returns a short page and a token rather than scanning on.
var (
	rowsPerQuery = 64
	rowsPerCall  = 4096
)

// list reads the tenant's rows in listing order and decodes them, keeping
// the entries q selects, until it has limit of them.
func (p *pgBackend) list(ctx context.Context, q *Query, c cursor, horizon uint64, limit int) ([]Decision, [2]uint64, error) {
	var out []Decision
	after := c.key
	for scanned := 0; ; scanned += rowsPerQuery {
		if scanned >= rowsPerCall {
			return out, after, nil
		}
		var w where
		w.add("txid < ?::text::xid8", strconv.FormatUint(horizon, 10))
		if !q.From.IsZero() {
			// A batch is logged after its decisions: logged_at >= max_at
			// prunes the partitions before the range.
			w.add("logged_at >= ?", ceilMicro(q.From))
			w.add("max_at >= ?", ceilMicro(q.From))
		}
		if !q.To.IsZero() {
			w.add("min_at < ?", ceilMicro(q.To))
		}
		order := " ORDER BY txid"
		if c.desc {
			order = " ORDER BY txid DESC"
		}
		if after != [2]uint64{} {
			tx := strconv.FormatUint(after[0], 10)
			if c.desc {
				w.add("txid <= ?::text::xid8", tx)
				w.add("(txid < ?::text::xid8 OR first_pos < ?)", tx, int64(after[1]))
			} else {
				w.add("txid >= ?::text::xid8", tx)
				w.add("(txid > ?::text::xid8 OR last_pos > ?)", tx, int64(after[1]))
			}
		}
		w.args = append(w.args, q.Tenant, rowsPerQuery)
		rows, err := p.rows(ctx, p.pool, ofTenant(w.String(), len(w.args)-1, order, len(w.args)), w.args...)
		if err != nil {
			return nil, [2]uint64{}, err
		}
		for _, r := range rows {
			ds, err := r.decode()
			if err != nil {
				return nil, [2]uint64{}, err
			}
			if c.desc {
				slices.Reverse(ds)
			}
			for i := range ds {
				d := &ds[i]
				if after != [2]uint64{} && (!c.desc && !keyLess(after, d.key) || c.desc && !keyLess(d.key, after)) {
					continue
				}
				if q.matches(d) {
					out = append(out, *d)
					if len(out) == limit {
						return out, [2]uint64{}, nil
					}
				}
			}
			after = [2]uint64{r.txid, 1<<63 - 1}
			if c.desc {
				after[1] = 0
			}
		}
		if len(rows) < rowsPerQuery {
			return out, [2]uint64{}, nil
		}
	}
}

// ceilMicro rounds t up to a microsecond. PostgreSQL keeps microseconds
// and pgx truncates a parameter's nanoseconds, so a bound t compares stored
// times as ceilMicro(t) does: x >= t and x < t hold for a stored x exactly
// when x >= ceilMicro(t) and x < ceilMicro(t) do.
func ceilMicro(t time.Time) time.Time {
	u := t.Truncate(time.Microsecond)
	if u.Before(t) {
		u = u.Add(time.Microsecond)
	}
	return u
}

func keyLess(a, b [2]uint64) bool { return a[0] < b[0] || a[0] == b[0] && a[1] < b[1] }

// batchRow is a row read back: its transaction, chain, time and entries.
type batchRow struct {
	txid     uint64
	chain    string
	loggedAt time.Time
	data     []byte
}

// batchRowColumns are the columns rows reads. The transaction id is read
// as text under another name: an output column named txid would be what
// "ORDER BY txid" sorts by, in text order, which puts 100000 before 99999
// and made pages skip the batches below a power of ten.
const batchRowColumns = "txid::text AS txid_text, chain_id, logged_at, data"

func (r batchRow) decode() ([]Decision, error) {
	var ds []Decision
	err := decodeBatch(r.chain, r.loggedAt, r.data, r.txid, func(d *Decision) bool {
		ds = append(ds, *d)
		return true
	})
	return ds, err
}

// rows runs a query selecting batchRowColumns.
func (p *pgBackend) rows(ctx context.Context, db querier, sql string, args ...any) ([]batchRow, error) {
	rows, _ := db.Query(ctx, sql, args...)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (batchRow, error) {
		var (
			r  batchRow
			tx string
		)
		if err := row.Scan(&tx, &r.chain, &r.loggedAt, &r.data); err != nil {
			return r, err
		}
		var err error
		r.txid, err = strconv.ParseUint(tx, 10, 64)
		return r, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read decisions: %w", err))
	}
	return out, nil
}

// ofTenant returns the query of the first limit rows, in order, that may
// hold a tenant's entries and meet where (" WHERE ..."): its own rows and
// the shared rows listing it; the tenant is parameter $tenant and limit
// parameter $limit. The two kinds are read apart and merged: one
// condition with OR made PostgreSQL read and sort every row of a busy
// tenant for each page. Its own rows come in order from their index; the
// shared rows listing it come from the GIN index, unordered, and are
// sorted, or in order through (tenant_id, txid) with a filter, as the
// planner judges cheaper: a page of a tenant that shared many batches
// costs in proportion to those batches (after the page token, within the
// time range given). The entries read from a shared row are the other
// tenants' too, and are filtered by tenant.
func ofTenant(where string, tenant int, order string, limit int) string {
	t, l := "$"+strconv.Itoa(tenant), "$"+strconv.Itoa(limit)
	return "SELECT " + batchRowColumns + " FROM (" +
		"(SELECT * FROM decision_batches" + where + " AND tenant_id = " + t + order + " LIMIT " + l + ") UNION ALL " +
		"(SELECT * FROM decision_batches" + where + " AND tenant_id = '' AND tenants @> ARRAY[" + t + "::text]" + order + " LIMIT " + l + ")" +
		") b" + order + " LIMIT " + l
}

// querier is a pool or a transaction.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// get finds an entry by its id among the tenant's rows whose sequence range
// holds it. Rows are ordered by their highest sequence number; ranges
// overlap little (ids are issued nearly in the order the batcher takes
// entries), but a row can span a wide range: a call that took its id and
// waited (for room, for the CPU) is written with much later ids.
func (p *pgBackend) get(ctx context.Context, tenant, chainID string, seq uint64) (Decision, bool, error) {
	rows, err := p.rows(ctx, p.pool, ofTenant(" WHERE chain_id = $1 AND max_seq >= $3 AND min_seq <= $3", 2, " ORDER BY max_seq", 4),
		chainID, tenant, int64(seq), 64)
	if err != nil {
		return Decision{}, false, err
	}
	for _, r := range rows {
		var found *Decision
		err := decodeBatch(r.chain, r.loggedAt, r.data, r.txid, func(d *Decision) bool {
			if d.Seq == seq && d.Tenant == tenant {
				found = d
			}
			return found == nil
		})
		if err != nil {
			return Decision{}, false, err
		}
		if found != nil {
			return *found, true, nil
		}
	}
	return Decision{}, false, nil
}

func (p *pgBackend) used(ctx context.Context, tenant string, since time.Time) (map[[2]string]time.Time, error) {
	rows, err := p.pool.Query(ctx, `SELECT chain_id, logged_at, data FROM decision_batches
		WHERE (tenant_id = $1 OR tenant_id = '' AND tenants @> ARRAY[$1::text]) AND logged_at >= $2 AND max_at >= $2`, tenant, since)
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read used permissions of tenant %q: %w", tenant, err))
	}
	defer rows.Close()
	out := map[[2]string]time.Time{}
	for rows.Next() {
		var (
			chainID  string
			loggedAt time.Time
			data     []byte
		)
		if err := rows.Scan(&chainID, &loggedAt, &data); err != nil {
			return nil, pgerr.Wrap(fmt.Errorf("read used permissions of tenant %q: %w", tenant, err))
		}
		err := decodeBatch(chainID, loggedAt, data, 0, func(d *Decision) bool {
			if d.Tenant == tenant && d.Allowed && !d.Time.Before(since) {
				latest(out, [2]string{d.Subject, d.Permission}, d.Time)
			}
			return true
		})
		if err != nil {
			return nil, err
		}
	}
	if err := rows.Err(); err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read used permissions of tenant %q: %w", tenant, err))
	}
	return out, nil
}

func (p *pgBackend) evidenceSince(ctx context.Context) (time.Time, error) {
	var started, kept *time.Time
	if err := p.pool.QueryRow(ctx, `SELECT (SELECT min(started_at) FROM audit_chains), (SELECT max(kept_from) FROM audit_anchors)`).Scan(&started, &kept); err != nil {
		return time.Time{}, pgerr.Wrap(fmt.Errorf("read decision log coverage: %w", err))
	}
	var t time.Time
	if started != nil {
		t = started.UTC()
	}
	if kept != nil && kept.After(t) {
		t = kept.UTC()
	}
	return t, nil
}

func (p *pgBackend) changes(ctx context.Context, q *ChangeQuery, after int64, limit int) ([]Change, error) {
	var w where
	w.add("tenant_id = ?", q.Tenant)
	w.add("revision > ?", after)
	if q.Actor != "" {
		w.add("actor = ?", q.Actor)
	}
	if q.Action != "" {
		w.add("action = ?", q.Action)
	}
	if q.TargetPrefix != "" {
		w.add("(starts_with(target, ?) OR EXISTS (SELECT 1 FROM unnest(related) AS r WHERE starts_with(r, ?)))", q.TargetPrefix, q.TargetPrefix)
	}
	if !q.From.IsZero() {
		w.add("at >= ?", ceilMicro(q.From))
	}
	if !q.To.IsZero() {
		w.add("at < ?", ceilMicro(q.To))
	}
	w.args = append(w.args, limit)
	sql := "SELECT revision, at, actor, credential, reason, action, target, before, after, hash, key_id, related FROM change_log" + w.String() +
		" ORDER BY revision LIMIT $" + strconv.Itoa(len(w.args))
	cs, err := readChanges(ctx, p.pool, q.Tenant, sql, w.args...)
	if err != nil {
		return nil, err
	}
	if len(cs) == 0 && after == 0 {
		var exists bool
		if err := p.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM tenants WHERE id = $1)", q.Tenant).Scan(&exists); err != nil {
			return nil, pgerr.Wrap(fmt.Errorf("list changes of tenant %q: %w", q.Tenant, err))
		}
		if !exists {
			return nil, model.TenantNotFound(q.Tenant)
		}
	}
	return cs, nil
}

func readChanges(ctx context.Context, db querier, tenant, sql string, args ...any) ([]Change, error) {
	rows, _ := db.Query(ctx, sql, args...)
	cs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Change, error) {
		c := Change{}
		c.Tenant = tenant
		err := row.Scan(&c.Revision, &c.Time, &c.Actor, &c.Credential, &c.Reason, &c.Action, &c.Target, &c.Before, &c.After, &c.Hash, &c.linkKey, &c.Related)
		c.Time = c.Time.UTC()
		return c, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list changes of tenant %q: %w", tenant, err))
	}
	return cs, nil
}

// verifyDecisions verifies in one read-only snapshot, so that the heads
// and the entries agree while writers go on.
func (p *pgBackend) verifyDecisions(ctx context.Context, chainID string, from, to int64) ([]ChainReport, error) {
	var out []ChainReport
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		out = nil
		heads, err := readHeads(ctx, tx, chainID)
		if err != nil {
			return err
		}
		if chainID != "" && len(heads) == 0 {
			return errChainNotFound(chainID)
		}
		for _, h := range heads {
			r, err := verifyChain(ctx, p.keys, &pgSource{p: p, tx: tx}, h.chainHead, from, to)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		if chainID == "" {
			missing, err := p.verifyRegistry(ctx, tx, heads)
			if err != nil {
				return err
			}
			out = append(out, missing...)
		}
		return nil
	})
	return out, pgerr.Wrap(err)
}

// registeredHead is a chain's head with its registration.
type registeredHead struct {
	chainHead
	started time.Time
	regSeq  int64
	regKey  string
	regMAC  []byte
}

// readHeads reads the heads of every chain, or of one, ordered by chain id.
func readHeads(ctx context.Context, tx pgx.Tx, chainID string) ([]registeredHead, error) {
	rows, _ := tx.Query(ctx, `SELECT c.chain_id, c.last_pos, c.last_hash, c.last_seq, c.head_key, c.head_mac,
			c.started_at, c.reg_seq, c.reg_key, c.reg_mac,
			coalesce(a.pos, 0), coalesce(a.hash, ''::bytea), coalesce(a.key_id, ''), coalesce(a.mac, ''::bytea)
		FROM audit_chains c LEFT JOIN LATERAL (
			SELECT pos, hash, key_id, mac FROM audit_anchors WHERE chain_id = c.chain_id ORDER BY pos DESC LIMIT 1) a ON true
		WHERE $1 = '' OR c.chain_id = $1 ORDER BY c.chain_id`, chainID)
	heads, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (registeredHead, error) {
		h := registeredHead{chainHead: chainHead{sealed: true}}
		var seq int64
		err := row.Scan(&h.id, &h.lastPos, &h.lastHash, &seq, &h.headKey, &h.headMAC, &h.started, &h.regSeq, &h.regKey, &h.regMAC,
			&h.anchorPos, &h.anchorHash, &h.anchorKey, &h.anchorMAC)
		h.lastSeq = uint64(seq)
		return h, err
	})
	if err != nil {
		return nil, fmt.Errorf("read decision log chains: %w", err)
	}
	return heads, nil
}

// verifyRegistry checks the order chains were registered in: each
// registration sealed with the seal of the one before, numbered without
// gaps from 1. A gap is a chain deleted whole, registration and entries; a
// chain with entries and no registration had its registration deleted.
// Deleting the last chain registered leaves no gap: a checkpoint names it.
func (p *pgBackend) verifyRegistry(ctx context.Context, tx pgx.Tx, heads []registeredHead) ([]ChainReport, error) {
	byReg := slices.Clone(heads)
	slices.SortFunc(byReg, func(a, b registeredHead) int { return cmp.Compare(a.regSeq, b.regSeq) })
	var (
		out  []ChainReport
		prev []byte
		want int64 = 1
	)
	for _, h := range byReg {
		if h.regSeq != want {
			out = append(out, ChainReport{Broken: &BrokenLink{Position: want, Kind: BreakChainMissing,
				Message: fmt.Sprintf("the chains registered %d to %d are missing: whole chains were deleted (the next registered is %s)", want, h.regSeq-1, h.id)}})
			prev = nil // the gap's seal is gone; the next seal cannot be checked against it
		}
		if b := checkSeal(p.keys, h.regKey, h.regMAC, chain.ChainRegistration(h.id, h.started.UTC(), h.regSeq, prev)); b != nil && (prev != nil || h.regSeq == 1) {
			b.Position = h.regSeq
			b.Message = fmt.Sprintf("the registration of chain %s (number %d) %s", h.id, h.regSeq, b.Message)
			out = append(out, ChainReport{Chain: h.id, Broken: b})
		}
		prev, want = h.regMAC, h.regSeq+1
	}
	rows, _ := tx.Query(ctx, `SELECT DISTINCT chain_id FROM decision_batches b
		WHERE NOT EXISTS (SELECT 1 FROM audit_chains c WHERE c.chain_id = b.chain_id) ORDER BY chain_id`)
	orphans, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("read unregistered decision chains: %w", err)
	}
	for _, id := range orphans {
		out = append(out, ChainReport{Chain: id, Broken: &BrokenLink{Kind: BreakChainMissing,
			Message: fmt.Sprintf("chain %s has entries but no registration: its registration was deleted", id)}})
	}
	return out, nil
}

// pgSource reads a chain's entries inside the verification's snapshot. It
// also checks each row's columns, which queries select rows by, against
// the entries the row holds, and that the chain's batches were committed in
// position order: a row moved to another tenant, time or place in the
// listing order is reported like an edited entry.
type pgSource struct {
	p         *pgBackend
	tx        pgx.Tx
	lastBatch int64  // the batch_first of the last batch read
	lastTxid  uint64 // its transaction
	// tenants holds the tenants of the last batch read, each with the
	// first position of the row holding its entries.
	tenants map[string]int64
}

// verifyBatches is how many batches one verification query reads.
const verifyBatches = 16

// verifiedRow is a row of decision_batches with the columns verification
// checks.
type verifiedRow struct {
	txid           uint64
	loggedAt       time.Time
	batchFirst     int64
	tenant         string
	tenants        []string
	first, last    int64
	minSeq, maxSeq int64
	minAt, maxAt   time.Time
	entries        int
	lastHash, data []byte
	keyID          string
	decoded        []Decision
}

// entries reads whole batches: the one holding position after+1 and the
// ones following it. The rows of a batch hold every position from its
// first to its last, so a gap in them is a missing entry.
func (s *pgSource) entries(ctx context.Context, chainID string, after, to int64) ([]Decision, error) {
	rows, _ := s.tx.Query(ctx, `WITH b AS (
			SELECT DISTINCT batch_first FROM decision_batches WHERE chain_id = $1
				AND batch_first >= coalesce((SELECT max(batch_first) FROM decision_batches
					WHERE chain_id = $1 AND batch_first <= $2::bigint + 1), 0)
				AND ($3::bigint = 0 OR batch_first <= $3::bigint)
			ORDER BY batch_first LIMIT $4)
		SELECT txid::text, logged_at, batch_first, tenant_id, tenants, first_pos, last_pos, min_seq, max_seq, min_at, max_at,
			entries, last_hash, data, key_id
		FROM decision_batches WHERE chain_id = $1 AND batch_first IN (SELECT batch_first FROM b)
		ORDER BY batch_first, first_pos`,
		chainID, after, to, verifyBatches)
	rs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (verifiedRow, error) {
		var (
			r  verifiedRow
			tx string
		)
		err := row.Scan(&tx, &r.loggedAt, &r.batchFirst, &r.tenant, &r.tenants, &r.first, &r.last, &r.minSeq, &r.maxSeq,
			&r.minAt, &r.maxAt, &r.entries, &r.lastHash, &r.data, &r.keyID)
		if err != nil {
			return r, err
		}
		r.txid, err = strconv.ParseUint(tx, 10, 64)
		return r, err
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("read decisions: %w", err))
	}
	var out []Decision
	for i := range rs {
		r := &rs[i]
		if err := decodeBatch(chainID, r.loggedAt, r.data, r.txid, func(d *Decision) bool {
			d.linkKey = r.keyID
			r.decoded = append(r.decoded, *d)
			return true
		}); err != nil {
			return nil, &rowMismatchError{pos: r.first, msg: fmt.Sprintf("the row of positions %d-%d cannot be read: %v", r.first, r.last, err)}
		}
		if err := s.checkRow(r); err != nil {
			return nil, err
		}
		for _, d := range r.decoded {
			if d.Position > after && (to == 0 || d.Position <= to) {
				out = append(out, d)
			}
		}
	}
	slices.SortFunc(out, func(a, b Decision) int { return cmp.Compare(a.Position, b.Position) })
	return out, nil
}

// rowMismatchError reports a row whose columns disagree with its entries.
type rowMismatchError struct {
	pos int64
	msg string
}

func (e *rowMismatchError) Error() string { return e.msg }

// checkRow compares a row's columns with its entries and the batch order.
func (s *pgSource) checkRow(r *verifiedRow) error {
	bad := func(format string, args ...any) error {
		return &rowMismatchError{pos: r.first, msg: fmt.Sprintf("the row of positions %d-%d: ", r.first, r.last) + fmt.Sprintf(format, args...)}
	}
	ds := r.decoded
	if len(ds) == 0 || len(ds) != r.entries {
		return bad("holds %d entries, its columns say %d", len(ds), r.entries)
	}
	if ds[0].Position != r.first || ds[len(ds)-1].Position != r.last || r.first < r.batchFirst {
		return bad("its entries are at positions %d-%d", ds[0].Position, ds[len(ds)-1].Position)
	}
	if !bytes.Equal(ds[len(ds)-1].Hash, r.lastHash) {
		return bad("its last hash is not its last entry's")
	}
	minSeq, maxSeq, minAt, maxAt := ds[0].Seq, ds[0].Seq, ds[0].Time, ds[0].Time
	var tenants []string // the tenants of a shared row's entries
	for i := range ds {
		d := &ds[i]
		if r.tenant == "" {
			tenants = append(tenants, d.Tenant)
		}
		if d.Tenant != r.tenant && r.tenant != "" || !d.LoggedAt.Equal(r.loggedAt) || i > 0 && d.Position <= ds[i-1].Position {
			return bad("its entry %d belongs to another tenant, time or order", d.Position)
		}
		minSeq, maxSeq = min(minSeq, d.Seq), max(maxSeq, d.Seq)
		minAt, maxAt = minTime(minAt, d.Time), maxTime(maxAt, d.Time)
	}
	// A shared row lists exactly its entries' tenants: a tenant left off
	// the list would have its entries hidden from its queries.
	slices.Sort(tenants)
	if tenants = slices.Compact(tenants); !slices.Equal(tenants, r.tenants) {
		return bad("it lists the tenants %v, its entries are of %v", r.tenants, tenants)
	}
	if int64(minSeq) != r.minSeq || int64(maxSeq) != r.maxSeq || !minAt.Equal(r.minAt) || !maxAt.Equal(r.maxAt) {
		return bad("its id or time range columns differ from its entries'")
	}
	if r.batchFirst == s.lastBatch {
		if r.txid != s.lastTxid {
			return bad("it was committed apart from the rest of its batch")
		}
	} else {
		// A new batch: committed after the previous one of the chain.
		if s.lastBatch != 0 && (r.batchFirst < s.lastBatch || r.txid <= s.lastTxid) {
			return bad("its batch is listed out of the order it was written in")
		}
		s.lastBatch, s.lastTxid, s.tenants = r.batchFirst, r.txid, map[string]int64{}
	}
	// A tenant's entries of a batch are in one row: listings read one row
	// per tenant and batch, and would skip a second.
	for _, t := range append(tenants, r.tenant) {
		if t == "" {
			continue
		}
		if first, ok := s.tenants[t]; ok && first != r.first {
			return bad("tenant %s has entries in another row of its batch too", t)
		}
		s.tenants[t] = r.first
	}
	return nil
}

func (s *pgSource) hashAt(ctx context.Context, chainID string, pos int64) ([]byte, bool, error) {
	rows, err := s.p.rows(ctx, s.tx, `SELECT `+batchRowColumns+` FROM decision_batches WHERE chain_id = $1 AND batch_first =
		(SELECT max(batch_first) FROM decision_batches WHERE chain_id = $1 AND batch_first <= $2)`, chainID, pos)
	if err != nil {
		return nil, false, err
	}
	for _, r := range rows {
		var h []byte
		err := decodeBatch(r.chain, r.loggedAt, r.data, r.txid, func(d *Decision) bool {
			if d.Position == pos {
				h = d.Hash
			}
			return h == nil
		})
		if err != nil {
			return nil, false, err
		}
		if h != nil {
			return h, true, nil
		}
	}
	return nil, false, nil
}

// verifyChanges recomputes a tenant's change-log chain in one snapshot.
// Entries written before the chain existed have no hash; the chain starts
// at the first entry that has one, and from there every entry must.
func (p *pgBackend) verifyChanges(ctx context.Context, tenant string, from, to int64) (ChainReport, error) {
	r := ChainReport{Chain: tenant, Changes: true}
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err := pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		r = ChainReport{Chain: tenant, Changes: true}
		var (
			headRev int64
			headKey string
			headMAC []byte
		)
		err := tx.QueryRow(ctx, "SELECT revision, head_key, head_mac FROM tenants WHERE id = $1", tenant).Scan(&headRev, &headKey, &headMAC)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.TenantNotFound(tenant)
		}
		if err != nil {
			return fmt.Errorf("read tenant %q: %w", tenant, err)
		}
		start := max(from, 1)
		var prev []byte
		hashed := false
		if start > 1 {
			err := tx.QueryRow(ctx, "SELECT hash FROM change_log WHERE tenant_id = $1 AND revision = $2", tenant, start-1).Scan(&prev)
			if errors.Is(err, pgx.ErrNoRows) {
				r.Broken = &BrokenLink{Position: start - 1, Kind: BreakMissing, Message: fmt.Sprintf("revision %d, the link the range starts from, is missing", start-1)}
				return nil
			}
			if err != nil {
				return fmt.Errorf("read change hash: %w", err)
			}
			hashed = prev != nil
		}
		last := to
		if last == 0 {
			last = 1<<63 - 1
		}
		expected := start
		for {
			cs, err := readChanges(ctx, tx, tenant, `SELECT revision, at, actor, credential, reason, action, target, before, after, hash, key_id, related
				FROM change_log WHERE tenant_id = $1 AND revision > $2 AND revision <= $3 ORDER BY revision LIMIT $4`,
				tenant, expected-1, last, changeChunk)
			if err != nil {
				return err
			}
			sealed, err := readChangeRows(ctx, tx, tenant, expected-1, last, changeChunk)
			if err != nil {
				return err
			}
			for i := range cs {
				c := &cs[i]
				switch {
				case c.Revision != expected:
					r.Broken = &BrokenLink{Position: expected, Kind: BreakMissing, Message: fmt.Sprintf("revision %d is missing: the log continues at %d", expected, c.Revision)}
				case c.Hash == nil && hashed:
					r.Broken = &BrokenLink{Position: expected, Kind: BreakUnhashed, Message: fmt.Sprintf("revision %d has no hash though earlier revisions have", expected)}
				case c.Hash != nil:
					canon, err := chain.Change(c.Tenant, c.Revision, c.Time, c.Actor, c.Credential, c.Reason, c.Action, c.Target, c.Before, c.After, c.Related)
					if err != nil {
						return err
					}
					key, b := linkKey(p.keys, c.linkKey)
					if b != nil {
						b.Position = expected
						b.Message = fmt.Sprintf("revision %d %s", expected, b.Message)
						r.Broken = b
						break
					}
					if !bytes.Equal(key.Link(prev, canon), c.Hash) {
						r.Broken = &BrokenLink{Position: expected, Kind: BreakHashMismatch,
							Message: fmt.Sprintf("revision %d does not match its hash: it was edited, or revisions were reordered or replaced", expected)}
						break
					}
					r.Broken = sealed[c.Revision].check(p.keys, tenant, c.Revision)
				}
				if r.Broken != nil {
					r.HeadHash = prev
					return nil
				}
				prev, hashed = c.Hash, hashed || c.Hash != nil
				if r.First == 0 {
					r.First = expected
				}
				r.Last = expected
				r.Checked++
				expected++
			}
			if len(cs) < changeChunk {
				break
			}
		}
		r.HeadHash = prev
		end := expected - 1
		switch {
		case end < min(last, headRev):
			r.Broken = &BrokenLink{Position: end + 1, Kind: BreakHeadMismatch,
				Message: fmt.Sprintf("the change log ends at revision %d but the tenant is at revision %d: revisions %d-%d were deleted", end, headRev, end+1, headRev)}
		case end >= headRev && end > 0:
			// The walk reached the tenant's revision: its sealed head
			// must name it, or the revision was lowered.
			if b := checkSeal(p.keys, headKey, headMAC, chain.TenantHead(tenant, headRev, prev)); b != nil {
				if b.Kind == BreakHashMismatch {
					b.Kind = BreakHeadMismatch
					b.Message = "does not match its seal: the revision was lowered (after deleting the latest changes) or edited"
				}
				b.Position = headRev
				b.Message = fmt.Sprintf("the tenant's head (revision %d) %s", headRev, b.Message)
				r.Broken = b
			}
		}
		return nil
	})
	return r, pgerr.Wrap(err)
}

// changeRows are the rows a change left (store.Rows, which replicas apply
// instead of reading the whole tenant) and their seal.
type changeRows struct {
	rows, mac []byte
	keyID     string
}

// readChangeRows reads the rows and seals of a tenant's changes after
// revision after, up to last, at most limit, by revision.
func readChangeRows(ctx context.Context, tx pgx.Tx, tenant string, after, last int64, limit int) (map[int64]changeRows, error) {
	rows, _ := tx.Query(ctx, `SELECT revision, rows, rows_mac, key_id FROM change_log
		WHERE tenant_id = $1 AND revision > $2 AND revision <= $3 ORDER BY revision LIMIT $4`, tenant, after, last, limit)
	out := map[int64]changeRows{}
	var (
		rev int64
		c   changeRows
	)
	_, err := pgx.ForEachRow(rows, []any{&rev, &c.rows, &c.mac, &c.keyID}, func() error {
		out[rev] = c
		c = changeRows{} // the next row scans into slices of its own
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read change rows: %w", err)
	}
	return out, nil
}

// check verifies the seal of a change's rows: rows without a seal, or a
// seal without its rows, were edited as surely as rows that do not match
// it. A change without either (a tenant's creation, a restore, or an entry
// from before rows were kept) has nothing to check.
func (c changeRows) check(keys *chain.Keyring, tenant string, revision int64) *BrokenLink {
	switch {
	case c.rows == nil && c.mac == nil:
		return nil
	case c.rows == nil:
		return &BrokenLink{Position: revision, Kind: BreakHashMismatch,
			Message: fmt.Sprintf("revision %d's rows were deleted: their seal is left", revision)}
	case c.mac == nil:
		return &BrokenLink{Position: revision, Kind: BreakHashMismatch,
			Message: fmt.Sprintf("revision %d's rows have no seal: they were put there, or their seal deleted", revision)}
	}
	if b := checkSeal(keys, c.keyID, c.mac, chain.ChangeRows(tenant, revision, c.rows)); b != nil {
		b.Position = revision
		b.Message = fmt.Sprintf("revision %d's rows (what replicas apply) %s", revision, b.Message)
		return b
	}
	return nil
}

// changeChunk is how many change-log entries one verification query reads.
const changeChunk = 1000

// tracer starts the decision log's spans from the global provider
// (internal/tracing); a no-op while tracing is off.
var tracer = otel.Tracer("github.com/crmauthz/crmauthz/internal/audit")

// endSpan ends span, recording err.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
