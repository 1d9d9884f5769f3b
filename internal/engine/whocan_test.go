package engine

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
)

// TestWhoCanAgreesWithCheck: over generated tenants (expired grants,
// inactive users, denies, inheritance, scopes, managers, sharing), for
// every permission the request generator asks about, WhoCan read page by
// page lists exactly the users whom Check allows it, with Check's own
// explanation for each, and the time their access ends: Check allows it
// until then and denies it from then on.
func TestWhoCanAgreesWithCheck(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	clock := now
	eng, b := newTestEngine(t, WithClock(func() time.Time { return clock }))
	allowedAt := func(tenant, user string, p model.Permission, at time.Time) bool {
		t.Helper()
		clock = at
		defer func() { clock = now }()
		d, err := eng.Check(tenant, user, p, false)
		if err != nil {
			t.Fatal(err)
		}
		return d.Allowed
	}
	ending := 0
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
					if h.Until.IsZero() {
						if !allowedAt(st.ID, h.User, p, now.AddDate(200, 0, 0)) {
							t.Fatalf("%s: %s: %s's access never ends by WhoCan, but Check denies it in 200 years", st.ID, p, h.User)
						}
					} else {
						ending++
						if !allowedAt(st.ID, h.User, p, h.Until.Add(-time.Nanosecond)) || allowedAt(st.ID, h.User, p, h.Until) {
							t.Fatalf("%s: %s: %s's access ends at %s by WhoCan, not by Check", st.ID, p, h.User, h.Until)
						}
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
		if asked < 50 || allowedSome < asked/10 || ending == 0 {
			t.Fatalf("%s: %d permissions asked, %d allowed to someone: the test proves too little", st.ID, asked, allowedSome)
		}
	}
}
