// Package store holds the interface to the service's durable state and the
// errors its implementations share. Implementations: store/memory (the
// embedded default) and store/postgres; store/storetest is the conformance
// suite both pass.
package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Store keeps tenants, their roles and grants, and the change log.
//
// Every write goes through Update (or CreateTenant): one atomic step that
// applies a mutation to the tenant's current state, appends the change to
// the change log and bumps the tenant's revision. Nothing half-applied is
// ever visible, and concurrent writers to one tenant are serialised so no
// update is lost.
type Store interface {
	// TenantIDs lists every tenant, ordered by id.
	TenantIDs(ctx context.Context) ([]string, error)
	// Tenant returns a tenant's whole state at its latest revision, or a
	// *model.NotFoundError matching model.ErrTenantNotFound.
	Tenant(ctx context.Context, id string) (*model.TenantState, error)
	// CreateTenant stores a new tenant with its initial roles and grants at
	// revision 1. It fails with a *model.ConflictError if the id is taken.
	CreateTenant(ctx context.Context, w Write, st *model.TenantState) (*model.TenantState, error)
	// Update runs fn on a private copy of the tenant's current state. If fn
	// succeeds, the copy becomes the tenant's state at the next revision,
	// together with the change fn describes; if fn fails, nothing changes and
	// its error is returned as is.
	Update(ctx context.Context, w Write, fn Mutation) (*model.TenantState, error)
	// Changes lists a tenant's change log entries after revision `after`, oldest
	// first, at most limit of them.
	Changes(ctx context.Context, tenant string, after int64, limit int) ([]ChangeEntry, error)
	// Close releases the store's resources.
	Close()
}

// Mutation changes a tenant's state and describes the change.
type Mutation func(st *model.TenantState) (model.Change, error)

// Write names who writes, where, and why.
type Write struct {
	Tenant string
	Actor  string
	Reason string
}

// ChangeEntry is one entry of the change log: one admin write.
type ChangeEntry struct {
	Tenant   string
	Revision int64
	Time     time.Time
	Actor    string
	Reason   string
	Action   string
	Target   string
	Before   []byte // JSON, nil when the target did not exist before
	After    []byte // JSON, nil when the target no longer exists
}

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// TenantSummary is what the change log records of a created tenant.
func TenantSummary(st *model.TenantState) map[string]any {
	return map[string]any{
		"id": st.ID, "name": st.Name, "roles": len(st.Roles), "grants": len(st.Grants),
		"departments": len(st.Departments), "members": len(st.Members),
		"sharing_rules": len(st.SharingRules), "record_shares": len(st.RecordShares),
		"manager_depth": st.Settings.ManagerDepth,
	}
}

// NewChangeEntry encodes a change made by w at revision rev and time t.
func NewChangeEntry(w Write, rev int64, t time.Time, c model.Change) (ChangeEntry, error) {
	before, err := encodeJSON(c.Before)
	if err != nil {
		return ChangeEntry{}, err
	}
	after, err := encodeJSON(c.After)
	if err != nil {
		return ChangeEntry{}, err
	}
	return ChangeEntry{
		Tenant: w.Tenant, Revision: rev, Time: t.UTC(), Actor: w.Actor, Reason: w.Reason,
		Action: c.Action, Target: c.Target, Before: before, After: after,
	}, nil
}

func encodeJSON(v any) ([]byte, error) {
	if v == nil {
		return nil, nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode change: %w", err)
	}
	return b, nil
}
