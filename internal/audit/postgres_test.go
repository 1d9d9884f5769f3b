package audit

import (
	"context"
	"fmt"
	"slices"
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

// TestPostgresListsAcrossTransactionIDDigits: listing follows transaction
// ids as numbers. Ordered as text, the batches of ids 94-99 sort after
// those of 100-105, and a page starting below 100 skipped to 100 and
// never listed them.
func TestPostgresListsAcrossTransactionIDDigits(t *testing.T) {
	ctx := context.Background()
	pool := pgtest.NewPool(t)
	l, err := NewPostgres(pool, Options{Mode: ModeSync, Logger: zaptest.NewLogger(t)})
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
	for i := range 12 { // sequential sync calls: one row, one transaction each
		id, err := l.Record(ctx, decision("t", fmt.Sprintf("u%d", i), true))
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	// Give the rows, in write order, the ids a server passes 100 with:
	// 94, 95 ... 99, 100 ... 105. Every one is below the horizon, as a
	// server that ran initdb and the migrations is far past them.
	if _, err := pool.Exec(ctx, "UPDATE decision_batches SET txid = (first_pos + 93)::text::xid8"); err != nil {
		t.Fatal(err)
	}
	if h, err := l.be.horizon(ctx); err != nil || h <= 105 {
		t.Fatalf("horizon %d %v", h, err)
	}
	idsOf := func(ds []Decision) []string {
		out := make([]string, len(ds))
		for i := range ds {
			out[i] = ds[i].ID
		}
		return out
	}
	reversed := slices.Clone(ids)
	slices.Reverse(reversed)
	for _, size := range []int{1, 2, 5, 100} {
		for _, desc := range []bool{false, true} {
			var got []Decision
			tok := ""
			for {
				p, err := l.ListDecisions(ctx, Query{Tenant: "t", NewestFirst: desc}, size, tok)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, p.Decisions...)
				if tok = p.Next; tok == "" {
					break
				}
			}
			want := ids
			if desc {
				want = reversed
			}
			if !slices.Equal(idsOf(got), want) {
				t.Errorf("pages of %d, newest first %v: %v, want %v", size, desc, idsOf(got), want)
			}
		}
	}
	// Resuming from the end of the first page lists the rest.
	p, err := l.ListDecisions(ctx, Query{Tenant: "t"}, 3, "")
	if err != nil {
		t.Fatal(err)
	}
	rest, err := l.ListDecisions(ctx, Query{Tenant: "t"}, 100, p.Resume)
	if err != nil {
		t.Fatal(err)
	}
	if got := append(idsOf(p.Decisions), idsOf(rest.Decisions)...); !slices.Equal(got, ids) {
		t.Errorf("resumed listing %v, want %v", got, ids)
	}
	var exported []string
	if err := l.ExportDecisions(ctx, Query{Tenant: "t"}, func(ds []Decision) error { exported = append(exported, idsOf(ds)...); return nil }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(exported, ids) {
		t.Errorf("exported %v, want %v", exported, ids)
	}
}
