package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestActionAliasesAcrossReplicas runs two authzd processes on one
// database, each with its AuthZEN endpoint: an action alias set on one
// decides evaluations on the other once it follows the write, and a
// deleted one stops deciding there too.
func TestActionAliasesAcrossReplicas(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ops := firstKey(t, url)
	httpA, httpB := freeAddr(t), freeAddr(t)
	a := startReplica(t, url, ops, "--seed-demo", "true", "--http-addr", httpA)
	startReplica(t, url, ops, "--http-addr", httpB)

	// bob holds account.list; the alias is the gateway's name for it.
	body := `{"subject":{"type":"user","id":"bob","properties":{"tenant_id":"demo"}},"action":{"name":"can_list_accounts"},"resource":{"id":"x"}}`
	evaluate := func(addr string) (int, bool) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/access/v1/evaluation", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+ops)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = resp.Body.Close() }()
		var out struct {
			Decision bool `json:"decision"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out.Decision
	}
	until := func(what string, addr string, ok func(code int, allowed bool) bool) {
		t.Helper()
		start := time.Now()
		for {
			code, allowed := evaluate(addr)
			if ok(code, allowed) {
				t.Logf("%s after %s", what, time.Since(start).Round(time.Millisecond))
				return
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("%s: still %d, decision %t", what, code, allowed)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	for _, addr := range []string{httpA, httpB} {
		if code, _ := evaluate(addr); code != http.StatusBadRequest {
			t.Fatalf("%s: the alias answered %d before it was set", addr, code)
		}
	}

	if _, err := a.admin.SetActionAlias(context.Background(), &pb.SetActionAliasRequest{TenantId: "demo", ActorId: "oscar", Reason: "gateway names",
		Alias: &pb.ActionAlias{Alias: "can_list_accounts", Action: "account.list"}}); err != nil {
		t.Fatal(err)
	}
	if code, allowed := evaluate(httpA); code != http.StatusOK || !allowed {
		t.Fatalf("on the replica that wrote it: %d, decision %t", code, allowed)
	}
	until("the other replica decides with the alias", httpB, func(code int, allowed bool) bool { return code == http.StatusOK && allowed })

	if _, err := a.admin.DeleteActionAlias(context.Background(), &pb.DeleteActionAliasRequest{TenantId: "demo", ActorId: "oscar", Reason: "retired",
		Alias: "can_list_accounts"}); err != nil {
		t.Fatal(err)
	}
	until("the other replica forgets the alias", httpB, func(code int, _ bool) bool { return code == http.StatusBadRequest })
}
