package engine

import (
	"fmt"
	"hash/maphash"
	"slices"
	"testing"

	"github.com/crmauthz/crmauthz/internal/bundle"
)

func TestNames(t *testing.T) {
	seed := maphash.MakeSeed()
	var ids []string
	for i := range 300 {
		ids = append(ids, fmt.Sprintf("user-%d", i))
	}
	ids = append(ids, "", "a", "user-1x")
	n := newNames(seed, ids[:100], 0)
	// Added a few at a time: in place while the table has room, rebuilt
	// when it has not. The earlier copies stay as they were.
	copies := []names{n}
	for at := 100; at < len(ids); {
		step := min(1+at%7, len(ids)-at)
		n = n.with(seed, slices.Concat(ids[at:at+step], []string{ids[0], ids[at]})) // known and repeated ids are numbered once
		copies = append(copies, n)
		at += step
	}
	if n.len() != len(ids) {
		t.Fatalf("%d names, want %d", n.len(), len(ids))
	}
	for i, id := range ids {
		if got := n.find(seed, id); got != int32(i) {
			t.Errorf("find(%q) = %d, want %d", id, got, i)
		}
		if got := n.name(int32(i)); got != id {
			t.Errorf("name(%d) = %q, want %q", i, got, id)
		}
	}
	for _, id := range []string{"user-300", "user-", "b", "user-1xx"} {
		if got := n.find(seed, id); got != -1 {
			t.Errorf("find(%q) = %d, want -1", id, got)
		}
	}
	if got := copies[0].find(seed, "user-100"); got != -1 || copies[0].len() != 100 {
		t.Errorf("the first copy changed: find(user-100) = %d, %d names", got, copies[0].len())
	}
	if same := n.with(seed, ids[:5]); same.len() != n.len() || &same.a[0] != &n.a[0] {
		t.Error("with() of known ids made a new table")
	}
	// A pair is found as the string it stands for, without making it.
	pairs := newNames(seed, []string{"account\x00r1", "account\x00r10", "lead\x00r1", "account"}, 0)
	for _, c := range []struct {
		a, b string
		pair bool
		want int32
	}{{"account", "r1", true, 0}, {"account", "r10", true, 1}, {"lead", "r1", true, 2}, {"account", "", false, 3},
		{"account", "r", true, -1}, {"accoun", "t\x00r1", true, -1}, {"lead", "r10", true, -1}, {"account", "", true, -1}} {
		if got := pairs.findPair(seed, c.a, c.b, c.pair); got != c.want {
			t.Errorf("findPair(%q, %q, %v) = %d, want %d", c.a, c.b, c.pair, got, c.want)
		}
	}
	var empty names
	if got := empty.find(seed, "x"); got != -1 {
		t.Errorf("find in no names = %d", got)
	}
}

// TestPermSpaceID holds id, which looks a key up part by part, equal to
// the map of whole keys it replaces, for every permission of the catalog
// and for keys it does not hold.
func TestPermSpaceID(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	s := newPermSpace(b.Catalog)
	for k, want := range s.ids {
		if got, ok := s.id(k); !ok || got != want {
			t.Errorf("id(%v) = %d, %v; want %d", k, got, ok, want)
		}
	}
	for _, k := range []key{{kindModule, "account", "fly"}, {kindModule, "nope", "read"}, {kindFieldRead, "account", "nope"},
		{kindFieldWrite, "nope", "phone"}, {kindFunction, "nope", ""}, {0, "account", "read"}} {
		if got, ok := s.id(k); ok {
			t.Errorf("id(%v) = %d, want none", k, got)
		}
	}
}
