package audit

import (
	"bytes"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
)

// Storage kinds.
const (
	storageMemory   = "memory"
	storagePostgres = "postgres"
)

// backend is where the log keeps its entries: memory or PostgreSQL.
type backend interface {
	kind() string
	// maintain prepares storage for writes around now and applies retention.
	maintain(ctx context.Context, now time.Time) error
	// startChain registers a new writer chain.
	startChain(ctx context.Context, chain string, at time.Time) error
	// write stores a batch and the chain's new head atomically. retry says
	// an earlier attempt failed: it may have committed all the same.
	write(ctx context.Context, chain string, batch []item, h head, retry bool, scratch *[][]byte) error
	// identity names the database the log writes to, so that a spool is
	// shipped only to the database it was written for.
	identity(ctx context.Context) (string, error)
	// gone reports whether a database identity names a database of this
	// server that no longer exists: its spooled entries can never ship.
	gone(ctx context.Context, identity string) (bool, error)
	// readChain returns a chain's head as stored, and whether the chain is
	// registered: the spool ships a chain of an earlier process from there.
	readChain(ctx context.Context, chain string) (head, bool, error)
	// horizon returns a listing key below which no entry can appear any
	// more: entries committing later get keys at or above it.
	horizon(ctx context.Context) (uint64, error)
	// list returns up to limit entries q selects below horizon, after
	// (oldest first) or before (newest first) c.key. It may stop early to
	// bound the work of one call: then stop is the key to continue from.
	list(ctx context.Context, q *Query, c cursor, horizon uint64, limit int) (ds []Decision, stop [2]uint64, err error)
	get(ctx context.Context, tenant, chain string, seq uint64) (Decision, bool, error)
	// used returns the distinct (subject, permission) pairs of a tenant's
	// allowed decisions since a time, each with its latest decision's time.
	used(ctx context.Context, tenant string, since time.Time) (map[[2]string]time.Time, error)
	// evidenceSince is the oldest time from which the log holds every
	// decision of the processes that logged.
	evidenceSince(ctx context.Context) (time.Time, error)
	changes(ctx context.Context, q *ChangeQuery, after int64, limit int) ([]Change, error)
	verifyDecisions(ctx context.Context, chain string, from, to int64) ([]ChainReport, error)
	verifyChanges(ctx context.Context, tenant string, from, to int64) (ChainReport, error)
}

// BreakKind classifies a broken link.
type BreakKind int

// Break kinds.
const (
	BreakHashMismatch       BreakKind = iota + 1 // content or previous hash changed
	BreakMissing                                 // an entry was deleted
	BreakHeadMismatch                            // the chain's end does not meet its head
	BreakUnhashed                                // an entry lost its hash
	BreakIndexMismatch                           // a stored row's columns disagree with its entries
	BreakUnkeyed                                 // an entry's hash or a seal is under no key
	BreakKeyUnknown                              // under a key this service does not hold
	BreakChainMissing                            // a registered or checkpointed chain is gone
	BreakTruncated                               // the chain ends before a checkpoint's head
	BreakCheckpointMismatch                      // the entry at a checkpoint's head differs
)

// BrokenLink is where a chain stops verifying.
type BrokenLink struct {
	Position   int64
	DecisionID string
	Kind       BreakKind
	Message    string
}

// ChainReport is the verification of one chain.
type ChainReport struct {
	Chain         string
	Changes       bool  // a tenant's change log (Chain is the tenant)
	First, Last   int64 // the positions checked
	Checked       int64
	RetainedAfter int64
	HeadHash      []byte
	Broken        *BrokenLink
}

// chainHead is what storage knows of a chain besides its entries.
type chainHead struct {
	id         string
	lastPos    int64
	lastHash   []byte
	lastSeq    uint64
	anchorPos  int64 // entries up to here were dropped by retention
	anchorHash []byte
	// sealed says storage keeps seals: the head's (headKey, headMAC) and
	// the anchor's. Memory keeps none: nobody but the process can reach it.
	sealed             bool
	headKey, anchorKey string
	headMAC, anchorMAC []byte
}

