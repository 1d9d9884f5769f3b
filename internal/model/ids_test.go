package model

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateIdentifiers(t *testing.T) {
	tests := []struct {
		name  string
		check func(string, string) error
		in    string
		ok    bool
	}{
		{"tenant", ValidateTenantID, "acme-01", true},
		{"tenant upper", ValidateTenantID, "Acme", false},
		{"tenant star", ValidateTenantID, "*", false},
		{"tenant colon", ValidateTenantID, "a:b", false},
		{"tenant max", ValidateTenantID, strings.Repeat("a", MaxIDLength), true},
		{"tenant too long", ValidateTenantID, strings.Repeat("a", MaxIDLength+1), false},
		{"subject email", ValidateSubjectID, "Jane.Doe@example.com", true},
		{"subject uuid", ValidateSubjectID, "3f2b8c1e-9a4d-4e5f-8b6a-1c2d3e4f5a6b", true},
		{"subject comma", ValidateSubjectID, "a,b", false},
		{"subject space", ValidateSubjectID, "a b", false},
		{"subject leading dot", ValidateSubjectID, ".a", false},
		{"subject unicode", ValidateSubjectID, "张三", false},
		{"subject keyMatch", ValidateSubjectID, "keyMatch(a)", false},
		{"name", ValidateName, "sales_rep", true},
		{"name digit first", ValidateName, "1role", false},
		{"name dash", ValidateName, "sales-rep", false},
		{"function", ValidateFunctionID, "admin.roles.manage", true},
		{"function one segment", ValidateFunctionID, "report", false},
		{"function trailing dot", ValidateFunctionID, "report.", false},
		{"function empty segment", ValidateFunctionID, "a..b", false},
		{"function star", ValidateFunctionID, "report.*", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check("f", tt.in)
			if (err == nil) != tt.ok {
				t.Fatalf("%q: err = %v, want ok=%v", tt.in, err, tt.ok)
			}
			var inv *InvalidError
			if err != nil && (!errors.As(err, &inv) || inv.Field != "f") {
				t.Fatalf("error %v does not name the field", err)
			}
		})
	}
}

// FuzzIdentifiers checks that nothing Casbin, its CSV form or its pattern
// functions give meaning to ever passes validation.
func FuzzIdentifiers(f *testing.F) {
	for _, s := range []string{"alice", "a*b", "a,b", "r:admin", "report.view", "a b", "x\ny", "keyMatch(a)", "/a/*", "{id}", "\"q\""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, check := range []func(string, string) error{ValidateTenantID, ValidateSubjectID, ValidateName, ValidateFunctionID} {
			if check("f", s) != nil {
				continue
			}
			if s == "" || len(s) > MaxSubjectLength || strings.ContainsAny(s, "*,:()/{}\"' \t\r\n\\$|&!=<>[]%#") {
				t.Fatalf("%q passed validation", s)
			}
			for _, r := range s {
				if r < 0x21 || r > 0x7e {
					t.Fatalf("%q passed validation with %U", s, r)
				}
			}
		}
	})
}

// TestValidateTextControls: free text must not carry control characters,
// C1 ones (U+0080 to U+009F, such as NEL, a line break, or CSI, a terminal
// escape) included.
func TestValidateTextControls(t *testing.T) {
	for _, s := range []string{"a\nb", "a\x7fb", "a\u0085b", "a\u009b2Jb", "a\u0080b", "a\u009fb", "bad \xff utf-8"} {
		if err := ValidateText("reason", s, MaxReasonLength, true); err == nil {
			t.Errorf("%q passed validation", s)
		}
	}
	for _, s := range []string{"Sales manager (销售经理)", "Café – ok", "a\u00a0b", "مدير المبيعات", "עברית"} {
		if err := ValidateText("reason", s, MaxReasonLength, true); err != nil {
			t.Errorf("%q: %v", s, err)
		}
	}
}

// TestValidateTextInvisible: free text refuses the bidirectional controls
// (which reorder what a console or report shows, "Trojan Source") and the
// zero-width characters (which make different texts look alike), naming
// the field, the character and its byte offset.
func TestValidateTextInvisible(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"ok\u200bthen", "has '\\u200b' (U+200B), a zero-width character, at byte 2"},
		{"a\u200cb", "(U+200C), a zero-width character, at byte 1"},
		{"a\u200db", "(U+200D), a zero-width character, at byte 1"},
		{"a\u200eb", "(U+200E), a bidirectional control character, at byte 1"},
		{"a\u200fb", "(U+200F), a bidirectional control character, at byte 1"},
		{"a\u202ab", "(U+202A), a bidirectional control character, at byte 1"},
		{"a\u202bb", "(U+202B), a bidirectional control character, at byte 1"},
		{"a\u202cb", "(U+202C), a bidirectional control character, at byte 1"},
		{"a\u202db", "(U+202D), a bidirectional control character, at byte 1"},
		{"revoke \u202egnissim", "has '\\u202e' (U+202E), a bidirectional control character, at byte 7"},
		{"é\u2066b", "(U+2066), a bidirectional control character, at byte 2"},
		{"a\u2067b", "(U+2067), a bidirectional control character, at byte 1"},
		{"a\u2068b", "(U+2068), a bidirectional control character, at byte 1"},
		{"a\u2069b", "(U+2069), a bidirectional control character, at byte 1"},
		{"a\u061cb", "(U+061C), a bidirectional control character, at byte 1"},
		{"\ufeffreason", "has '\\ufeff' (U+FEFF), a zero-width character, at byte 0"},
		{"a\nb", "has '\\n' (U+000A), a control character, at byte 1"},
		{"a\u0085b", "(U+0085), a control character, at byte 1"},
		{"bad \xff utf-8", "has invalid UTF-8 (byte 0xFF) at byte 4"},
		{"a\ufffdb", "has '�' (U+FFFD) at byte 1"},
	}
	for _, tt := range tests {
		err := ValidateText("reason", tt.in, MaxReasonLength, true)
		var inv *InvalidError
		if !errors.As(err, &inv) || inv.Field != "reason" || inv.Reason != ReasonInvalidText || !strings.Contains(inv.Message, tt.want) {
			t.Errorf("%q: err = %v, want INVALID_TEXT on reason saying %s", tt.in, err, tt.want)
		}
	}
}

// TestValidateIdentifierMessages: a refused character is quoted whole, with
// its code point, never as the first byte of its UTF-8 encoding.
func TestValidateIdentifierMessages(t *testing.T) {
	tests := []struct {
		name  string
		check func(string, string) error
		in    string
		want  string
	}{
		{"two-byte character", ValidateSubjectID, "jos\u00e9", `has 'é' (U+00E9) at byte 3`},
		{"three-byte character", ValidateName, "price_\u20ac", `has '€' (U+20AC) at byte 6`},
		{"four-byte character first", ValidateTenantID, "\U0001F600acme", `must not start with '😀' (U+1F600) (at byte 0)`},
		{"invisible character", ValidateSubjectID, "bob\u202e", `has '\u202e' (U+202E) at byte 3`},
		{"ascii", ValidateName, "sales rep", `has ' ' (U+0020) at byte 5`},
		{"invalid utf-8", ValidateSubjectID, "bob\xc3", `has invalid UTF-8 (byte 0xC3) at byte 3`},
		{"function segment", ValidateFunctionID, "report.\u00e9", `must not start with 'é' (U+00E9) (at byte 7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.check("f", tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("%q: err = %v, want it to say %s", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), `\x`) {
				t.Errorf("%q: message quotes a broken byte: %v", tt.in, err)
			}
		})
	}
}
