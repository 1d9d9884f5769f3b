package backup_test

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
)

var now = time.Date(2026, 12, 5, 9, 0, 0, 123456789, time.UTC)

func states(t *testing.T) (*bundle.Bundle, []*model.TenantState) {
	t.Helper()
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	demo, err := b.TenantState(b.Demo, now)
	if err != nil {
		t.Fatal(err)
	}
	out := []*model.TenantState{demo}
	for seed := range uint64(3) {
		st, err := datagen.Tenant("gen", b, datagen.Medium(), seed, now)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, st)
	}
	return b, out
}

// TestRoundTrip: a state's document, in either format, reads back into the
// same state, and exporting that state again gives the same bytes.
func TestRoundTrip(t *testing.T) {
	b, sts := states(t)
	for _, st := range sts {
		doc := backup.FromState(st)
		for _, f := range []backup.Format{backup.YAML, backup.JSON} {
			data, err := doc.Encode(f)
			if err != nil {
				t.Fatal(err)
			}
			again, err := doc.Encode(f)
			if err != nil || !bytes.Equal(data, again) {
				t.Fatalf("%s: two encodings differ", f)
			}
			read, err := backup.Decode(data)
			if err != nil {
				t.Fatalf("%s: decode: %v", f, err)
			}
			got, err := read.State(b.Catalog, "copy")
			if err != nil {
				t.Fatalf("%s: state: %v", f, err)
			}
			if diff := backup.Compare(renamed(st, "copy"), got); !allEmpty(diff) {
				t.Fatalf("%s: the state read back differs: %+v", f, diff)
			}
			redo := backup.FromState(got)
			redo.Tenant = doc.Tenant
			out, err := redo.Encode(f)
			if err != nil || !bytes.Equal(out, data) {
				t.Fatalf("%s: re-export differs", f)
			}
			h1, _ := doc.Hash()
			h2, _ := read.Hash()
			if h1 != h2 || len(h1) != 64 {
				t.Fatalf("%s: hashes %s %s", f, h1, h2)
			}
		}
	}
}

func renamed(st *model.TenantState, id string) *model.TenantState {
	c := st.Clone()
	c.ID = id
	return c
}

func allEmpty(ds []backup.KindDiff) bool {
	for _, d := range ds {
		if !d.Empty() {
			return false
		}
	}
	return true
}

// TestDecodeRefuses: a document of another version, with an unknown key,
// or more than one document is refused naming what is wrong.
func TestDecodeRefuses(t *testing.T) {
	for name, tt := range map[string]struct{ doc, field string }{
		"empty":         {"", "document"},
		"old version":   {"version: crmauthz.dev/tenant/v0\ntenant: a\n", "version"},
		"no version":    {"tenant: a\n", "version"},
		"unknown key":   {"version: crmauthz.dev/tenant/v1\ntenant: a\nrolez: []\n", "document"},
		"two documents": {"version: crmauthz.dev/tenant/v1\ntenant: a\n---\nversion: x\n", "document"},
		"not yaml":      {"{{{", "document"},
	} {
		_, err := backup.Decode([]byte(tt.doc))
		var inv *model.InvalidError
		if !errors.As(err, &inv) || inv.Field != tt.field {
			t.Errorf("%s: %v, want an invalid %s", name, err, tt.field)
		}
	}
}

