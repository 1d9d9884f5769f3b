package model

import "testing"

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
