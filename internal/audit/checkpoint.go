package audit

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// Reasons of checkpoint errors.
const (
	ReasonCheckpointsNeedPostgres = "CHECKPOINTS_NEED_POSTGRES"
	ReasonCheckpointRefused       = "CHECKPOINT_REFUSED"
)

// StoredCheckpoint is a checkpoint the service kept, with its number.
type StoredCheckpoint struct {
	ID int64
	*chain.Checkpoint
}

// ErrBadCheckpoint is a checkpoint that does not parse, or whose signature
// does not verify under the signing key it names.
var ErrBadCheckpoint = errors.New("bad checkpoint")

func (l *Log) pg() (*pgBackend, error) {
	p, ok := l.be.(*pgBackend)
	if !ok {
		return nil, &model.ConflictError{Reason: ReasonCheckpointsNeedPostgres,
			Message: "checkpoints are issued over the logs kept in PostgreSQL; this server keeps its logs in memory"}
	}
	return p, nil
}

// Checkpoint signs the heads of every decision chain and every tenant's
// change log, as one snapshot of the database holds them, and keeps the
// checkpoint. It refuses (CHECKPOINT_REFUSED) when a head's seal does not
// verify: a checkpoint never vouches for a head someone moved.
func (l *Log) Checkpoint(ctx context.Context) (*chain.Checkpoint, int64, error) {
	p, err := l.pg()
	if err != nil {
		return nil, 0, err
	}
	var (
		cp *chain.Checkpoint
		id int64
	)
	err = pgx.BeginTxFunc(ctx, p.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead}, func(tx pgx.Tx) error {
		decisions, changes, broken, err := p.sealedHeads(ctx, tx)
		if err != nil {
			return err
		}
		if len(broken) > 0 {
			return &model.ConflictError{Reason: ReasonCheckpointRefused,
				Message: "no checkpoint was issued: these heads do not match their seals (run VerifyLog): " + strings.Join(broken, "; ")}
		}
		cp, err = l.opts.Keys.Signer().Sign(l.opts.Now(), decisions, changes)
		if err != nil {
			return err
		}
		return tx.QueryRow(ctx, "INSERT INTO audit_checkpoints (issued_at, key_id, content, signature) VALUES ($1, $2, $3, $4) RETURNING id",
			cp.Issued, cp.KeyID, cp.Content, cp.Signature).Scan(&id)
	})
	if err != nil {
		return nil, 0, pgerr.Wrap(err)
	}
	return cp, id, nil
}

// sealedHeads reads every head and checks its seal; broken names those
// whose seal fails.
func (p *pgBackend) sealedHeads(ctx context.Context, tx pgx.Tx) (decisions, changes []chain.Head, broken []string, err error) {
	heads, err := readHeads(ctx, tx, "")
	if err != nil {
		return nil, nil, nil, err
	}
	for _, h := range heads {
		if b := checkSeal(p.keys, h.headKey, h.headMAC, chain.ChainHead(h.id, h.lastPos, h.lastHash, h.lastSeq)); b != nil {
			broken = append(broken, fmt.Sprintf("decision chain %s %s", h.id, b.Message))
			continue
		}
		decisions = append(decisions, chain.Head{Chain: h.id, Position: h.lastPos, Hash: h.lastHash})
	}
	rows, _ := tx.Query(ctx, `SELECT t.id, t.revision, coalesce(c.hash, ''::bytea), t.head_key, t.head_mac
		FROM tenants t LEFT JOIN change_log c ON c.tenant_id = t.id AND c.revision = t.revision ORDER BY t.id`)
	var (
		h       chain.Head
		key     string
		mac     []byte
		scanErr error
	)
	_, scanErr = pgx.ForEachRow(rows, []any{&h.Chain, &h.Position, &h.Hash, &key, &mac}, func() error {
		if b := checkSeal(p.keys, key, mac, chain.TenantHead(h.Chain, h.Position, h.Hash)); b != nil {
			broken = append(broken, fmt.Sprintf("tenant %s %s", h.Chain, b.Message))
			return nil
		}
		changes = append(changes, chain.Head{Chain: h.Chain, Position: h.Position, Hash: bytes.Clone(h.Hash)})
		return nil
	})
	if scanErr != nil {
		return nil, nil, nil, fmt.Errorf("read tenant heads: %w", scanErr)
	}
	return decisions, changes, broken, nil
}

