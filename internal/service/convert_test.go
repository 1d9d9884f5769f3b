package service

import (
	"slices"
	"testing"

	"github.com/crmauthz/crmauthz/internal/engine"
)

func TestInOrder(t *testing.T) {
	role := engine.Reason{Kind: engine.AllowedByRole, Role: "sales_rep", Message: "role sales_rep grants it"}
	rule := engine.Reason{Kind: engine.SharingRule, Message: "sharing rule a shares it"}
	share := func(to string) engine.Reason {
		return engine.Reason{Kind: engine.RecordShare, Message: "record r is shared with " + to + " at read"}
	}
	tests := []struct {
		name    string
		in, out []engine.Reason
	}{
		{"none", nil, nil},
		{"one share", []engine.Reason{role, share("user bob")}, []engine.Reason{role, share("user bob")}},
		{"shares in order", []engine.Reason{role, share("department hq"), share("user bob")},
			[]engine.Reason{role, share("department hq"), share("user bob")}},
		{"shares as written", []engine.Reason{role, rule, share("user bob"), share("role sales_rep"), share("department hq")},
			[]engine.Reason{role, rule, share("department hq"), share("role sales_rep"), share("user bob")}},
		{"shares last", []engine.Reason{share("user bob"), share("department hq")},
			[]engine.Reason{share("department hq"), share("user bob")}},
		{"other reasons stay", []engine.Reason{rule, role}, []engine.Reason{rule, role}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.in)
			if got := inOrder(in); !slices.Equal(got, tt.out) {
				t.Errorf("inOrder = %v, want %v", got, tt.out)
			}
			if !slices.Equal(in, tt.in) {
				t.Errorf("inOrder changed its argument to %v", in)
			}
		})
	}
}
