package bundle

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/policies"
)

// orgTenantYAML is a bundle tenant using every organisation and sharing key.
const orgTenantYAML = `
id: demo
name: Org demo
templates: [sales_rep, read_only]
users: [{id: oscar}, {id: alice}, {id: bob}]
grants:
  - {user: oscar, role: read_only}
settings: {manager_depth: 3}
departments:
  - {id: hq, name: Head office}
  - {id: sales, name: Sales, parent: hq}
  - {id: east, name: Sales East, parent: sales}
members:
  # bob's manager alice comes later in the list.
  - {user: bob, primary: east, manager: alice}
  - {user: alice, primary: sales, others: [east], manager: oscar}
sharing_rules:
  - id: east_accounts
    module: account
    owned_by: {kind: department, id: east, include_subs: true}
    shared_with: {kind: role, id: read_only}
    access: read
record_shares:
  - {module: account, record_id: acc-1, principal: {kind: user, id: bob}, access: read_write, expires_at: "2099-01-01T00:00:00Z"}
  # Already expired: it decides nothing.
  - {module: lead, record_id: L-1, principal: {kind: department, id: sales, include_subs: true}, access: read, expires_at: "2020-01-01T00:00:00Z"}
`

func bundleWithDemo(t *testing.T, demo string) fstest.MapFS {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, name := range []string{"model.conf", "catalog.yaml", "templates/sales_rep.yaml", "templates/read_only.yaml"} {
		data, err := policies.FS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		fsys[name] = &fstest.MapFile{Data: data}
	}
	fsys["demo/tenant.yaml"] = &fstest.MapFile{Data: []byte(demo)}
	return fsys
}

func TestOrgData(t *testing.T) {
	b, err := Load(bundleWithDemo(t, orgTenantYAML))
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	st, err := b.TenantState(b.Demo, at)
	if err != nil {
		t.Fatal(err)
	}
	if st.Settings.ManagerDepth != 3 {
		t.Errorf("manager depth %d, want 3", st.Settings.ManagerDepth)
	}
	wantDepts := []model.Department{{ID: "east", Name: "Sales East", Parent: "sales"}, {ID: "hq", Name: "Head office"}, {ID: "sales", Name: "Sales", Parent: "hq"}}
	if got := st.SortedDepartments(); !reflect.DeepEqual(got, wantDepts) {
		t.Errorf("departments %+v, want %+v", got, wantDepts)
	}
	wantMembers := []model.Membership{{UserID: "alice", Primary: "sales", Others: []string{"east"}, Manager: "oscar"}, {UserID: "bob", Primary: "east", Manager: "alice"}}
	if got := st.SortedMembers(); !reflect.DeepEqual(got, wantMembers) {
		t.Errorf("members %+v, want %+v", got, wantMembers)
	}
	wantRule := model.SharingRule{
		ID: "east_accounts", Module: "account", OwnedBy: model.Principal{Kind: model.PrincipalDepartment, ID: "east", IncludeSubs: true},
		SharedWith: model.Principal{Kind: model.PrincipalRole, ID: "read_only"}, Access: model.AccessRead,
	}
	if got := st.SortedSharingRules(); len(got) != 1 || got[0] != wantRule {
		t.Errorf("sharing rules %+v, want [%+v]", got, wantRule)
	}
	shares := st.SortedRecordShares()
	wantShares := []model.RecordShare{
		{Module: "account", RecordID: "acc-1", Principal: model.Principal{Kind: model.PrincipalUser, ID: "bob"}, Access: model.AccessReadWrite,
			ExpiresAt: time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC), SharedBy: "system", SharedAt: at},
		{Module: "lead", RecordID: "L-1", Principal: model.Principal{Kind: model.PrincipalDepartment, ID: "sales", IncludeSubs: true}, Access: model.AccessRead,
			ExpiresAt: time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC), SharedBy: "system", SharedAt: at},
	}
	if !reflect.DeepEqual(shares, wantShares) {
		t.Errorf("record shares %+v, want %+v", shares, wantShares)
	}
}

func TestOrgDataRefused(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // in the error
	}{
		{"unknown key", "id: demo\ndepartments: [{id: hq, name: HQ, boss: x}]\n", "boss"},
		{"manager depth too big", "id: demo\nsettings: {manager_depth: 17}\n", "manager_depth"},
		{"department without name", "id: demo\ndepartments: [{id: hq}]\n", "department.name"},
		{"child before parent", "id: demo\ndepartments: [{id: east, name: East, parent: hq}, {id: hq, name: HQ}]\n", "departments[0]: department.parent_id"},
		{"member of unknown department", "id: demo\nusers: [{id: a}, {id: b}]\ndepartments: [{id: hq, name: HQ}]\nmembers: [{user: a, primary: sales}]\n", "members[0]: membership.primary_department_id"},
		{"member twice", "id: demo\nusers: [{id: a}, {id: b}]\ndepartments: [{id: hq, name: HQ}]\nmembers: [{user: a, primary: hq}, {user: a, primary: hq}]\n", "listed twice"},
		{"manager cycle", "id: demo\nusers: [{id: a}, {id: b}]\ndepartments: [{id: hq, name: HQ}]\nmembers: [{user: a, primary: hq, manager: b}, {user: b, primary: hq, manager: a}]\n", "cycle"},
		{"unknown manager", "id: demo\nusers: [{id: a}, {id: b}]\ndepartments: [{id: hq, name: HQ}]\nmembers: [{user: a, primary: hq, manager: zed}]\n", `members[0]: user "zed"`},
		{"rule of unknown module", "id: demo\ntemplates: [read_only]\nsharing_rules: [{id: r, module: spaceship, owned_by: {kind: role, id: read_only}, shared_with: {kind: role, id: read_only}, access: read}]\n",
			"sharing_rules[0]: rule.module"},
		{"rule of unknown user", "id: demo\ntemplates: [read_only]\nsharing_rules: [{id: r, module: lead, owned_by: {kind: user, id: zed}, shared_with: {kind: role, id: read_only}, access: read}]\n",
			`sharing_rules[0]: user "zed"`},
		{"rule with bad access", "id: demo\ntemplates: [read_only]\nsharing_rules: [{id: r, module: lead, owned_by: {kind: role, id: read_only}, shared_with: {kind: role, id: read_only}, access: all}]\n",
			"rule.access"},
		{"share of unknown principal kind", "id: demo\nrecord_shares: [{module: lead, record_id: L-1, principal: {kind: team, id: t}, access: read}]\n", "share.principal"},
		{"share twice", "id: demo\ntemplates: [read_only]\nrecord_shares: [{module: lead, record_id: L-1, principal: {kind: role, id: read_only}, access: read}, {module: lead, record_id: L-1, principal: {kind: role, id: read_only}, access: read_write}]\n",
			"twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(bundleWithDemo(t, tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Load = %v, want an error mentioning %q", err, tt.want)
			}
			var inv *model.InvalidError
			var ce *model.ConflictError
			if strings.Contains(tt.name, "cycle") && !errors.As(err, &ce) {
				t.Errorf("err %v is no *model.ConflictError", err)
			}
			if strings.Contains(tt.want, ".") && !errors.As(err, &inv) {
				t.Errorf("err %v is no *model.InvalidError", err)
			}
		})
	}
}
