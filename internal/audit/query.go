package audit

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// Reasons of the errors the audit queries return (google.rpc.ErrorInfo).
const (
	ReasonDecisionLogOff   = "DECISION_LOG_OFF"
	ReasonDecisionNotFound = "DECISION_NOT_FOUND"
	ReasonNoChangeHashes   = "CHANGE_LOG_NOT_HASHED"
	ReasonCursorMismatch   = "PAGE_TOKEN_MISMATCH"
)

// MaxPageSize is the most entries one page holds.
const MaxPageSize = 1000

// exportChunk is the most entries one export message holds.
const exportChunk = 500

// Query filters the decision log; empty fields match everything.
type Query struct {
	Tenant      string // required
	Subject     string // plain; masked by the log when subjects are masked
	Permission  string // PermissionText form
	Module      string
	Result      string // ResultAllow, ResultDeny or empty
	Method      string
	Caller      string
	RequestID   string
	RecordID    string
	From, To    time.Time // [From, To); zero: unbounded
	NewestFirst bool
}

// fingerprint identifies the query's filters in its page tokens.
func (q Query) fingerprint() uint64 {
	var e chain.Encoder
	e.Reset("decisions")
	for _, s := range []string{q.Tenant, q.Subject, q.Permission, q.Module, q.Result, q.Method, q.Caller, q.RequestID, q.RecordID} {
		e.String(s)
	}
	e.Time(q.From)
	e.Time(q.To)
	e.Bool(q.NewestFirst)
	return fingerprint(e.Bytes())
}

func fingerprint(b []byte) uint64 {
	sum := sha256.Sum256(b)
	return binary.BigEndian.Uint64(sum[:8])
}

// matches reports whether d passes q's filters (q already masked).
func (q *Query) matches(d *Decision) bool {
	return d.Tenant == q.Tenant &&
		(q.Subject == "" || d.Subject == q.Subject) &&
		(q.Permission == "" || d.Permission == q.Permission) &&
		(q.Module == "" || d.Module == q.Module) &&
		(q.Result == "" || d.Result == q.Result) &&
		(q.Method == "" || d.Method == q.Method) &&
		(q.Caller == "" || d.Caller == q.Caller) &&
		(q.RequestID == "" || d.RequestID == q.RequestID) &&
		(q.RecordID == "" || d.RecordID == q.RecordID) &&
		(q.From.IsZero() || !d.Time.Before(q.From)) &&
		(q.To.IsZero() || d.Time.Before(q.To))
}

// cursor is where a page ends. Keys order the log as the storage lists it:
// PostgreSQL (transaction id, position), memory (insertion number, 0).
// Oldest first, the next page starts after key; newest first, before key,
// and never at or past horizon, the end fixed by the first page.
type cursor struct {
	fp      uint64
	desc    bool
	key     [2]uint64
	horizon uint64
}

const tokenVersion = 1

