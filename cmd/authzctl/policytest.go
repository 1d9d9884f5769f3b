package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
)

const testHelp = `Usage: authzctl test FILE... [--policies dir]

Tests a tenant's policy offline, without a server, as fga model test, zed
validate and opa test do: each FILE names a tenant document (the format of
authzctl export) and the decisions expected of it; authzctl loads the
document into the same engine the server decides with and checks every
case. A failure is printed with the explanation of the decision made.
Exit status: 0 every case passed, 3 a case failed, 1 a file could not be
read or a case names what the catalog lacks. A CRM team runs it in its own
CI before it imports a change.

A test file (YAML):

  document: tenant.yaml           # the tenant document, relative to this file
  at: 2026-12-01T09:00:00Z        # when the cases are decided (grants expire); default now
  cases:
    - {name: reps read accounts, subject: bob, module: account, verb: read, expect: allow}
    - {name: no export in the freeze, subject: erin, function: data.export, expect: deny}
    - {name: revenue hidden from reps, subject: bob, module: account, field: annual_revenue, access: read, expect: deny}
    - {name: a lead of the west, subject: bob, module: lead, verb: update,
       record: {id: lead-1, owner: ivan, department: sales_west}, expect: deny}
    - {name: leads bob lists, subject: bob, module: lead, verb: list,
       filter: {kind: conditional, owners: [bob], departments: [sales_east, sales_west]}}

--policies reads the catalog and model from a directory instead of the
ones built in (the server's --policies-dir).

Example:
  authzctl export -f tenant.yaml && authzctl test policy-tests.yaml
`

// policyTest is one test file.
type policyTest struct {
	Document string       `yaml:"document"`
	At       time.Time    `yaml:"at"`
	Cases    []policyCase `yaml:"cases"`
}

// policyCase is one expected decision: a permission (module and verb,
// with a record or not; function; module, field and access) and allow or
// deny, or a module and verb with the record filter expected.
type policyCase struct {
	Name     string `yaml:"name"`
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
	Filter *struct {
		Kind        string   `yaml:"kind"`
		Owners      []string `yaml:"owners"`
		Departments []string `yaml:"departments"`
		Records     []string `yaml:"records"`
	} `yaml:"filter"`
}

func runTest(_ context.Context, c *cli, args []string) error {
	cmd := c.command("test", testHelp)
	var policies string
	cmd.fs.StringVar(&policies, "policies", "", "read the catalog and model from this `dir` instead of the built-in ones")
	files, err := cmd.parse(args, 1, 1000)
	if err != nil {
		return err
	}
	b, err := bundle.Default()
	if policies != "" {
		b, err = bundle.Load(os.DirFS(policies))
	}
	if err != nil {
		return fmt.Errorf("policies: %w", err)
	}
	passed, failed := 0, 0
	for _, f := range files {
		p, fl, err := testFile(c, b, f)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		passed, failed = passed+p, failed+fl
	}
	fmt.Fprintf(&c.out, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return errDenied
	}
	return nil
}