// TestStateNamesThePath: an entry the service would refuse is refused
// naming its path in the document.
func TestStateNamesThePath(t *testing.T) {
	b, sts := states(t)
	base := backup.FromState(sts[0]) // the demo
	for name, tt := range map[string]struct {
		edit func(d *backup.Document)
		path string
	}{
		"unknown module": {func(d *backup.Document) { d.Roles[1].Permissions.Modules[0].Module = "spaceship" }, "roles[1].permissions.modules[0].module"},
		"unknown verb":   {func(d *backup.Document) { d.Roles[0].Permissions.Modules[2].Verbs[0] = "fly" }, "roles[0].permissions.modules[2].verbs[0]"},
		"unknown parent": {func(d *backup.Document) { d.Roles[3].Inherits = []string{"ghost"} }, "roles[3].inherits[0]"},
		"role twice":     {func(d *backup.Document) { d.Roles[2].ID = d.Roles[1].ID }, "roles[2].id"},
		"bad user":       {func(d *backup.Document) { d.Users[4].ID = "a,b" }, "users[4].user_id"},
		"bad status":     {func(d *backup.Document) { d.Users[0].Status = "gone" }, "users[0].status"},
		"unknown user":   {func(d *backup.Document) { d.Grants[2].User = "ghost" }, "grants[2]"},
		"unknown role":   {func(d *backup.Document) { d.Grants[2].Role = "ghost" }, "grants[2]"},
		"bidi reason":    {func(d *backup.Document) { d.Departments[1].Name = "\u202eevil" }, "departments[1].name"},
		"manager cycle":  {func(d *backup.Document) { d.Members[0].Manager = "bob" }, "members[1]"}, // bob, whose manager is alice, closes it
		"bad access":     {func(d *backup.Document) { d.SharingRules[0].Access = "all" }, "sharing_rules[0].access"},
		"manager depth":  {func(d *backup.Document) { d.Settings.ManagerDepth = 99 }, "settings.manager_depth"},
		"share twice":    {func(d *backup.Document) { d.RecordShares[1] = d.RecordShares[0] }, "record_shares[1]"},
	} {
		data, err := base.Encode(backup.YAML)
		if err != nil {
			t.Fatal(err)
		}
		d, err := backup.Decode(data)
		if err != nil {
			t.Fatal(err)
		}
		tt.edit(&d)
		_, err = d.State(b.Catalog, "x")
		var inv *model.InvalidError
		if !errors.As(err, &inv) || inv.Field != tt.path {
			t.Errorf("%s: %v, want an invalid %s", name, err, tt.path)
		}
	}
}

// TestCompare lists what an import adds, changes and removes, per kind.
func TestCompare(t *testing.T) {
	_, sts := states(t)
	cur := sts[0]
	next := cur.Clone()
	delete(next.Roles, "restricted_export")
	for k := range next.Grants {
		if k.RoleID == "restricted_export" {
			delete(next.Grants, k)
		}
	}
	r := next.Roles["sales_rep"]
	r.Description = "changed"
	next.Roles["sales_rep"] = r
	next.Users["zoe"] = model.User{ID: "zoe", Status: model.UserActive}
	got := map[string]backup.KindDiff{}
	for _, d := range backup.Compare(cur, next) {
		got[d.Kind] = d
	}
	if d := got["roles"]; !reflect.DeepEqual(d.Removed, []string{"restricted_export"}) || !reflect.DeepEqual(d.Changed, []string{"sales_rep"}) || d.Added != nil {
		t.Errorf("roles %+v", d)
	}
	if d := got["users"]; !reflect.DeepEqual(d.Added, []string{"zoe"}) {
		t.Errorf("users %+v", d)
	}
	if d := got["grants"]; len(d.Removed) != 2 || !strings.HasSuffix(d.Removed[0], "/restricted_export") {
		t.Errorf("grants %+v", d)
	}
	if !got["departments"].Empty() || !got["settings"].Empty() {
		t.Errorf("unchanged kinds differ: %+v %+v", got["departments"], got["settings"])
	}
}

// TestYAMLInBatchesIsOneDocument: the document encoded in batches reads
// as the encoder would write it whole.
func TestYAMLInBatchesIsOneDocument(t *testing.T) {
	_, sts := states(t)
	for _, st := range sts {
		d := backup.FromState(st)
		got, err := d.Encode(backup.YAML)
		if err != nil {
			t.Fatal(err)
		}
		var whole bytes.Buffer
		enc := yaml.NewEncoder(&whole)
		enc.SetIndent(2)
		if err := enc.Encode(d); err != nil {
			t.Fatal(err)
		}
		if err := enc.Close(); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, whole.Bytes()) {
			t.Fatalf("tenant %s: the batched encoding differs from the whole one", st.ID)
		}
	}
}
