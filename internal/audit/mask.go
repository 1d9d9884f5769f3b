package audit

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
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

// apply masks the configured attributes of d.
func (m *masker) apply(d *Decision) {
	if len(m.attrs) == 0 {
		return
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
