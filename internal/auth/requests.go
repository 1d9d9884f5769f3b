package auth

import (
	"fmt"
	"slices"

	"github.com/crmauthz/crmauthz/internal/model"
)

// Reasons of DeniedError for access requests.
const (
	// ReasonSelfApproval refuses deciding a request made by or for the
	// actor: nobody approves their own access.
	ReasonSelfApproval = "SELF_APPROVAL"
	// ReasonNotApprover refuses an actor the role's request policy does
	// not name.
	ReasonNotApprover = "NOT_APPROVER"
	// ReasonSelfReview refuses deciding a review item of one's own grant.
	ReasonSelfReview = "SELF_REVIEW"
	// ReasonNotReviewer refuses an actor who is not an item's reviewer.
	ReasonNotReviewer = "NOT_REVIEWER"
)

// Decider refuses an actor who may not approve or deny request r: the
// user the request is for and whoever asked for it never may; otherwise
// one of the approvers of the role's request policy may (the holders of a
// function, the holders of a role, the user's manager), and so may a
// super-administrator. Approving also needs the role within the actor's
// own rights (ApproveWithin).
func (g *Guard) Decider(r model.AccessRequest) error {
	if g.actor.ID == r.UserID || g.actor.ID == r.RequestedBy {
		return g.denied(ReasonSelfApproval, "another approver",
			fmt.Sprintf("user %q may not decide access request %s: it was made by or for them", g.actor.ID, r.ID))
	}
	if g.super {
		return nil
	}
	role, ok := g.st.Roles[r.RoleID]
	if !ok {
		return model.RoleNotFound(g.st.ID, r.RoleID)
	}
	if role.Request == nil {
		return &model.ConflictError{Reason: model.ReasonNotRequestable,
			Message: fmt.Sprintf("role %q of tenant %q is no longer requestable: nobody but a super-administrator decides its requests", r.RoleID, g.st.ID)}
	}
	if g.approves(role.Request.Approvers, r.UserID) {
		return nil
	}
	return g.denied(ReasonNotApprover, "approver of role "+r.RoleID,
		fmt.Sprintf("user %q is not an approver of role %q (%s)", g.actor.ID, r.RoleID, describeApprovers(role.Request.Approvers)))
}

// approves reports whether the actor is one of the approvers for a
// request of user.
func (g *Guard) approves(approvers []model.Approver, user string) bool {
	var held []model.Role // the actor's roles and what they inherit, read once
	read := false
	for _, a := range approvers {
		switch a.Kind {
		case model.ApproverFunction:
			if g.rights.Function(a.ID) {
				return true
			}
		case model.ApproverRole:
			if !read {
				held, read = g.st.RoleClosure(g.st.ActiveRoles(g.actor.ID, g.now)...), true
			}
			if slices.ContainsFunc(held, func(r model.Role) bool { return r.ID == a.ID }) {
				return true
			}
		case model.ApproverManager:
			if m, ok := g.st.Members[user]; ok && m.Manager != "" && m.Manager == g.actor.ID && !g.st.Inactive(g.actor.ID) {
				return true
			}
		}
	}
	return false
}

func describeApprovers(as []model.Approver) string {
	s := "approvers: "
	for i, a := range as {
		if i > 0 {
			s += ", "
		}
		switch a.Kind {
		case model.ApproverManager:
			s += "the user's manager"
		default:
			s += "holders of " + string(a.Kind) + " " + a.ID
		}
	}
	return s
}

// ApproveWithin refuses approving a request for a role wider than the
// actor's own rights, as granting it would be (the escalation rule).
func (g *Guard) ApproveWithin(r model.AccessRequest) error {
	return g.WithinRole(fmt.Sprintf("approving role %q for user %q", r.RoleID, r.UserID), r.RoleID)
}

// Reviewer refuses an actor who may not decide a review item: nobody
// decides on their own grant; the item's reviewer may, and so may the
// holders of the function fn (admin.users.manage, who could revoke the
// grant anyway).
func (g *Guard) Reviewer(it model.ReviewItem, fn string) error {
	if g.actor.ID == it.UserID {
		return g.denied(ReasonSelfReview, "another reviewer",
			fmt.Sprintf("user %q may not review their own grant of role %q", g.actor.ID, it.RoleID))
	}
	if g.actor.ID == it.Reviewer || g.actor.Operator || g.rights.Function(fn) {
		return nil
	}
	return g.denied(ReasonNotReviewer, "reviewer of "+it.UserID+"/"+it.RoleID,
		fmt.Sprintf("user %q is not the reviewer of user %q's %s in access review %s (%s is), and lacks %s", g.actor.ID, it.UserID, it.RoleID, it.Review, it.Reviewer, fn))
}
