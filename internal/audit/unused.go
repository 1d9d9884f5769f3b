package audit

import (
	"context"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// UnusedReport is the access review of a tenant: its active grants, older
// than the window, that no allowed decision of their user used within it.
type UnusedReport struct {
	Grants        []model.Grant // ordered by user, then role
	WindowStart   time.Time
	EvidenceSince time.Time // later than WindowStart: the log does not cover the whole window
}

// UnusedGrants reviews st's grants over the window [since, now). A grant is
// used when an allowed decision of its user in the window asked for a
// permission the granted role (with the roles it inherits) grants: a module
// verb or function the role lists, a field the role can read (module read,
// or a rule other than hidden) or write (module update, or a read_write
// rule), or for GetFieldAccess the module's read. Grants made inside the
// window and expired grants are left out.
func (l *Log) UnusedGrants(ctx context.Context, st *model.TenantState, since, now time.Time) (UnusedReport, error) {
	use, err := l.GrantUse(ctx, st, since, now)
	if err != nil {
		return UnusedReport{WindowStart: since}, err
	}
	r := UnusedReport{WindowStart: use.WindowStart, EvidenceSince: use.EvidenceSince}
	for _, g := range st.SortedGrants() {
		if !g.ActiveAt(now) || (!g.GrantedAt.IsZero() && g.GrantedAt.After(since)) {
			continue
		}
		if _, used := use.LastUsed[model.GrantKey{UserID: g.UserID, RoleID: g.RoleID}]; !used {
			r.Grants = append(r.Grants, g)
		}
	}
	return r, nil
}

// GrantUse is the evidence of use of a tenant's grants over a window.
type GrantUse struct {
	// LastUsed holds, for each active grant some allowed decision in the
	// window used (see UnusedGrants), the latest such decision's time.
	LastUsed      map[model.GrantKey]time.Time
	WindowStart   time.Time
	EvidenceSince time.Time // later than WindowStart: the log does not cover the whole window
}

// GrantUse reads the decision log for the use of st's active grants over
// the window [since, now).
func (l *Log) GrantUse(ctx context.Context, st *model.TenantState, since, now time.Time) (GrantUse, error) {
	r := GrantUse{WindowStart: since, LastUsed: map[model.GrantKey]time.Time{}}
	if l.opts.Mode == ModeOff && l.be.kind() == storageMemory {
		return r, errLogOff()
	}
	pairs, err := l.be.used(ctx, st.ID, since)
	if err != nil {
		return r, err
	}
	type use struct {
		perm string
		at   time.Time
	}
	used := map[string][]use{} // masked subject → permissions
	for p, at := range pairs {
		used[p[0]] = append(used[p[0]], use{p[1], at})
	}
	if r.EvidenceSince, err = l.be.evidenceSince(ctx); err != nil {
		return r, err
	}
	if r.EvidenceSince.IsZero() {
		r.EvidenceSince = now
	}
	if r.EvidenceSince.Before(since) {
		r.EvidenceSince = since
	}
	closures := map[string]*roleGrants{}
	for k, g := range st.Grants {
		if !g.ActiveAt(now) {
			continue
		}
		rg := closures[g.RoleID]
		if rg == nil {
			rg = newRoleGrants(st, g.RoleID)
			closures[g.RoleID] = rg
		}
		for _, u := range used[l.masker.maybe("subject", g.UserID)] {
			if rg.grants(u.perm) && u.at.After(r.LastUsed[k]) {
				r.LastUsed[k] = u.at
			}
		}
	}
	return r, nil
}

// roleGrants is what a role grants, with the roles it inherits, keyed by
// stored permission text.
type roleGrants struct {
	perms map[string]bool
}

func newRoleGrants(st *model.TenantState, role string) *roleGrants {
	rg := &roleGrants{perms: map[string]bool{}}
	seen := map[string]bool{}
	var walk func(id string)
	walk = func(id string) {
		r, ok := st.Roles[id]
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		for _, m := range r.Permissions.Modules {
			for _, v := range m.Verbs {
				rg.perms["module "+m.Module+" "+v] = true
			}
		}
		for _, f := range r.Permissions.Functions {
			rg.perms["function "+f] = true
		}
		for _, f := range r.Permissions.Fields {
			if f.State != model.FieldHidden {
				rg.perms["field "+f.Module+"."+f.Field+" read"] = true
			}
			if f.State == model.FieldReadWrite {
				rg.perms["field "+f.Module+"."+f.Field+" write"] = true
			}
		}
		for _, in := range r.Inherits {
			walk(in)
		}
	}
	walk(role)
	return rg
}

// grants reports whether the role grants a permission as stored.
func (rg *roleGrants) grants(perm string) bool {
	if rg.perms[perm] {
		return true
	}
	rest, ok := strings.CutPrefix(perm, "field ")
	if !ok {
		return false
	}
	target, access, _ := strings.Cut(rest, " ")
	module, _, _ := strings.Cut(target, ".")
	if access == "write" {
		return rg.perms["module "+module+" "+model.VerbUpdate]
	}
	return rg.perms["module "+module+" "+model.VerbRead]
}
