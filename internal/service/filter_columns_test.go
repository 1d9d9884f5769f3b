package service

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestFilterKeywordColumns plans filters through the PlanRecordFilter
// handler for tables whose columns are named by SQL keywords ("user",
// "order", "group" are valid column names a caller may pass) and runs them
// on PostgreSQL: the rows selected must be exactly the records Check allows.
// Written unquoted, "user" is CURRENT_USER and the others do not parse.
func TestFilterKeywordColumns(t *testing.T) {
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	pool := pgtest.NewPool(t)
	ctx := context.Background()
	// The subject is named like the database login, so an owner term that
	// compares CURRENT_USER instead of the column matches every row.
	var login string
	if err := pool.QueryRow(ctx, "SELECT current_user").Scan(&login); err != nil {
		t.Fatal(err)
	}
	st := model.NewTenantState("t", "t")
	st.Revision = 1
	st.Departments["sales"] = model.Department{ID: "sales", Name: "Sales"}
	st.Departments["service"] = model.Department{ID: "service", Name: "Service"}
	st.Members[login] = model.Membership{UserID: login, Primary: "sales"}
	st.Roles["rep"] = model.Role{ID: "rep", Permissions: model.Permissions{Modules: []model.ModuleGrant{
		{Module: "lead", Verbs: []string{"list"}, Scope: model.ScopeSelf},
		{Module: "lead", Verbs: []string{"read"}, Scope: model.ScopeDept},
	}}}
	st.Grants[model.GrantKey{UserID: login, RoleID: "rep"}] = model.Grant{UserID: login, RoleID: "rep"}
	st.RecordShares[model.ShareKey{Module: "lead", RecordID: "l4", Principal: model.Principal{Kind: model.PrincipalUser, ID: login}}] = model.RecordShare{
		Module: "lead", RecordID: "l4", Principal: model.Principal{Kind: model.PrincipalUser, ID: login}, Access: model.AccessRead,
	}
	eng, err := engine.New(b.Catalog, b.ModelText)
	if err != nil {
		t.Fatal(err)
	}
	if err := eng.Load(st); err != nil {
		t.Fatal(err)
	}
	authz := NewAuthorization(eng, 100, nil, NewFreshness(eng, nil, time.Second))
	records := []model.Record{
		{ID: "l1", Owner: login, Department: "sales"},
		{ID: "l2", Owner: "someone", Department: "sales"},
		{ID: "l3", Owner: "someone", Department: "service"},
		{ID: "l4", Owner: "someone"},
		{ID: "l5", Owner: "other"},
	}
	for i, tc := range []struct {
		columns []string // the table's columns: id, owner, department
		from    string   // the FROM clause, with %s for the table's name
		cols    *pb.RecordColumns
	}{
		{[]string{"id", "user", "department_id"}, "%s", &pb.RecordColumns{OwnerId: "user"}},
		{[]string{"order", "user", "group"}, "%s", &pb.RecordColumns{Id: "order", OwnerId: "user", DepartmentId: "group"}},
		{[]string{"order", "user", "group"}, `%s AS "select"`, &pb.RecordColumns{Id: "select.order", OwnerId: "select.user", DepartmentId: "select.group"}},
	} {
		table := fmt.Sprintf("kw_%d", i)
		id := pgx.Identifier{tc.columns[0]}.Sanitize()
		create := fmt.Sprintf("CREATE TABLE %s (%s text PRIMARY KEY, %s text NOT NULL, %s text)", table, id, pgx.Identifier{tc.columns[1]}.Sanitize(), pgx.Identifier{tc.columns[2]}.Sanitize())
		if _, err := pool.Exec(ctx, create); err != nil {
			t.Fatal(err)
		}
		var rows [][]any
		for _, r := range records {
			var dept any
			if r.Department != "" {
				dept = r.Department
			}
			rows = append(rows, []any{r.ID, r.Owner, dept})
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{table}, tc.columns, pgx.CopyFromRows(rows)); err != nil {
			t.Fatal(err)
		}
		for _, verb := range []string{"list", "read"} {
			resp, err := authz.PlanRecordFilter(ctx, &pb.PlanRecordFilterRequest{TenantId: "t", SubjectId: login, Module: "lead", Verb: verb, Columns: tc.cols, FirstParameter: 2})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetKind() != pb.FilterKind_FILTER_KIND_CONDITIONAL {
				t.Fatalf("%s: filter %v, want a conditional one", verb, resp)
			}
			args := []any{"unused"}
			for _, a := range resp.GetArgs() {
				args = append(args, a.GetValues())
			}
			q := fmt.Sprintf("SELECT %s FROM %s WHERE $1::text IS NOT NULL AND %s ORDER BY 1", id, fmt.Sprintf(tc.from, table), resp.GetSql())
			got, err := pgx.CollectRows(must(pool.Query(ctx, q, args...)), pgx.RowTo[string])
			if err != nil {
				t.Fatalf("%v: %s: %v", tc.cols, q, err)
			}
			var want []string
			for j := range records {
				d, err := authz.Check(ctx, &pb.CheckRequest{TenantId: "t", SubjectId: login, Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{
					Module: "lead", Verb: verb, Record: &pb.Record{Id: records[j].ID, OwnerId: records[j].Owner, DepartmentId: records[j].Department},
				}}}})
				if err != nil {
					t.Fatal(err)
				}
				if d.GetAllowed() {
					want = append(want, records[j].ID)
				}
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%v %s: filter %q selects %v, Check allows %v", tc.cols, verb, resp.GetSql(), got, want)
			}
		}
	}
}
