package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

// CredentialsChannel is notified with a credential's id when it is
// revoked, so that replicas caching it can drop it.
const CredentialsChannel = "crmauthz_credentials" //nolint:gosec // a name, not a secret

const credentialColumns = `id, name, secret_hash, certificate, scopes, tenants, user_id, expires_at,
	created_at, created_by, revoked_at, revoked_by`

// CreateCredential implements store.Store.
func (s *Store) CreateCredential(ctx context.Context, c store.Credential) error {
	if s.closed.Load() {
		return store.ErrClosed
	}
	var cert any
	if c.Certificate != "" {
		cert = c.Certificate
	}
	tenants := c.Tenants
	if tenants == nil {
		tenants = []string{}
	}
	_, err := s.pool.Exec(ctx, `INSERT INTO credentials (id, name, secret_hash, certificate, scopes, tenants, user_id,
		expires_at, created_at, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		c.ID, c.Name, c.SecretHash, cert, c.Scopes, tenants, c.User, nullTime(dbTime(c.ExpiresAt)), dbTime(c.CreatedAt), c.CreatedBy)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == sqlstateUniqueViolation {
		return &model.ConflictError{Reason: model.ReasonCredentialExists, Message: fmt.Sprintf("credential %q or its certificate identity already exists", c.ID), Exists: true}
	}
	if err != nil {
		return pgerr.Wrap(fmt.Errorf("create credential %q: %w", c.ID, err))
	}
	return nil
}

// Credential implements store.Store.
func (s *Store) Credential(ctx context.Context, id string) (store.Credential, error) {
	return s.oneCredential(ctx, "id = $1", id, model.CredentialNotFound(id))
}

// CredentialByCertificate implements store.Store.
func (s *Store) CredentialByCertificate(ctx context.Context, identity string) (store.Credential, error) {
	return s.oneCredential(ctx, "certificate = $1 AND revoked_at IS NULL", identity,
		&model.NotFoundError{Reason: model.ReasonCredentialNotFound, What: fmt.Sprintf("credential of certificate identity %q", identity)})
}

func (s *Store) oneCredential(ctx context.Context, where, arg string, notFound error) (store.Credential, error) {
	if s.closed.Load() {
		return store.Credential{}, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, "SELECT "+credentialColumns+" FROM credentials WHERE "+where, arg)
	c, err := pgx.CollectExactlyOneRow(rows, scanCredential)
	if errors.Is(err, pgx.ErrNoRows) {
		return store.Credential{}, notFound
	}
	if err != nil {
		return store.Credential{}, pgerr.Wrap(fmt.Errorf("read credential: %w", err))
	}
	return c, nil
}

// Credentials implements store.Store.
func (s *Store) Credentials(ctx context.Context, after string, limit int, includeRevoked bool) ([]store.Credential, error) {
	if s.closed.Load() {
		return nil, store.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, "SELECT "+credentialColumns+` FROM credentials
		WHERE id > $1 AND ($2 OR revoked_at IS NULL) ORDER BY id LIMIT $3`, after, includeRevoked, limit)
	cs, err := pgx.CollectRows(rows, scanCredential)
	if err != nil {
		return nil, pgerr.Wrap(fmt.Errorf("list credentials: %w", err))
	}
	return cs, nil
}

// RevokeCredential implements store.Store. It notifies CredentialsChannel
// when the credential was in force.
func (s *Store) RevokeCredential(ctx context.Context, id, by string, at time.Time) (store.Credential, error) {
	if s.closed.Load() {
		return store.Credential{}, store.ErrClosed
	}
	var c store.Credential
	err := inTx(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.ReadCommitted}, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, "UPDATE credentials SET revoked_at = $2, revoked_by = $3 WHERE id = $1 AND revoked_at IS NULL", id, dbTime(at), by)
		if err != nil {
			return fmt.Errorf("revoke credential %q: %w", id, err)
		}
		if tag.RowsAffected() == 1 {
			if _, err := tx.Exec(ctx, "SELECT pg_notify($1, $2)", CredentialsChannel, id); err != nil {
				return fmt.Errorf("revoke credential %q: %w", id, err)
			}
		}
		rows, _ := tx.Query(ctx, "SELECT "+credentialColumns+" FROM credentials WHERE id = $1", id)
		c, err = pgx.CollectExactlyOneRow(rows, scanCredential)
		if errors.Is(err, pgx.ErrNoRows) {
			return model.CredentialNotFound(id)
		}
		return err
	})
	if err != nil {
		return store.Credential{}, pgerr.Wrap(err)
	}
	return c, nil
}

func scanCredential(row pgx.CollectableRow) (store.Credential, error) {
	var (
		c                store.Credential
		cert             *string
		expires, revoked *time.Time
	)
	if err := row.Scan(&c.ID, &c.Name, &c.SecretHash, &cert, &c.Scopes, &c.Tenants, &c.User, &expires,
		&c.CreatedAt, &c.CreatedBy, &revoked, &c.RevokedBy); err != nil {
		return c, err
	}
	if cert != nil {
		c.Certificate = *cert
	}
	if len(c.Tenants) == 0 {
		c.Tenants = nil
	}
	if expires != nil {
		c.ExpiresAt = expires.UTC()
	}
	if revoked != nil {
		c.RevokedAt = revoked.UTC()
	}
	c.CreatedAt = c.CreatedAt.UTC()
	return c, nil
}
