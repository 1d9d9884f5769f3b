package app_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/pgtest"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// TestHostileDatabaseAdministrator attacks both logs in SQL as someone who
// can read and write the database, and knows the hash formats, but holds
// none of the service's keys: rehashing an edited change log, cutting off a
// decision chain's tail, deleting whole chains, lowering a tenant's
// revision. VerifyLog reports each; the attacks that leave no trace inside
// the database (an old sealed head put back, the last chain deleted) are
// caught by a checkpoint issued before them. Each attack is undone before
// the next, and the log then verifies intact.
func TestHostileDatabaseAdministrator(t *testing.T) {
	cfg := pgConfig(t)
	cfg.DecisionLogBatchSize = 4
	cfg.DecisionLogFlushInterval = time.Minute // batches form by count: positions 1-4 and 5-8
	// checks asks about each user and waits until the batch is written.
	checks := func(e *auditEnv, users ...string) {
		var ids []string
		for _, u := range users {
			ids = append(ids, e.check(t, "demo", u, modulePerm("account", "read")).GetDecisionId())
		}
		for _, id := range ids {
			e.waitDecision(t, "demo", id)
		}
	}
	first := startAudit(t, cfg)
	checks(first, "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi")
	chainA := first.status(t).GetChainId()
	db := pgtest.Open(t, cfg.DatabaseURL)

	// A second replica, registered after the first; the attacker keeps a
	// copy of its head after its first batch.
	second := startAudit(t, cfg)
	checks(second, "ivan", "judy", "mallory", "niaj")
	chainB := second.status(t).GetChainId()
	oldHead := saveRow(t, db, "audit_chains", "chain_id = $1", chainB)
	checks(second, "olivia", "peggy", "rupert", "sybil")

	// Three admin writes; the attacker keeps the tenant's row before the
	// last one.
	grant := func(user string) {
		if _, err := first.admin.GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "review", UserId: user, RoleId: "read_only"}); err != nil {
			t.Fatal(err)
		}
	}
	grant("peggy")
	grant("mallory")
	oldTenant := tenantHead(t, db, "demo")
	grant("judy")

	all := &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL}
	first.wantIntact(t, all)
	created, err := first.audit.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
	if err != nil {
		t.Fatal(err)
	}
	cp := created.GetCheckpoint()
	if len(cp.GetDecisionChains()) != 2 || len(cp.GetTenants()) < 1 || len(cp.GetPublicKey()) != 32 {
		t.Fatalf("checkpoint %v", cp)
	}
	// The auditor keeps the checkpoint outside the database.
	kept := &pb.Checkpoint{Content: bytes.Clone(cp.GetContent()), Signature: bytes.Clone(cp.GetSignature())}
	against := &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL, Checkpoint: kept}
	if v := first.wantIntact(t, against); v.GetCheckpoint().GetHeadsChecked() != int64(len(cp.GetDecisionChains())+len(cp.GetTenants())) {
		t.Fatalf("checkpoint report %v", v.GetCheckpoint())
	}
	listed, err := first.audit.ListCheckpoints(ctx, &pb.ListCheckpointsRequest{})
	if err != nil || len(listed.GetCheckpoints()) != 1 || !proto.Equal(listed.GetCheckpoints()[0], cp) {
		t.Fatalf("ListCheckpoints: %v, %v; want the one created", listed, err)
	}
	changes := &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_CHANGES, TenantId: "demo"}
	var headRev int64
	if err := db.QueryRow(ctx, "SELECT revision FROM tenants WHERE id = 'demo'").Scan(&headRev); err != nil {
		t.Fatal(err)
	}

	t.Run("rehash an edited change log", func(t *testing.T) {
		saved := saveRows(t, db, "change_log", "tenant_id = 'demo'")
		// Without the key, the attacker can hash as the log once did (plain
		// SHA-256), or guess: an HMAC under a key of their own, named as the
		// service's.
		var keyID string
		if err := db.QueryRow(ctx, "SELECT key_id FROM change_log WHERE tenant_id = 'demo' AND revision = 2").Scan(&keyID); err != nil {
			t.Fatal(err)
		}
		for _, forge := range []struct {
			keyID string
			link  func(prev, canon []byte) []byte
			want  pb.BreakKind
		}{
			{"", func(prev, canon []byte) []byte { h := sha256.Sum256(append(bytes.Clone(prev), canon...)); return h[:] }, pb.BreakKind_BREAK_KIND_UNKEYED},
			{keyID, func(prev, canon []byte) []byte {
				m := hmac.New(sha256.New, []byte("the attacker's own secret"))
				m.Write(prev)
				m.Write(canon)
				return m.Sum(nil)
			}, pb.BreakKind_BREAK_KIND_HASH_MISMATCH},
		} {
			rehashChanges(t, db, "demo", 2, "forged", forge.keyID, forge.link)
			first.wantBroken(t, changes, forge.want, 2)
			restoreRows(t, db, "change_log", "tenant_id = 'demo'", saved)
			first.wantIntact(t, changes)
		}
	})

	t.Run("cut off a decision chain's tail", func(t *testing.T) {
		saved := saveRows(t, db, "decision_batches", "chain_id = $1", chainA)
		savedHead := saveRow(t, db, "audit_chains", "chain_id = $1", chainA)
		// Two statements: the tail goes, the head moves back to entry 4.
		sqlExec(t, db, "DELETE FROM decision_batches WHERE chain_id = $1 AND batch_first = 5", chainA)
		sqlExec(t, db, `UPDATE audit_chains c SET last_pos = b.last_pos, last_hash = b.last_hash, last_seq = b.max_seq
			FROM decision_batches b WHERE b.chain_id = c.chain_id AND c.chain_id = $1 AND b.batch_first = 1`, chainA)
		first.wantBroken(t, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_DECISIONS, ChainId: chainA}, pb.BreakKind_BREAK_KIND_HEAD_MISMATCH, 4)
		restoreRows(t, db, "decision_batches", "chain_id = $1", saved, chainA)
		restoreRows(t, db, "audit_chains", "chain_id = $1", [][]any{savedHead}, chainA)
		first.wantIntact(t, all)

		// With the head the attacker kept from before the second batch,
		// every seal verifies: the database holds no trace. The checkpoint
		// does.
		saved = saveRows(t, db, "decision_batches", "chain_id = $1", chainB)
		savedHead = saveRow(t, db, "audit_chains", "chain_id = $1", chainB)
		sqlExec(t, db, "DELETE FROM decision_batches WHERE chain_id = $1 AND batch_first = 5", chainB)
		restoreRows(t, db, "audit_chains", "chain_id = $1", [][]any{oldHead}, chainB)
		first.wantIntact(t, all)
		wantReport(t, first.verify(t, against), pb.LogKind_LOG_KIND_DECISIONS, chainB, pb.BreakKind_BREAK_KIND_TRUNCATED, 5)
		restoreRows(t, db, "decision_batches", "chain_id = $1", saved, chainB)
		restoreRows(t, db, "audit_chains", "chain_id = $1", [][]any{savedHead}, chainB)
		first.wantIntact(t, against)
	})

	t.Run("delete a whole chain", func(t *testing.T) {
		for _, c := range []struct {
			chain        string
			noticedAlone bool // without a checkpoint
		}{
			{chainA, true},  // registered first: its place in the order is a gap
			{chainB, false}, // registered last: no gap; the checkpoint names it
		} {
			batches := saveRows(t, db, "decision_batches", "chain_id = $1", c.chain)
			head := saveRow(t, db, "audit_chains", "chain_id = $1", c.chain)
			sqlExec(t, db, "DELETE FROM decision_batches WHERE chain_id = $1", c.chain)
			sqlExec(t, db, "DELETE FROM audit_chains WHERE chain_id = $1", c.chain)
			v := first.verify(t, all)
			if v.GetIntact() == c.noticedAlone {
				t.Errorf("chain %s deleted: intact %v without a checkpoint: %v", c.chain, v.GetIntact(), v)
			}
			if c.noticedAlone {
				wantReport(t, v, pb.LogKind_LOG_KIND_DECISIONS, "", pb.BreakKind_BREAK_KIND_CHAIN_MISSING, 1)
			}
			wantReport(t, first.verify(t, against), pb.LogKind_LOG_KIND_DECISIONS, c.chain, pb.BreakKind_BREAK_KIND_CHAIN_MISSING, 8)
			restoreRows(t, db, "audit_chains", "chain_id = $1", [][]any{head}, c.chain)
			restoreRows(t, db, "decision_batches", "chain_id = $1", batches, c.chain)
			first.wantIntact(t, against)
		}
	})

	t.Run("lower a tenant's revision", func(t *testing.T) {
		lastChange := saveRow(t, db, "change_log", "tenant_id = 'demo' AND revision = $1", headRev)
		tenant := tenantHead(t, db, "demo")
		sqlExec(t, db, "DELETE FROM change_log WHERE tenant_id = 'demo' AND revision = $1", headRev)
		sqlExec(t, db, "UPDATE tenants SET revision = revision - 1 WHERE id = 'demo'")
		first.wantBroken(t, changes, pb.BreakKind_BREAK_KIND_HEAD_MISMATCH, headRev-1)
		// With the tenant's row as it was before the last write, the seal
		// verifies; the checkpoint saw the later revision.
		setTenantHead(t, db, "demo", oldTenant)
		first.wantIntact(t, changes)
		wantReport(t, first.verify(t, against), pb.LogKind_LOG_KIND_CHANGES, "demo", pb.BreakKind_BREAK_KIND_TRUNCATED, headRev)
		setTenantHead(t, db, "demo", tenant)
		restoreRows(t, db, "change_log", "tenant_id = 'demo' AND revision = $1", [][]any{lastChange}, headRev)
		first.wantIntact(t, against)
	})

	t.Run("forge a checkpoint", func(t *testing.T) {
		// Lowering a head in the checkpoint itself breaks its signature.
		forged := bytes.Clone(kept.GetContent())
		forged[len(forged)-40]++
		_, err := first.audit.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL,
			Checkpoint: &pb.Checkpoint{Content: forged, Signature: kept.GetSignature()}})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "checkpoint.signature" {
			t.Errorf("forged checkpoint: %v", err)
		}
	})

	t.Run("only an audit credential for every tenant reaches every tenant's logs", func(t *testing.T) {
		store := first.app.Store()
		// oscar administers demo (admin.super), audit.view included.
		keys := map[string]string{
			"no credential":                      "",
			"a check key for every tenant":       createKey(t, store, "checks", []string{"check"}, nil, ""),
			"an audit key for demo alone":        createKey(t, store, "demo auditors", []string{"audit"}, []string{"demo"}, ""),
			"an audit key bound to demo's admin": createKey(t, store, "oscar's audit", []string{"audit"}, []string{"demo"}, "oscar"),
		}
		calls := map[string]func(c pb.AuditServiceClient) error{
			"CreateCheckpoint": func(c pb.AuditServiceClient) error {
				_, err := c.CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{})
				return err
			},
			"ListCheckpoints": func(c pb.AuditServiceClient) error {
				_, err := c.ListCheckpoints(ctx, &pb.ListCheckpointsRequest{})
				return err
			},
			"VerifyLog of both logs": func(c pb.AuditServiceClient) error {
				_, err := c.VerifyLog(ctx, &pb.VerifyLogRequest{Log: pb.LogKind_LOG_KIND_ALL})
				return err
			},
		}
		before := len(saveRows(t, db, "audit_checkpoints", "true"))
		for who, key := range keys {
			c := pb.NewAuditServiceClient(first.dial(t, key))
			for name, call := range calls {
				want := codes.PermissionDenied
				if key == "" {
					want = codes.Unauthenticated
				}
				if err := call(c); status.Code(err) != want {
					t.Errorf("%s with %s: %v; want %v", name, who, err, want)
				}
			}
		}
		if after := len(saveRows(t, db, "audit_checkpoints", "true")); after != before {
			t.Errorf("refused calls issued %d checkpoints", after-before)
		}
	})

	t.Run("an auditors' tool for every tenant checkpoints and changes nothing", func(t *testing.T) {
		plat := pb.NewPlatformServiceClient(first.conn)
		created, err := plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: "auditors", Scopes: []string{"audit"}})
		if err != nil {
			t.Fatal(err)
		}
		conn := first.dial(t, created.GetSecret())
		if _, err := pb.NewAuditServiceClient(conn).CreateCheckpoint(ctx, &pb.CreateCheckpointRequest{}); err != nil {
			t.Errorf("CreateCheckpoint with an audit key for every tenant: %v", err)
		}
		_, err = pb.NewAdminServiceClient(conn).GrantRole(ctx, &pb.GrantRoleRequest{TenantId: "demo", ActorId: "oscar", Reason: "x", UserId: "bob", RoleId: "admin"})
		if status.Code(err) != codes.PermissionDenied {
			t.Errorf("GrantRole with an audit key: %v", err)
		}
		_, err = plat.CreateKey(ctx, &pb.CreateKeyRequest{Name: "wide", Scopes: []string{"audit", "check"}})
		if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || field != "tenants" {
			t.Errorf("an audit and check key for every tenant: %v", err)
		}
	})
}

