package engine

import (
	"fmt"
	"strings"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// explain lists why p was decided as it was: the roles whose lines allow or
// deny it, expired grants that would have allowed it, and what is missing.
// ids are the permission ids p needs (idsFor); the first is p's own.
func (ix *index) explain(space *permSpace, user string, p model.Permission, ids []int32, grants []userGrant, now int64) []Reason {
	var out []Reason
	var active []string
	for _, g := range grants {
		if g.active(now) {
			active = append(active, ix.roles.id(g.role))
		}
	}
	main := ids[0]
	k := space.keys[main]
	granted := false
	for _, g := range grants {
		role := ix.roles.id(g.role)
		var exp time.Time
		if g.expires != 0 {
			exp = time.Unix(0, g.expires).UTC()
		}
		if !g.active(now) {
			if ix.has(g.role, setAllow, main) {
				out = append(out, Reason{Kind: GrantExpired, Role: role, Rule: k.casbinLine(ix.holder(g.role, setAllow, main), ix.tenant, effAllow), ExpiresAt: exp,
					Message: fmt.Sprintf("role %s would grant %s but its grant expired at %s", role, p, exp.Format(time.RFC3339))})
			}
			continue
		}
		if ix.has(g.role, setDeny, main) {
			holder := ix.holder(g.role, setDeny, main)
			out = append(out, Reason{Kind: DeniedByRole, Role: role, Rule: k.casbinLine(holder, ix.tenant, effDeny), ExpiresAt: exp,
				Message: fmt.Sprintf("role %s denies %s%s; a deny overrides every grant", role, p, via(role, holder))})
		}
		if ix.has(g.role, setAllow, main) {
			granted = true
			holder := ix.holder(g.role, setAllow, main)
			out = append(out, Reason{Kind: AllowedByRole, Role: role, Rule: k.casbinLine(holder, ix.tenant, effAllow), ExpiresAt: exp,
				Message: fmt.Sprintf("role %s grants %s%s", role, p, via(role, holder))})
		}
	}
	switch {
	case ix.inactive.find(space.seed, user) >= 0:
		out = append(out, Reason{Kind: UserInactive, Message: fmt.Sprintf("user %s is inactive (offboarded): every decision for them is DENY until reactivated", user)})
	case !granted:
		out = append(out, Reason{Kind: NotGranted, Message: notGranted(user, p, active)})
	}
	for _, id := range ids[1:] {
		if ix.allowed(grants, id, now) {
			continue
		}
		need := model.ModulePerm(space.keys[id].a, space.keys[id].b)
		msg := fmt.Sprintf("%s needs %s, which user %s does not have", p, need, user)
		for _, g := range grants {
			if g.active(now) && ix.has(g.role, setDeny, id) {
				role := ix.roles.id(g.role)
				msg = fmt.Sprintf("%s needs %s, which role %s denies%s", p, need, role, via(role, ix.holder(g.role, setDeny, id)))
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
