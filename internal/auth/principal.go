package auth

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// Scope is what a credential may call.
type Scope string

// Scopes. Platform includes the others: a platform credential acts as the
// platform operator, with every right in its tenants.
const (
	ScopeCheck    Scope = "check"    // AuthorizationService
	ScopeAdmin    Scope = "admin"    // AdminService
	ScopeAudit    Scope = "audit"    // AuditService
	ScopePlatform Scope = "platform" // PlatformService, and every other service
)

// AllScopes lists the scopes in the order they are shown.
var AllScopes = []Scope{ScopeCheck, ScopeAdmin, ScopeAudit, ScopePlatform}

// Principal is an authenticated caller: its credential's name, scopes,
// tenants and bound user.
type Principal struct {
	// Credential names the credential for logs and the audit trail:
	// "key:<id>" or "cert:<identity>"; empty when authentication is off.
	Credential string
	// Name is the credential's name; a platform credential acts as
	// platform:<Name>.
	Name    string
	Scopes  []Scope
	Tenants []string // nil: every tenant
	User    string   // the bound user, or empty
	// Insecure is set when authentication is off: every scope and tenant,
	// and the request's actor_id taken as given.
	Insecure bool
}

// insecure is the principal of every call when authentication is off.
var insecure = &Principal{Name: "anonymous", Scopes: AllScopes, Insecure: true}

// Has reports whether the principal has the scope; platform has them all.
func (p *Principal) Has(s Scope) bool {
	return slices.Contains(p.Scopes, s) || slices.Contains(p.Scopes, ScopePlatform)
}

// InTenant reports whether the principal may act in the tenant.
func (p *Principal) InTenant(tenant string) bool {
	return p.Tenants == nil || slices.Contains(p.Tenants, tenant)
}

// Covers reports whether the principal's tenants include all of tenants
// (nil: every tenant).
func (p *Principal) Covers(tenants []string) bool {
	if p.Tenants == nil {
		return true
	}
	if tenants == nil {
		return false
	}
	for _, t := range tenants {
		if !p.InTenant(t) {
			return false
		}
	}
	return true
}

// describe names the principal in refusals.
func (p *Principal) describe() string {
	if p.Credential == "" {
		return "the caller"
	}
	return fmt.Sprintf("credential %s (%s)", p.Credential, p.Name)
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// FromContext returns the call's principal. A context the interceptor did
// not see (an in-process call) has none; it is treated as a caller with
// no rights.
func FromContext(ctx context.Context) *Principal {
	if p, ok := ctx.Value(principalKey{}).(*Principal); ok {
		return p
	}
	return &Principal{Name: "unauthenticated"}
}

// principalOf turns a stored credential into the principal it grants.
func principalOf(c store.Credential) *Principal {
	p := &Principal{Name: c.Name, Tenants: c.Tenants, User: c.User}
	for _, s := range c.Scopes {
		p.Scopes = append(p.Scopes, Scope(s))
	}
	if c.Certificate != "" {
		p.Credential = "cert:" + c.Certificate
	} else {
		p.Credential = "key:" + c.ID
	}
	return p
}

// Limits of a credential's attributes.
const (
	MaxNameLength        = 64
	MaxCredentialTenants = 1000
	MaxIdentityLength    = 1024
)

// Spec is what a new credential is to carry; ValidateSpec checks it.
type Spec struct {
	Name        string
	Scopes      []string
	Tenants     []string
	User        string
	ExpiresAt   time.Time
	Certificate string // set: a certificate identity instead of an API key
}

// ValidateSpec checks a new credential's attributes. Field names are those
// of the CreateKey request.
func ValidateSpec(s Spec, now time.Time) error {
	if err := model.ValidateText("name", s.Name, MaxNameLength, true); err != nil {
		return err
	}
	if len(s.Scopes) == 0 {
		return model.Invalid("scopes", model.ReasonMissingField, "name at least one of check, admin, audit, platform")
	}
	platform := false
	for i, sc := range s.Scopes {
		field := fmt.Sprintf("scopes[%d]", i)
		if !slices.Contains(AllScopes, Scope(sc)) {
			return model.Invalid(field, model.ReasonInvalidValue, fmt.Sprintf("scope must be check, admin, audit or platform, got %q", sc))
		}
		if slices.Index(s.Scopes, sc) != i {
			return model.Invalid(field, model.ReasonDuplicate, fmt.Sprintf("scope %q is listed twice", sc))
		}
		platform = platform || sc == string(ScopePlatform)
	}
	// An auditors' tool reads every tenant's logs, takes checkpoints and
	// verifies both logs whole: the audit scope alone, which changes
	// nothing, may cover every tenant too.
	auditOnly := len(s.Scopes) == 1 && s.Scopes[0] == string(ScopeAudit)
	if len(s.Tenants) == 0 && !platform && !auditOnly {
		return model.Invalid("tenants", model.ReasonMissingField,
			"name the tenants the credential may act in (only a platform credential, or one with the audit scope alone, may act in every tenant)")
	}
	if len(s.Tenants) > MaxCredentialTenants {
		return model.Invalid("tenants", model.ReasonTooMany, fmt.Sprintf("at most %d tenants", MaxCredentialTenants))
	}
	for i, t := range s.Tenants {
		field := fmt.Sprintf("tenants[%d]", i)
		if err := model.ValidateTenantID(field, t); err != nil {
			return err
		}
		if slices.Index(s.Tenants, t) != i {
			return model.Invalid(field, model.ReasonDuplicate, fmt.Sprintf("tenant %q is listed twice", t))
		}
	}
	if s.User != "" {
		if err := model.ValidateSubjectID("user_id", s.User); err != nil {
			return err
		}
		if len(s.Tenants) != 1 {
			return model.Invalid("user_id", model.ReasonInvalidValue, "a credential bound to a user acts in exactly one tenant, the user's")
		}
		if platform {
			return model.Invalid("user_id", model.ReasonInvalidValue, "a platform credential acts as the platform operator and cannot be bound to a user")
		}
	}
	if !s.ExpiresAt.IsZero() && !s.ExpiresAt.After(now) {
		return model.Invalid("expires_at", model.ReasonExpiryInPast, "must lie in the future")
	}
	if s.Certificate != "" {
		if err := model.ValidateText("certificate_identity", s.Certificate, MaxIdentityLength, true); err != nil {
			return err
		}
	}
	return nil
}
