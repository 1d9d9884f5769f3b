// Package chain is the tamper evidence of the audit logs: the canonical
// binary encoding of an entry and the hash link that chains entries.
//
// An entry's hash is HMAC-SHA-256 under a key the service holds of
// (previous hash || canonical content) (keys.go); heads are sealed and
// checkpoints signed with keys of the same keyring (checkpoint.go). The
// canonical content is an encoding this package controls: a tag naming the
// entry type and version, then every field in a fixed order, strings
// length-prefixed, integers as zig-zag varints, times in microseconds since
// the Unix epoch (what PostgreSQL keeps). JSON documents are hashed in
// a canonical form (sorted keys, no whitespace, numbers normalised), so a
// document reads back from jsonb to the same bytes it was written from.
//
// The package has no dependencies inside the module: the PostgreSQL store
// uses it to hash change-log entries inside the admin write's transaction.
package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// HashSize is the size of a link hash in bytes.
const HashSize = sha256.Size

// Tags open the canonical encoding of each entry type; a new encoding gets
// a new tag.
const (
	DecisionTag = "crmauthz.decision.v1"
	ChangeTag   = "crmauthz.change.v1"
)

// Encoder builds a canonical encoding. The zero value is ready to use; Reset
// reuses its buffer.
type Encoder struct {
	buf []byte
}

// Reset empties the encoder and starts an encoding with tag.
func (e *Encoder) Reset(tag string) {
	e.buf = e.buf[:0]
	e.String(tag)
}

// Bytes returns the encoding so far; it is valid until the next Reset.
func (e *Encoder) Bytes() []byte { return e.buf }

// String appends a length-prefixed string.
func (e *Encoder) String(s string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(s)))
	e.buf = append(e.buf, s...)
}

// Raw appends length-prefixed bytes.
func (e *Encoder) Raw(b []byte) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(b)))
	e.buf = append(e.buf, b...)
}

// Int appends a signed integer (zig-zag varint).
func (e *Encoder) Int(n int64) { e.buf = binary.AppendVarint(e.buf, n) }

// Bool appends a boolean.
func (e *Encoder) Bool(b bool) {
	if b {
		e.buf = append(e.buf, 1)
	} else {
		e.buf = append(e.buf, 0)
	}
}

// Time appends a time at microsecond precision; the zero time encodes as 0.
func (e *Encoder) Time(t time.Time) {
	if t.IsZero() {
		e.Int(0)
		return
	}
	e.Int(t.UnixMicro())
}

// Strings appends a counted list of strings.
func (e *Encoder) Strings(ss []string) {
	e.buf = binary.AppendUvarint(e.buf, uint64(len(ss)))
	for _, s := range ss {
		e.String(s)
	}
}

// JSON appends a JSON document in canonical form; nil (SQL NULL) is distinct
// from every document.
func (e *Encoder) JSON(doc []byte) error {
	if doc == nil {
		e.buf = append(e.buf, 0)
		return nil
	}
	c, err := CanonicalJSON(doc)
	if err != nil {
		return err
	}
	e.buf = append(e.buf, 1)
	e.Raw(c)
	return nil
}

// Change returns the canonical content of a change-log entry. The
// credential is appended only when set or when related targets follow,
// and the related targets only when there are any, so entries written
// before either was recorded keep their encoding (and the two cannot be
// mistaken for each other: related targets always come after a
// credential, empty or not).
func Change(tenant string, revision int64, at time.Time, actor, credential, reason, action, target string, before, after []byte, related []string) ([]byte, error) {
	var e Encoder
	e.Reset(ChangeTag)
	e.String(tenant)
	e.Int(revision)
	e.Time(at)
	e.String(actor)
	e.String(reason)
	e.String(action)
	e.String(target)
	if err := e.JSON(before); err != nil {
		return nil, fmt.Errorf("canonical before of revision %d: %w", revision, err)
	}
	if err := e.JSON(after); err != nil {
		return nil, fmt.Errorf("canonical after of revision %d: %w", revision, err)
	}
	if credential != "" || len(related) > 0 {
		e.String(credential)
	}
	if len(related) > 0 {
		e.Strings(related)
	}
	return e.Bytes(), nil
}

