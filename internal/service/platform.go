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
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Platform implements pb.PlatformServiceServer: the credentials callers
// authenticate with.
type Platform struct {
	pb.UnimplementedPlatformServiceServer
	store  store.Store
	eng    *engine.Engine
	bundle *bundle.Bundle
	authn  *auth.Authenticator
	events auth.Recorder
	now    func() time.Time
}

var _ pb.PlatformServiceServer = (*Platform)(nil)

// NewPlatform returns the handlers of PlatformService. Tenants created and
// deleted go to eng at once; credentials created and revoked go to authn's
// cache at once, and to events (may be nil) for auditors.
func NewPlatform(st store.Store, eng *engine.Engine, b *bundle.Bundle, authn *auth.Authenticator, events auth.Recorder, now func() time.Time) *Platform {
	return &Platform{store: st, eng: eng, bundle: b, authn: authn, events: events, now: now}
}

// CreateTenant implements pb.PlatformServiceServer.
func (s *Platform) CreateTenant(ctx context.Context, req *pb.CreateTenantRequest) (*pb.CreateTenantResponse, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	if err := model.ValidateText("name", req.GetName(), model.MaxDisplayLength, false); err != nil {
		return nil, err
	}
	if err := model.ValidateText("reason", req.GetReason(), model.MaxReasonLength, true); err != nil {
		return nil, err
	}
	templates := req.GetTemplates()
	if len(templates) == 0 {
		for _, t := range s.bundle.SortedTemplates() {
			templates = append(templates, t.ID)
		}
	}
	st := model.NewTenantState(req.GetTenantId(), req.GetName())
	for i, id := range templates {
		field := fmt.Sprintf("templates[%d]", i)
		if err := model.ValidateName(field, id); err != nil {
			return nil, err
		}
		r, ok := s.bundle.FromTemplate(id)
		if !ok {
			return nil, model.Invalid(field, model.ReasonUnknownTemplate, fmt.Sprintf("unknown role template %q", id))
		}
		if _, dup := st.Roles[id]; dup {
			return nil, model.Invalid(field, model.ReasonDuplicate, fmt.Sprintf("template %q is listed twice", id))
		}
		if _, err := st.CreateRole(r); err != nil {
			return nil, err
		}
	}
	now := s.now()
	op := auth.Operator(ctx)
	if admin := req.GetAdminUserId(); admin != "" {
		if err := model.ValidateSubjectID("admin_user_id", admin); err != nil {
			return nil, err
		}
		if err := model.ValidateText("admin_display_name", req.GetAdminDisplayName(), model.MaxDisplayLength, false); err != nil {
			return nil, err
		}
		if _, ok := st.Roles[adminRole]; !ok {
			return nil, model.Invalid("admin_user_id", model.ReasonMissingField, "a first administrator needs the admin template among the templates")
		}
		if _, err := st.UpsertUser(model.User{ID: admin, Name: req.GetAdminDisplayName()}); err != nil {
			return nil, err
		}
		if _, err := st.GrantRole(model.Grant{UserID: admin, RoleID: adminRole, GrantedBy: op.ID, GrantedAt: now.UTC()}, now); err != nil {
			return nil, err
		}
	}
	created, err := s.store.CreateTenant(ctx, store.Write{Tenant: st.ID, Actor: op.ID, Reason: req.GetReason(), Credential: op.Credential}, st)
	if err != nil {
		return nil, err
	}
	if err := s.eng.Load(created); err != nil {
		return nil, fmt.Errorf("load tenant %q: %w", created.ID, err)
	}
	info, err := s.store.TenantInfo(ctx, created.ID)
	if err != nil {
		return nil, err
	}
	return &pb.CreateTenantResponse{Tenant: tenantToProto(info), Revision: created.Revision}, nil
}

// adminRole is the template (and role) a tenant's first administrator gets.
const adminRole = "admin"

// GetTenant implements pb.PlatformServiceServer.
func (s *Platform) GetTenant(ctx context.Context, req *pb.GetTenantRequest) (*pb.GetTenantResponse, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	info, err := s.store.TenantInfo(ctx, req.GetTenantId())
	if err != nil {
		return nil, err
	}
	return &pb.GetTenantResponse{Tenant: tenantToProto(info)}, nil
}

// ListTenants implements pb.PlatformServiceServer.
func (s *Platform) ListTenants(ctx context.Context, req *pb.ListTenantsRequest) (*pb.ListTenantsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after := ""
	if tok := req.GetPageToken(); tok != "" {
		b, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || model.ValidateTenantID("page_token", string(b)) != nil {
			return nil, model.Invalid("page_token", model.ReasonInvalidValue, "is not a token ListTenants returned")
		}
		after = string(b)
	}
	p := auth.FromContext(ctx)
	out := &pb.ListTenantsResponse{}
	for {
		page, err := s.store.Tenants(ctx, after, size+1, req.GetIncludeDeleted())
		if err != nil {
			return nil, err
		}
		for _, t := range page {
			after = t.ID
			if !p.InTenant(t.ID) {
				continue
			}
			if len(out.Tenants) == size {
				out.NextPageToken = base64.RawURLEncoding.EncodeToString([]byte(out.Tenants[size-1].GetTenantId()))
				return out, nil
			}
			out.Tenants = append(out.Tenants, tenantToProto(t))
		}
		if len(page) < size+1 {
			return out, nil
		}
	}
}

// DeleteTenant implements pb.PlatformServiceServer.
func (s *Platform) DeleteTenant(ctx context.Context, req *pb.DeleteTenantRequest) (*pb.DeleteTenantResponse, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, err
	}
	if req.GetConfirmTenantId() != req.GetTenantId() {
		return nil, model.Invalid("confirm_tenant_id", model.ReasonConfirmationMismatch, "must repeat tenant_id, to confirm the deletion")
	}
	if err := model.ValidateText("reason", req.GetReason(), model.MaxReasonLength, true); err != nil {
		return nil, err
	}
	op := auth.Operator(ctx)
	rev, err := s.store.DeleteTenant(ctx, store.Write{Tenant: req.GetTenantId(), Actor: op.ID, Reason: req.GetReason(), Credential: op.Credential})
	if err != nil {
		return nil, err
	}
	s.eng.Unload(req.GetTenantId(), rev)
	return &pb.DeleteTenantResponse{Revision: rev}, nil
}

func tenantToProto(t store.TenantInfo) *pb.Tenant {
	return &pb.Tenant{
		TenantId: t.ID, Name: t.Name, Revision: t.Revision, RoleCount: int64(t.Roles), UserCount: int64(t.Users),
		GrantCount: int64(t.Grants), CreateTime: timestamp(t.CreatedAt), DeleteTime: timestamp(t.DeletedAt),
	}
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
