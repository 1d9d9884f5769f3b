package model

import (
	"errors"
	"testing"
)

// TestValidPermissionAllocatesNothing: Check validates every permission it
// is asked, so a valid one must cost no allocation; an invalid one names
// its field under the request's path.
func TestValidPermissionAllocatesNothing(t *testing.T) {
	cat := &Catalog{Verbs: []string{"read", "update"}, Modules: []CatalogModule{{ID: "lead", Fields: []string{"phone"}}}}
	if err := cat.Init(); err != nil {
		t.Fatal(err)
	}
	valid := []Permission{
		{Kind: KindModule, Module: "lead", Verb: "read"},
		{Kind: KindField, Module: "lead", Field: "phone"},
	}
	for _, p := range valid {
		if n := testing.AllocsPerRun(100, func() {
			if err := p.Validate(cat, "permission"); err != nil {
				t.Fatal(err)
			}
		}); n != 0 {
			t.Errorf("validating %+v allocates %.0f times", p, n)
		}
	}
	err := Permission{Kind: KindModule, Module: "lead", Verb: "fly"}.Validate(cat, "items[2].permission")
	var inv *InvalidError
	if !errors.As(err, &inv) || inv.Field != "items[2].permission.module.verb" {
		t.Fatalf("an unknown verb: %v, want an InvalidError naming items[2].permission.module.verb", err)
	}
}
