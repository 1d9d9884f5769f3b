// Package datagen generates tenants of a realistic CRM shape for tests,
// benchmarks and cmd/authzgen: roles instantiated from every template of
// the policy bundle and custom roles (module verbs at every data scope,
// field rules, functions, a few narrowing denies, inheritance), a
// department tree a few levels deep, users with a primary department (some
// with others) and manager chains, grants of one to three roles per user
// (some expiring), offboarded users, sharing rules over every principal
// kind and record shares (some expiring). Requests generates checks
// against such a tenant.
//
// A tenant is built only through the model's own mutations (CreateRole,
// UpsertUser, SetMembership, GrantRole, ...), so it holds nothing an admin
// could not have made, and is the same for the same options, seed and
// time: the generator never ranges over a map.
package datagen

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/model"
)

// Options size a generated tenant. Counts are exact: the tenant holds
// exactly Users users, len(templates)+Roles roles, Departments
// departments, round(GrantsPerUser*Users) grants, SharingRules sharing
// rules and Shares record shares. A zero field means none (a zero
// ManagerDepth: managers read nothing), so start from a preset (Small,
// Medium, Large) and change what differs.
type Options struct {
	// Users is the number of users. Each has a membership when the tenant
	// has departments: one user heads each department (reporting to the
	// head of the department above), the others report mostly to their
	// department's head.
	Users int
	// Roles is the number of custom roles beyond those instantiated from
	// the bundle's templates; about one in twenty is a narrowing role that
	// only denies.
	Roles int
	// Departments is the number of departments, in one tree.
	Departments int
	// GrantsPerUser is the mean number of roles a user holds: from 1 to 3
	// (every user holds 1-3 roles), or below 1 (some users hold none).
	GrantsPerUser float64
	// SharingRules is the number of sharing rules.
	SharingRules int
	// Shares is the number of record shares.
	Shares int
	// ExpiringFraction is the share of grants and record shares that
	// expire, at times from an hour to a year after now.
	ExpiringFraction float64
	// InactiveFraction is the share of users who are offboarded
	// (inactive).
	InactiveFraction float64
	// OtherDepartmentsFraction is the share of users who belong to one or
	// two departments besides their primary one.
	OtherDepartmentsFraction float64
	// ManagerDepth is the tenant's manager depth (0 to
	// model.MaxManagerDepth).
	ManagerDepth int
}

// Small returns the options of a tenant the size of the demo: 15 users in
// 5 departments, the template roles and 3 custom roles.
func Small() Options {
	return Options{
		Users: 15, Roles: 3, Departments: 5, GrantsPerUser: 1.5, SharingRules: 3, Shares: 10,
		ExpiringFraction: 0.1, InactiveFraction: 0.07, OtherDepartmentsFraction: 0.1,
		ManagerDepth: model.DefaultManagerDepth,
	}
}

// Medium returns the options of a mid-sized tenant: 1,000 users, 40 roles
// (with the six templates of the default bundle), 100 departments, 1,500
// grants, 50 sharing rules and 2,000 record shares.
func Medium() Options {
	return Options{
		Users: 1000, Roles: 34, Departments: 100, GrantsPerUser: 1.5, SharingRules: 50, Shares: 2000,
		ExpiringFraction: 0.1, InactiveFraction: 0.03, OtherDepartmentsFraction: 0.1,
		ManagerDepth: model.DefaultManagerDepth,
	}
}

// Large returns the options of the large tenant of the specification's
// targets: 50,000 users, 200 roles (with the six templates of the default
// bundle), 2,000 departments, 75,000 grants, 500 sharing rules and 20,000
// record shares.
func Large() Options {
	return Options{
		Users: 50000, Roles: 194, Departments: 2000, GrantsPerUser: 1.5, SharingRules: 500, Shares: 20000,
		ExpiringFraction: 0.1, InactiveFraction: 0.03, OtherDepartmentsFraction: 0.1,
		ManagerDepth: model.DefaultManagerDepth,
	}
}

// Limits returns the options of the largest tenant the service accepts
// (model.MaxTenantUsers and the other limits): 100,000 users, 500 roles
// (with the six templates), 10,000 departments, 199,000 grants (1,000
// short of the limit, so that benchmarks can grant), 1,000 sharing rules
// and 100,000 record shares.
func Limits() Options {
	return Options{
		Users: model.MaxTenantUsers, Roles: model.MaxTenantRoles - 6, Departments: model.MaxTenantDepartments,
		GrantsPerUser: float64(model.MaxTenantGrants-1000) / model.MaxTenantUsers, SharingRules: model.MaxTenantSharingRules,
		Shares: model.MaxTenantRecordShares, ExpiringFraction: 0.1, InactiveFraction: 0.03, OtherDepartmentsFraction: 0.1,
		ManagerDepth: model.DefaultManagerDepth,
	}
}

// Preset returns the options of a preset by name: small, medium, large or
// limits.
func Preset(name string) (Options, error) {
	switch name {
	case "small":
		return Small(), nil
	case "medium":
		return Medium(), nil
	case "large":
		return Large(), nil
	case "limits":
		return Limits(), nil
	}
	return Options{}, fmt.Errorf("unknown size %q: small, medium, large or limits", name)
}

