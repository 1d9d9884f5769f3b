package chain

import (
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"time"
)

// CheckpointTag opens the canonical encoding of a checkpoint.
const CheckpointTag = "crmauthz.checkpoint.v1"

// Head is where a chain stood: its last position (a decision chain) or
// revision (a tenant's change log) and that entry's hash.
type Head struct {
	Chain    string
	Position int64
	Hash     []byte
}

// A Checkpoint is a signed statement of every chain's head at one time. An
// auditor keeps it outside the database: a log that verifies against it
// still holds every entry the checkpoint covers, unaltered, whatever was
// done to the database since.
type Checkpoint struct {
	Issued    time.Time
	KeyID     string // the signing key
	Decisions []Head // decision chains, by chain id
	Changes   []Head // tenants' change logs, by tenant id
	Content   []byte // the canonical encoding the signature covers
	Signature []byte
}

// Sign returns a checkpoint of the heads given, signed by s. The heads are
// sorted by chain; a chain named twice is an error.
func (s *Signer) Sign(issued time.Time, decisions, changes []Head) (*Checkpoint, error) {
	c := &Checkpoint{Issued: issued.UTC().Truncate(time.Microsecond), KeyID: s.ID,
		Decisions: sortedHeads(decisions), Changes: sortedHeads(changes)}
	for _, hs := range [][]Head{c.Decisions, c.Changes} {
		for i := 1; i < len(hs); i++ {
			if hs[i].Chain == hs[i-1].Chain {
				return nil, fmt.Errorf("checkpoint: chain %q appears twice", hs[i].Chain)
			}
		}
	}
	c.Content = c.encode()
	c.Signature = ed25519.Sign(s.private, c.Content)
	return c, nil
}

func sortedHeads(hs []Head) []Head {
	out := slices.Clone(hs)
	slices.SortFunc(out, func(a, b Head) int { return strings.Compare(a.Chain, b.Chain) })
	return out
}

func (c *Checkpoint) encode() []byte {
	var e Encoder
	e.Reset(CheckpointTag)
	e.String(c.KeyID)
	e.Time(c.Issued)
	for _, hs := range [][]Head{c.Decisions, c.Changes} {
		e.Int(int64(len(hs)))
		for _, h := range hs {
			e.String(h.Chain)
			e.Int(h.Position)
			e.Raw(h.Hash)
		}
	}
	return e.Bytes()
}

// ParseCheckpoint reads a checkpoint from its signed content and signature.
// It does not check the signature: Verify does.
func ParseCheckpoint(content, signature []byte) (*Checkpoint, error) {
	d := NewDecoder(content, CheckpointTag)
	c := &Checkpoint{Content: content, Signature: signature}
	c.KeyID = d.String()
	c.Issued = d.Time()
	for _, hs := range []*[]Head{&c.Decisions, &c.Changes} {
		n := d.Int()
		if n < 0 || n > int64(len(content)) {
			return nil, fmt.Errorf("checkpoint: %w", ErrMalformed)
		}
		for range n {
			h := Head{Chain: d.String(), Position: d.Int(), Hash: d.Raw()}
			if d.err != nil {
				break
			}
			*hs = append(*hs, h)
		}
	}
	if err := d.Err(); err != nil {
		return nil, fmt.Errorf("checkpoint: %w", err)
	}
	if !slices.Equal(c.encode(), content) {
		return nil, fmt.Errorf("checkpoint: %w: not in canonical form", ErrMalformed)
	}
	return c, nil
}

// Verify reports whether the checkpoint's signature is pub's over its
// content.
func (c *Checkpoint) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, c.Content, c.Signature)
}