// decisionSource reads one chain's entries in position order.
type decisionSource interface {
	// entries returns the next entries of the chain after position after
	// (and at most to, unless 0), ordered by position: a chunk that holds
	// every stored entry between its first and last position, so a gap
	// inside it is a missing entry. It returns none at the chain's end.
	entries(ctx context.Context, chain string, after, to int64) ([]Decision, error)
	// hashAt returns the stored hash of the entry at pos.
	hashAt(ctx context.Context, chain string, pos int64) ([]byte, bool, error)
}

// verifyChain recomputes chain h from position from to position to (0:
// the start and the end) and reports the first broken link.
func verifyChain(ctx context.Context, keys *chain.Keyring, src decisionSource, h chainHead, from, to int64) (ChainReport, error) {
	r := ChainReport{Chain: h.id, RetainedAfter: h.anchorPos}
	if h.sealed && h.anchorPos > 0 {
		if b := checkSeal(keys, h.anchorKey, h.anchorMAC, chain.Anchor(h.id, h.anchorPos, h.anchorHash)); b != nil {
			b.Position = h.anchorPos
			b.Message = "the retention anchor at entry " + strconv.FormatInt(h.anchorPos, 10) + ", from which the chain verifies, " + b.Message
			r.Broken = b
			return r, nil
		}
	}
	start := max(from, 1)
	var prev []byte
	switch {
	case h.anchorPos > 0 && start <= h.anchorPos+1:
		start, prev = h.anchorPos+1, h.anchorHash
	case start > 1:
		p, ok, err := src.hashAt(ctx, h.id, start-1)
		if err != nil {
			return r, err
		}
		if !ok {
			r.Broken = &BrokenLink{Position: start - 1, Kind: BreakMissing, Message: fmt.Sprintf("entry %d, the link the range starts from, is missing", start-1)}
			return r, nil
		}
		prev = p
	}
	expected := start
	var enc chain.Encoder
	for {
		rows, err := src.entries(ctx, h.id, expected-1, to)
		var mismatch *rowMismatchError
		if errors.As(err, &mismatch) {
			r.Broken = &BrokenLink{Position: mismatch.pos, Kind: BreakIndexMismatch, Message: mismatch.msg}
			r.HeadHash = prev
			return r, nil
		}
		if err != nil {
			return r, err
		}
		if len(rows) == 0 {
			break
		}
		for i := range rows {
			d := &rows[i]
			if d.Position < expected {
				r.Broken = &BrokenLink{Position: d.Position, DecisionID: d.ID, Kind: BreakHashMismatch,
					Message: fmt.Sprintf("entry %d appears more than once", d.Position)}
				r.HeadHash = prev
				return r, nil
			}
			if d.Position != expected {
				r.Broken = &BrokenLink{Position: expected, Kind: BreakMissing,
					Message: fmt.Sprintf("entry %d is missing: the chain continues at %d", expected, d.Position)}
				r.HeadHash = prev
				return r, nil
			}
			d.encode(&enc)
			key, b := linkKey(keys, d.linkKey)
			if b != nil {
				b.Position, b.DecisionID = expected, d.ID
				b.Message = fmt.Sprintf("entry %d %s", expected, b.Message)
				r.Broken = b
				r.HeadHash = prev
				return r, nil
			}
			if !bytes.Equal(key.Link(prev, enc.Bytes()), d.Hash) {
				r.Broken = &BrokenLink{Position: expected, DecisionID: d.ID, Kind: BreakHashMismatch,
					Message: fmt.Sprintf("entry %d does not match its hash: it was edited, or entries were reordered or replaced", expected)}
				r.HeadHash = prev
				return r, nil
			}
			prev = d.Hash
			if r.First == 0 {
				r.First = expected
			}
			r.Last = expected
			r.Checked++
			expected++
		}
	}
	r.HeadHash = prev
	last := expected - 1
	switch {
	case to == 0 && last < h.lastPos:
		r.Broken = &BrokenLink{Position: last + 1, Kind: BreakHeadMismatch,
			Message: fmt.Sprintf("the chain ends at entry %d but its writer recorded %d entries: entries %d-%d were deleted", last, h.lastPos, last+1, h.lastPos)}
	case to == 0 && last > h.lastPos:
		r.Broken = &BrokenLink{Position: h.lastPos + 1, Kind: BreakHeadMismatch,
			Message: fmt.Sprintf("the chain holds entries past the head its writer recorded (%d)", h.lastPos)}
	case to == 0 && !bytes.Equal(prev, h.lastHash):
		r.Broken = &BrokenLink{Position: last, Kind: BreakHeadMismatch, Message: "the last entry's hash differs from the head its writer recorded"}
	case to == 0 && h.sealed:
		if b := checkSeal(keys, h.headKey, h.headMAC, chain.ChainHead(h.id, h.lastPos, h.lastHash, h.lastSeq)); b != nil {
			if b.Kind == BreakHashMismatch {
				b.Kind = BreakHeadMismatch
				b.Message = "does not match its seal: the head was moved back, and the entries after it deleted, or it was edited"
			}
			b.Position = h.lastPos
			b.Message = fmt.Sprintf("the head its writer recorded (entry %d) %s", h.lastPos, b.Message)
			r.Broken = b
		}
	case to > 0 && last < min(to, h.lastPos):
		r.Broken = &BrokenLink{Position: last + 1, Kind: BreakMissing, Message: fmt.Sprintf("entry %d is missing", last+1)}
	}
	return r, nil
}

