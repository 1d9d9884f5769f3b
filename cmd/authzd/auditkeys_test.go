package main

import (
	"context"
	"io"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestAuditKeyRotation writes both logs under one key, rotates the key
// file between two runs of authzd, writes again, and verifies both logs
// whole against a checkpoint signed before the rotation: the entries under
// the old key and the old signature still verify.
func TestAuditKeyRotation(t *testing.T) {
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	ops := firstKey(t, url)
	keys := filepath.Join(t.TempDir(), "audit-keys.json")
	var out strings.Builder
	if err := run(ctx, []string{"audit-keys", "create", "--file", keys}, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	write := func(r *replica, user string) {
		t.Helper()
		resp, err := r.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: user,
			Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "rotation drill",
			UserId: user, RoleId: "read_only"}); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
			if _, err := r.audit.GetDecision(ctx, &pb.GetDecisionRequest{TenantId: "demo", DecisionId: resp.GetDecisionId()}); err == nil {
				return
			} else if time.Now().After(deadline) {
				t.Fatalf("decision %s not logged: %v", resp.GetDecisionId(), err)
			}
		}
	}

	r := startReplica(t, url, ops, "--seed-demo", "true", "--audit-key-file", keys)
	write(r, "peggy")
	before, err := r.audit.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	_ = r.cmd.Wait()

	out.Reset()
	if err := run(ctx, []string{"audit-keys", "rotate", "--file", keys}, noEnv, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "rotated") || strings.Count(out.String(), "signing key") != 2 {
		t.Fatalf("rotate printed %q", out.String())
	}
	r = startReplica(t, url, ops, "--audit-key-file", keys)
	write(r, "judy")

	v, err := r.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL,
		Checkpoint: &pb.Checkpoint{Content: before.GetCheckpoint().GetContent(), Signature: before.GetCheckpoint().GetSignature()}})
	if err != nil {
		t.Fatal(err)
	}
	decisionChains := 0
	for _, c := range v.GetChains() {
		if c.GetLog() == pb.LogKind_LOG_KIND_DECISIONS {
			decisionChains++
		}
	}
	if !v.GetIntact() || decisionChains != 2 || v.GetCheckpoint().GetHeadsChecked() < 2 {
		t.Fatalf("after rotation: %v", v)
	}
	after, err := r.audit.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := after.GetCheckpoint().GetKeyId(), before.GetCheckpoint().GetKeyId(); a == b {
		t.Errorf("the checkpoint after rotation is signed by the old key %s", a)
	}
}
