// Package audit records what the service decided and what admins changed,
// for auditors: the decision log, queries over it and the change log, and
// the hash chain that makes tampering evident.
//
// # The decision log
//
// Every decision (Check, each BatchCheck item, each CheckPage page,
// GetFieldAccess, PlanRecordFilter) becomes a Decision handed to Log.Record on the hot path.
// Record only stamps the entry's id and puts it on a bounded in-memory
// queue; one batcher goroutine per process takes entries off the queue in
// batches, assigns each its position in the process's hash chain, masks the
// configured attributes, hashes it and writes the batch (PostgreSQL: one
// transaction with COPY of a row per tenant of four or more entries and
// one row the batch's other tenants share, listing them, and the chain
// head update, so a batch is a few rows however many tenants it holds;
// memory: a bounded ring).
//
// Modes: async (the default; the call does not wait for the write), sync
// (the call waits until its entry is durable; entries that arrive while a
// batch is being written form the next batch, a group commit), off. When the
// queue is full the overflow policy applies: block (the call waits for room;
// nothing is lost, the default) or drop_denies_last (allowed decisions are
// dropped first, denied ones only when the queue holds nothing else). Every
// dropped entry is counted (GetLogStatus), logged, and recorded in the log
// itself by a marker entry per tenant. Close flushes the queue.
//
// # Listing
//
// Pages follow the storage's order: PostgreSQL lists by writing transaction
// and position, below a horizon every older writer has passed, so a batch
// that commits late is never skipped; memory lists in insertion order. Page
// tokens carry a fingerprint of the query's filters.
//
// # Tamper evidence
//
// Each writer process has its own chain (a random chain id), so replicas
// need no coordination. An entry's hash is SHA-256 of the previous entry's
// hash and the entry's canonical encoding (package chain); the chain's head
// (last position and hash) is updated in each batch's transaction. Verify
// recomputes a chain and names the first broken link: an edited or moved
// entry breaks its hash, a deleted one leaves a gap, a truncated tail no
// longer meets the head, and a PostgreSQL row whose columns (tenant,
// positions, times, commit order) disagree with the entries it holds is
// reported too. Retention drops whole daily partitions; before it
// does, it records the last link of each chain in the partition (an anchor)
// so the chain still verifies from there.
//
// # Security events
//
// SecurityLog keeps what auditors need beyond decisions: refused
// authentications, refused admin calls and credential changes
// (SecurityEvent). Record never waits: the event goes on a bounded queue,
// or, when the queue is full, is dropped and counted, and the drops of each
// tenant are stored later as an events.dropped event saying how many. One
// writer goroutine per process stores batches (PostgreSQL: the table
// security_events, written under an advisory lock so that ids commit in
// order; memory: a bounded ring) and retries failed writes without storing
// a batch twice; Close flushes the queue. List pages by id, so a page
// never skips nor repeats an event while new ones arrive; a query names the
// tenants whose events it may see, or none for every event, the tenantless
// ones (an unknown key) included. Text is bounded before it is stored, and
// no event holds a secret. The decision log's housekeeping deletes the
// events past its retention.
package audit

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Methods name the call a decision answered.
const (
	MethodCheck            = "Check"
	MethodBatchCheck       = "BatchCheck"
	MethodGetFieldAccess   = "GetFieldAccess"
	MethodPlanRecordFilter = "PlanRecordFilter"
	MethodCheckPage        = "CheckPage"
	// MethodDropped marks an entry that is not a decision: it records that
	// the queue overflowed and the policy dropped entries of its tenant.
	MethodDropped = "Dropped"
)

// Results of a decision.
const (
	ResultAllow   = "allow"
	ResultDeny    = "deny"
	ResultDropped = "dropped" // for MethodDropped markers
)

