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
	var addr string
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if a := se.app.HTTPAddr(); a != nil {
			addr = "http://" + a.String()
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the AuthZEN endpoint never listened")
		}
	}
	demoKey := se.newKey(t, "gateway", []string{"check"}, []string{"demo"}, "").key
	bobKey := se.newKey(t, "bob's app", []string{"check"}, []string{"demo"}, "bob").key
	post := func(key, path, body string) (int, map[string]any) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, addr+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]any
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
		return resp.StatusCode, out
	}
	decide := func(key, body string) bool {
		t.Helper()
		code, out := post(key, "/access/v1/evaluation", body)
		if code != http.StatusOK {
			t.Fatalf("%s: %d %v", body, code, out)
		}
		return out["decision"].(bool)
	}
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
