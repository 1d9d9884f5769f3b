package model

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Identifier limits. Identifiers end up inside Casbin policy lines and the
// matcher's string comparisons, so their alphabet excludes everything Casbin,
// its CSV form or keyMatch patterns give meaning to: '*', ',', ':', '(', ')',
// '/', '{', '}', quotes, whitespace and control characters.
const (
	// MaxIDLength bounds tenant, role, module, field and function identifiers.
	MaxIDLength = 64
	// MaxSubjectLength bounds user identifiers, which come from the CRM's
	// own user directory (UUIDs, numbers, e-mail addresses).
	MaxSubjectLength = 128
	// MaxReasonLength bounds the free-text reason of an admin write.
	MaxReasonLength = 1024
	// MaxDisplayLength bounds role display names and descriptions.
	MaxDisplayLength = 256
)

// idClass describes one identifier alphabet.
type idClass struct {
	name   string
	max    int
	first  func(byte) bool
	rest   func(byte) bool
	dotted bool // segments separated by single dots, at least two
}

func lowerAlpha(c byte) bool   { return c >= 'a' && c <= 'z' }
func digit(c byte) bool        { return c >= '0' && c <= '9' }
func lowerAlnum(c byte) bool   { return lowerAlpha(c) || digit(c) }
func lowerIDChar(c byte) bool  { return lowerAlnum(c) || c == '_' }
func tenantChar(c byte) bool   { return lowerAlnum(c) || c == '_' || c == '-' }
func subjectFirst(c byte) bool { return lowerAlnum(c) || (c >= 'A' && c <= 'Z') }
func aliasFirst(c byte) bool   { return lowerAlpha(c) || (c >= 'A' && c <= 'Z') }
func aliasChar(c byte) bool {
	return subjectFirst(c) || c == '_' || c == '-' || c == '.' || c == ':' || c == '/'
}
func subjectChar(c byte) bool {
	return subjectFirst(c) || c == '_' || c == '-' || c == '.' || c == '@'
}

var (
	tenantClass   = idClass{name: "tenant ids (a-z, 0-9, _, -)", max: MaxIDLength, first: lowerAlnum, rest: tenantChar}
	subjectClass  = idClass{name: "user ids (letters, digits, _, -, ., @)", max: MaxSubjectLength, first: subjectFirst, rest: subjectChar}
	nameClass     = idClass{name: "identifiers (a-z, 0-9, _)", max: MaxIDLength, first: lowerAlpha, rest: lowerIDChar}
	aliasClass    = idClass{name: "action names (letters, digits, _, -, ., :, /)", max: MaxIDLength, first: aliasFirst, rest: aliasChar}
	functionClass = idClass{name: "function ids (a-z, 0-9, _ in dot-separated segments)", max: MaxIDLength, first: lowerAlpha, rest: lowerIDChar, dotted: true}
)

func (c idClass) check(s string) error {
	if s == "" {
		return fmt.Errorf("must not be empty")
	}
	if len(s) > c.max {
		return fmt.Errorf("must be at most %d bytes, got %d", c.max, len(s))
	}
	segments := 1
	segStart := true
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if c.dotted && ch == '.' {
			if segStart {
				return fmt.Errorf("has an empty segment at byte %d", i)
			}
			segments++
			segStart = true
			continue
		}
		ok := c.rest(ch)
		if segStart {
			ok = c.first(ch)
		}
		if !ok {
			if segStart {
				return fmt.Errorf("must not start with %s (at byte %d); allowed in %s", describeChar(s[i:]), i, c.name)
			}
			return fmt.Errorf("has %s at byte %d, which is not allowed in %s", describeChar(s[i:]), i, c.name)
		}
		segStart = false
	}
	if c.dotted && (segStart || segments < 2) {
		return fmt.Errorf("must be dot-separated segments such as report.view")
	}
	return nil
}

// ValidateTenantID checks a tenant identifier: lower-case letters, digits,
// '_' and '-', starting with a letter or digit, at most MaxIDLength bytes.
func ValidateTenantID(field, s string) error {
	return invalidIf(field, ReasonInvalidIdentifier, tenantClass.check(s))
}

// ValidateSubjectID checks a user identifier: letters, digits, '_', '-',
// '.', '@', starting with a letter or digit, at most MaxSubjectLength bytes.
func ValidateSubjectID(field, s string) error {
	return invalidIf(field, ReasonInvalidIdentifier, subjectClass.check(s))
}

// ValidateName checks a role, module, field or verb identifier: lower-case
// letters, digits and '_', starting with a letter, at most MaxIDLength bytes.
func ValidateName(field, s string) error {
	return invalidIf(field, ReasonInvalidIdentifier, nameClass.check(s))
}

// ValidateFunctionID checks a function identifier: two or more dot-separated
// lower-case segments such as "report.export", at most MaxIDLength bytes.
func ValidateFunctionID(field, s string) error {
	return invalidIf(field, ReasonInvalidIdentifier, functionClass.check(s))
}

// ValidateText checks free text (reasons, display names): at most maxLen
// bytes of valid UTF-8 without control characters, bidirectional controls
// or zero-width characters. Free text is shown to people in consoles,
// audit reports and terminals, where bidirectional controls reorder what
// follows them (a reason can read other than it is stored) and zero-width
// characters make two different texts look the same.
func ValidateText(field, s string, maxLen int, required bool) error {
	if s == "" {
		if required {
			return Invalid(field, ReasonInvalidText, "must not be empty")
		}
		return nil
	}
	if len(s) > maxLen {
		return Invalid(field, ReasonInvalidText, fmt.Sprintf("must be at most %d bytes, got %d", maxLen, len(s)))
	}
	for i, r := range s {
		var what string
		switch {
		case r == utf8.RuneError:
			// Bytes that are not UTF-8, or U+FFFD, which stands for them.
			return Invalid(field, ReasonInvalidText, fmt.Sprintf("has %s at byte %d; text must be valid UTF-8", describeChar(s[i:]), i))
		case unicode.IsControl(r):
			what = "a control character"
		case unicode.Is(unicode.Bidi_Control, r):
			what = "a bidirectional control character"
		case zeroWidth(r):
			what = "a zero-width character"
		default:
			continue
		}
		return Invalid(field, ReasonInvalidText, fmt.Sprintf("has %s, %s, at byte %d", describeChar(s[i:]), what, i))
	}
	return nil
}

// zeroWidth reports the invisible characters free text refuses besides
// the bidirectional controls: zero width space, non-joiner and joiner
// (U+200B to U+200D) and the zero width no-break space or byte order mark
// (U+FEFF).
func zeroWidth(r rune) bool {
	return r >= '\u200b' && r <= '\u200d' || r == '\ufeff'
}

// describeChar names the character s starts with for an error message: the
// whole character quoted with its code point, e.g. 'é' (U+00E9), rather
// than its first byte; a byte that starts no valid UTF-8 sequence is named
// as such.
func describeChar(s string) string {
	r, size := utf8.DecodeRuneInString(s)
	if r == utf8.RuneError && size == 1 {
		return fmt.Sprintf("invalid UTF-8 (byte 0x%02X)", s[0])
	}
	return fmt.Sprintf("%q (%U)", r, r)
}

func invalidIf(field, reason string, err error) error {
	if err == nil {
		return nil
	}
	return Invalid(field, reason, err.Error())
}
