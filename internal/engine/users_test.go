package engine

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestUserTable stores users of every form a slot distinguishes (short and
// long ids, none to many grants, expiring grants, high role numbers) and
// finds each one's grants exactly, and nothing for ids it does not hold.
func TestUserTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	seed := maphash.MakeSeed()
	want := map[string][]userGrant{}
	var users []string
	ids := []string{"u", "user0001", "user00001", strings.Repeat("x", 128), "ünïcödé", "a.b@c-d_e"}
	for i := range 3000 {
		ids = append(ids, fmt.Sprintf("user%d", i), fmt.Sprintf("%08d-aaaa-bbbb-cccc-%012d", i, i))
	}
	for _, id := range ids {
		var gs []userGrant
		for range r.IntN(5) {
			g := userGrant{role: int32(r.IntN(300))}
			if r.IntN(4) == 0 {
				g.expires = r.Int64N(1 << 62)
			}
			gs = append(gs, g)
		}
		want[id] = gs
		users = append(users, id)
	}
	table := newUserTable(seed, users, want)
	if got := len(table.slots) * 3; got < len(users)*4 {
		t.Fatalf("table of %d slots for %d users is over three quarters full", len(table.slots), len(users))
	}
	inline := 0
	for _, id := range users {
		var buf [2]userGrant
		got := table.grantsOf(seed, id, &buf)
		if !slices.Equal(got, want[id]) && (len(got) != 0 || len(want[id]) != 0) {
			t.Fatalf("%q: grants %v, want %v", id, got, want[id])
		}
		if inlineGrants(want[id]) && len(id) <= shortID {
			inline++
		}
	}
	if inline < 1000 {
		t.Fatalf("only %d users had inline slots; the test does not cover them", inline)
	}
	for _, id := range []string{"", "user", "user3000", "user00002", strings.Repeat("x", 127), strings.Repeat("x", 129), strings.Repeat("y", 300), "User1"} {
		var buf [2]userGrant
		if got := table.grantsOf(seed, id, &buf); got != nil {
			t.Fatalf("%q is not in the table but has grants %v", id, got)
		}
	}
	// Absent ids shaped like present ones: the same lengths, so some share
	// a slot's length and hash tag and must be told apart by their bytes.
	for i := 3000; i < 6000; i++ {
		for _, id := range []string{fmt.Sprintf("user%d", i), fmt.Sprintf("%08d-aaaa-bbbb-cccc-%012d", i, i)} {
			var buf [2]userGrant
			if got := table.grantsOf(seed, id, &buf); got != nil {
				t.Fatalf("%q is not in the table but has grants %v", id, got)
			}
		}
	}
	var empty userTable
	var buf [2]userGrant
	if got := empty.grantsOf(seed, "user1", &buf); got != nil {
		t.Fatalf("empty table: grants %v", got)
	}
}
