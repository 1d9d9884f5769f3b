package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

const exportHelp = `Usage: authzctl export [-f FILE] [--format yaml|json]

Writes the tenant's settings as one versioned document (users, roles,
grants with expiry, departments, memberships, sharing rules, record shares,
settings) to FILE, or to standard output. Two exports of the same state are
byte-identical, so diff shows what changed between two. Needs admin.super
(or a platform credential). On a terminal, progress goes to standard error.

Example:
  authzctl --tenant demo --actor oscar export -f demo-backup.yaml
`

func runExport(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("export", exportHelp)
	var file, format string
	cmd.fs.StringVar(&file, "f", "", "write the document to this `file` instead of standard output")
	cmd.fs.StringVar(&format, "format", "yaml", "document `format`: yaml or json")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	req := &pb.ExportTenantRequest{TenantId: c.tenant, ActorId: c.actor}
	switch format {
	case "yaml":
		req.Format = pb.DocumentFormat_DOCUMENT_FORMAT_YAML
	case "json":
		req.Format = pb.DocumentFormat_DOCUMENT_FORMAT_JSON
	default:
		return usagef(cmd.name, "--format must be yaml or json, not %q", format)
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	stream, err := c.admin.ExportTenant(ctx, req)
	if err != nil {
		return err
	}
	var doc strings.Builder
	p := newProgress("exported", true)
	var last *pb.ExportTenantResponse
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		doc.Write(msg.GetChunk())
		p.add(len(msg.GetChunk()))
		last = msg
	}
	p.done()
	if file == "" {
		c.out.WriteString(doc.String())
		return nil
	}
	if err := os.WriteFile(file, []byte(doc.String()), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(&c.out, "exported tenant %s at revision %d to %s (%d bytes, sha256 %s)\n", c.tenant, last.GetRevision(), file, doc.Len(), last.GetDocumentSha256())
	return nil
}

const importHelp = `Usage: authzctl import FILE [--dry-run]

Reads a document authzctl export wrote (YAML or JSON) into the tenant, the
same one or another (--tenant): --dry-run only prints what would change, a
table per kind; otherwise the document is applied in one write, and
importing the same document again changes nothing. Importing into a tenant
that does not exist creates it (a platform credential). Needs admin.super
and --reason.

Example:
  authzctl --tenant demo --actor oscar import demo-backup.yaml --dry-run
`

func runImport(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("import", importHelp)
	var dry bool
	cmd.fs.BoolVar(&dry, "dry-run", false, "only print what would change")
	pos, err := cmd.parse(args, 1, 1)
	if err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if !dry && strings.TrimSpace(c.reason) == "" {
		return usagef(cmd.name, "import: --reason is required (or --dry-run)")
	}
	doc, err := os.ReadFile(pos[0]) //nolint:gosec // the operator names the file to read
	if err != nil {
		return err
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	stream, err := c.admin.ImportTenant(ctx)
	if err != nil {
		return err
	}
	p := newProgress("sent", true)
	const chunk = 1 << 20
	for off := 0; ; off += chunk {
		end := min(off+chunk, len(doc))
		msg := &pb.ImportTenantRequest{Chunk: doc[off:end]}
		if off == 0 {
			msg.TenantId, msg.ActorId, msg.Reason, msg.DryRun = c.tenant, c.actor, c.reason, dry
		}
		if err := stream.Send(msg); err != nil {
			break // the server's answer says why
		}
		p.add(end - off)
		if end == len(doc) {
			break
		}
	}
	p.done()
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	t := newTable(&c.out, "KIND", "ADDED", "CHANGED", "REMOVED")
	for _, d := range resp.GetDiff() {
		t.row(d.GetKind(), fmt.Sprint(len(d.GetAdded())), fmt.Sprint(len(d.GetChanged())), fmt.Sprint(len(d.GetRemoved())))
	}
	t.flush()
	switch {
	case dry:
		fmt.Fprintf(&c.out, "dry run: nothing written (tenant %s at revision %d)\n", c.tenant, resp.GetRevision())
	case !resp.GetChanged():
		fmt.Fprintf(&c.out, "nothing to change: tenant %s stays at revision %d\n", c.tenant, resp.GetRevision())
	default:
		fmt.Fprintf(&c.out, "imported into tenant %s: revision %d (document sha256 %s)\n", c.tenant, resp.GetRevision(), resp.GetDocumentSha256())
	}
	return nil
}

const casbinHelp = `Usage: authzctl casbin --model FILE --policy FILE

Writes the tenant's policy for the plain casbin library: the model
(policies/model.conf) and the policy lines as CSV, which give the same
module, function and field decisions as check. Needs admin.roles.manage.

Example:
  authzctl --tenant demo --actor oscar casbin --model model.conf --policy policy.csv
`

func runCasbin(ctx context.Context, c *cli, args []string) error {
	cmd := c.command("casbin", casbinHelp)
	var modelFile, policyFile string
	cmd.fs.StringVar(&modelFile, "model", "", "write the casbin model to this `file`")
	cmd.fs.StringVar(&policyFile, "policy", "", "write the policy CSV to this `file`")
	if _, err := cmd.parse(args, 0, 0); err != nil {
		return err
	}
	if err := cmd.needTenant(); err != nil {
		return err
	}
	if !c.json() && (modelFile == "" || policyFile == "") {
		return usagef(cmd.name, "casbin: --model and --policy are required (or --output json)")
	}
	ctx, cancel, err := c.connect(ctx)
	if err != nil {
		return err
	}
	defer cancel()
	resp, err := c.admin.ExportCasbinPolicy(ctx, &pb.ExportCasbinPolicyRequest{TenantId: c.tenant, ActorId: c.actor})
	if err != nil {
		return err
	}
	if c.json() {
		return c.printJSON(resp)
	}
	if err := os.WriteFile(modelFile, []byte(resp.GetModelConf()), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(policyFile, []byte(resp.GetPolicyCsv()), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(&c.out, "wrote %s and %s (%d policy lines, revision %d)\n", modelFile, policyFile,
		strings.Count(resp.GetPolicyCsv(), "\n"), resp.GetRevision())
	return nil
}