// testFile runs the cases of one test file and prints each failure.
func testFile(c *cli, b *bundle.Bundle, file string) (passed, failed int, err error) {
	data, err := os.ReadFile(file) //nolint:gosec // the operator names the file to read
	if err != nil {
		return 0, 0, err
	}
	var t policyTest
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&t); err != nil {
		return 0, 0, fmt.Errorf("parse: %w", err)
	}
	if t.Document == "" {
		return 0, 0, fmt.Errorf("document: name the tenant document")
	}
	docPath := t.Document
	if !filepath.IsAbs(docPath) {
		docPath = filepath.Join(filepath.Dir(file), docPath)
	}
	raw, err := os.ReadFile(docPath) //nolint:gosec // the test file names the document beside it
	if err != nil {
		return 0, 0, err
	}
	doc, err := backup.Decode(raw)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", t.Document, err)
	}
	st, err := doc.State(b.Catalog, doc.Tenant)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", t.Document, err)
	}
	st.Revision = 1
	at := t.At
	if at.IsZero() {
		at = time.Now()
	}
	eng, err := engine.New(b.Catalog, b.ModelText, engine.WithClock(func() time.Time { return at }))
	if err != nil {
		return 0, 0, err
	}
	if err := eng.Load(st); err != nil {
		return 0, 0, err
	}
	for i, tc := range t.Cases {
		name := tc.Name
		if name == "" {
			name = fmt.Sprintf("cases[%d]", i)
		}
		ok, why, err := tc.run(eng, b.Catalog, st.ID)
		if err != nil {
			return passed, failed, fmt.Errorf("cases[%d] (%s): %w", i, name, err)
		}
		if ok {
			passed++
			continue
		}
		failed++
		fmt.Fprintf(&c.out, "FAIL %s: %s\n  %s\n", file, name, strings.Join(why, "\n  "))
	}
	return passed, failed, nil
}

// run decides the case and reports whether it got what it expects, and
// when not, what it got and why.
func (tc policyCase) run(eng *engine.Engine, cat *model.Catalog, tenant string) (bool, []string, error) {
	if err := model.ValidateSubjectID("subject", tc.Subject); err != nil {
		return false, nil, err
	}
	if tc.Filter != nil {
		if tc.Module == "" || tc.Verb == "" || tc.Expect != "" {
			return false, nil, fmt.Errorf("a filter case names module and verb, and no expect")
		}
		f, err := eng.PlanFilter(tenant, tc.Subject, tc.Module, tc.Verb)
		if err != nil {
			return false, nil, err
		}
		got := map[engine.FilterKind]string{engine.FilterNone: "none", engine.FilterAll: "all", engine.FilterConditional: "conditional"}[f.Kind]
		sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
		if got == tc.Filter.Kind && slices.Equal(sorted(f.Owners), sorted(tc.Filter.Owners)) &&
			slices.Equal(sorted(f.Departments), sorted(tc.Filter.Departments)) && slices.Equal(sorted(f.Records), sorted(tc.Filter.Records)) {
			return true, nil, nil
		}
		return false, []string{fmt.Sprintf("want filter %s owners %v departments %v records %v, got %s owners %v departments %v records %v",
			tc.Filter.Kind, tc.Filter.Owners, tc.Filter.Departments, tc.Filter.Records, got, f.Owners, f.Departments, f.Records)}, nil
	}
	if tc.Expect != "allow" && tc.Expect != "deny" {
		return false, nil, fmt.Errorf("expect must be allow or deny, got %q", tc.Expect)
	}
	var p model.Permission
	switch {
	case tc.Function != "":
		p = model.FunctionPerm(tc.Function)
	case tc.Field != "":
		if tc.Access != "read" && tc.Access != "write" {
			return false, nil, fmt.Errorf("access must be read or write, got %q", tc.Access)
		}
		p = model.FieldPerm(tc.Module, tc.Field, tc.Access == "write")
	case tc.Verb != "":
		p = model.ModulePerm(tc.Module, tc.Verb)
		if r := tc.Record; r != nil {
			p.Record = &model.Record{ID: r.ID, Owner: r.Owner, Department: r.Department}
		}
	default:
		return false, nil, fmt.Errorf("name a permission: module and verb, function, or module, field and access")
	}
	if err := p.Validate(cat, "permission"); err != nil {
		return false, nil, err
	}
	d, err := eng.Check(tenant, tc.Subject, p, true)
	if err != nil {
		return false, nil, err
	}
	got := map[bool]string{true: "allow", false: "deny"}[d.Allowed]
	if got == tc.Expect {
		return true, nil, nil
	}
	why := []string{fmt.Sprintf("want %s, got %s: %s of %s", tc.Expect, got, p, tc.Subject)}
	for _, r := range d.Reasons {
		why = append(why, "  "+r.Message)
	}
	return false, why, nil
}
