package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// explain lists why p was decided as it was: the roles whose lines allow or
// deny it, expired grants that would have allowed it, and what is missing.
func (ix *index) explain(user string, p model.Permission, keys []key, grants []userGrant, now int64) []Reason {
	var out []Reason
	var active []string
	for _, g := range grants {
		if g.expires == 0 || now < g.expires {
			active = append(active, g.role.id)
		}
	}
	main := keys[0]
	granted := false
	for _, g := range grants {
		var exp time.Time
		if g.expires != 0 {
			exp = time.Unix(0, g.expires).UTC()
		}
		if g.expires != 0 && now >= g.expires {
			if holder, ok := g.role.allow[main]; ok {
				out = append(out, Reason{Kind: GrantExpired, Role: g.role.id, Rule: main.casbinLine(holder, ix.tenant, effAllow), ExpiresAt: exp,
					Message: fmt.Sprintf("role %s would grant %s but its grant expired at %s", g.role.id, p, exp.Format(time.RFC3339))})
			}
			continue
		}
		if holder, ok := g.role.deny[main]; ok {
			out = append(out, Reason{Kind: DeniedByRole, Role: g.role.id, Rule: main.casbinLine(holder, ix.tenant, effDeny), ExpiresAt: exp,
				Message: fmt.Sprintf("role %s denies %s%s; a deny overrides every grant", g.role.id, p, via(g.role.id, holder))})
		}
		if holder, ok := g.role.allow[main]; ok {
			granted = true
			out = append(out, Reason{Kind: AllowedByRole, Role: g.role.id, Rule: main.casbinLine(holder, ix.tenant, effAllow), ExpiresAt: exp,
				Message: fmt.Sprintf("role %s grants %s%s", g.role.id, p, via(g.role.id, holder))})
		}
	}
	if !granted {
		out = append(out, Reason{Kind: NotGranted, Message: notGranted(user, p, active)})
	}
	for _, k := range keys[1:] {
		if allowed(grants, k, now) {
			continue
		}
		need := model.ModulePerm(k.a, k.b)
		msg := fmt.Sprintf("%s needs %s, which user %s does not have", p, need, user)
		for _, g := range grants {
			if holder, ok := g.role.deny[k]; ok && (g.expires == 0 || now < g.expires) {
				msg = fmt.Sprintf("%s needs %s, which role %s denies%s", p, need, g.role.id, via(g.role.id, holder))
				break
			}
		}
		out = append(out, Reason{Kind: ModuleAccessMissing, Message: msg})
	}
	return out
}

func via(role, holder string) string {
	if role == holder {
		return ""
	}
	return " (inherited from role " + holder + ")"
}

func notGranted(user string, p model.Permission, active []string) string {
	if len(active) == 0 {
		return fmt.Sprintf("user %s holds no active role in this tenant", user)
	}
	return fmt.Sprintf("none of the active roles of user %s (%s) grants %s", user, strings.Join(active, ", "), p)
}
