package audit

import (
	"context"
	"fmt"
	"testing"

	"go.uber.org/zap/zaptest"

	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// TestPostgresListsInBoundedSteps: a filter that matches little of a large
// log returns short pages with tokens rather than scanning on, and paging
// still finds every match; lookups by id and range verification work
// across many rows.
func TestPostgresListsInBoundedSteps(t *testing.T) {
	defer func(q, c int) { rowsPerQuery, rowsPerCall = q, c }(rowsPerQuery, rowsPerCall)
	rowsPerQuery, rowsPerCall = 8, 16
	ctx := context.Background()
	l, err := NewPostgres(pgtest.NewPool(t), Options{Mode: ModeSync, Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := l.Close(ctx); err != nil {
			t.Error(err)
		}
	}()
	var ids []string
	for i := range 100 { // sequential sync calls: one row each
		id, err := l.Record(ctx, decision("t", fmt.Sprintf("u%d", i%50), i%3 == 0))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	calls, short := 0, 0
	var got []Decision
	tok := ""
	for {
		p, err := l.ListDecisions(ctx, Query{Tenant: "t", Subject: "u49"}, 10, tok)
		if err != nil {
			t.Fatal(err)
		}
		calls++
		if len(p.Decisions) == 0 && p.Next != "" {
			short++
		}
		got = append(got, p.Decisions...)
		if tok = p.Next; tok == "" {
			break
		}
	}
	if len(got) != 2 || got[0].ID != ids[49] || got[1].ID != ids[99] || short == 0 || calls < 5 {
		t.Fatalf("found %d entries in %d calls (%d short)", len(got), calls, short)
	}
	all := listAll(t, l, Query{Tenant: "t", NewestFirst: true})
	if len(all) != 100 || all[0].ID != ids[99] || all[99].ID != ids[0] {
		t.Fatalf("newest first: %d entries", len(all))
	}
	for _, i := range []int{0, 37, 99} {
		d, err := l.Decision(ctx, "t", ids[i])
		if err != nil || d.ID != ids[i] || d.Subject != fmt.Sprintf("u%d", i%50) {
			t.Fatalf("decision %s: %+v %v", ids[i], d, err)
		}
	}
	if _, err := l.Decision(ctx, "other", ids[3]); err == nil {
		t.Fatal("a decision was found in another tenant")
	}
	var exported int
	if err := l.ExportDecisions(ctx, Query{Tenant: "t", Result: ResultAllow}, func(ds []Decision) error { exported += len(ds); return nil }); err != nil || exported != 34 {
		t.Fatalf("exported %d allowed decisions: %v", exported, err)
	}
	rs, err := l.Verify(ctx, l.ChainID(), 40, 60)
	if err != nil || rs[0].Broken != nil || rs[0].First != 40 || rs[0].Last != 60 || rs[0].Checked != 21 {
		t.Fatalf("range verification %+v %v", rs, err)
	}
}
