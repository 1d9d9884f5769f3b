package bundle

import (
	"strings"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
)

// TestGrantsRefused: a bundle tenant's grants are checked as GrantRole
// checks them, and a grant listed twice is refused rather than the later
// one silently replacing the earlier (as members and record shares are).
func TestGrantsRefused(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // in the error
	}{
		{"grant twice", "id: demo\ntemplates: [read_only]\nusers: [{id: ivan}]\ngrants:\n  - {user: ivan, role: read_only}\n  - {user: ivan, role: read_only, expires_at: \"2025-06-30T00:00:00Z\"}\n",
			"grants[1]"},
		{"grant beyond the engine's clock", "id: demo\ntemplates: [read_only]\nusers: [{id: ivan}]\ngrants: [{user: ivan, role: read_only, expires_at: \"9999-12-31T00:00:00Z\"}]\n",
			"grants[0]: expires_at"},
		{"grant of unknown role", "id: demo\nusers: [{id: ivan}]\ngrants: [{user: ivan, role: nope}]\n", "grants[0]"},
		{"grant to an unlisted user", "id: demo\ntemplates: [read_only]\ngrants: [{user: ivan, role: read_only}]\n", "grants[0]: user \"ivan\""},
		{"user listed twice", "id: demo\nusers: [{id: ivan}, {id: ivan}]\n", "users[1]"},
		{"user of unknown status", "id: demo\nusers: [{id: ivan, status: gone}]\n", "users[0]"},
		{"grant to bad user", "id: demo\ntemplates: [read_only]\nusers: [{id: ivan}]\ngrants: [{user: 'a,b', role: read_only}]\n", "grants[0]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(bundleWithDemo(t, tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

// TestGrantsKeepExpiredOnes: a bundle may list a grant that has already
// expired (the demo shows what one decides); it is stamped as made by
// "system".
func TestGrantsKeepExpiredOnes(t *testing.T) {
	b, err := Load(bundleWithDemo(t, "id: demo\ntemplates: [read_only]\nusers: [{id: ivan}]\ngrants: [{user: ivan, role: read_only, expires_at: \"2025-06-30T00:00:00Z\"}]\n"))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	st, err := b.TenantState(b.Demo, at)
	if err != nil {
		t.Fatal(err)
	}
	want := model.Grant{UserID: "ivan", RoleID: "read_only", ExpiresAt: time.Date(2025, 6, 30, 0, 0, 0, 0, time.UTC), GrantedBy: "system", GrantedAt: at}
	if got := st.SortedGrants(); len(got) != 1 || got[0] != want {
		t.Fatalf("grants %+v, want [%+v]", got, want)
	}
}
