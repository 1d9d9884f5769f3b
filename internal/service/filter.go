package service

import (
	"fmt"
	"strings"

	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// sqlColumns are the caller's column names for a record filter.
type sqlColumns struct{ id, owner, dept string }

// sqlOptions validates the column names and first parameter number of a
// PlanRecordFilter request. Column names are identifiers, optionally
// qualified once, written into SQL by sqlIdent.
func sqlOptions(c *pb.RecordColumns, first int32) (sqlColumns, int, error) {
	cols := sqlColumns{id: "id", owner: "owner_id", dept: "department_id"}
	for _, f := range []struct {
		field string
		in    string
		out   *string
	}{{"columns.id", c.GetId(), &cols.id}, {"columns.owner_id", c.GetOwnerId(), &cols.owner}, {"columns.department_id", c.GetDepartmentId(), &cols.dept}} {
		if f.in == "" {
			continue
		}
		if !validColumn(f.in) {
			return cols, 0, model.Invalid(f.field, model.ReasonInvalidIdentifier, "must be a column name of a-z, 0-9 and _ (at most 63 bytes), optionally qualified once, e.g. a.owner_id")
		}
		*f.out = f.in
	}
	switch {
	case first == 0:
		first = 1
	case first < 1 || first > 60000:
		return cols, 0, model.Invalid("first_parameter", model.ReasonInvalidValue, "must be between 1 and 60000")
	}
	return cols, int(first), nil
}

func validColumn(s string) bool {
	parts := strings.Split(s, ".")
	if len(parts) > 2 {
		return false
	}
	for _, p := range parts {
		if p == "" || len(p) > 63 || (p[0] >= '0' && p[0] <= '9') {
			return false
		}
		for i := 0; i < len(p); i++ {
			if c := p[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '_' {
				return false
			}
		}
	}
	return true
}

// sqlIdent renders a valid column name for SQL as PostgreSQL's quote_ident
// does: a part that is a keyword PostgreSQL does not accept as a plain name
// ("user" would be CURRENT_USER, "order" a syntax error) is double-quoted,
// which names the same column since the name is lower case.
func sqlIdent(s string) string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		if sqlKeywords[p] {
			parts[i] = `"` + p + `"`
		}
	}
	return strings.Join(parts, ".")
}

// sqlKeywords are PostgreSQL's keywords that are not unreserved (reserved,
// type or function names, column names: pg_get_keywords() catcode R, T and
// C) in PostgreSQL 15, plus those later versions added.
var sqlKeywords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`all analyse analyze and any array as asc asymmetric authorization
		between bigint binary bit boolean both case cast char character check coalesce collate
		collation column concurrently constraint create cross current_catalog current_date
		current_role current_schema current_time current_timestamp current_user dec decimal
		default deferrable desc distinct do else end except exists extract false fetch float for
		foreign freeze from full grant greatest group grouping having ilike in initially inner inout
		int integer intersect interval into is isnull join lateral leading least left like limit
		localtime localtimestamp national natural nchar none normalize not notnull null nullif
		numeric offset on only or order out outer overlaps overlay placing position precision
		primary real references returning right row select session_user setof similar smallint
		some substring symmetric table tablesample then time timestamp to trailing treat trim true
		union unique user using values varchar variadic verbose when where window with
		xmlattributes xmlconcat xmlelement xmlexists xmlforest xmlnamespaces xmlparse xmlpi xmlroot
		xmlserialize xmltable
		json json_array json_arrayagg json_exists json_object json_objectagg json_query json_scalar
		json_serialize json_table json_value merge_action system_user`) {
		m[w] = true
	}
	return m
}()

// filterToProto renders a filter as its structured condition and as a
// PostgreSQL boolean expression whose values are all parameters: one text
// array per non-empty set, so the fragment stays small however many owners
// or departments it names.
func filterToProto(f engine.Filter, cols sqlColumns, first int) *pb.PlanRecordFilterResponse {
	out := &pb.PlanRecordFilterResponse{Revision: f.Revision}
	switch f.Kind {
	case engine.FilterAll:
		out.Kind, out.Sql = pb.FilterKind_FILTER_KIND_ALL, "TRUE"
		return out
	case engine.FilterNone:
		out.Kind, out.Sql = pb.FilterKind_FILTER_KIND_NONE, "FALSE"
		return out
	}
	out.Kind = pb.FilterKind_FILTER_KIND_CONDITIONAL
	out.Condition = &pb.RecordCondition{OwnerIds: f.Owners, DepartmentIds: f.Departments, RecordIds: f.Records}
	var terms []string
	for _, t := range []struct {
		col    string
		values []string
	}{{cols.owner, f.Owners}, {cols.dept, f.Departments}, {cols.id, f.Records}} {
		if len(t.values) == 0 {
			continue
		}
		terms = append(terms, fmt.Sprintf("%s = ANY($%d)", sqlIdent(t.col), first+len(out.Args)))
		out.Args = append(out.Args, &pb.SqlArgument{Values: t.values})
	}
	out.Sql = "(" + strings.Join(terms, " OR ") + ")"
	return out
}
