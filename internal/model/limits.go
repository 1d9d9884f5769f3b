package model

import "fmt"

// The largest tenant the service accepts. Writes and imports that would go
// beyond one of these are refused with a *LimitError (RESOURCE_EXHAUSTED,
// TENANT_LIMIT). They are the size at which start-up, memory, write and
// check latency were measured (README, Tenant limits); a larger tenant
// needs measuring first. Memberships are bounded by users (one each).
const (
	MaxTenantUsers        = 100_000
	MaxTenantRoles        = 500
	MaxTenantGrants       = 200_000
	MaxTenantDepartments  = 10_000
	MaxTenantSharingRules = 1_000
	MaxTenantRecordShares = 100_000
)

// LimitError refuses a write that would take a tenant beyond one of its
// limits.
type LimitError struct {
	Tenant string
	What   string // users, roles, grants, departments, sharing rules, record shares
	Max    int
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("tenant %q already holds %d %s, the most a tenant may", e.Tenant, e.Max, e.What)
}

// room refuses one more of what when the tenant holds max already.
func (s *TenantState) room(what string, n, max int) error {
	if n >= max {
		return &LimitError{Tenant: s.ID, What: what, Max: max}
	}
	return nil
}