// Decision is one entry of the decision log: one Check, one BatchCheck item,
// one GetFieldAccess or one PlanRecordFilter.
//
// The caller of Record fills the request's fields and Perm; the log derives
// Permission, Module and the record's fields from Perm, off the hot path,
// and sets the rest.
type Decision struct {
	Time       time.Time
	Method     string // "Check", "BatchCheck", "CheckPage", "GetFieldAccess", "PlanRecordFilter"
	Caller     string // the caller's identity; the peer address until callers authenticate
	RequestID  string
	Tenant     string
	Subject    string
	Perm       model.Permission // the permission decided, as the request named it
	Permission string           // e.g. "module account read", "function report.export"
	Module     string           // the permission's module, when it has one
	RecordID   string           // the record, for record checks
	// RecordOwner and RecordDepartment describe the record as the caller did.
	RecordOwner      string
	RecordDepartment string
	Allowed          bool
	Result           string   // "allow" / "deny" ("dropped" for markers)
	Reasons          []string // the explanation, when one was computed
	Revision         int64
	Latency          time.Duration

	// Set by the log.
	ID       string    // Chain + "-" + Seq, returned to the caller as decision_id
	Chain    string    // the writer process's chain id
	Seq      uint64    // the id's sequence number in the chain's process
	Position int64     // the position in the chain, from 1, in write order
	LoggedAt time.Time // when the batch was written
	Hash     []byte    // HMAC-SHA-256 of the previous hash and the canonical content

	key     [2]uint64 // the storage's listing order, for page tokens
	linkKey string    // the id of the key Hash is under; read back by verification only
}

// RequestInfo is what the server knows of the request a decision answers.
type RequestInfo struct {
	ID string
	// Peer is the caller's address, the decision's caller when the call
	// carries no credential; formatted only then.
	Peer net.Addr
	// Deferred, when set, collects the sync mode's waits of the request's
	// decisions so that they are awaited together when the handler returns:
	// a BatchCheck's items then share group commits instead of taking one
	// each.
	Deferred *Deferred
}

// WithDeferred returns ctx whose decisions' sync-mode waits are collected in
// the returned Deferred instead of made one by one; the caller waits once.
func WithDeferred(ctx context.Context) (context.Context, *Deferred) {
	r := Request(ctx)
	r.Deferred = &Deferred{}
	return WithRequest(ctx, r), r.Deferred
}

// Deferred collects the sync-mode waits of one request's decisions.
type Deferred struct {
	mu    sync.Mutex
	waits []chan error
}

func (p *Deferred) add(done chan error) {
	p.mu.Lock()
	p.waits = append(p.waits, done)
	p.mu.Unlock()
}

