package service

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Platform implements pb.PlatformServiceServer: the credentials callers
// authenticate with.
type Platform struct {
	pb.UnimplementedPlatformServiceServer
	store  store.Store
	authn  *auth.Authenticator
	events auth.Recorder
	now    func() time.Time
}

var _ pb.PlatformServiceServer = (*Platform)(nil)

// NewPlatform returns the handlers of PlatformService. Credentials created
// and revoked go to authn's cache at once, and to events (may be nil) for
// auditors.
func NewPlatform(st store.Store, authn *auth.Authenticator, events auth.Recorder, now func() time.Time) *Platform {
	return &Platform{store: st, authn: authn, events: events, now: now}
}

// CreateKey implements pb.PlatformServiceServer.
func (s *Platform) CreateKey(ctx context.Context, req *pb.CreateKeyRequest) (*pb.CreateKeyResponse, error) {
	now := s.now()
	spec := auth.Spec{Name: req.GetName(), Scopes: req.GetScopes(), Tenants: req.GetTenantIds(), User: req.GetUserId(),
		Certificate: req.GetCertificateIdentity()}
	if req.GetExpiresAt() != nil {
		exp, err := expiry("expires_at", req.GetExpiresAt(), now)
		if err != nil {
			return nil, err
		}
		spec.ExpiresAt = exp
	}
	if err := auth.ValidateSpec(spec, now); err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	if !p.Covers(spec.Tenants) {
		return nil, &auth.DeniedError{Reason: auth.ReasonTenantNotAllowed, Missing: tenantList(spec.Tenants),
			Message: fmt.Sprintf("a credential limited to tenants %s cannot create one for %s", tenantList(p.Tenants), tenantList(spec.Tenants))}
	}
	op := auth.Operator(ctx)
	c, secret, err := NewCredential(spec, op.ID, now)
	if err != nil {
		return nil, err
	}
	if err := s.store.CreateCredential(ctx, c); err != nil {
		return nil, err
	}
	s.authn.Remember(c)
	s.record(ctx, op, audit.EventCredentialCreated, c, "created "+describeCredential(c))
	return &pb.CreateKeyResponse{Key: keyToProto(c, now), Secret: secret}, nil
}

// NewCredential builds a credential from a validated spec: an API key
// with its secret (returned once), or a certificate identity.
func NewCredential(spec auth.Spec, createdBy string, now time.Time) (store.Credential, string, error) {
	c := store.Credential{
		Name: spec.Name, Scopes: spec.Scopes, Tenants: spec.Tenants, User: spec.User, ExpiresAt: spec.ExpiresAt,
		Certificate: spec.Certificate, CreatedAt: now.UTC(), CreatedBy: createdBy,
	}
	var (
		secret string
		err    error
	)
	if spec.Certificate == "" {
		c.ID, secret, c.SecretHash, err = auth.NewKey()
	} else {
		c.ID, err = auth.NewCredentialID()
	}
	if err != nil {
		return c, "", fmt.Errorf("new credential: %w", err)
	}
	return c, secret, nil
}

// ListKeys implements pb.PlatformServiceServer.
func (s *Platform) ListKeys(ctx context.Context, req *pb.ListKeysRequest) (*pb.ListKeysResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || !auth.ValidCredentialID(string(b)) {
			return nil, model.Invalid("page_token", model.ReasonInvalidValue, "is not a token ListKeys returned")
		}
		after = string(b)
	}
	if t := req.GetTenantId(); t != "" {
		if err := model.ValidateTenantID("tenant_id", t); err != nil {
			return nil, err
		}
	}
	p := auth.FromContext(ctx)
	now := s.now()
	out := &pb.ListKeysResponse{}
	for {
		page, err := s.store.Credentials(ctx, after, size+1, req.GetIncludeRevoked())
		if err != nil {
			return nil, err
		}
		for _, c := range page {
			after = c.ID
			if !p.Covers(c.Tenants) || (req.GetTenantId() != "" && c.Tenants != nil && !slices.Contains(c.Tenants, req.GetTenantId())) {
				continue
			}
			if len(out.Keys) == size {
				out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Keys[size-1].KeyId))
				return out, nil
			}
			out.Keys = append(out.Keys, keyToProto(c, now))
		}
		if len(page) < size+1 {
			return out, nil
		}
	}
}

// RevokeKey implements pb.PlatformServiceServer.
func (s *Platform) RevokeKey(ctx context.Context, req *pb.RevokeKeyRequest) (*pb.RevokeKeyResponse, error) {
	id := req.GetKeyId()
	if !auth.ValidCredentialID(id) {
		return nil, model.Invalid("key_id", model.ReasonInvalidIdentifier, "must be 16 lowercase hex digits")
	}
	if err := model.ValidateText("reason", req.GetReason(), model.MaxReasonLength, true); err != nil {
		return nil, err
	}
	c, err := s.store.Credential(ctx, id)
	if err != nil {
		return nil, err
	}
	p := auth.FromContext(ctx)
	if !p.Covers(c.Tenants) {
		return nil, &auth.DeniedError{Reason: auth.ReasonTenantNotAllowed, Missing: tenantList(c.Tenants),
			Message: fmt.Sprintf("a credential limited to tenants %s cannot revoke one for %s", tenantList(p.Tenants), tenantList(c.Tenants))}
	}
	op := auth.Operator(ctx)
	wasRevoked := c.Revoked()
	if c, err = s.store.RevokeCredential(ctx, id, op.ID, s.now()); err != nil {
		return nil, err
	}
	s.authn.Remember(c)
	if !wasRevoked {
		s.record(ctx, op, audit.EventCredentialRevoked, c, fmt.Sprintf("revoked %s: %s", describeCredential(c), req.GetReason()))
	}
	return &pb.RevokeKeyResponse{Key: keyToProto(c, s.now())}, nil
}

func (s *Platform) record(ctx context.Context, op auth.Actor, kind string, c store.Credential, msg string) {
	if s.events == nil {
		return
	}
	ev := audit.SecurityEvent{Kind: kind, Time: s.now(), Credential: op.Credential, Actor: op.ID, Message: msg,
		RequestID: audit.Request(ctx).ID, Reason: strings.ToUpper(strings.ReplaceAll(kind, ".", "_")), Count: 1}
	if len(c.Tenants) == 1 {
		ev.Tenant = c.Tenants[0]
	}
	s.events.Record(ev)
}

func describeCredential(c store.Credential) string {
	kind := "API key"
	if c.Certificate != "" {
		kind = "certificate identity " + c.Certificate
	}
	return fmt.Sprintf("%s %s (%q) scopes %s tenants %s", kind, c.ID, c.Name, strings.Join(c.Scopes, ","), tenantList(c.Tenants))
}

func tenantList(ts []string) string {
	if ts == nil {
		return "(every tenant)"
	}
	return strings.Join(ts, ",")
}

func keyToProto(c store.Credential, now time.Time) *pb.Key {
	k := &pb.Key{
		KeyId: c.ID, Name: c.Name, Scopes: c.Scopes, TenantIds: c.Tenants, UserId: c.User, ExpiresAt: timestamp(c.ExpiresAt),
		CreateTime: timestamppb.New(c.CreatedAt), CreatedBy: c.CreatedBy, RevokeTime: timestamp(c.RevokedAt), RevokedBy: c.RevokedBy,
		CertificateIdentity: c.Certificate,
	}
	k.Active = !c.Revoked() && (c.ExpiresAt.IsZero() || now.Before(c.ExpiresAt))
	return k
}
