package app_test

import (
	"context"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/crmauthz/crmauthz/policies"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

type decisionCase struct {
	Name     string `yaml:"name"`
	Tenant   string `yaml:"tenant"`
	Subject  string `yaml:"subject"`
	Module   string `yaml:"module"`
	Verb     string `yaml:"verb"`
	Function string `yaml:"function"`
	Field    string `yaml:"field"`
	Access   string `yaml:"access"`
	Record   *struct {
		ID         string `yaml:"id"`
		Owner      string `yaml:"owner"`
		Department string `yaml:"department"`
	} `yaml:"record"`
	Expect string `yaml:"expect"`
}

func (c decisionCase) permission(t *testing.T) *pb.Permission {
	t.Helper()
	switch {
	case c.Function != "":
		return functionPerm(c.Function)
	case c.Field != "":
		if c.Access != "read" && c.Access != "write" {
			t.Fatalf("case %q: access must be read or write", c.Name)
		}
		return fieldPerm(c.Module, c.Field, c.Access == "write")
	case c.Verb != "" && c.Record != nil:
		p := modulePerm(c.Module, c.Verb)
		p.GetModule().Record = &pb.Record{Id: c.Record.ID, OwnerId: c.Record.Owner, DepartmentId: c.Record.Department}
		return p
	case c.Verb != "":
		return modulePerm(c.Module, c.Verb)
	}
	t.Fatalf("case %q names no permission", c.Name)
	return nil
}

func readFixture(t *testing.T, name string, v any) {
	t.Helper()
	data, err := policies.FS.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
}

// TestDecisionFixtures sends every case of policies/fixtures/decisions.yaml
// through the gRPC Check API against the seeded demo tenant.
func TestDecisionFixtures(t *testing.T) {
	var file struct {
		Cases []decisionCase `yaml:"cases"`
	}
	readFixture(t, "fixtures/decisions.yaml", &file)
	if len(file.Cases) < 50 {
		t.Fatalf("only %d fixture cases", len(file.Cases))
	}
	e := start(t, cfgDefault())
	seen := map[string]bool{}
	for _, c := range file.Cases {
		if seen[c.Name] {
			t.Fatalf("duplicate case name %q", c.Name)
		}
		seen[c.Name] = true
		t.Run(c.Name, func(t *testing.T) {
			if c.Tenant == "" {
				c.Tenant = "demo"
			}
			if c.Expect != "allow" && c.Expect != "deny" {
				t.Fatalf("expect must be allow or deny, got %q", c.Expect)
			}
			resp := e.check(t, c.Tenant, c.Subject, c.permission(t))
			if got := resp.GetAllowed(); got != (c.Expect == "allow") {
				t.Errorf("%s: allowed=%v, want %s; reasons: %v", c.Name, got, c.Expect, resp.GetReasons())
			}
			if len(resp.GetReasons()) == 0 {
				t.Errorf("explain returned no reasons")
			}
		})
	}
}

// TestFieldAccessFixtures compares GetFieldAccess with
// policies/fixtures/field_access.yaml, which lists every field.
func TestFieldAccessFixtures(t *testing.T) {
	var file struct {
		Cases []struct {
			Name    string            `yaml:"name"`
			Subject string            `yaml:"subject"`
			Module  string            `yaml:"module"`
			Fields  map[string]string `yaml:"fields"`
		} `yaml:"cases"`
	}
	readFixture(t, "fixtures/field_access.yaml", &file)
	e := start(t, cfgDefault())
	states := map[pb.FieldState]string{
		pb.FieldState_FIELD_STATE_HIDDEN: "hidden", pb.FieldState_FIELD_STATE_READ_ONLY: "read_only", pb.FieldState_FIELD_STATE_READ_WRITE: "read_write",
	}
	for _, c := range file.Cases {
		t.Run(c.Name, func(t *testing.T) {
			resp, err := e.authz.GetFieldAccess(context.Background(), &pb.GetFieldAccessRequest{TenantId: "demo", SubjectId: c.Subject, Module: c.Module})
			if err != nil {
				t.Fatal(err)
			}
			if len(resp.GetFields()) != len(c.Fields) {
				t.Errorf("got %d fields, fixture lists %d", len(resp.GetFields()), len(c.Fields))
			}
			for _, f := range resp.GetFields() {
				if want := c.Fields[f.GetField()]; states[f.GetState()] != want {
					t.Errorf("field %s: %s, want %s", f.GetField(), states[f.GetState()], want)
				}
			}
		})
	}
}
