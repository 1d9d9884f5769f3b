package model

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
)

// UserStatus says whether a user's grants decide anything.
type UserStatus string

// User statuses. An inactive (offboarded) user is denied everything; their
// grants, memberships and shares stay for the record, and reactivating the
// user restores them.
const (
	UserActive   UserStatus = "active"
	UserInactive UserStatus = "inactive"
)

// User is one user of a tenant the service knows: grants, memberships,
// managers and shares may name only known users.
type User struct {
	ID     string     `json:"id"`
	Name   string     `json:"name,omitempty"`
	Status UserStatus `json:"status"`
}

// Active reports whether the user's grants decide anything.
func (u User) Active() bool { return u.Status != UserInactive }

// ValidateUser checks a user's own fields (paths under "user"); an empty
// status is taken as active.
func ValidateUser(u User) error {
	if err := ValidateSubjectID("user.user_id", u.ID); err != nil {
		return err
	}
	if err := ValidateText("user.display_name", u.Name, MaxDisplayLength, false); err != nil {
		return err
	}
	switch u.Status {
	case UserActive, UserInactive, "":
		return nil
	}
	return Invalid("user.status", ReasonInvalidValue, fmt.Sprintf("status must be active or inactive, got %q", u.Status))
}

// UserNotFound returns the not-found error for a user of a tenant.
func UserNotFound(tenant, id string) error {
	return &NotFoundError{Reason: ReasonUserNotFound, What: fmt.Sprintf("user %q in tenant %q", id, tenant)}
}

// KnowsUser reports whether the tenant knows the user.
func (s *TenantState) KnowsUser(id string) bool {
	_, ok := s.Users[id]
	return ok
}

// Inactive reports whether the user is known and inactive (offboarded):
// such a user's grants decide nothing.
func (s *TenantState) Inactive(id string) bool {
	u, ok := s.Users[id]
	return ok && !u.Active()
}

// SortedUsers returns the users ordered by id.
func (s *TenantState) SortedUsers() []User {
	return slices.SortedFunc(maps.Values(s.Users), func(a, b User) int { return cmp.Compare(a.ID, b.ID) })
}

// UpsertUser adds a user or replaces a known user's name and status.
func (s *TenantState) UpsertUser(u User) (Change, error) {
	if err := ValidateUser(u); err != nil {
		return Change{}, err
	}
	if u.Status == "" {
		u.Status = UserActive
	}
	c := Change{Action: "user.create", Target: "user/" + u.ID, After: u}
	if before, ok := s.Users[u.ID]; ok {
		c.Action, c.Before = "user.update", before
	} else if err := s.room("users", len(s.Users), MaxTenantUsers); err != nil {
		return Change{}, err
	}
	SetRow(s, s.Users, u.ID, &u)
	return c, nil
}

// SetUserStatus deactivates (offboards) or reactivates a known user. An
// inactive user is denied everything at once; their grants stay, and
// reactivation restores them.
func (s *TenantState) SetUserStatus(id string, status UserStatus) (Change, error) {
	before, ok := s.Users[id]
	if !ok {
		return Change{}, UserNotFound(s.ID, id)
	}
	after := before
	after.Status = status
	action := "user.reactivate"
	if status == UserInactive {
		action = "user.deactivate"
	}
	SetRow(s, s.Users, id, &after)
	return Change{Action: action, Target: "user/" + id, Before: before, After: after}, nil
}

// UserRecord is what the change log records of a user: the user and where
// they sit.
type UserRecord struct {
	User
	Membership *Membership `json:"membership,omitempty"`
}

// Record returns the user and their membership, or nil when the tenant
// does not know the user.
func (s *TenantState) Record(id string) *UserRecord {
	u, ok := s.Users[id]
	if !ok {
		return nil
	}
	r := &UserRecord{User: u}
	if m, ok := s.Members[id]; ok {
		r.Membership = &m
	}
	return r
}

// UpsertUserRecord creates or updates a user with their membership in one
// change: a nil membership removes the user's departments and manager. An
// empty status keeps a known user's status (a new user is active).
func (s *TenantState) UpsertUserRecord(u User, m *Membership) (Change, error) {
	before := s.Record(u.ID)
	if u.Status == "" && before != nil {
		u.Status = before.Status
	}
	if _, err := s.UpsertUser(u); err != nil {
		return Change{}, err
	}
	switch _, had := s.Members[u.ID]; {
	case m != nil:
		if _, err := s.SetMembership(*m); err != nil {
			return Change{}, err
		}
	case had:
		if _, err := s.DeleteMembership(u.ID); err != nil {
			return Change{}, err
		}
	}
	c := Change{Action: "user.create", Target: "user/" + u.ID, After: s.Record(u.ID)}
	if before != nil {
		c.Action, c.Before = "user.update", before
	}
	return c, nil
}