// linkKey returns the key named id, or the break of an entry linked under
// no key or under one the keyring lacks. The break's message continues a
// sentence naming what was linked.
func linkKey(keys *chain.Keyring, id string) (*chain.Key, *BrokenLink) {
	if id == "" {
		return nil, &BrokenLink{Kind: BreakUnkeyed, Message: "is hashed without a key: whoever can write the database could have computed it"}
	}
	k, ok := keys.Key(id)
	if !ok {
		return nil, &BrokenLink{Kind: BreakKeyUnknown, Message: fmt.Sprintf("is under key %q, which this service does not hold (keys: %s)", id, strings.Join(keys.KeyIDs(), ", "))}
	}
	return k, nil
}

// checkSeal checks a seal over canon: nil when it verifies.
func checkSeal(keys *chain.Keyring, keyID string, mac, canon []byte) *BrokenLink {
	key, b := linkKey(keys, keyID)
	if b != nil {
		return b
	}
	if !hmac.Equal(key.MAC(canon), mac) {
		return &BrokenLink{Kind: BreakHashMismatch, Message: "does not match its seal: it was edited"}
	}
	return nil
}

// Verify recomputes the decision log's chains (one chain when chain is set)
// between positions from and to (0: the start and the end).
func (l *Log) Verify(ctx context.Context, chainID string, from, to int64) ([]ChainReport, error) {
	if l.opts.Mode == ModeOff && l.be.kind() == storageMemory {
		return nil, errLogOff()
	}
	return l.be.verifyDecisions(ctx, chainID, from, to)
}

// VerifyChanges recomputes a tenant's change-log chain between revisions
// from and to (0: the start and the end).
func (l *Log) VerifyChanges(ctx context.Context, tenant string, from, to int64) (ChainReport, error) {
	return l.be.verifyChanges(ctx, tenant, from, to)
}

// errNoChangeHashes is returned where the store keeps no change hashes.
func errNoChangeHashes() error {
	return &model.ConflictError{Reason: ReasonNoChangeHashes, Message: "the memory store keeps no change-log hashes; the change log is verifiable on PostgreSQL"}
}