// wantReport finds the report of chain in log and expects its first broken
// link of kind at pos.
func wantReport(t *testing.T, v *pb.VerifyLogResponse, log pb.LogKind, chainID string, kind pb.BreakKind, pos int64) {
	t.Helper()
	for _, c := range v.GetChains() {
		if c.GetLog() == log && c.GetChainId() == chainID && c.GetBroken() != nil {
			if b := c.GetBroken(); b.GetKind() != kind || b.GetPosition() != pos || v.GetIntact() {
				t.Fatalf("chain %q: want %v at %d, got %v", chainID, kind, pos, b)
			}
			return
		}
	}
	t.Fatalf("no broken report of %v chain %q: %v", log, chainID, v)
}

// tenantHead reads a tenant's revision and its sealed head.
func tenantHead(t *testing.T, db *pgxpool.Pool, tenant string) []any {
	t.Helper()
	var (
		rev int64
		key string
		mac []byte
	)
	if err := db.QueryRow(ctx, "SELECT revision, head_key, head_mac FROM tenants WHERE id = $1", tenant).Scan(&rev, &key, &mac); err != nil {
		t.Fatal(err)
	}
	return []any{rev, key, mac}
}

func setTenantHead(t *testing.T, db *pgxpool.Pool, tenant string, head []any) {
	t.Helper()
	sqlExec(t, db, "UPDATE tenants SET revision = $2, head_key = $3, head_mac = $4 WHERE id = $1", append([]any{tenant}, head...)...)
}

