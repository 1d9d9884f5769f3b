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
	// TenantStates returns the states of the tenants of ids that exist, in
	// id order: Tenant for many at once, as a start-up reads them.
	TenantStates(ctx context.Context, ids []string) ([]*model.TenantState, error)
	// CreateTenant stores a new tenant with its initial roles and grants at
	// revision 1. It fails with a *model.ConflictError if the id is taken.
	CreateTenant(ctx context.Context, w Write, st *model.TenantState) (*model.TenantState, error)
	// Update runs fn on the tenant's current state, under the tenant's lock
	// and a journal (model.TenantState.Begin), and returns the revision it
	// wrote. If fn succeeds, the state becomes the tenant's state at the
	// next revision, together with the change fn describes, and only the
	// rows fn changed are written; if fn or the write fails, everything fn
	// changed is undone and the error is returned as is. The state is the
	// store's: fn and w.Applied must not keep it.
	Update(ctx context.Context, w Write, fn Mutation) (int64, error)
	// Changes lists a tenant's change log entries after revision `after`, oldest
	// first, at most limit of them. A deleted tenant's change log stays
	// readable.
	Changes(ctx context.Context, tenant string, after int64, limit int) ([]ChangeEntry, error)
	// Tenants lists tenants with ids after `after`, ordered by id, at most
	// limit of them, with their sizes; deleted ones only with
	// includeDeleted.
	Tenants(ctx context.Context, after string, limit int, includeDeleted bool) ([]TenantInfo, error)
	// Revisions returns the revision of every tenant (deleted ones left
	// out): what a replica compares its engine with.
	Revisions(ctx context.Context) (map[string]int64, error)
	// TenantInfo returns one tenant's summary, deleted or not, or a
	// *model.NotFoundError matching model.ErrTenantNotFound.
	TenantInfo(ctx context.Context, id string) (TenantInfo, error)
	// DeleteTenant removes a tenant's roles, grants, users, organisation
	// and sharing. Its change log stays, with the deletion as its last
	// entry (at the returned revision); the tenant is gone for every other
	// method, and its id is never given out again (CreateTenant answers
	// ALREADY_EXISTS).
	DeleteTenant(ctx context.Context, w Write) (revision int64, err error)

	// StateAt returns a tenant's state as it was at a revision, replayed
	// from the latest snapshot at or before it through the change log's
	// rows: what explains a decision after the fact. A revision no
	// snapshot reaches (before the store kept them) is a
	// *model.ConflictError (HISTORY_UNAVAILABLE).
	StateAt(ctx context.Context, tenant string, revision int64) (*model.TenantState, error)

	// DueReviews lists the open access reviews whose deadline is at or
	// before now, soonest deadline first, at most limit of them: what is
	// to be closed by its deadline.
	DueReviews(ctx context.Context, now time.Time, limit int) ([]ReviewRef, error)

	// CreateCredential stores a new credential. An id that is taken, or a
	// certificate identity an unrevoked credential already has, is a
	// *model.ConflictError (CREDENTIAL_EXISTS).
	CreateCredential(ctx context.Context, c Credential) error
	// Credential returns a credential by id, revoked or not, or a
	// *model.NotFoundError (CREDENTIAL_NOT_FOUND).
	Credential(ctx context.Context, id string) (Credential, error)
	// CredentialByCertificate returns the unrevoked credential of a
	// certificate identity, or a *model.NotFoundError.
	CredentialByCertificate(ctx context.Context, identity string) (Credential, error)
	// Credentials lists credentials with ids after `after`, ordered by id,
	// at most limit of them; revoked ones only with includeRevoked.
	Credentials(ctx context.Context, after string, limit int, includeRevoked bool) ([]Credential, error)
	// RevokeCredential marks a credential revoked by `by` at `at` and
	// returns it as stored; a credential revoked before keeps its first
	// revocation. An unknown id is a *model.NotFoundError.
	RevokeCredential(ctx context.Context, id, by string, at time.Time) (Credential, error)

	// Close releases the store's resources.
	Close()
}

// Mutation changes a tenant's state and describes the change. It changes
// rows only through the state's methods (or model.SetRow), which record
// them in the write's journal.
type Mutation func(st *model.TenantState) (model.Change, error)

// Journaled runs fn on st under a journal (model.TenantState.Begin) and
// then commit with fn's change, what fn changed and the rows as they were
// before it. The changes stay when commit succeeds, and are undone when
// fn or commit fails or panics, or when fn changed rows behind the
// journal's back (ErrUnjournaled).
func Journaled(st *model.TenantState, fn Mutation, commit func(c model.Change, d model.Delta, before *model.TenantState) error) error {
	st.Begin()
	kept := false
	defer func() {
		if !kept {
			st.Rollback()
		}
	}()
	change, err := fn(st)
	if err != nil {
		return err
	}
	if st.Unjournaled() {
		return ErrUnjournaled
	}
	d, before := st.Delta()
	if err := commit(change, d, before); err != nil {
		return err
	}
	kept = true
	st.Commit()
	return nil
}

