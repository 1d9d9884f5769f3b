package app_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestAuthZEN runs AuthZEN 1.0 evaluations, shaped as the specification's
// examples, against a server on PostgreSQL whose callers authenticate:
// module verbs, a record, a field and a function; a batch with defaults
// under each evaluations_semantic; the discovery document; and the trust
// boundary: no credential, a bound key asking about another user, a tenant
// the key may not act in. Every decision is in the decision log.
func TestAuthZEN(t *testing.T) {
	cfg := pgConfig(t)
	cfg.HTTPAddr = "127.0.0.1:0"
	clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	e := startSetup(t, cfg, clk, func(st store.Store) {
		acme := model.NewTenantState("acme", "Acme")
		mustChange(t)(acme.UpsertUser(model.User{ID: "ann"}))
		if _, err := st.CreateTenant(context.Background(), store.Write{Tenant: "acme", Actor: "system", Reason: "test"}, acme); err != nil {
			t.Fatal(err)
		}
	})
	se := &secEnv{env: e, platform: pb.NewPlatformServiceClient(e.conn), audit: pb.NewAuditServiceClient(e.conn)}
	z := newZen(t, se)
	addr, post, decide := z.addr, z.post, z.decide
	demoKey := se.newKey(t, "gateway", []string{"check"}, []string{"demo"}, "").key
	bobKey := se.newKey(t, "bob's app", []string{"check"}, []string{"demo"}, "bob").key
	for _, c := range []struct {
		body string
		want bool
	}{
		{`{"subject":{"type":"user","id":"bob"},"resource":{"type":"account","id":"acc-1"},"action":{"name":"read"}}`, true},
		{`{"subject":{"type":"user","id":"bob"},"resource":{"type":"account","id":"acc-1"},"action":{"name":"delete"}}`, false},
		{`{"subject":{"type":"user","id":"frank"},"action":{"name":"data.export"}}`, false},
		{`{"subject":{"type":"user","id":"alice"},"resource":{"type":"function","id":"export"},"action":{"name":"data.export"}}`, true},
		{`{"subject":{"type":"user","id":"bob"},"resource":{"type":"lead","id":"lead-1","properties":{"owner_id":"ivan","department_id":"sales_west"}},"action":{"name":"read"}}`, true},
		{`{"subject":{"type":"user","id":"bob"},"resource":{"type":"lead","id":"lead-1","properties":{"owner_id":"ivan","department_id":"sales_west"}},"action":{"name":"update"}}`, false},
		{`{"subject":{"type":"user","id":"bob"},"resource":{"type":"field","id":"account.annual_revenue"},"action":{"name":"read"}}`, false},
		{`{"subject":{"type":"user","id":"mallory"},"resource":{"type":"field","id":"account.annual_revenue"},"action":{"name":"read"}}`, true},
	} {
		if got := decide(demoKey, c.body); got != c.want {
			t.Errorf("%s: decision %t, want %t", c.body, got, c.want)
		}
	}
	// The decision is logged like a Check, with its id in the context.
	_, out := post(demoKey, "/access/v1/evaluation", `{"subject":{"type":"user","id":"bob"},"resource":{"type":"account","id":"a"},"action":{"name":"read"},"context":{"explain":true}}`)
	ctxOut := out["context"].(map[string]any)
	id, _ := ctxOut["decision_id"].(string)
	if id == "" || len(ctxOut["reasons"].([]any)) == 0 {
		t.Fatalf("evaluation context %v", ctxOut)
	}
	ae := &auditEnv{env: se.env, audit: se.audit}
	if d := ae.waitDecision(t, "demo", id); d.GetMethod() != pb.DecisionMethod_DECISION_METHOD_CHECK || d.GetSubjectId() != "bob" || d.GetCaller() == "" {
		t.Errorf("logged %v", d)
	}

	batch := `{"subject":{"type":"user","id":"bob"},"resource":{"type":"account","id":"acc-1"},
		"evaluations":[{"action":{"name":"read"}},{"action":{"name":"delete"}},{"action":{"name":"update"}},
		{"subject":{"type":"user","id":"oscar"},"action":{"name":"delete"}}]%s}`
	results := func(options string) []bool {
		t.Helper()
		code, out := post(demoKey, "/access/v1/evaluations", strings.Replace(batch, "%s", options, 1))
		if code != http.StatusOK {
			t.Fatalf("batch %s: %d %v", options, code, out)
		}
		var got []bool
		for _, e := range out["evaluations"].([]any) {
			got = append(got, e.(map[string]any)["decision"].(bool))
		}
		return got
	}
	for options, want := range map[string]string{
		``: "[true false true true]", `,"options":{"evaluations_semantic":"execute_all"}`: "[true false true true]",
		`,"options":{"evaluations_semantic":"deny_on_first_deny"}`:     "[true false]",
		`,"options":{"evaluations_semantic":"permit_on_first_permit"}`: "[true]",
	} {
		if got := results(options); fmt.Sprint(got) != want {
			t.Errorf("batch %q: %v, want %s", options, got, want)
		}
	}

	resp, err := http.Get(addr + "/.well-known/authzen-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var meta map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	_ = resp.Body.Close()
	if meta["access_evaluation_endpoint"] != addr+"/access/v1/evaluation" || meta["access_evaluations_endpoint"] != addr+"/access/v1/evaluations" {
		t.Errorf("discovery %v", meta)
	}

	one := `{"subject":{"type":"user","id":"%s"%s},"resource":{"type":"account","id":"a"},"action":{"name":"read"}}`
	for _, c := range []struct {
		name, key, body string
		code            int
		reason, field   string
	}{
		{"no credential", "", fmt.Sprintf(one, "bob", ""), http.StatusUnauthorized, "MISSING_CREDENTIAL", ""},
		{"a bound key asking about another user", bobKey, fmt.Sprintf(one, "alice", ""), http.StatusForbidden, "SUBJECT_NOT_ALLOWED", ""},
		{"another tenant", demoKey, fmt.Sprintf(one, "ann", `,"properties":{"tenant_id":"acme"}`), http.StatusForbidden, "TENANT_NOT_ALLOWED", ""},
		{"a platform key naming no tenant", se.key, fmt.Sprintf(one, "bob", ""), http.StatusBadRequest, "MISSING_FIELD", "subject.properties.tenant_id"},
		{"no subject", demoKey, `{"resource":{"type":"account","id":"a"},"action":{"name":"read"}}`, http.StatusBadRequest, "MISSING_FIELD", "subject.id"},
		{"an unknown verb", demoKey, `{"subject":{"type":"user","id":"bob"},"resource":{"type":"account","id":"a"},"action":{"name":"fly"}}`, http.StatusBadRequest, "UNKNOWN_VERB", "permission.module.verb"},
		{"not JSON", demoKey, `{"subject":`, http.StatusBadRequest, "", ""},
	} {
		code, out := post(c.key, "/access/v1/evaluation", c.body)
		if code != c.code || (c.reason != "" && out["reason"] != c.reason) || (c.field != "" && out["field"] != c.field) {
			t.Errorf("%s: %d %v, want %d %s %s", c.name, code, out, c.code, c.reason, c.field)
		}
	}
	if decide(se.key, fmt.Sprintf(one, "bob", `,"properties":{"tenant_id":"demo"}`)) != true {
		t.Error("a platform key naming the tenant in the subject")
	}
}

// zen calls a server's AuthZEN endpoint.
type zen struct {
	t    *testing.T
	addr string
}

// newZen waits until the server's AuthZEN endpoint listens.
func newZen(t *testing.T, se *secEnv) *zen {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if a := se.app.HTTPAddr(); a != nil {
			return &zen{t: t, addr: "http://" + a.String()}
		}
		if time.Now().After(deadline) {
			t.Fatal("the AuthZEN endpoint never listened")
		}
	}
}