// Wait returns once every collected entry is durable, or with the first
// error (an entry that could not be written, or ctx ending).
func (p *Deferred) Wait(ctx context.Context) error {
	p.mu.Lock()
	waits := p.waits
	p.waits = nil
	p.mu.Unlock()
	for _, done := range waits {
		select {
		case err := <-done:
			waiters.Put(done)
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

type requestKey struct{}

// WithRequest returns ctx carrying the request's id and caller.
func WithRequest(ctx context.Context, r RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// WithRequestRef is WithRequest with the info where the caller keeps it,
// which must not change while the request runs: the server keeps it in
// the call's own state, rather than allocate it once more per call.
func WithRequestRef(ctx context.Context, r *RequestInfo) context.Context {
	return context.WithValue(ctx, requestKey{}, r)
}

// Request returns the request info of ctx (zero outside a request).
func Request(ctx context.Context) RequestInfo {
	switch r := ctx.Value(requestKey{}).(type) {
	case RequestInfo:
		return r
	case *RequestInfo:
		return *r
	}
	return RequestInfo{}
}

// pageDeniedRecord starts the reason naming a record a CheckPage page
// denied; masking record_id masks what follows it.
const pageDeniedRecord = "denied: record "

// MaxPageReasons bounds the denied items a page's entry names one by one;
// a reason counts the rest.
const MaxPageReasons = 100

// PageReasons returns the reasons of a CheckPage page's entry: how many
// items were allowed and denied, then each denied permission (by its
// PermissionText) and record (by id), at most MaxPageReasons of them.
func PageReasons(perms, records int, denied []model.Permission) []string {
	out := make([]string, 0, 2+min(len(denied), MaxPageReasons))
	out = append(out, fmt.Sprintf("page of %d permissions and %d records: %d allowed, %d denied",
		perms, records, perms+records-len(denied), len(denied)))
	for i, p := range denied {
		if i == MaxPageReasons {
			out = append(out, fmt.Sprintf("and %d more denied", len(denied)-i))
			break
		}
		if p.Record != nil {
			out = append(out, pageDeniedRecord+p.Record.ID)
		} else {
			out = append(out, "denied: "+PermissionText(p))
		}
	}
	return out
}

// PermissionText is the stored form of a permission: "module account read",
// "function report.export", "field account.credit_limit write". The record
// of a record check is stored in its own columns.
func PermissionText(p model.Permission) string {
	switch p.Kind {
	case model.KindModule:
		return "module " + p.Module + " " + p.Verb
	case model.KindFunction:
		return "function " + p.Function
	case model.KindField:
		access := "read"
		if p.Write {
			access = "write"
		}
		return "field " + p.Module + "." + p.Field + " " + access
	}
	return ""
}

// complete derives the stored fields from Perm and Allowed.
func (d *Decision) complete() {
	if d.Permission == "" {
		d.Permission = PermissionText(d.Perm)
	}
	if d.Module == "" {
		d.Module = d.Perm.Module
	}
	if r := d.Perm.Record; r != nil && d.RecordID == "" {
		d.RecordID, d.RecordOwner, d.RecordDepartment = r.ID, r.Owner, r.Department
	}
	if d.Result == "" {
		d.Result = ResultDeny
		if d.Allowed {
			d.Result = ResultAllow
		}
	}
}

// ReasonMasked and ReasonNotExplainable refuse explaining a decision
// after the fact: its subject or record is masked in the log, or it is
// not the decision of one permission.
const (
	ReasonMasked         = "MASKED"
	ReasonNotExplainable = "NOT_EXPLAINABLE"
)

// maskedPrefix starts every masked value (masker.maybe).
const maskedPrefix = "~"

// LoggedPermission returns the permission a logged Check or BatchCheck
// decision decided, with its record, as the caller named it: what an
// explanation after the fact decides again.
func LoggedPermission(d *Decision) (model.Permission, error) {
	if d.Method != MethodCheck && d.Method != MethodBatchCheck {
		return model.Permission{}, &model.ConflictError{Reason: ReasonNotExplainable,
			Message: fmt.Sprintf("decision %s answered %s, which decides more than one permission; only Check and BatchCheck decisions are explained", d.ID, d.Method)}
	}
	for _, v := range []string{d.Subject, d.RecordID, d.RecordOwner, d.RecordDepartment} {
		if strings.HasPrefix(v, maskedPrefix) {
			return model.Permission{}, &model.ConflictError{Reason: ReasonMasked,
				Message: fmt.Sprintf("decision %s is logged with masked attributes, which cannot be decided again", d.ID)}
		}
	}
	kind, rest, _ := strings.Cut(d.Permission, " ")
	var p model.Permission
	switch kind {
	case "module":
		module, verb, _ := strings.Cut(rest, " ")
		p = model.ModulePerm(module, verb)
		if d.RecordID != "" {
			p.Record = &model.Record{ID: d.RecordID, Owner: d.RecordOwner, Department: d.RecordDepartment}
		}
	case "function":
		p = model.FunctionPerm(rest)
	case "field":
		target, access, _ := strings.Cut(rest, " ")
		module, field, _ := strings.Cut(target, ".")
		p = model.FieldPerm(module, field, access == "write")
	default:
		return p, fmt.Errorf("decision %s: unknown permission %q", d.ID, d.Permission)
	}
	return p, nil
}