// Write names who writes, where, and why.
type Write struct {
	Tenant string
	Actor  string
	Reason string
	// Credential names what the caller authenticated with ("key:<id>",
	// "cert:<identity>"); empty when authentication is off.
	Credential string
	// Source, when set, says what a created tenant was made from (the
	// document of an import); CreateTenant records it in the change log.
	Source string
	// Applied, when set, is called by Update once the write has committed,
	// still under the tenant's lock, so calls come in revision order: st is
	// the tenant's new state and d what the write changed (model.Delta).
	// Its error is Update's, though the write stands. It must not keep st.
	// A store that brings its state of the tenant up to date from other
	// processes' writes first may call it for each of those as well, in
	// revision order; the last call is the write's own.
	Applied func(st *model.TenantState, d model.Delta) error
}

// Credential is what a caller authenticates with: an API key (a secret
// whose SHA-256 is kept) or a client certificate identity, with the scopes
// and tenants it may act in, an optional expiry and an optional bound user.
type Credential struct {
	ID          string   // public id, 16 lowercase hex digits
	Name        string   // for people; a platform credential acts as platform:<name>
	SecretHash  []byte   // SHA-256 of an API key's secret; nil for a certificate identity
	Certificate string   // a certificate identity (URI SAN or CN); empty for an API key
	Scopes      []string // check, admin, audit, platform
	Tenants     []string // the tenants it may act in; empty: every tenant (platform credentials only)
	User        string   // the bound user (of the one tenant), or empty
	ExpiresAt   time.Time
	CreatedAt   time.Time
	CreatedBy   string
	RevokedAt   time.Time // zero while in force
	RevokedBy   string
}

// Revoked reports whether the credential was revoked.
func (c Credential) Revoked() bool { return !c.RevokedAt.IsZero() }

// ChangeEntry is one entry of the change log: one admin write.
type ChangeEntry struct {
	Tenant     string
	Revision   int64
	Time       time.Time
	Actor      string
	Credential string
	Reason     string
	Action     string
	Target     string
	Before     []byte // JSON, nil when the target did not exist before
	After      []byte // JSON, nil when the target no longer exists
	// Related names what the write changed besides its target, as targets
	// (RelatedTargets); nil for nothing.
	Related []string
}

// RelatedTargets returns what a write that made change c and changed d
// changed besides c's target, as the targets an auditor looks it up by:
// each grant it set or removed, "grant/<user>/<role>", in key order. An
// approval's entry so names the grant it made, an access review's entries
// the grants its decisions or its close revoked, and a target prefix such
// as "grant/bob/" finds them (ListChanges). The rows the entry carries are
// what replays the write; these only name some of them. A write that
// replaced the whole state names none: its entry says what replaced it.
func RelatedTargets(c model.Change, d model.Delta) []string {
	if d.Whole {
		return nil
	}
	var out []string
	for _, k := range d.Grants {
		if t := "grant/" + k.UserID + "/" + k.RoleID; t != c.Target {
			out = append(out, t)
		}
	}
	return out
}

// ReviewRef names one access review of a tenant.
type ReviewRef struct{ Tenant, Review string }

// TenantInfo summarises a tenant.
type TenantInfo struct {
	ID        string
	Name      string
	Revision  int64
	Roles     int
	Users     int
	Grants    int
	CreatedAt time.Time
	DeletedAt time.Time // zero unless deleted
}

// Deleted reports whether the tenant was deleted.
func (t TenantInfo) Deleted() bool { return !t.DeletedAt.IsZero() }

// ErrUnjournaled is returned by Update when the mutation added or removed
// rows other than through the state's methods (model.SetRow), so that no
// delta names them: a bug in the caller, refused rather than half written.
var ErrUnjournaled = errors.New("the mutation changed rows outside the state's journal")

// ErrClosed is returned by a store used after Close.
var ErrClosed = errors.New("store closed")

// ErrUnavailable is matched (errors.Is) by the errors of a store or
// decision log that could not reach its database or lost its connection to
// it: the same call may succeed when retried. The cause stays wrapped too.
// store/pgerr marks the PostgreSQL errors that mean this.
var ErrUnavailable = errors.New("database unavailable")

// TenantSummary is what the change log records of a created tenant.
func TenantSummary(st *model.TenantState) map[string]any {
	return map[string]any{
		"id": st.ID, "name": st.Name, "roles": len(st.Roles), "grants": len(st.Grants), "users": len(st.Users),
		"departments": len(st.Departments), "members": len(st.Members),
		"sharing_rules": len(st.SharingRules), "record_shares": len(st.RecordShares),
		"manager_depth": st.Settings.ManagerDepth,
	}
}

// CreatedSummary is what the change log records of a tenant created by w:
// its summary, and w's source when set.
func CreatedSummary(w Write, st *model.TenantState) map[string]any {
	sum := TenantSummary(st)
	if w.Source != "" {
		sum["source"] = w.Source
	}
	return sum
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
		Tenant: w.Tenant, Revision: rev, Time: t.UTC(), Actor: w.Actor, Credential: w.Credential, Reason: w.Reason,
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