// Checkpoints lists the checkpoints kept, newest first, numbered below
// before (0: from the newest).
func (l *Log) Checkpoints(ctx context.Context, before int64, limit int) ([]StoredCheckpoint, error) {
	p, err := l.pg()
	if err != nil {
		return nil, err
	}
	if before <= 0 {
		before = 1<<63 - 1
	}
	rows, _ := p.pool.Query(ctx, "SELECT id, content, signature FROM audit_checkpoints WHERE id < $1 ORDER BY id DESC LIMIT $2", before, limit)
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (StoredCheckpoint, error) {
		var (
			s                  StoredCheckpoint
			content, signature []byte
		)
		if err := row.Scan(&s.ID, &content, &signature); err != nil {
			return s, err
		}
		cp, err := chain.ParseCheckpoint(content, signature)
		if err != nil {
			// Kept as written: a row that does not parse was edited.
			cp = &chain.Checkpoint{Content: content, Signature: signature}
		}
		s.Checkpoint = cp
		return s, nil
	})
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list checkpoints: %w", err))
	}
	return out, nil
}

// OpenCheckpoint parses a checkpoint and checks its signature under the
// signing key it names, which this service must hold.
func (l *Log) OpenCheckpoint(content, signature []byte) (*chain.Checkpoint, error) {
	cp, err := chain.ParseCheckpoint(content, signature)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCheckpoint, err)
	}
	pub, ok := l.opts.Keys.PublicKey(cp.KeyID)
	if !ok {
		return nil, fmt.Errorf("%w: it is signed with key %q, which this service does not hold", ErrBadCheckpoint, cp.KeyID)
	}
	if !cp.Verify(pub) {
		return nil, fmt.Errorf("%w: its signature does not verify under key %q: it was altered or not issued by this service", ErrBadCheckpoint, cp.KeyID)
	}
	return cp, nil
}

// PublicKey returns the public key of the signing key named id.
func (l *Log) PublicKey(id string) ([]byte, bool) {
	pub, ok := l.opts.Keys.PublicKey(id)
	return pub, ok
}

// CheckpointScope selects what VerifyCheckpoint compares: the decision
// chains, and the change log of every tenant or of one.
type CheckpointScope struct {
	Decisions  bool
	AllTenants bool
	Tenant     string
}