// Grants returns the number of grants a tenant of these options holds.
func (o Options) Grants() int {
	return int(math.Round(o.GrantsPerUser * float64(o.Users)))
}

// Validate checks that the options describe a tenant the model allows.
func (o Options) Validate() error {
	for _, c := range []struct {
		name string
		n    int
	}{{"users", o.Users}, {"roles", o.Roles}, {"departments", o.Departments}, {"sharing rules", o.SharingRules}, {"shares", o.Shares}} {
		if c.n < 0 {
			return fmt.Errorf("%s must not be negative, got %d", c.name, c.n)
		}
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"expiring fraction", o.ExpiringFraction}, {"inactive fraction", o.InactiveFraction}, {"other departments fraction", o.OtherDepartmentsFraction}} {
		if !(f.v >= 0 && f.v <= 1) {
			return fmt.Errorf("%s must lie between 0 and 1, got %v", f.name, f.v)
		}
	}
	if !(o.GrantsPerUser >= 0 && o.GrantsPerUser <= 3) {
		return fmt.Errorf("grants per user must lie between 0 and 3, got %v", o.GrantsPerUser)
	}
	if o.Roles > model.MaxRoles/2 {
		return fmt.Errorf("roles must be at most %d, got %d", model.MaxRoles/2, o.Roles)
	}
	return model.ValidateManagerDepth(o.ManagerDepth)
}

// ErrNoPrincipals is returned for options that ask for sharing rules or
// record shares in a tenant without users, departments and roles to name.
var ErrNoPrincipals = errors.New("sharing needs a user, a department or a role to name")

// Tenant generates the tenant id from the options, deterministically for
// the seed and now: the same arguments give a deep-equal state. Grant and
// share expiries lie after now, grant and share times before it. The
// state is at revision 0, as model.NewTenantState makes it; the store
// gives it revision 1 when it creates it.
func Tenant(id string, b *bundle.Bundle, opts Options, seed uint64, now time.Time) (*model.TenantState, error) {
	if err := model.ValidateTenantID("id", id); err != nil {
		return nil, err
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	g := &gen{
		r:    rand.New(rand.NewPCG(seed, seedStream)), //nolint:gosec // test data, not secrets
		b:    b,
		cat:  b.Catalog,
		opts: opts,
		now:  now.UTC(),
		st:   model.NewTenantState(id, tenantName(seed)),
	}
	steps := []struct {
		what string
		fn   func() error
	}{
		{"roles", g.roles},
		{"departments", g.departments},
		{"users", g.users},
		{"grants", g.grants},
		{"sharing rules", g.sharingRules},
		{"record shares", g.recordShares},
	}
	for _, s := range steps {
		if err := s.fn(); err != nil {
			return nil, fmt.Errorf("generate tenant %q: %s: %w", id, s.what, err)
		}
	}
	return g.st, nil
}

// seedStream is the second half of every generator's PCG seed.
const seedStream = 0x63726d617574687a // "crmauthz"

// gen holds one tenant's generation.
type gen struct {
	r    *rand.Rand
	b    *bundle.Bundle
	cat  *model.Catalog
	opts Options
	now  time.Time
	st   *model.TenantState

	// Roles in the order made: templates first, then custom roles.
	roleIDs []string
	denies  []bool    // roleIDs[i] only denies
	weight  []float64 // cumulative weights of roleIDs for grants

	// Departments in the order made: every parent before its children.
	deptIDs    []string
	deptParent []int // index of each department's parent, -1 at the top
	deptLevel  []int
	deptPick   []float64 // cumulative weights for primary departments

	userIDs []string
}

// pick returns a random element of xs.
func pick[T any](r *rand.Rand, xs []T) T { return xs[r.IntN(len(xs))] }

// chance reports true with probability p.
func (g *gen) chance(p float64) bool { return g.r.Float64() < p }

// weighted returns an index drawn from cumulative weights.
func weighted(r *rand.Rand, cum []float64) int {
	x := r.Float64() * cum[len(cum)-1]
	lo, hi := 0, len(cum)-1
	for lo < hi {
		mid := (lo + hi) / 2
		if cum[mid] > x {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// count returns round(f*n).
func count(f float64, n int) int { return int(math.Round(f * float64(n))) }

// expiry returns a time from an hour to a year after now, in whole
// seconds.
func (g *gen) expiry() time.Time {
	d := time.Hour + time.Duration(g.r.Int64N(int64(365*24*time.Hour-time.Hour)))
	return g.now.Add(d).Truncate(time.Second)
}

// past returns a time from now to two years before it, in whole seconds.
func (g *gen) past() time.Time {
	d := time.Duration(g.r.Int64N(int64(2 * 365 * 24 * time.Hour)))
	return g.now.Add(-d).Truncate(time.Second)
}

var companies = []string{"Northwind", "Contoso", "Fabrikam", "Tailspin", "Wingtip", "Litware", "Adatum", "Proseware", "Lucerne", "Woodgrove"}
var trades = []string{"Trading", "Logistics", "Medical", "Software", "Foods", "Machinery", "Retail", "Energy"}

func tenantName(seed uint64) string {
	r := rand.New(rand.NewPCG(seed, seedStream+1)) //nolint:gosec // test data, not secrets
	return fmt.Sprintf("%s %s Co.", pick(r, companies), pick(r, trades))
}
