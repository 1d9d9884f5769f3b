package engine

import (
	"reflect"
	"testing"
	"time"
	"unsafe"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
)

// TestIndexPointers holds a tenant's index to a few pointers beside one
// per role (its holders): at 10,000 tenants every pointer is one the
// collector follows each cycle, and strings or slices per user, rule or
// role once made its marking a seventh of the server's CPU. Ten times the
// users and rules must not add any.
func TestIndexPointers(t *testing.T) {
	bun, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, preset := range []string{"small", "medium"} {
		opts, err := datagen.Preset(preset)
		if err != nil {
			t.Fatal(err)
		}
		st, err := datagen.Tenant("t-"+preset, bun, opts, 1, now)
		if err != nil {
			t.Fatal(err)
		}
		eng, err := New(bun.Catalog, bun.ModelText)
		if err != nil {
			t.Fatal(err)
		}
		if err := eng.Load(st); err != nil {
			t.Fatal(err)
		}
		ix, err := eng.index(st.ID)
		if err != nil {
			t.Fatal(err)
		}
		got, limit := countPointers(reflect.ValueOf(ix), map[uintptr]bool{}), 48+len(st.Roles)
		t.Logf("%s: %d users, %d roles, %d sharing rules, %d shares: %d pointers", preset, len(st.Users), len(st.Roles), len(st.SharingRules), len(st.RecordShares), got)
		if got > limit {
			t.Errorf("%s tenant: its index holds %d pointers, more than %d", preset, got, limit)
		}
	}
}

// countPointers counts the pointers the collector follows from v: every
// non-nil pointer, map, slice, string and interface, looking into each
// pointer's target and each slice's items once.
func countPointers(v reflect.Value, seen map[uintptr]bool) int {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return 0
		}
		if seen[v.Pointer()] {
			return 1
		}
		seen[v.Pointer()] = true
		return 1 + countPointers(v.Elem(), seen)
	case reflect.String:
		if v.Len() == 0 {
			return 0
		}
		return 1
	case reflect.Slice:
		if v.Cap() == 0 {
			return 0
		}
		n := 1
		if p := uintptr(v.UnsafePointer()) + uintptr(v.Len()); !seen[p] {
			seen[p] = true
			for i := range v.Len() {
				n += countPointers(v.Index(i), seen)
			}
		}
		return n
	case reflect.Map:
		if v.IsNil() {
			return 0
		}
		n := 1
		for it := v.MapRange(); it.Next(); {
			n += countPointers(it.Key(), seen) + countPointers(it.Value(), seen)
		}
		return n
	case reflect.Interface:
		if v.IsNil() {
			return 0
		}
		return 1 + countPointers(v.Elem(), seen)
	case reflect.Struct:
		if !v.CanAddr() {
			c := reflect.New(v.Type()).Elem()
			c.Set(v)
			v = c
		}
		n := 0
		for i := range v.NumField() {
			f := v.Field(i)
			n += countPointers(reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem(), seen)
		}
		return n
	case reflect.Array:
		n := 0
		for i := range v.Len() {
			n += countPointers(v.Index(i), seen)
		}
		return n
	}
	return 0
}
