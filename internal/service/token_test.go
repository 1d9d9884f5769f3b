package service

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"

	"github.com/crmauthz/crmauthz/internal/model"
)

func TestPageTokens(t *testing.T) {
	raw := func(b string) string { return base64.RawURLEncoding.EncodeToString([]byte(b)) }
	roles := func(tok string) (string, error) { return decodeRoleToken(tok) }
	grants := func(tok string) (string, error) { return decodeGrantToken(grantsToken, tok) }
	unused := func(tok string) (string, error) { return decodeGrantToken(unusedGrantsToken, tok) }
	tests := []struct {
		name   string
		decode func(string) (string, error)
		tok    string
		want   string // the key; ignored when msg is set
		msg    string // in the error message; "" when the token is good
	}{
		{"no token", roles, "", "", ""},
		{"role", roles, roleToken("sales_rep"), "sales_rep", ""},
		{"grant", grants, grantToken(grantsToken, "Jane.Doe@example.com", "sales_rep"), "Jane.Doe@example.com\x00sales_rep", ""},
		{"unused grant", unused, grantToken(unusedGrantsToken, "bob", "admin"), "bob\x00admin", ""},

		{"grants token to roles", roles, grantToken(grantsToken, "bob", "admin"), "", "was issued by ListGrants; pass the next_page_token of a ListRoles call"},
		{"roles token to grants", grants, roleToken("admin"), "", "was issued by ListRoles"},
		{"unused grants token to grants", grants, grantToken(unusedGrantsToken, "bob", "admin"), "", "was issued by ListUnusedGrants"},
		{"grants token to unused grants", unused, grantToken(grantsToken, "bob", "admin"), "", "was issued by ListGrants"},
		{"not base64", roles, "!!", "", "is not a token this service issued"},
		{"padded base64", roles, base64.URLEncoding.EncodeToString([]byte("Rsales_rep")), "", "is not a token this service issued"},
		{"kind only", roles, raw("R"), "", "is not a token this service issued"},
		{"untyped token of before", roles, raw("sales_rep"), "", "is not a token this service issued"},
		{"audit token", grants, raw("\x01\x00fingerprintkeykeykeykeyhorizon!"), "", "is not a token this service issued"},
		{"role id with space", roles, roleToken("sales rep"), "", "is not a token this service issued"},
		{"role id pattern", roles, roleToken("*"), "", "is not a token this service issued"},
		{"role id too long", roles, roleToken(strings.Repeat("r", model.MaxIDLength+1)), "", "is not a token this service issued"},
		{"role id with invisible character", roles, roleToken("admin\u202e"), "", "is not a token this service issued"},
		{"grant without separator", grants, encodeToken(grantsToken, "bobadmin"), "", "is not a token this service issued"},
		{"grant with bad user", grants, grantToken(grantsToken, "bob smith", "admin"), "", "is not a token this service issued"},
		{"grant with empty user", grants, grantToken(grantsToken, "", "admin"), "", "is not a token this service issued"},
		{"grant with bad role", unused, grantToken(unusedGrantsToken, "bob", "Admin"), "", "is not a token this service issued"},
		{"grant with two separators", grants, encodeToken(grantsToken, "bob\x00admin\x00x"), "", "is not a token this service issued"},
		{"oversized", grants, strings.Repeat("A", 4096), "", "is not a token this service issued"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.decode(tt.tok)
			if tt.msg == "" {
				if err != nil || got != tt.want {
					t.Fatalf("decode = %q, %v; want %q", got, err, tt.want)
				}
				return
			}
			var inv *model.InvalidError
			if !errors.As(err, &inv) || inv.Field != "page_token" || inv.Reason != model.ReasonInvalidValue || !strings.Contains(inv.Message, tt.msg) {
				t.Fatalf("decode = %q, %v; want INVALID_VALUE on page_token saying %q", got, err, tt.msg)
			}
		})
	}
	// The longest key fits the length bound.
	long := grantToken(grantsToken, strings.Repeat("u", model.MaxSubjectLength), strings.Repeat("r", model.MaxIDLength))
	if _, err := grants(long); err != nil {
		t.Errorf("longest grant token: %v", err)
	}
}
