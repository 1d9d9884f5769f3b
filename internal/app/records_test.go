package app_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/jackc/pgx/v5"
	"google.golang.org/protobuf/proto"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

func recordPerm(module, verb, id, owner, dept string) *pb.Permission {
	p := modulePerm(module, verb)
	p.GetModule().Record = &pb.Record{Id: id, OwnerId: owner, DepartmentId: dept}
	return p
}

// TestPlanRecordFilter asks for filters of the demo tenant through gRPC.
func TestPlanRecordFilter(t *testing.T) {
	e := start(t, cfgDefault())
	plan := func(user, module, verb string, cols *pb.RecordColumns, first int32) *pb.PlanRecordFilterResponse {
		t.Helper()
		resp, err := e.authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{TenantId: "demo", SubjectId: user, Module: module, Verb: verb, Columns: cols, FirstParameter: first})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	got := plan("bob", "lead", "list", &pb.RecordColumns{Id: "l.id", OwnerId: "l.owner_id", DepartmentId: "l.dept_id"}, 3)
	want := &pb.PlanRecordFilterResponse{
		Kind:      pb.FilterKind_FILTER_KIND_CONDITIONAL,
		Condition: &pb.RecordCondition{OwnerIds: []string{"bob"}, DepartmentIds: []string{"sales_east", "sales_west"}},
		Sql:       "(l.owner_id = ANY($3) OR l.dept_id = ANY($4))",
		Args:      []*pb.SqlArgument{{Values: []string{"bob"}}, {Values: []string{"sales_east", "sales_west"}}},
		Revision:  1,
	}
	want.DecisionId = got.GetDecisionId() // every decision has its own audit entry
	if got.GetDecisionId() == "" {
		t.Fatal("the filter decision has no decision id")
	}
	if !proto.Equal(got, want) {
		t.Fatalf("bob's lead filter:\n%v\nwant\n%v", got, want)
	}
	// alice manages bob, dave and frank directly and frank's reports one
	// level further; her own scope is the Sales East tree.
	alice := plan("alice", "account", "read", nil, 0)
	if !slices.Equal(alice.GetCondition().GetOwnerIds(), []string{"alice", "bob", "dave", "erin", "frank", "ivan", "mallory"}) ||
		!slices.Equal(alice.GetCondition().GetDepartmentIds(), []string{"sales_east"}) {
		t.Fatalf("alice's account filter: %v", alice)
	}
	if r := plan("alice", "account", "update", nil, 0); !slices.Equal(r.GetCondition().GetOwnerIds(), []string{"alice", "bob", "dave", "frank"}) {
		t.Fatalf("alice's update filter reaches beyond her direct reports: %v", r)
	}
	if r := plan("erin", "account", "update", nil, 0); !slices.Equal(r.GetCondition().GetRecordIds(), []string{"acc-2001"}) || r.GetSql() != "(owner_id = ANY($1) OR id = ANY($2))" {
		t.Fatalf("erin's update filter: %v", r)
	}
	if r := plan("heidi", "account", "list", nil, 0); r.GetKind() != pb.FilterKind_FILTER_KIND_ALL || r.GetSql() != "TRUE" {
		t.Fatalf("read-only auditor: %v", r)
	}
	if r := plan("peggy", "account", "list", nil, 0); r.GetKind() != pb.FilterKind_FILTER_KIND_NONE || r.GetSql() != "FALSE" {
		t.Fatalf("no grants: %v", r)
	}
}

// TestFilterSelectsWhatCheckAllows runs the filters the API returns against a
// table of the demo tenant's records in PostgreSQL and compares the rows with
// what Check, through the same API, allows record by record.
func TestFilterSelectsWhatCheckAllows(t *testing.T) {
	e := start(t, cfgDefault())
	pool := pgtest.NewPool(t)
	if _, err := pool.Exec(ctx, "CREATE TABLE leads (id text PRIMARY KEY, owner_id text NOT NULL, department_id text)"); err != nil {
		t.Fatal(err)
	}
	users := []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar", "peggy", "outsider"}
	depts := []string{"sales_east", "sales_west", "sales_north", "key_accounts", "service", "marketing", ""}
	var rows [][]any
	for i := range 98 {
		owner, dept := users[i%len(users)], depts[i%len(depts)]
		var d any
		if dept != "" {
			d = dept
		}
		rows = append(rows, []any{fmt.Sprintf("lead-%d", i), owner, d})
	}
	if _, err := pool.CopyFrom(ctx, pgx.Identifier{"leads"}, []string{"id", "owner_id", "department_id"}, pgx.CopyFromRows(rows)); err != nil {
		t.Fatal(err)
	}
	for _, user := range users[:13] {
		for _, verb := range []string{"list", "update", "delete"} {
			f, err := e.authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{TenantId: "demo", SubjectId: user, Module: "lead", Verb: verb})
			if err != nil {
				t.Fatal(err)
			}
			args := make([]any, len(f.GetArgs()))
			for i, a := range f.GetArgs() {
				args[i] = a.GetValues()
			}
			selected, err := pgx.CollectRows(must(pool.Query(ctx, "SELECT id FROM leads WHERE "+f.GetSql()+" ORDER BY id", args...)), pgx.RowTo[string])
			if err != nil {
				t.Fatal(err)
			}
			var allowed []string
			for _, r := range rows {
				dept, _ := r[2].(string)
				if e.check(t, "demo", user, recordPerm("lead", verb, r[0].(string), r[1].(string), dept)).GetAllowed() {
					allowed = append(allowed, r[0].(string))
				}
			}
			slices.Sort(allowed)
			if !slices.Equal(selected, allowed) {
				t.Errorf("%s %s leads: filter %q selects %v, Check allows %v", user, verb, f.GetSql(), selected, allowed)
			}
		}
	}
}

