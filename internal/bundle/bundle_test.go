package bundle

import (
	"testing"
	"testing/fstest"

	"github.com/crmauthz/crmauthz/policies"
)

func TestDefaultBundleLoads(t *testing.T) {
	b, err := Default()
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"admin", "sales_manager", "sales_rep", "customer_service", "finance_readonly", "read_only"} {
		if _, ok := b.Templates[id]; !ok {
			t.Errorf("template %q missing", id)
		}
	}
	if b.Demo.ID != "demo" || len(b.Demo.Users) < 12 {
		t.Errorf("demo tenant %q has %d users, want demo with a dozen", b.Demo.ID, len(b.Demo.Users))
	}
}

func TestLoadRejectsBrokenBundles(t *testing.T) {
	base := fstest.MapFS{}
	for _, name := range []string{"model.conf", "catalog.yaml", "templates/admin.yaml", "demo/tenant.yaml"} {
		data, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		base[name] = &fstest.MapFile{Data: data}
	}
	tests := []struct {
		name string
		file string
		data string
	}{
		{"unknown key in catalog", "catalog.yaml", "verbs: [read, update]\nmodulez: []\n"},
		{"duplicate verb", "catalog.yaml", "verbs: [read, update, read]\n"},
		{"template id differs from file", "templates/admin.yaml", "id: root\npermissions: {}\n"},
		{"template with unknown module", "templates/admin.yaml", "id: admin\npermissions: {modules: [{module: spaceship, verbs: [read]}]}\n"},
		{"demo grant of unknown role", "demo/tenant.yaml", "id: demo\ngrants: [{user: a, role: nope}]\n"},
		{"demo role with bad id", "demo/tenant.yaml", "id: demo\nroles: [{id: 'a*b'}]\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for k, v := range base {
				fsys[k] = v
			}
			fsys[tt.file] = &fstest.MapFile{Data: []byte(tt.data)}
			if _, err := Load(fsys); err == nil {
				t.Fatal("Load succeeded, want an error")
			}
		})
	}
}