// saveRows copies the rows of table that where selects.
func saveRows(t *testing.T, db *pgxpool.Pool, table, where string, args ...any) [][]any {
	t.Helper()
	rows, err := db.Query(ctx, "SELECT * FROM "+table+" WHERE "+where, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) ([]any, error) {
		vals, err := row.Values()
		if err != nil {
			return nil, err
		}
		// A json column is kept as its text: decoded and encoded again, it
		// would not be the text its seal covers (change_log.rows).
		for i, f := range row.FieldDescriptions() {
			if f.DataTypeOID == pgtype.JSONOID && vals[i] != nil {
				vals[i] = string(row.RawValues()[i])
			}
		}
		return vals, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func saveRow(t *testing.T, db *pgxpool.Pool, table, where string, args ...any) []any {
	t.Helper()
	rows := saveRows(t, db, table, where, args...)
	if len(rows) != 1 {
		t.Fatalf("%s where %s: %d rows", table, where, len(rows))
	}
	return rows[0]
}

// restoreRows replaces the rows of table that where selects with saved.
func restoreRows(t *testing.T, db *pgxpool.Pool, table, where string, saved [][]any, args ...any) {
	t.Helper()
	var cols []string
	rows, err := db.Query(ctx, "SELECT * FROM "+table+" LIMIT 0")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range rows.FieldDescriptions() {
		cols = append(cols, f.Name)
	}
	rows.Close()
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "DELETE FROM "+table+" WHERE "+where, args...); err != nil {
			return err
		}
		// Generated columns (decision_batches.txid keeps the original
		// commit order) are written as saved.
		_, err := tx.CopyFrom(ctx, pgx.Identifier{table}, cols, pgx.CopyFromRows(saved))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// rehashChanges edits the reason of a tenant's revision from and rehashes
// every revision from there with link, naming keyID.
func rehashChanges(t *testing.T, db *pgxpool.Pool, tenant string, from int64, reason, keyID string, link func(prev, canon []byte) []byte) {
	t.Helper()
	var prev []byte
	if err := db.QueryRow(ctx, "SELECT hash FROM change_log WHERE tenant_id = $1 AND revision = $2", tenant, from-1).Scan(&prev); err != nil {
		t.Fatal(err)
	}
	rows, _ := db.Query(ctx, `SELECT revision, at, actor, credential, reason, action, target, before::text, after::text, related
		FROM change_log WHERE tenant_id = $1 AND revision >= $2 ORDER BY revision`, tenant, from)
	type entry struct {
		rev                                       int64
		at                                        time.Time
		actor, credential, reason, action, target string
		before, after                             *string
		related                                   []string
	}
	es, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (entry, error) {
		var e entry
		err := row.Scan(&e.rev, &e.at, &e.actor, &e.credential, &e.reason, &e.action, &e.target, &e.before, &e.after, &e.related)
		return e, err
	})
	if err != nil {
		t.Fatal(err)
	}
	doc := func(s *string) []byte {
		if s == nil {
			return nil
		}
		return []byte(*s)
	}
	for i, e := range es {
		if i == 0 {
			e.reason = reason
		}
		canon, err := chain.Change(tenant, e.rev, e.at.UTC(), e.actor, e.credential, e.reason, e.action, e.target, doc(e.before), doc(e.after), e.related)
		if err != nil {
			t.Fatal(err)
		}
		prev = link(prev, canon)
		sqlExec(t, db, "UPDATE change_log SET reason = $3, hash = $4, key_id = $5 WHERE tenant_id = $1 AND revision = $2",
			tenant, e.rev, e.reason, prev, keyID)
	}
}
