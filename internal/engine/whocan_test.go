package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/datagen"
)

// TestWhoCanAgreesWithCheck: over generated tenants (expired grants,
// inactive users, denies, inheritance, scopes, managers, sharing), for
// every permission the request generator asks about, WhoCan read page by
// page lists exactly the users whom Check allows it, with Check's own
// explanation for each.
func TestWhoCanAgreesWithCheck(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	eng, b := newTestEngine(t, WithClock(func() time.Time { return now }))
	for seed := uint64(1); seed <= 3; seed++ {
		opts := datagen.Small()
		st, err := datagen.Tenant(fmt.Sprintf("gen-%d", seed), b, opts, seed, now)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(st); err != nil {
			t.Fatal(err)
		}
		users := slices.Sorted(func(yield func(string) bool) {
			for id := range st.Users {
				if !yield(id) {
					return
				}
			}
		})
		asked, allowedSome := 0, 0
		seen := map[string]bool{}
		for _, r := range datagen.Requests(st, b.Catalog, 400, seed) {
			p := r.Permission
			if key := fmt.Sprintf("%v", p); seen[key] {
				continue
			} else {
				seen[key] = true
			}
			asked++
			var want []string
			for _, u := range users {
				d, err := eng.Check(st.ID, u, p, false)
				if err != nil {
					t.Fatal(err)
				}
				if d.Allowed {
					want = append(want, u)
				}
			}
			var got []string
			after := ""
			for page := 0; ; page++ {
				hs, more, _, err := eng.WhoCan(st.ID, p, after, 7)
				if err != nil {
					t.Fatal(err)
				}
				for _, h := range hs {
					got = append(got, h.User)
					explained, err := eng.Check(st.ID, h.User, p, true)
					if err != nil {
						t.Fatal(err)
					}
					if fmt.Sprint(explained.Reasons) != fmt.Sprint(h.Reasons) {
						t.Fatalf("%s: %s: WhoCan's reasons %v, Check's %v", st.ID, p, h.Reasons, explained.Reasons)
					}
				}
				if !more {
					break
				}
				if len(hs) != 7 {
					t.Fatalf("%s: %s: page %d of %d with more to come", st.ID, p, page, len(hs))
				}
				after = hs[len(hs)-1].User
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s: %s: WhoCan %v, Check allows %v", st.ID, p, got, want)
			}
			if len(want) > 0 {
				allowedSome++
			}
		}
		if asked < 50 || allowedSome < asked/10 {
			t.Fatalf("%s: %d permissions asked, %d allowed to someone: the test proves too little", st.ID, asked, allowedSome)
		}
	}
}
