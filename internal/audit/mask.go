package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
)

// MaskAttributes are the request attributes that can be masked before they
// are stored.
var MaskAttributes = []string{"subject", "caller", "record_id", "record_owner", "record_department"}

// MinMaskKeyLength is the shortest accepted masking key, in bytes.
const MinMaskKeyLength = 16

// masker replaces configured attributes by a keyed hash: "~" and the first
// 16 bytes of HMAC-SHA256(key, value) in hex. The same value always masks
// alike (under one key), so auditors can still filter by a known id and
// correlate entries, but the stored log does not hold the id. Identifiers
// never start with "~", so a masked value cannot be mistaken for one.
type masker struct {
	key   []byte
	attrs []string
	on    [5]bool // indexed like MaskAttributes
}

func newMasker(attrs []string, key string) (masker, error) {
	m := masker{key: []byte(key)}
	for _, a := range attrs {
		i := slices.Index(MaskAttributes, a)
		if i < 0 {
			return m, fmt.Errorf("unknown masked attribute %q: use %v", a, MaskAttributes)
		}
		if !m.on[i] {
			m.on[i] = true
			m.attrs = append(m.attrs, a)
		}
	}
	if len(m.attrs) > 0 && len(m.key) < MinMaskKeyLength {
		return m, fmt.Errorf("masking needs a key of at least %d bytes", MinMaskKeyLength)
	}
	return m, nil
}

// masks reports whether attribute attr is masked.
func (m *masker) masks(attr string) bool {
	i := slices.Index(MaskAttributes, attr)
	return i >= 0 && m.on[i]
}

// value masks one value; the empty value stays empty.
func (m *masker) value(v string) string {
	if v == "" {
		return ""
	}
	h := hmac.New(sha256.New, m.key)
	h.Write([]byte(v))
	sum := h.Sum(nil)
	return "~" + hex.EncodeToString(sum[:16])
}

// maybe masks v when attr is masked.
func (m *masker) maybe(attr, v string) string {
	if m.masks(attr) {
		return m.value(v)
	}
	return v
}

// apply masks the configured attributes of d, also where its reasons name
// them (the explanation names the user, the record, its owner and
// department).
func (m *masker) apply(d *Decision) {
	if len(m.attrs) == 0 {
		return
	}
	if len(d.Reasons) > 0 {
		d.Reasons = m.reasons(d.Reasons, [5]string{d.Subject, d.Caller, d.RecordID, d.RecordOwner, d.RecordDepartment})
		if m.on[2] {
			d.Reasons = m.pageRecords(d.Reasons)
		}
	}
	if m.on[0] {
		d.Subject = m.value(d.Subject)
	}
	if m.on[1] {
		d.Caller = m.value(d.Caller)
	}
	if m.on[2] {
		d.RecordID = m.value(d.RecordID)
	}
	if m.on[3] {
		d.RecordOwner = m.value(d.RecordOwner)
	}
	if m.on[4] {
		d.RecordDepartment = m.value(d.RecordDepartment)
	}
}

// reasons returns reasons with every occurrence of a masked attribute's
// value raw (indexed like MaskAttributes) replaced by its mask. A value
// counts where it stands as a whole identifier: not inside a longer one
// (the user "bob" is not masked inside the role "bob_admin"), but before a
// full stop that ends a sentence. reasons is not modified.
func (m *masker) reasons(reasons []string, raw [5]string) []string {
	type pair struct{ raw, masked string }
	var ps []pair
	for i, v := range raw {
		if m.on[i] && v != "" {
			ps = append(ps, pair{v, m.value(v)})
		}
	}
	if len(ps) == 0 {
		return reasons
	}
	// The longest first: "bob.smith" before "bob".
	slices.SortFunc(ps, func(a, b pair) int { return len(b.raw) - len(a.raw) })
	var out []string
	for i, r := range reasons {
		var b strings.Builder
		changed := false
		for j := 0; j < len(r); {
			matched := false
			if j == 0 || !idByte(r[j-1]) {
				for _, p := range ps {
					if end := j + len(p.raw); strings.HasPrefix(r[j:], p.raw) && idEnds(r, end) {
						if !changed {
							b.WriteString(r[:j])
							changed = true
						}
						b.WriteString(p.masked)
						j, matched = end, true
						break
					}
				}
			}
			if !matched {
				if changed {
					b.WriteByte(r[j])
				}
				j++
			}
		}
		if changed && out == nil {
			out = slices.Clone(reasons)
		}
		if changed {
			out[i] = b.String()
		}
	}
	if out == nil {
		return reasons
	}
	return out
}

// pageRecords masks the record ids of a page's denied records
// (PageDeniedRecord), which are no attribute of the entry itself. reasons
// is not modified.
func (m *masker) pageRecords(reasons []string) []string {
	var out []string
	for i, r := range reasons {
		id, ok := strings.CutPrefix(r, pageDeniedRecord)
		if !ok {
			continue
		}
		if out == nil {
			out = slices.Clone(reasons)
		}
		out[i] = pageDeniedRecord + m.value(id)
	}
	if out == nil {
		return reasons
	}
	return out
}

// idByte reports whether c may continue an identifier (model's subject
// alphabet, the widest).
func idByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.' || c == '@'
}

// idEnds reports whether an identifier in s ends at i: at the end, before a
// byte that cannot continue it, or before a full stop not followed by one
// that can.
func idEnds(s string, i int) bool {
	if i == len(s) || !idByte(s[i]) {
		return true
	}
	return s[i] == '.' && (i+1 == len(s) || !idByte(s[i+1]))
}