func (c cursor) token() string {
	b := make([]byte, 0, 34)
	b = append(b, tokenVersion)
	if c.desc {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.BigEndian.AppendUint64(b, c.fp)
	b = binary.BigEndian.AppendUint64(b, c.key[0])
	b = binary.BigEndian.AppendUint64(b, c.key[1])
	b = binary.BigEndian.AppendUint64(b, c.horizon)
	return base64.RawURLEncoding.EncodeToString(b)
}

// parseToken reads a page token issued for a query with fingerprint fp.
func parseToken(tok string, fp uint64, desc bool) (cursor, error) {
	c := cursor{fp: fp, desc: desc}
	if tok == "" {
		return c, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil || len(b) != 34 || b[0] != tokenVersion || b[1] > 1 {
		return c, model.Invalid("page_token", model.ReasonInvalidValue, "is not a token this service issued")
	}
	if binary.BigEndian.Uint64(b[2:]) != fp || (b[1] == 1) != desc {
		return c, model.Invalid("page_token", ReasonCursorMismatch, "was issued for other filters: repeat the filters of the call that returned it")
	}
	c.key = [2]uint64{binary.BigEndian.Uint64(b[10:]), binary.BigEndian.Uint64(b[18:])}
	c.horizon = binary.BigEndian.Uint64(b[26:])
	return c, nil
}

// CheckToken reports whether token is empty or a page token ListDecisions
// issued for q's filters and order, with the error ListDecisions would
// return, so that callers can check a request whole before looking
// anything up.
func (q Query) CheckToken(token string) error {
	_, err := parseToken(token, q.fingerprint(), q.NewestFirst)
	return err
}

// DecisionPage is one page of decisions.
type DecisionPage struct {
	Decisions []Decision
	Next      string // empty at the end
	Resume    string // oldest first: continues after this page later
}

// errLogOff is returned by decision queries when the log is off.
func errLogOff() error {
	return &model.ConflictError{Reason: ReasonDecisionLogOff, Message: "the decision log is off on this server (decision_log=off)"}
}

// masked returns q with its attribute filters masked as stored.
func (l *Log) masked(q Query) Query {
	q.Subject = l.masker.maybe("subject", q.Subject)
	q.Caller = l.masker.maybe("caller", q.Caller)
	q.RecordID = l.masker.maybe("record_id", q.RecordID)
	return q
}

// ListDecisions returns one page of the decisions q selects, at most limit
// (1 to MaxPageSize), continuing from token.
func (l *Log) ListDecisions(ctx context.Context, q Query, limit int, token string) (DecisionPage, error) {
	if l.opts.Mode == ModeOff && l.be.kind() == storageMemory {
		return DecisionPage{}, errLogOff()
	}
	c, err := parseToken(token, q.fingerprint(), q.NewestFirst)
	if err != nil {
		return DecisionPage{}, err
	}
	mq := l.masked(q)
	// Oldest first, each page reads up to the current horizon; newest first,
	// every page stays below the horizon of the first.
	h := c.horizon
	if h == 0 || !c.desc {
		if h, err = l.be.horizon(ctx); err != nil {
			return DecisionPage{}, err
		}
	}
	if c.desc && c.horizon == 0 {
		c.horizon = h
	}
	ds, stop, err := l.be.list(ctx, &mq, c, h, limit+1)
	if err != nil {
		return DecisionPage{}, err
	}
	var page DecisionPage
	next := c
	switch {
	case len(ds) > limit:
		ds = ds[:limit]
		next.key = ds[limit-1].key
		page.Next = next.token()
	case stop != [2]uint64{}:
		// A short page: the call read as much as one call may.
		next.key = stop
		page.Next = next.token()
	case len(ds) > 0:
		next.key = ds[len(ds)-1].key
	}
	page.Decisions = ds
	if !c.desc {
		page.Resume = next.token()
	}
	return page, nil
}

// ExportDecisions calls fn with the decisions q selects, oldest first, in
// chunks, as the log stood when the call started.
func (l *Log) ExportDecisions(ctx context.Context, q Query, fn func([]Decision) error) error {
	if l.opts.Mode == ModeOff && l.be.kind() == storageMemory {
		return errLogOff()
	}
	q.NewestFirst = false
	mq := l.masked(q)
	h, err := l.be.horizon(ctx)
	if err != nil {
		return err
	}
	var c cursor
	for {
		ds, stop, err := l.be.list(ctx, &mq, c, h, exportChunk)
		if err != nil {
			return err
		}
		if len(ds) > 0 {
			if err := fn(ds); err != nil {
				return err
			}
			c.key = ds[len(ds)-1].key
		}
		switch {
		case len(ds) == exportChunk:
		case stop != [2]uint64{}:
			c.key = stop
		default:
			return nil
		}
	}
}

var decisionID = regexp.MustCompile(`^([0-9a-f]{16})-([1-9][0-9]{0,18})$`)

// parseDecisionID splits a decision id into its chain and sequence number.
func parseDecisionID(id string) (chainID string, seq uint64, err error) {
	m := decisionID.FindStringSubmatch(id)
	if m == nil {
		return "", 0, model.Invalid("decision_id", model.ReasonInvalidValue, "must be a decision id as responses return it: 16 hex digits, '-', a number")
	}
	seq, err = strconv.ParseUint(m[2], 10, 63)
	if err != nil {
		return "", 0, model.Invalid("decision_id", model.ReasonInvalidValue, "sequence number out of range")
	}
	return m[1], seq, nil
}

// CheckDecisionID reports whether id has the form of a decision id, with
// the error Decision would return.
func CheckDecisionID(id string) error {
	_, _, err := parseDecisionID(id)
	return err
}

// Decision returns the entry with the given id in tenant.
func (l *Log) Decision(ctx context.Context, tenant, id string) (Decision, error) {
	chainID, seq, err := parseDecisionID(id)
	if err != nil {
		return Decision{}, err
	}
	d, ok, err := l.be.get(ctx, tenant, chainID, seq)
	if err != nil {
		return Decision{}, err
	}
	if !ok {
		if l.opts.Mode == ModeOff && l.be.kind() == storageMemory {
			return Decision{}, errLogOff()
		}
		return Decision{}, &model.NotFoundError{Reason: ReasonDecisionNotFound, What: fmt.Sprintf("decision %q in tenant %q", id, tenant)}
	}
	return d, nil
}

// ChangeQuery filters a tenant's change log; empty fields match everything.
type ChangeQuery struct {
	Tenant       string // required
	Actor        string
	Action       string
	TargetPrefix string // matches an entry's target or one of its related targets
	From, To     time.Time
}

func (q ChangeQuery) fingerprint() uint64 {
	var e chain.Encoder
	e.Reset("changes")
	for _, s := range []string{q.Tenant, q.Actor, q.Action, q.TargetPrefix} {
		e.String(s)
	}
	e.Time(q.From)
	e.Time(q.To)
	return fingerprint(e.Bytes())
}

func (q *ChangeQuery) matches(e *store.ChangeEntry) bool {
	return (q.Actor == "" || e.Actor == q.Actor) &&
		(q.Action == "" || e.Action == q.Action) &&
		(q.TargetPrefix == "" || strings.HasPrefix(e.Target, q.TargetPrefix) ||
			slices.ContainsFunc(e.Related, func(t string) bool { return strings.HasPrefix(t, q.TargetPrefix) })) &&
		(q.From.IsZero() || !e.Time.Before(q.From)) &&
		(q.To.IsZero() || e.Time.Before(q.To))
}

// Change is one change-log entry with its hash (nil where none is kept).
type Change struct {
	store.ChangeEntry
	Hash    []byte
	linkKey string // the id of the key Hash is under
}

// CheckToken reports whether token is empty or a page token ListChanges
// issued for q's filters, with the error ListChanges would return.
func (q ChangeQuery) CheckToken(token string) error {
	_, err := parseToken(token, q.fingerprint(), false)
	return err
}

// ChangePage is one page of changes.
type ChangePage struct {
	Changes []Change
	Next    string
}

// ListChanges returns one page of a tenant's changes, oldest revision first.
// Revisions are assigned under the tenant's lock in commit order, so paging
// by revision never skips nor repeats a change.
func (l *Log) ListChanges(ctx context.Context, q ChangeQuery, limit int, token string) (ChangePage, error) {
	c, err := parseToken(token, q.fingerprint(), false)
	if err != nil {
		return ChangePage{}, err
	}
	cs, err := l.be.changes(ctx, &q, int64(c.key[0]), limit+1)
	if err != nil {
		return ChangePage{}, err
	}
	var page ChangePage
	if len(cs) > limit {
		cs = cs[:limit]
		c.key[0] = uint64(cs[limit-1].Revision)
		page.Next = c.token()
	}
	page.Changes = cs
	return page, nil
}