// CanonicalJSON re-encodes a JSON document with object keys sorted, no
// insignificant whitespace, minimal string escapes and numbers in their
// shortest form, so that the document and its jsonb round trip encode alike.
func CanonicalJSON(doc []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("canonical json: %w", err)
	}
	return appendJSON(nil, v)
}

func appendJSON(b []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, x), nil
	case json.Number:
		return appendNumber(b, x)
	case string:
		return appendString(b, x), nil
	case []any:
		b = append(b, '[')
		for i, el := range x {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendJSON(b, el); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendJSON(b, x[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	}
	return nil, fmt.Errorf("canonical json: unexpected %T", v)
}

// appendNumber writes integers as integers and every other number in the
// shortest form that reads back to the same float64.
func appendNumber(b []byte, n json.Number) ([]byte, error) {
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return strconv.AppendInt(b, i, 10), nil
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("canonical json: number %q", string(n))
	}
	if f == math.Trunc(f) && math.Abs(f) < 1e15 {
		return strconv.AppendInt(b, int64(f), 10), nil
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64), nil
}

// appendString quotes s escaping only what JSON requires.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// ErrMalformed reports an encoding the Decoder cannot read.
var ErrMalformed = errors.New("malformed canonical encoding")

// Decoder reads what an Encoder wrote, in the same order. The first error
// sticks: later reads return zero values and Err reports it.
type Decoder struct {
	buf []byte
	err error
	// str is the input copied once into a string by NewStringDecoder:
	// String then returns parts of it rather than allocating.
	str string
}

// NewDecoder reads b, which must start with tag.
func NewDecoder(b []byte, tag string) *Decoder {
	d := &Decoder{buf: b}
	if got := d.String(); d.err == nil && got != tag {
		d.err = fmt.Errorf("%w: tag %q, want %q", ErrMalformed, got, tag)
	}
	return d
}

// Err returns the first error, or an error when bytes are left over.
func (d *Decoder) Err() error {
	if d.err == nil && len(d.buf) > 0 {
		return fmt.Errorf("%w: %d bytes left over", ErrMalformed, len(d.buf))
	}
	return d.err
}

func (d *Decoder) fail() {
	if d.err == nil {
		d.err = ErrMalformed
	}
	d.buf = nil
}

func (d *Decoder) uvarint() uint64 {
	n, k := binary.Uvarint(d.buf)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[k:]
	return n
}

// Raw reads length-prefixed bytes; the result aliases the input.
func (d *Decoder) Raw() []byte {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail()
		return nil
	}
	b := d.buf[:n:n]
	d.buf = d.buf[n:]
	return b
}

// NewStringDecoder is NewDecoder for reading many strings: it copies b
// once, and the strings it returns share that copy (which stays alive while
// any of them is).
func NewStringDecoder(b []byte, tag string) *Decoder {
	d := &Decoder{buf: b, str: string(b)}
	if got := d.String(); d.err == nil && got != tag {
		d.err = fmt.Errorf("%w: tag %q, want %q", ErrMalformed, got, tag)
	}
	return d
}

// String reads a length-prefixed string.
func (d *Decoder) String() string {
	raw := d.Raw()
	if d.str == "" || len(raw) == 0 {
		return string(raw)
	}
	end := len(d.str) - len(d.buf)
	return d.str[end-len(raw) : end]
}

// Int reads a signed integer.
func (d *Decoder) Int() int64 {
	n, k := binary.Varint(d.buf)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.buf = d.buf[k:]
	return n
}

// Bool reads a boolean.
func (d *Decoder) Bool() bool {
	if len(d.buf) < 1 || d.buf[0] > 1 {
		d.fail()
		return false
	}
	b := d.buf[0] == 1
	d.buf = d.buf[1:]
	return b
}

// Time reads a time; 0 decodes as the zero time.
func (d *Decoder) Time() time.Time {
	n := d.Int()
	if n == 0 {
		return time.Time{}
	}
	return time.UnixMicro(n).UTC()
}

// Strings reads a counted list of strings; an empty list decodes as nil.
func (d *Decoder) Strings() []string {
	n := d.uvarint()
	if n > uint64(len(d.buf)) {
		d.fail()
		return nil
	}
	var out []string
	for i := uint64(0); i < n && d.err == nil; i++ {
		out = append(out, d.String())
	}
	return out
}
