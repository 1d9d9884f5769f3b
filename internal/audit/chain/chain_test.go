package chain

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// TestCanonicalJSON: a document as Go writes it and as PostgreSQL's jsonb
// gives it back (keys reordered, spaces added, escapes and numbers
// rewritten) have one canonical form.
func TestCanonicalJSON(t *testing.T) {
	tests := []struct {
		name        string
		written     string
		readBack    string
		wantCanonic string
	}{
		{"key order and spaces", `{"user_id":"peggy","role_id":"read_only"}`, `{"role_id": "read_only", "user_id": "peggy"}`, `{"role_id":"read_only","user_id":"peggy"}`},
		{"html escapes", `{"reason":"a \u003c b \u0026 c"}`, `{"reason": "a < b & c"}`, `{"reason":"a < b & c"}`},
		{"unicode", `{"name":"大客户经理"}`, `{"name": "\u5927\u5ba2\u6237\u7ecf\u7406"}`, `{"name":"大客户经理"}`},
		{"numbers", `{"n":100,"f":1.5,"e":1e2}`, `{"e": 100, "f": 1.5, "n": 100}`, `{"e":100,"f":1.5,"n":100}`},
		{"nested", `{"p":{"modules":[{"verbs":["read","list"],"module":"account"}]},"id":"x"}`, `{"id": "x", "p": {"modules": [{"module": "account", "verbs": ["read", "list"]}]}}`, `{"id":"x","p":{"modules":[{"module":"account","verbs":["read","list"]}]}}`},
		{"literals", `[true,false,null]`, `[true, false, null]`, `[true,false,null]`},
		{"control characters", `"a\nb"`, `"a\u000ab"`, `"a\u000ab"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := CanonicalJSON([]byte(tt.written))
			if err != nil {
				t.Fatal(err)
			}
			b, err := CanonicalJSON([]byte(tt.readBack))
			if err != nil {
				t.Fatal(err)
			}
			if string(a) != tt.wantCanonic || string(b) != tt.wantCanonic {
				t.Fatalf("canonical forms %s and %s, want %s", a, b, tt.wantCanonic)
			}
		})
	}
	if _, err := CanonicalJSON([]byte(`{"a":`)); err == nil {
		t.Fatal("malformed JSON accepted")
	}
}

// TestChangeHashCoversEveryField: changing any field of a change entry
// changes its canonical content; NULL and empty documents differ.
func TestChangeHashCoversEveryField(t *testing.T) {
	at := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	base, err := Change("demo", 2, at, "oscar", "", "why", "grant.create", "grant/peggy/x", nil, []byte(`{"a":1}`), nil)
	if err != nil {
		t.Fatal(err)
	}
	variants := [][]byte{}
	for _, c := range []struct {
		tenant, actor, reason, action, target string
		rev                                   int64
		at                                    time.Time
		before, after                         []byte
		credential                            string
		related                               []string
	}{
		{"demo2", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar2", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why2", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.revoke", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/y", 2, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 3, at, nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at.Add(time.Microsecond), nil, []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, []byte(`{}`), []byte(`{"a":1}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":2}`), "", nil},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, nil, "", nil},
		// Field boundaries are unambiguous: moving a byte between fields changes the content.
		{"demo", "oscarw", "hy", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", nil},
		// A credential, when recorded, is covered too.
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "key:0123456789abcdef", nil},
		// Related targets, when recorded, are covered, and never read as a credential.
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", []string{"grant/bob/x"}},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", []string{"grant/bob/x", "grant/bob/y"}},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "", []string{"grant/bob/y"}},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "key:0123456789abcdef", []string{"grant/bob/x"}},
		{"demo", "oscar", "why", "grant.create", "grant/peggy/x", 2, at, nil, []byte(`{"a":1}`), "\x01\x0bgrant/bob/x", nil},
	} {
		v, err := Change(c.tenant, c.rev, c.at, c.actor, c.credential, c.reason, c.action, c.target, c.before, c.after, c.related)
		if err != nil {
			t.Fatal(err)
		}
		variants = append(variants, v)
	}
	for i, v := range variants {
		if bytes.Equal(v, base) {
			t.Errorf("variant %d encodes like the original", i)
		}
		for j := range i {
			if bytes.Equal(v, variants[j]) {
				t.Errorf("variants %d and %d encode alike", j, i)
			}
		}
	}
	k := NewEphemeralKeyring().Active()
	if l1, l2 := k.Link(nil, base), k.Link([]byte("prev"), base); len(l1) != HashSize || bytes.Equal(l1, l2) {
		t.Errorf("links %x %x", l1, l2)
	}
}

func TestDecoderRoundTrip(t *testing.T) {
	var e Encoder
	e.Reset("tag")
	e.String("hello")
	e.Int(-42)
	e.Bool(true)
	at := time.Date(2026, 11, 24, 9, 0, 0, 123000, time.UTC)
	e.Time(at)
	e.Time(time.Time{})
	e.Strings([]string{"a", "", "c"})
	e.Strings(nil)
	d := NewDecoder(e.Bytes(), "tag")
	if s, n, b, t1, t2, ss, none := d.String(), d.Int(), d.Bool(), d.Time(), d.Time(), d.Strings(), d.Strings(); s != "hello" || n != -42 || !b ||
		!t1.Equal(at) || !t2.IsZero() || len(ss) != 3 || ss[2] != "c" || none != nil || d.Err() != nil {
		t.Fatalf("decoded %q %d %v %v %v %q %q, err %v", s, n, b, t1, t2, ss, none, d.Err())
	}
	// The string decoder reads the same values out of one copy of its input.
	sd := NewStringDecoder(e.Bytes(), "tag")
	if s, n, b, _, _, ss := sd.String(), sd.Int(), sd.Bool(), sd.Time(), sd.Time(), sd.Strings(); s != "hello" || n != -42 || !b ||
		len(ss) != 3 || ss[0] != "a" || ss[1] != "" || ss[2] != "c" || sd.Strings() != nil || sd.Err() != nil {
		t.Fatalf("string decoder: %q %d %v %q, err %v", s, n, b, ss, sd.Err())
	}
	if d := NewDecoder(e.Bytes(), "other"); !errors.Is(d.Err(), ErrMalformed) {
		t.Fatalf("wrong tag: %v", d.Err())
	}
	short := NewDecoder(e.Bytes()[:10], "tag")
	_, _ = short.String(), short.Int()
	if !errors.Is(short.Err(), ErrMalformed) {
		t.Fatalf("truncated input: %v", short.Err())
	}
}

// FuzzDecoder: no input makes the decoder panic or loop.
func FuzzDecoder(f *testing.F) {
	var e Encoder
	e.Reset(DecisionTag)
	e.String("x")
	e.Strings([]string{"a", "b"})
	f.Add(e.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		d := NewDecoder(b, DecisionTag)
		_, _, _, _, _ = d.String(), d.Int(), d.Strings(), d.Bool(), d.Time()
		_ = d.Err()
	})
}

// FuzzCanonicalJSON: the canonical form is valid JSON of the same value and
// a fixed point.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[1,2.5,"x"]}`, `"\u003c"`, `null`, `{"a":{"b":{}}}`, `1e400`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := CanonicalJSON(b)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("canonical form %q of %q is not JSON", c, b)
		}
		again, err := CanonicalJSON(c)
		if err != nil || !bytes.Equal(again, c) {
			t.Fatalf("canonical form %q is not a fixed point: %q %v", c, again, err)
		}
	})
}