func must(rows pgx.Rows, err error) pgx.Rows {
	if err != nil {
		panic(err)
	}
	return rows
}

// TestFieldAccessOnRecord: fields follow the record's reach.
func TestFieldAccessOnRecord(t *testing.T) {
	e := start(t, cfgDefault())
	states := func(rec *pb.Record) map[string]pb.FieldState {
		t.Helper()
		resp, err := e.authz.GetFieldAccess(ctx, &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: "bob", Module: "account", Record: rec})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]pb.FieldState{}
		for _, f := range resp.GetFields() {
			out[f.GetField()] = f.GetState()
		}
		return out
	}
	module := states(nil)
	own := states(&pb.Record{Id: "acc-1", OwnerId: "bob", DepartmentId: "sales_east"})
	if !maps(own, module) || own["name"] != pb.FieldState_FIELD_STATE_READ_WRITE {
		t.Fatalf("own record %v differs from the module's %v", own, module)
	}
	colleague := states(&pb.Record{Id: "acc-2", OwnerId: "alice", DepartmentId: "sales_east"})
	for f, s := range colleague {
		want := module[f]
		if want == pb.FieldState_FIELD_STATE_READ_WRITE {
			want = pb.FieldState_FIELD_STATE_READ_ONLY // readable, not updatable
		}
		if s != want {
			t.Errorf("colleague's record, field %s: %v, want %v", f, s, want)
		}
	}
	for f, s := range states(&pb.Record{Id: "acc-3", OwnerId: "erin", DepartmentId: "sales_west"}) {
		if s != pb.FieldState_FIELD_STATE_HIDDEN {
			t.Errorf("unreachable record, field %s: %v, want hidden", f, s)
		}
	}
}

func maps(a, b map[string]pb.FieldState) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestRecordBadInput(t *testing.T) {
	e := start(t, cfgDefault())
	plan := func(mut func(*pb.PlanRecordFilterRequest)) error {
		req := &pb.PlanRecordFilterRequest{TenantId: "demo", SubjectId: "bob", Module: "lead", Verb: "list"}
		mut(req)
		_, err := e.authz.PlanRecordFilter(ctx, req)
		return err
	}
	check := func(rec *pb.Record) error {
		p := modulePerm("lead", "read")
		p.GetModule().Record = rec
		_, err := e.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob", Permission: p})
		return err
	}
	tests := []struct {
		name  string
		err   error
		field string
	}{
		{"column injection", plan(func(r *pb.PlanRecordFilterRequest) { r.Columns = &pb.RecordColumns{Id: "id; DROP TABLE leads"} }), "columns.id"},
		{"column quoted", plan(func(r *pb.PlanRecordFilterRequest) { r.Columns = &pb.RecordColumns{OwnerId: `"owner"`} }), "columns.owner_id"},
		{"column twice qualified", plan(func(r *pb.PlanRecordFilterRequest) { r.Columns = &pb.RecordColumns{DepartmentId: "a.b.c"} }), "columns.department_id"},
		{"first parameter", plan(func(r *pb.PlanRecordFilterRequest) { r.FirstParameter = -2 }), "first_parameter"},
		{"unknown verb", plan(func(r *pb.PlanRecordFilterRequest) { r.Verb = "steal" }), "verb"},
		{"unknown module", plan(func(r *pb.PlanRecordFilterRequest) { r.Module = "spaceship" }), "module"},
		{"record without id", check(&pb.Record{OwnerId: "bob"}), "permission.module.record.id"},
		{"record without owner", check(&pb.Record{Id: "x"}), "permission.module.record.owner_id"},
		{"record owner pattern", check(&pb.Record{Id: "x", OwnerId: "*"}), "permission.module.record.owner_id"},
		{"record department pattern", check(&pb.Record{Id: "x", OwnerId: "bob", DepartmentId: "sales,east"}), "permission.module.record.department_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if code, _, field := errorInfo(t, tt.err); code.String() != "InvalidArgument" || field != tt.field {
				t.Fatalf("got %v naming %q (%v), want INVALID_ARGUMENT naming %q", code, field, tt.err, tt.field)
			}
		})
	}
}

// TestEffectivePermissionsCarryScopes: a sales rep's account verbs come in
// two scopes, department for reading and self for writing.
func TestEffectivePermissionsCarryScopes(t *testing.T) {
	e := start(t, cfgDefault())
	eff, err := e.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: "demo", SubjectId: "bob"})
	if err != nil {
		t.Fatal(err)
	}
	var account []*pb.ModuleVerbs
	for _, m := range eff.GetModules() {
		if m.GetModule() == "account" {
			account = append(account, m)
		}
	}
	want := []*pb.ModuleVerbs{
		{Module: "account", Verbs: []string{"list", "read", "print"}, Scope: pb.DataScope_DATA_SCOPE_DEPT},
		{Module: "account", Verbs: []string{"create", "update", "share"}, Scope: pb.DataScope_DATA_SCOPE_SELF},
	}
	if len(account) != len(want) {
		t.Fatalf("bob's account entries: %v", account)
	}
	for i := range want {
		if !proto.Equal(account[i], want[i]) {
			t.Errorf("entry %d: %v, want %v", i, account[i], want[i])
		}
	}
}
