package model

import (
	"testing"
	"time"
)

func TestValidateReviewRoles(t *testing.T) {
	tests := []struct {
		name  string
		roles []string
		want  *wantErr // nil: valid
	}{
		{"none", nil, nil},
		{"distinct", []string{"sales_rep", "read_only", "admin"}, nil},
		{"not a role id", []string{"sales_rep", "r:*"}, &wantErr{kind: "invalid", reason: ReasonInvalidIdentifier, field: "role_ids[1]"}},
		{"twice", []string{"sales_rep", "read_only", "sales_rep"},
			&wantErr{kind: "invalid", reason: ReasonDuplicate, field: "role_ids[2]", msg: `role "sales_rep" is listed twice, also as role_ids[0]`}},
		{"twice in a row", []string{"admin", "admin"}, &wantErr{kind: "invalid", reason: ReasonDuplicate, field: "role_ids[1]"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateReviewRoles(tt.roles)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("ValidateReviewRoles(%q) = %v", tt.roles, err)
				}
				return
			}
			tt.want.check(t, err)
		})
	}
}

// TestRegrantedToTheMicrosecond: the grant an item reviews is the same
// grant whether a replica holds its time to the nanosecond (it made the
// grant) or to the microsecond (it read the grant from PostgreSQL); a
// grant given later, even by a microsecond, is another.
func TestRegrantedToTheMicrosecond(t *testing.T) {
	at := time.Date(2026, 12, 6, 9, 30, 0, 123456789, time.UTC)
	k := GrantKey{"erin", "sales_rep"}
	it := ReviewItem{Review: "rvw_0123456789abcdef", UserID: k.UserID, RoleID: k.RoleID, GrantedAt: at}
	for _, c := range []struct {
		name    string
		granted time.Time
		held    bool
		want    bool
	}{
		{"the same grant", at, true, false},
		{"the same grant, read from PostgreSQL", at.Truncate(time.Microsecond), true, false},
		{"given again a microsecond later", at.Add(time.Microsecond), true, true},
		{"given again an hour later", at.Add(time.Hour), true, true},
		{"gone", time.Time{}, false, false},
	} {
		s := &TenantState{Grants: map[GrantKey]Grant{}}
		if c.held {
			s.Grants[k] = Grant{UserID: k.UserID, RoleID: k.RoleID, GrantedAt: c.granted}
		}
		if _, got := s.regranted(it); got != c.want {
			t.Errorf("%s: regranted %v, want %v", c.name, got, c.want)
		}
	}
	old := it
	old.GrantedAt = time.Time{} // an item of a review started before items kept the time
	s := &TenantState{Grants: map[GrantKey]Grant{k: {UserID: k.UserID, RoleID: k.RoleID, GrantedAt: at.Add(time.Hour)}}}
	if _, got := s.regranted(old); got {
		t.Error("an item without the grant's time refused its revoke")
	}
}