// post sends body to path with key as the bearer token and returns the
// status and the JSON answer.
func (z *zen) post(key, path, body string) (int, map[string]any) {
	z.t.Helper()
	req, err := http.NewRequest(http.MethodPost, z.addr+path, strings.NewReader(body))
	if err != nil {
		z.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		z.t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		z.t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
	}
	return resp.StatusCode, out
}

// decide evaluates body and returns the decision; anything but 200 fails.
func (z *zen) decide(key, body string) bool {
	z.t.Helper()
	code, out := z.post(key, "/access/v1/evaluation", body)
	if code != http.StatusOK {
		z.t.Fatalf("%s: %d %v", body, code, out)
	}
	return out["decision"].(bool)
}

// TestAuthZENActionAliases: a tenant's action aliases decide AuthZEN
// evaluations as the module verb or function they stand for, on memory and
// PostgreSQL, changed through the real AdminService at once; and every
// rule is attacked: an alias shadowing a verb, one standing for nothing,
// a resource of another module, a settings admin naming or repointing
// what they do not hold, a caller without the settings function, and a
// caller of another tenant probing the tenant's aliases.
func TestAuthZENActionAliases(t *testing.T) {
	for name, cfg := range map[string]func(t *testing.T) config.Config{
		"memory":   func(*testing.T) config.Config { c := config.Default(); c.RequireAuth = true; return c },
		"postgres": func(t *testing.T) config.Config { return pgConfig(t) },
	} {
		t.Run(name, func(t *testing.T) {
			c := cfg(t)
			c.HTTPAddr = "127.0.0.1:0"
			clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
			e := startSetup(t, c, clk, func(st store.Store) {
				acme := model.NewTenantState("acme", "Acme")
				mustChange(t)(acme.UpsertUser(model.User{ID: "ann"}))
				if _, err := st.CreateTenant(context.Background(), store.Write{Tenant: "acme", Actor: "system", Reason: "test"}, acme); err != nil {
					t.Fatal(err)
				}
			})
			se := &secEnv{env: e, platform: pb.NewPlatformServiceClient(e.conn), audit: pb.NewAuditServiceClient(e.conn)}
			testActionAliases(t, se, newZen(t, se))
		})
	}
}

