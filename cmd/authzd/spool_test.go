package main

import (
	"context"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestKillLosesNoDecision kills authzd with SIGKILL while callers are
// getting answers, starts it again on the same spool, and finds every
// decision id it returned in the log.
func TestKillLosesNoDecision(t *testing.T) {
	url := pgtest.NewDatabase(t)
	ops := firstKey(t, url)
	spoolDir := t.TempDir()
	r := startReplica(t, url, ops, "--seed-demo", "true", "--decision-spool-dir", spoolDir)

	var (
		mu  sync.Mutex
		ids []string
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := r.authz.Check(ctx, &pb.CheckRequest{TenantId: "demo", SubjectId: "bob",
					Permission: &pb.Permission{Kind: &pb.Permission_Module{Module: &pb.ModulePermission{Module: "account", Verb: "read"}}}})
				if err != nil {
					return // the process is gone
				}
				mu.Lock()
				ids = append(ids, resp.GetDecisionId())
				mu.Unlock()
			}
		})
	}
	time.Sleep(700 * time.Millisecond)
	if err := r.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	stop()
	_ = r.cmd.Wait()
	mu.Lock()
	answered := ids
	mu.Unlock()
	if len(answered) < 100 {
		t.Fatalf("only %d decisions answered before the kill", len(answered))
	}

	// The next process on the spool ships what the dead one left.
	r = startReplica(t, url, ops, "--decision-spool-dir", spoolDir)
	var logged map[string]bool
	deadline := time.Now().Add(30 * time.Second)
	for {
		logged = loggedDecisions(t, r, "demo")
		missing := 0
		for _, id := range answered {
			if !logged[id] {
				missing++
			}
		}
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of the %d decisions answered before the kill are not in the log", missing, len(answered))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(logged) < len(answered) {
		t.Fatalf("the log holds %d decisions, fewer than the %d answered", len(logged), len(answered))
	}
	resp, err := r.audit.VerifyLog(context.Background(), &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS})
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetIntact() {
		t.Fatalf("the log after the kill is not intact: %v", resp)
	}
	t.Logf("%d decisions answered before SIGKILL, every one in the log after the restart", len(answered))
}
