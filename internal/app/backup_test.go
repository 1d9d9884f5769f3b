package app_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/casbin/casbin/v2"
	casbinmodel "github.com/casbin/casbin/v2/model"
	stringadapter "github.com/casbin/casbin/v2/persist/string-adapter"
	"google.golang.org/grpc/codes"

	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/config"
	"github.com/crmauthz/crmauthz/internal/datagen"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// genTenants are generated tenants a test serves: their ids, states and
// the bundle they were made with.
type genTenants struct {
	b      *bundle.Bundle
	states []*model.TenantState
}

func generate(t *testing.T, n int, opts datagen.Options, clk *clock) *genTenants {
	t.Helper()
	b, err := bundle.Default()
	if err != nil {
		t.Fatal(err)
	}
	g := &genTenants{b: b}
	for i := range n {
		st, err := datagen.Tenant(fmt.Sprintf("gen-%d", i), b, opts, uint64(i+1), clk.Now())
		if err != nil {
			t.Fatal(err)
		}
		g.states = append(g.states, st)
	}
	return g
}

func (g *genTenants) store(t testing.TB) func(store.Store) {
	return func(st store.Store) {
		for _, s := range g.states {
			if _, err := st.CreateTenant(context.Background(), store.Write{Tenant: s.ID, Actor: "datagen", Reason: "test data"}, s); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// exportDoc runs ExportTenant and joins its chunks.
func exportDoc(t *testing.T, admin pb.AdminServiceClient, tenant string, f pb.DocumentFormat) ([]byte, *pb.ExportTenantResponse) {
	t.Helper()
	stream, err := admin.ExportTenant(ctx, &pb.ExportTenantRequest{TenantId: tenant, Format: f})
	if err != nil {
		t.Fatal(err)
	}
	var (
		buf  bytes.Buffer
		last *pb.ExportTenantResponse
	)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes(), last
		}
		if err != nil {
			t.Fatalf("export %s: %v", tenant, err)
		}
		buf.Write(msg.GetChunk())
		last = msg
	}
}

// importDoc runs ImportTenant, sending doc in chunks of 64 KiB.
func importDoc(admin pb.AdminServiceClient, tenant string, doc []byte, dryRun bool) (*pb.ImportTenantResponse, error) {
	stream, err := admin.ImportTenant(ctx)
	if err != nil {
		return nil, err
	}
	first := &pb.ImportTenantRequest{TenantId: tenant, Reason: "restore", DryRun: dryRun}
	for off := 0; ; off += 64 << 10 {
		end := min(off+64<<10, len(doc))
		msg := &pb.ImportTenantRequest{Chunk: doc[off:end]}
		if off == 0 {
			first.Chunk = msg.Chunk
			msg = first
		}
		if err := stream.Send(msg); err != nil {
			return nil, err
		}
		if end == len(doc) {
			break
		}
	}
	return stream.CloseAndRecv()
}

func permToProto(p model.Permission) *pb.Permission {
	switch p.Kind {
	case model.KindFunction:
		return functionPerm(p.Function)
	case model.KindField:
		return fieldPerm(p.Module, p.Field, p.Write)
	}
	mp := &pb.ModulePermission{Module: p.Module, Verb: p.Verb}
	if r := p.Record; r != nil {
		mp.Record = &pb.Record{Id: r.ID, OwnerId: r.Owner, DepartmentId: r.Department}
	}
	return &pb.Permission{Kind: &pb.Permission_Module{Module: mp}}
}

// decide asks the requests of tenant in batches and returns the answers.
func decide(t *testing.T, authz pb.AuthorizationServiceClient, tenant string, reqs []datagen.Request) []bool {
	t.Helper()
	var out []bool
	for off := 0; off < len(reqs); off += 500 {
		batch := &pb.BatchCheckRequest{}
		for _, q := range reqs[off:min(off+500, len(reqs))] {
			batch.Items = append(batch.Items, &pb.BatchCheckItem{TenantId: tenant, SubjectId: q.User, Permission: permToProto(q.Permission)})
		}
		resp, err := authz.BatchCheck(ctx, batch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			out = append(out, r.GetAllowed())
		}
	}
	return out
}

// TestBackupRoundTrip exports generated tenants from a memory server,
// imports them into PostgreSQL under other ids, and finds every decision
// identical over thousands of generated requests (module, field, function
// and record) and the re-export the same document. Importing the same
// document again changes nothing; a dry run says what would change.
func TestBackupRoundTrip(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	gen := generate(t, 3, datagen.Medium(), clk)
	mem := config.Default()
	mem.RequireAuth = true
	src := startSetup(t, mem, clk, gen.store(t))
	dst := startWith(t, pgConfig(t), clk)
	for i, st := range gen.states {
		format := []pb.DocumentFormat{pb.DocumentFormat_DOCUMENT_FORMAT_YAML, pb.DocumentFormat_DOCUMENT_FORMAT_JSON}[i%2]
		doc, head := exportDoc(t, src.admin, st.ID, format)
		again, _ := exportDoc(t, src.admin, st.ID, format)
		if !bytes.Equal(doc, again) {
			t.Fatal("two exports of the same state differ")
		}
		copyID := "copy-" + st.ID
		resp, err := importDoc(dst.admin, copyID, doc, false)
		if err != nil {
			t.Fatalf("import %s: %v", st.ID, err)
		}
		if !resp.GetCreated() || !resp.GetChanged() || resp.GetRevision() != 1 || resp.GetDocumentSha256() != head.GetDocumentSha256() {
			t.Fatalf("import: %v (export hash %s)", resp, head.GetDocumentSha256())
		}
		changes, err := pb.NewAuditServiceClient(dst.conn).ListChanges(ctx, &pb.ListChangesRequest{TenantId: copyID})
		if err != nil {
			t.Fatal(err)
		}
		if c := changes.GetChanges(); len(c) != 1 || c[0].GetAction() != "tenant.create" || !strings.Contains(c[0].GetAfterJson(), head.GetDocumentSha256()) {
			t.Fatalf("the import's change log: %v", c)
		}
		reqs := datagen.Requests(st, gen.b.Catalog, 3000, uint64(i+10))
		want, got := decide(t, src.authz, st.ID, reqs), decide(t, dst.authz, copyID, reqs)
		allowed := 0
		for j := range reqs {
			if want[j] != got[j] {
				t.Fatalf("request %d (%s %v): %v before the round trip, %v after", j, reqs[j].User, reqs[j].Permission, want[j], got[j])
			}
			if want[j] {
				allowed++
			}
		}
		if allowed == 0 || allowed == len(reqs) {
			t.Fatalf("%d of %d allowed: the requests do not tell anything apart", allowed, len(reqs))
		}
		redo, _ := exportDoc(t, dst.admin, copyID, format)
		if !bytes.Equal(redo, renameDoc(t, doc, copyID, format)) {
			t.Fatalf("the re-export of %s differs from the document imported", copyID)
		}

		// The same document again: nothing changes, no new revision.
		same, err := importDoc(dst.admin, copyID, doc, false)
		if err != nil || same.GetChanged() || same.GetRevision() != 1 {
			t.Fatalf("import again: %v %v", same, err)
		}
		// A dry run of an edited document says what would change.
		d, err := backup.Decode(doc)
		if err != nil {
			t.Fatal(err)
		}
		d.Users[1].Name = "Renamed"
		d.Grants = nil
		edited, err := d.Encode(backup.YAML)
		if err != nil {
			t.Fatal(err)
		}
		dry, err := importDoc(dst.admin, copyID, edited, true)
		if err != nil || dry.GetChanged() || dry.GetRevision() != 1 {
			t.Fatalf("dry run: %v %v", dry, err)
		}
		kinds := map[string]*pb.KindDiff{}
		for _, k := range dry.GetDiff() {
			kinds[k.GetKind()] = k
		}
		if len(kinds["users"].GetChanged()) != 1 || len(kinds["grants"].GetRemoved()) != len(st.Grants) || len(kinds["roles"].GetChanged()) != 0 {
			t.Fatalf("dry run diff: %v", dry.GetDiff())
		}
	}
}

// renameDoc is doc with its tenant id replaced, as an export of the
// imported copy names it.
func renameDoc(t *testing.T, doc []byte, id string, f pb.DocumentFormat) []byte {
	t.Helper()
	d, err := backup.Decode(doc)
	if err != nil {
		t.Fatal(err)
	}
	d.Tenant = id
	format := backup.YAML
	if f == pb.DocumentFormat_DOCUMENT_FORMAT_JSON {
		format = backup.JSON
	}
	out, err := d.Encode(format)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestImportRefuses: a document that fails validation is INVALID_ARGUMENT
// naming the path inside it and changes nothing; importing needs
// admin.super, and creating a tenant by an import the platform scope.
func TestImportRefuses(t *testing.T) {
	secureBackends(t, func(t *testing.T, e *secEnv) {
		doc, _ := exportDoc(t, e.admin, "demo", pb.DocumentFormat_DOCUMENT_FORMAT_YAML)
		before, _ := exportDoc(t, e.admin, "demo", pb.DocumentFormat_DOCUMENT_FORMAT_YAML)
		for name, tt := range map[string]struct {
			doc   string
			field string
		}{
			"unknown verb":    {strings.Replace(string(doc), "verbs: [list, read, print]", "verbs: [list, read, fly]", 1), "roles["},
			"unknown version": {strings.Replace(string(doc), backup.Version, "crmauthz.dev/tenant/v9", 1), "version"},
			"unknown user":    {strings.Replace(string(doc), "- user: alice\n", "- user: ghost\n", 1), "grants["},
			"not a document":  {"roles: {", "document"},
		} {
			_, err := importDoc(e.admin, "demo", []byte(tt.doc), false)
			if code, _, field := errorInfo(t, err); code != codes.InvalidArgument || !strings.HasPrefix(field, tt.field) {
				t.Errorf("%s: %v on %q, want INVALID_ARGUMENT on %s...", name, err, field, tt.field)
			}
		}
		after, _ := exportDoc(t, e.admin, "demo", pb.DocumentFormat_DOCUMENT_FORMAT_YAML)
		if !bytes.Equal(before, after) {
			t.Error("refused imports changed the tenant")
		}

		console := e.newKey(t, "console", []string{"admin"}, []string{"demo", "newco"}, "")
		stream, err := console.admin.ExportTenant(ctx, &pb.ExportTenantRequest{TenantId: "demo", ActorId: "alice"})
		if err == nil {
			_, err = stream.Recv()
		}
		if missing := denied(t, "export by a non-super actor", err, "MISSING_PERMISSION"); missing != "admin.super" {
			t.Errorf("missing %q", missing)
		}
		stream2, err := console.admin.ImportTenant(ctx)
		if err == nil {
			err = stream2.Send(&pb.ImportTenantRequest{TenantId: "demo", ActorId: "alice", Reason: "r", Chunk: doc})
		}
		if err == nil {
			_, err = stream2.CloseAndRecv()
		}
		denied(t, "import by a non-super actor", err, "MISSING_PERMISSION")
		stream3, err := console.admin.ImportTenant(ctx)
		if err == nil {
			err = stream3.Send(&pb.ImportTenantRequest{TenantId: "newco", ActorId: "oscar", Reason: "r", Chunk: doc})
		}
		if err == nil {
			_, err = stream3.CloseAndRecv()
		}
		denied(t, "creating a tenant by an import without the platform scope", err, "MISSING_SCOPE")
	})
}

// TestCasbinExport loads ExportCasbinPolicy's model and CSV into the plain
// casbin library, exactly as its user would, and finds its module,
// function and field decisions equal to Check's.
func TestCasbinExport(t *testing.T) {
	clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	gen := generate(t, 2, datagen.Medium(), clk)
	mem := config.Default()
	mem.RequireAuth = true
	e := startSetup(t, mem, clk, gen.store(t))
	for i, st := range gen.states {
		resp, err := e.admin.ExportCasbinPolicy(ctx, &pb.ExportCasbinPolicyRequest{TenantId: st.ID})
		if err != nil {
			t.Fatal(err)
		}
		m, err := casbinmodel.NewModelFromString(resp.GetModelConf())
		if err != nil {
			t.Fatal(err)
		}
		enf, err := casbin.NewEnforcer(m, stringadapter.NewAdapter(resp.GetPolicyCsv()))
		if err != nil {
			t.Fatal(err)
		}
		var reqs []datagen.Request
		for _, q := range datagen.Requests(st, gen.b.Catalog, 3000, uint64(i+20)) {
			if q.Permission.Record == nil {
				reqs = append(reqs, q)
			}
		}
		got := decide(t, e.authz, st.ID, reqs)
		for j, q := range reqs {
			want := true
			for _, r := range engine.Requests(st.ID, q.User, q.Permission) {
				ok, err := enf.Enforce(r.Sub, r.Dom, r.Obj, r.Act)
				if err != nil {
					t.Fatal(err)
				}
				want = want && ok
			}
			if got[j] != want {
				t.Fatalf("%s %v: Check %v, casbin %v", q.User, q.Permission, got[j], want)
			}
		}
	}
}

// BenchmarkBackupLarge exports the largest generated tenant (50,000
// users, 200 roles, 75,000 grants, 2,000 departments, 20,000 record
// shares) from a PostgreSQL server and imports it into a new tenant of the
// same server, reporting seconds, the document's size and what the server
// allocated for each:
//
//	go test -run '^$' -bench BackupLarge -benchtime 1x ./internal/app/
func BenchmarkBackupLarge(b *testing.B) {
	clk := &clock{t: time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)}
	bun, err := bundle.Default()
	if err != nil {
		b.Fatal(err)
	}
	st, err := datagen.Tenant("large", bun, datagen.Large(), 1, clk.Now())
	if err != nil {
		b.Fatal(err)
	}
	cfg := pgConfig(b)
	cfg.LogLevel = "error"
	e := startSetup(b, cfg, clk, func(s store.Store) {
		if _, err := s.CreateTenant(context.Background(), store.Write{Tenant: st.ID, Actor: "datagen", Reason: "bench"}, st); err != nil {
			b.Fatal(err)
		}
	})
	for i := range b.N {
		var m0, m1, m2 runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&m0)
		start := time.Now()
		doc := exportAll(b, e.admin, st.ID)
		exported := time.Since(start)
		runtime.ReadMemStats(&m1)
		start = time.Now()
		resp, err := importDoc(e.admin, fmt.Sprintf("large-copy-%d", i), doc, false)
		if err != nil || !resp.GetChanged() {
			b.Fatalf("import: %v %v", resp, err)
		}
		imported := time.Since(start)
		runtime.ReadMemStats(&m2)
		b.ReportMetric(exported.Seconds(), "export-s")
		b.ReportMetric(imported.Seconds(), "import-s")
		b.ReportMetric(float64(len(doc))/(1<<20), "doc-MiB")
		b.ReportMetric(float64(m1.TotalAlloc-m0.TotalAlloc)/(1<<20), "export-alloc-MiB")
		b.ReportMetric(float64(m2.TotalAlloc-m1.TotalAlloc)/(1<<20), "import-alloc-MiB")
		b.ReportMetric(float64(m2.HeapSys)/(1<<20), "heap-sys-MiB")
	}
}

// exportAll is exportDoc for a benchmark.
func exportAll(tb testing.TB, admin pb.AdminServiceClient, tenant string) []byte {
	stream, err := admin.ExportTenant(ctx, &pb.ExportTenantRequest{TenantId: tenant})
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return buf.Bytes()
		}
		if err != nil {
			tb.Fatal(err)
		}
		buf.Write(msg.GetChunk())
	}
}