// VerifyCheckpoint compares the log with a checkpoint opened by
// OpenCheckpoint: every chain it names must still exist, reach its head,
// and hold the same entry there. It returns a report per chain compared
// (Changes marks a tenant's change log) and how many heads it compared.
func (l *Log) VerifyCheckpoint(ctx context.Context, cp *chain.Checkpoint, scope CheckpointScope) ([]ChainReport, int, error) {
	p, err := l.pg()
	if err != nil {
		return nil, 0, err
	}
	var (
		out     []ChainReport
		checked int
	)
	opts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	err = pgx.BeginTxFunc(ctx, p.pool, opts, func(tx pgx.Tx) error {
		out, checked = nil, 0
		if scope.Decisions {
			for _, h := range cp.Decisions {
				checked++
				r, err := p.compareDecisionHead(ctx, tx, h)
				if err != nil {
					return err
				}
				out = append(out, r)
			}
		}
		for _, h := range cp.Changes {
			if !scope.AllTenants && h.Chain != scope.Tenant {
				continue
			}
			checked++
			r, err := compareTenantHead(ctx, tx, h)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, checked, pgerr.Wrap(err)
}

func (p *pgBackend) compareDecisionHead(ctx context.Context, tx pgx.Tx, h chain.Head) (ChainReport, error) {
	r := ChainReport{Chain: h.Chain}
	var (
		last, anchorPos int64
		anchorHash      []byte
	)
	err := tx.QueryRow(ctx, `SELECT c.last_pos, coalesce(a.pos, 0), coalesce(a.hash, ''::bytea) FROM audit_chains c
		LEFT JOIN LATERAL (SELECT pos, hash FROM audit_anchors WHERE chain_id = c.chain_id ORDER BY pos DESC LIMIT 1) a ON true
		WHERE c.chain_id = $1`, h.Chain).Scan(&last, &anchorPos, &anchorHash)
	if errors.Is(err, pgx.ErrNoRows) {
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakChainMissing,
			Message: fmt.Sprintf("the checkpoint names chain %s at entry %d; the log no longer has the chain: it was deleted", h.Chain, h.Position)}
		return r, nil
	}
	if err != nil {
		return r, fmt.Errorf("read decision log chain %s: %w", h.Chain, err)
	}
	r.Last = last
	var (
		got []byte
		ok  bool
	)
	switch {
	case h.Position == 0:
		return r, nil
	case last < h.Position:
		r.Broken = &BrokenLink{Position: last + 1, Kind: BreakTruncated,
			Message: fmt.Sprintf("the chain ends at entry %d but the checkpoint saw it at %d: entries %d-%d were deleted", last, h.Position, last+1, h.Position)}
		return r, nil
	case h.Position < anchorPos:
		return r, nil // dropped by retention; the anchor verifies onwards
	case h.Position == anchorPos:
		got, ok = anchorHash, true
	default:
		if got, ok, err = (&pgSource{p: p, tx: tx}).hashAt(ctx, h.Chain, h.Position); err != nil {
			return r, err
		}
	}
	switch {
	case !ok:
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakMissing,
			Message: fmt.Sprintf("entry %d, the chain's head in the checkpoint, is missing", h.Position)}
	case !bytes.Equal(got, h.Hash):
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakCheckpointMismatch,
			Message: fmt.Sprintf("entry %d differs from the one the checkpoint saw: the chain was rewritten", h.Position)}
	default:
		r.Checked = 1
	}
	return r, nil
}

func compareTenantHead(ctx context.Context, tx pgx.Tx, h chain.Head) (ChainReport, error) {
	r := ChainReport{Chain: h.Chain, Changes: true}
	var (
		rev  *int64
		hash []byte
	)
	err := tx.QueryRow(ctx, `SELECT t.revision, c.hash FROM (SELECT $1::text AS id) q
		LEFT JOIN tenants t ON t.id = q.id LEFT JOIN change_log c ON c.tenant_id = q.id AND c.revision = $2`,
		h.Chain, h.Position).Scan(&rev, &hash)
	if err != nil {
		return r, fmt.Errorf("read tenant %q: %w", h.Chain, err)
	}
	switch {
	case rev == nil:
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakChainMissing,
			Message: fmt.Sprintf("the checkpoint names tenant %s at revision %d; the tenant is gone from the database", h.Chain, h.Position)}
	case *rev < h.Position:
		r.Last = *rev
		r.Broken = &BrokenLink{Position: *rev + 1, Kind: BreakTruncated,
			Message: fmt.Sprintf("the tenant is at revision %d but the checkpoint saw revision %d: its revision was lowered and revisions deleted", *rev, h.Position)}
	case hash == nil:
		r.Last = *rev
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakMissing,
			Message: fmt.Sprintf("revision %d, the tenant's head in the checkpoint, is missing", h.Position)}
	case !bytes.Equal(hash, h.Hash):
		r.Last = *rev
		r.Broken = &BrokenLink{Position: h.Position, Kind: BreakCheckpointMismatch,
			Message: fmt.Sprintf("revision %d differs from the one the checkpoint saw: the change log was rewritten", h.Position)}
	default:
		r.Last, r.Checked = *rev, 1
	}
	return r, nil
}
