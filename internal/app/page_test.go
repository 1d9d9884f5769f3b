package app_test

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/config"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestCheckPage asks the demo tenant about a form and a list page at once
// and checks that every answer is the one Check gives, and that the page
// is one decision-log entry naming what was denied, in memory and in
// PostgreSQL.
func TestCheckPage(t *testing.T) {
	backends(t, testCheckPage)
}

func testCheckPage(t *testing.T, cfg config.Config) {
	e := startAudit(t, cfg)
	perms := []*pb.Permission{
		modulePerm("account", "read"), modulePerm("account", "delete"), functionPerm("report.export"),
		fieldPerm("account", "phone", false), fieldPerm("account", "phone", true), fieldPerm("account", "annual_revenue", false),
	}
	var records []*pb.Record
	owners := []string{"bob", "alice", "dave", "erin", "heidi", "carol", "nobody"}
	depts := []string{"sales_east", "sales_west", "support", ""}
	for i := range 40 {
		records = append(records, &pb.Record{Id: fmt.Sprintf("acc-%d", 2000+i), OwnerId: owners[i%len(owners)], DepartmentId: depts[i%len(depts)]})
	}
	for _, user := range []string{"bob", "alice", "erin", "heidi"} {
		resp, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: user, Permissions: perms,
			RecordPermission: modulePerm("account", "update"), Records: records})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetPermissionsAllowed()) != len(perms) || len(resp.GetRecordsAllowed()) != len(records) || resp.GetRevision() < 1 || resp.GetDecisionId() == "" {
			t.Fatalf("%s: page answer %v", user, resp)
		}
		for i, p := range perms {
			if want := e.check(t, "demo", user, p).GetAllowed(); resp.GetPermissionsAllowed()[i] != want {
				t.Errorf("%s: page says %v for %v, Check %v", user, resp.GetPermissionsAllowed()[i], p, want)
			}
		}
		seen := map[bool]int{}
		for i, r := range records {
			p := recordPerm("account", "update", r.GetId(), r.GetOwnerId(), r.GetDepartmentId())
			want := e.check(t, "demo", user, p).GetAllowed()
			if resp.GetRecordsAllowed()[i] != want {
				t.Errorf("%s: page says %v for record %v, Check %v", user, resp.GetRecordsAllowed()[i], r, want)
			}
			seen[want]++
		}
		if user == "bob" && (seen[true] == 0 || seen[false] == 0) {
			t.Fatalf("bob's page should mix allowed and denied records: %v", seen)
		}

		// The page is one entry of the decision log.
		d := e.waitDecision(t, "demo", resp.GetDecisionId())
		denied := 0
		for _, ok := range append(resp.GetPermissionsAllowed(), resp.GetRecordsAllowed()...) {
			if !ok {
				denied++
			}
		}
		if d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_CHECK_PAGE || d.GetSubjectId() != user || len(d.GetReasons()) != 1+denied ||
			!strings.Contains(d.GetReasons()[0], fmt.Sprintf("%d allowed, %d denied", len(perms)+len(records)-denied, denied)) ||
			d.GetAllowed() != (denied == 0) {
			t.Fatalf("%s: page entry %v (%d denied)", user, d, denied)
		}
	}
	// A form alone and a list alone are pages too.
	if resp, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: perms[:2]}); err != nil || len(resp.GetPermissionsAllowed()) != 2 || len(resp.GetRecordsAllowed()) != 0 {
		t.Fatalf("a form: %v %v", resp, err)
	}
	if resp, err := e.authz.CheckPage(ctx, &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", RecordPermission: modulePerm("lead", "read"), Records: records[:3]}); err != nil || len(resp.GetRecordsAllowed()) != 3 {
		t.Fatalf("a list: %v %v", resp, err)
	}
}

// TestCheckPageBadInput sends pages that must be refused, naming the field.
func TestCheckPageBadInput(t *testing.T) {
	e := start(t, cfgDefault())
	rec := &pb.Record{Id: "acc-1", OwnerId: "bob"}
	many := make([]*pb.Record, 1001)
	manyPerms := make([]*pb.Permission, 1001)
	for i := range many {
		many[i], manyPerms[i] = rec, functionPerm("report.view")
	}
	for _, c := range []struct {
		name  string
		req   *pb.CheckPageRequest
		code  codes.Code
		field string
	}{
		{"empty page", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob"}, codes.InvalidArgument, "permissions"},
		{"no tenant", &pb.CheckPageRequest{SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}}, codes.InvalidArgument, "tenant_id"},
		{"no subject", &pb.CheckPageRequest{TenantId: "demo", Permissions: []*pb.Permission{functionPerm("report.view")}}, codes.InvalidArgument, "subject_id"},
		{"unknown module", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view"), modulePerm("nope", "read")}}, codes.InvalidArgument, "permissions[1].module.module"},
		{"records without permission", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: []*pb.Record{rec}}, codes.InvalidArgument, "record_permission"},
		{"record permission naming a record", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: []*pb.Record{rec},
			RecordPermission: recordPerm("account", "read", "acc-1", "bob", "")}, codes.InvalidArgument, "record_permission"},
		{"function on records", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: []*pb.Record{rec},
			RecordPermission: functionPerm("report.view")}, codes.InvalidArgument, "record_permission"},
		{"record without owner", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: []*pb.Record{rec, {Id: "acc-2"}},
			RecordPermission: modulePerm("account", "read")}, codes.InvalidArgument, "records[1].owner_id"},
		{"too many records", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: many, RecordPermission: modulePerm("account", "read")}, codes.InvalidArgument, "records"},
		{"too many permissions", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Permissions: manyPerms}, codes.InvalidArgument, "permissions"},
		{"bad record id", &pb.CheckPageRequest{TenantId: "demo", SubjectId: "bob", Records: []*pb.Record{{Id: "a b", OwnerId: "bob"}},
			RecordPermission: modulePerm("account", "read")}, codes.InvalidArgument, "records[0].id"},
		{"unknown tenant", &pb.CheckPageRequest{TenantId: "nope", SubjectId: "bob", Permissions: []*pb.Permission{functionPerm("report.view")}}, codes.NotFound, ""},
	} {
		_, err := e.authz.CheckPage(ctx, c.req)
		if code, _, field := errorInfo(t, err); code != c.code || field != c.field {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.code, c.field)
		}
	}
}