func testActionAliases(t *testing.T, se *secEnv, z *zen) {
	gateway := se.newKey(t, "gateway", []string{"check"}, []string{"demo"}, "").key
	acmeGateway := se.newKey(t, "acme gateway", []string{"check"}, []string{"acme"}, "").key
	oscar, bob := se.user(t, "oscar"), se.user(t, "bob")
	eval := func(user, action, resource string) string {
		return fmt.Sprintf(`{"subject":{"type":"user","id":%q},"action":{"name":%q}%s}`, user, action, resource)
	}
	account := func(owner string) string {
		return fmt.Sprintf(`,"resource":{"type":"account","id":"acc-1","properties":{"owner_id":%q}}`, owner)
	}
	check := func(user string, p *pb.Permission) bool {
		t.Helper()
		resp, err := se.authz.Check(context.Background(), &pb.CheckRequest{TenantId: "demo", SubjectId: user, Permission: p})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetAllowed()
	}
	record := func(verb, owner string) *pb.Permission {
		return &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: verb,
			Record: &pb.Record{Id: "acc-1", OwnerId: owner}}}}
	}

	// The demo's aliases decide as what they stand for, for every user,
	// with the resource giving the record, or leaving its type out.
	for _, u := range []string{"alice", "bob", "dave", "erin", "heidi", "oscar"} {
		for _, owner := range []string{"bob", "dave"} {
			for alias, verb := range map[string]string{"can_read_account": "read", "can_update_account": "update"} {
				want := check(u, record(verb, owner))
				if got := z.decide(gateway, eval(u, alias, account(owner))); got != want {
					t.Errorf("%s %s on an account of %s: %t, Check says %t", u, alias, owner, got, want)
				}
				untyped := fmt.Sprintf(`,"resource":{"id":"acc-1","properties":{"owner_id":%q}}`, owner)
				if got := z.decide(gateway, eval(u, alias, untyped)); got != want {
					t.Errorf("%s %s on an untyped resource of %s: %t, Check says %t", u, alias, owner, got, want)
				}
			}
		}
		want := check(u, functionPerm("report.export"))
		if got := z.decide(gateway, eval(u, "can_export_reports", "")); got != want {
			t.Errorf("%s can_export_reports: %t, Check says %t", u, got, want)
		}
	}

	// An alias set through the AdminService decides at once; deleted, the
	// name means nothing again.
	if code, out := z.post(gateway, "/access/v1/evaluation", eval("bob", "can_list_accounts", "")); code != http.StatusBadRequest || out["field"] != "resource.type" {
		t.Fatalf("an alias before it was set: %d %v", code, out)
	}
	set := func(c *user, alias, action string) error {
		_, err := c.admin.SetActionAlias(context.Background(), &pb.SetActionAliasRequest{TenantId: "demo", ActorId: c.id, Reason: "gateway names",
			Alias: &pb.ActionAlias{Alias: alias, Action: action}})
		return err
	}
	del := func(c *user, alias string) error {
		_, err := c.admin.DeleteActionAlias(context.Background(), &pb.DeleteActionAliasRequest{TenantId: "demo", ActorId: c.id, Reason: "gateway names", Alias: alias})
		return err
	}
	if err := set(oscar, "can_list_accounts", "account.list"); err != nil {
		t.Fatal(err)
	}
	if !z.decide(gateway, eval("bob", "can_list_accounts", `,"resource":{"type":"account","id":"x"}`)) {
		t.Error("the new alias does not allow what account.list allows bob")
	}
	list, err := oscar.admin.ListActionAliases(context.Background(), &pb.ListActionAliasesRequest{TenantId: "demo", ActorId: "oscar"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range list.GetAliases() {
		names = append(names, a.GetAlias()+"="+a.GetAction())
	}
	if fmt.Sprint(names) != "[can_export_reports=report.export can_list_accounts=account.list can_read_account=account.read can_update_account=account.update]" {
		t.Errorf("aliases %v", names)
	}
	if err := del(oscar, "can_list_accounts"); err != nil {
		t.Fatal(err)
	}
	code, out := z.post(gateway, "/access/v1/evaluation", eval("bob", "can_list_accounts", ""))
	if code != http.StatusBadRequest || out["field"] != "resource.type" {
		t.Errorf("a deleted alias: %d %v", code, out)
	}
	wantCode(t, "deleting it twice", del(oscar, "can_list_accounts"), codes.NotFound, "ACTION_ALIAS_NOT_FOUND")

	// Bad aliases change nothing.
	for _, c := range []struct{ alias, action, field, reason string }{
		{"read", "account.delete", "alias.alias", "INVALID_VALUE"},
		{"report.export", "account.read", "alias.alias", "INVALID_VALUE"},
		{"can go", "account.read", "alias.alias", "INVALID_IDENTIFIER"},
		{"can_fly", "account.fly", "alias.action", "UNKNOWN_VERB"},
		{"can_fly", "rocket.read", "alias.action", "UNKNOWN_MODULE"},
		{"can_fly", "fly", "alias.action", "INVALID_VALUE"},
		{"can_fly", "", "alias.action", "MISSING_FIELD"},
	} {
		err := set(oscar, c.alias, c.action)
		code, reason, field := errorInfo(t, err)
		if code != codes.InvalidArgument || reason != c.reason || field != c.field {
			t.Errorf("alias %q for %q: %v (reason %s, field %s), want %s on %s", c.alias, c.action, err, reason, field, c.reason, c.field)
		}
	}

	// The alias fixes the module: a resource of another is refused.
	code, out = z.post(gateway, "/access/v1/evaluation", eval("bob", "can_read_account", `,"resource":{"type":"lead","id":"l-1"}`))
	if code != http.StatusBadRequest || out["field"] != "resource.type" {
		t.Errorf("an alias on another module's resource: %d %v", code, out)
	}

	// bob may manage settings, and reads accounts, but does not delete
	// them or export reports.
	if _, err := oscar.admin.CreateRole(context.Background(), &pb.CreateRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "settings",
		RoleId: "settings_admin", Permissions: &pb.RolePermissions{Functions: []string{"admin.settings.manage"}}}); err != nil {
		t.Fatal(err)
	}
	wantCode(t, "bob without the settings function", set(bob, "can_read_acc", "account.read"), codes.PermissionDenied, "MISSING_PERMISSION")
	if _, err := oscar.admin.GrantRole(context.Background(), &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "settings",
		UserId: "bob", RoleId: "settings_admin"}); err != nil {
		t.Fatal(err)
	}
	if check("bob", record("delete", "bob")) || check("bob", functionPerm("report.export")) || !check("bob", record("read", "bob")) {
		t.Fatal("bob's rights are not what this test assumes")
	}
	if err := set(bob, "can_read_acc", "account.read"); err != nil {
		t.Fatalf("bob naming what he holds: %v", err)
	}
	if err := set(oscar, "can_purge", "account.delete"); err != nil {
		t.Fatal(err)
	}
	before := z.decide(gateway, eval("bob", "can_purge", account("bob")))
	wantCode(t, "bob naming what he does not hold", set(bob, "can_remove", "account.delete"), codes.PermissionDenied, "ESCALATION")
	wantCode(t, "bob repointing an alias of what he does not hold", set(bob, "can_purge", "account.read"), codes.PermissionDenied, "ESCALATION")
	wantCode(t, "bob deleting an alias of what he does not hold", del(bob, "can_purge"), codes.PermissionDenied, "ESCALATION")
	wantCode(t, "bob repointing a function alias", set(bob, "can_export_reports", "account.read"), codes.PermissionDenied, "ESCALATION")
	if after := z.decide(gateway, eval("bob", "can_purge", account("bob"))); after != before || after {
		t.Errorf("can_purge decided %t before the attempts and %t after", before, after)
	}

	// The alias RPCs' trust boundary: no credential, a key without the
	// admin scope, a key of another tenant, a bound key acting as another
	// user, and a reader without the settings function.
	alias := &pb.ActionAlias{Alias: "can_sneak", Action: "account.read"}
	setAs := func(c *caller, actor string) error {
		_, err := c.admin.SetActionAlias(context.Background(), &pb.SetActionAliasRequest{TenantId: "demo", ActorId: actor, Reason: "r", Alias: alias})
		return err
	}
	wantCode(t, "setting an alias without a credential", setAs(se.as(t, ""), "oscar"), codes.Unauthenticated, "")
	wantCode(t, "setting an alias with a check key", setAs(se.as(t, gateway), "oscar"), codes.PermissionDenied, "MISSING_SCOPE")
	acmeAdmin := se.newKey(t, "acme admin", []string{"admin"}, []string{"acme"}, "")
	wantCode(t, "setting demo's alias with acme's key", setAs(acmeAdmin, "oscar"), codes.PermissionDenied, "TENANT_NOT_ALLOWED")
	wantCode(t, "bob's key acting as oscar", setAs(bob.caller, "oscar"), codes.PermissionDenied, "ACTOR_MISMATCH")
	erin := se.user(t, "erin")
	_, err = erin.admin.ListActionAliases(context.Background(), &pb.ListActionAliasesRequest{TenantId: "demo", ActorId: "erin"})
	wantCode(t, "erin listing aliases", err, codes.PermissionDenied, "MISSING_PERMISSION")
	_, err = erin.admin.DeleteActionAlias(context.Background(), &pb.DeleteActionAliasRequest{TenantId: "demo", ActorId: "erin", Reason: "r", Alias: "can_read_acc"})
	wantCode(t, "erin deleting an alias", err, codes.PermissionDenied, "MISSING_PERMISSION")
	if code, _ := z.post(gateway, "/access/v1/evaluation", eval("bob", "can_sneak", `,"resource":{"type":"account","id":"x"}`)); code != http.StatusBadRequest {
		t.Errorf("an alias refused at the boundary decides: %d", code)
	}

	// A caller of another tenant learns nothing of the demo's aliases:
	// refused for the tenant before the action is read.
	for _, action := range []string{"can_read_account", "no_such_alias"} {
		code, out := z.post(acmeGateway, "/access/v1/evaluation",
			eval("bob", action, `,"resource":{"type":"account","id":"a","properties":{"tenant_id":"demo"}}`))
		if code != http.StatusForbidden || out["reason"] != "TENANT_NOT_ALLOWED" {
			t.Errorf("acme's gateway evaluating %s in demo: %d %v", action, code, out)
		}
	}
	// And acme has no such alias.
	code, out = z.post(acmeGateway, "/access/v1/evaluation", eval("ann", "can_read_account", `,"resource":{"type":"account","id":"a"}`))
	if code != http.StatusBadRequest || out["reason"] != "UNKNOWN_VERB" {
		t.Errorf("demo's alias in acme: %d %v", code, out)
	}
}
