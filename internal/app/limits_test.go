package app_test

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestTenantLimits serves, on PostgreSQL, a tenant holding the most
// sharing rules a tenant may, and tries to get past the limit: a new rule
// is RESOURCE_EXHAUSTED naming the limit and changes nothing, and so is an
// import of the tenant's own document with one rule more; once a rule is
// deleted there is room again.
func TestTenantLimits(t *testing.T) {
	clk := &clock{t: time.Now()}
	opts := datagen.Small()
	opts.Users, opts.SharingRules = 60, model.MaxTenantSharingRules
	g := generate(t, 1, opts, clk)
	tenant := g.states[0].ID
	if n := len(g.states[0].SharingRules); n != model.MaxTenantSharingRules {
		t.Fatalf("generated %d sharing rules, want %d", n, model.MaxTenantSharingRules)
	}
	e := startSetup(t, pgConfig(t), clk, g.store(t))
	revision := func() int64 {
		t.Helper()
		resp, err := e.admin.ListRoles(ctx, &pb.ListRolesRequest{TenantId: tenant})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetRevision()
	}
	rule := &pb.SharingRule{RuleId: "one_more", Module: "lead",
		OwnedBy:    &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: g.states[0].SortedDepartments()[0].ID}},
		SharedWith: &pb.Principal{Kind: &pb.Principal_DepartmentId{DepartmentId: g.states[0].SortedDepartments()[1].ID}},
		Access:     pb.RecordAccess_RECORD_ACCESS_READ}
	wantLimit := func(what string, err error) {
		t.Helper()
		st, _ := status.FromError(err)
		if st.Code() != codes.ResourceExhausted {
			t.Fatalf("%s: %v; want RESOURCE_EXHAUSTED", what, err)
		}
		for _, d := range st.Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				if info.GetReason() != "TENANT_LIMIT" || info.GetMetadata()["limit"] != "sharing rules" || info.GetMetadata()["max"] != fmt.Sprint(model.MaxTenantSharingRules) {
					t.Fatalf("%s: error info %v", what, info)
				}
				return
			}
		}
		t.Fatalf("%s: %v carries no error info", what, err)
	}

	before := revision()
	_, err := e.admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: tenant, Reason: "one more", Rule: rule})
	wantLimit("a rule beyond the limit", err)

	doc, _ := exportDoc(t, e.admin, tenant, pb.DocumentFormat_DOCUMENT_FORMAT_JSON)
	d, err := backup.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	extra := d.SharingRules[0]
	extra.ID = "one_more"
	d.SharingRules = append(d.SharingRules, extra)
	bigger, err := d.Encode(backup.JSON)
	if err != nil {
		t.Fatal(err)
	}
	_, err = importDoc(e.admin, tenant, bigger, false)
	wantLimit("an import beyond the limit", err)
	if got := revision(); got != before {
		t.Fatalf("refused writes moved the revision from %d to %d", before, got)
	}

	if _, err := e.admin.DeleteSharingRule(ctx, &pb.DeleteSharingRuleRequest{TenantId: tenant, Reason: "make room", RuleId: d.SharingRules[0].ID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.CreateSharingRule(ctx, &pb.CreateSharingRuleRequest{TenantId: tenant, Reason: "room again", Rule: rule}); err != nil {
		t.Fatalf("a rule within the limit: %v", err)
	}
}
