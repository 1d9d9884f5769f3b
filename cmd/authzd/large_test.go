package main

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/postgres"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestLargeTenantFollowedAsDeltas writes a tenant large enough to be kept
// in memory (2,500 users) through two authzd processes in random turns.
// Each write must be decided by the other process at its revision, and
// both must have applied the other's writes as deltas, from the rows the
// change log carries, rather than reading the tenant again each time.
func TestLargeTenantFollowedAsDeltas(t *testing.T) {
	dbURL := pgtest.NewDatabase(t)
	ops := firstKey(t, dbURL)
	bun, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	opts := datagen.Medium()
	opts.Users = 2500
	st, err := datagen.Tenant("big", bun, opts, 1, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	var users []string
	for id, u := range st.Users {
		if u.Active() {
			users = append(users, id)
		}
	}
	slices.Sort(users)
	keys, _, err := chain.OpenKeyring(pgtest.AuditKeyFile(dbURL), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := postgres.New(pgtest.Open(t, dbURL), time.Now).WithKeys(keys).CreateTenant(t.Context(),
		store.Write{Tenant: "big", Actor: "datagen", Reason: "test"}, st); err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, dbURL, ops)
	b := startReplica(t, dbURL, ops)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(3, 4))
	held := map[string]bool{} // users granted sales_rep by the test
	for i := range 40 {
		w, other := a, b
		if r.IntN(2) == 0 {
			w, other = b, a
		}
		user := users[r.IntN(len(users))]
		var rev int64
		if held[user] {
			resp, err := w.admin.RevokeRole(ctx, &pb.RevokeRoleRequest{TenantId: "big", UserId: user, RoleId: "sales_rep", Reason: "test"})
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			rev = resp.GetRevision()
		} else {
			resp, err := w.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "big", UserId: user, RoleId: "sales_rep", Reason: "test"})
			if err != nil {
				t.Fatalf("write %d: %v", i, err)
			}
			rev = resp.GetRevision()
		}
		held[user] = !held[user]
		eff, err := other.authz.ListEffectivePermissions(ctx, &pb.ListEffectivePermissionsRequest{TenantId: "big", SubjectId: user, AtLeastRevision: rev})
		if err != nil {
			t.Fatalf("write %d read on the other replica: %v", i, err)
		}
		has := slices.ContainsFunc(eff.GetRoles(), func(ar *pb.ActiveRole) bool { return ar.GetRoleId() == "sales_rep" })
		if has != held[user] {
			t.Fatalf("write %d at revision %d: the other replica says %s holds sales_rep: %v, want %v", i, rev, user, has, held[user])
		}
	}
	for _, rep := range []*replica{a, b} {
		st := replicaStatus(t, rep)
		if st.GetAppliedAsDeltas() == 0 {
			t.Errorf("%s applied %d changes, none as a delta", rep.addr, st.GetApplied())
		}
		t.Logf("%s applied %d changes, %d as deltas", rep.addr, st.GetApplied(), st.GetAppliedAsDeltas())
	}
}
