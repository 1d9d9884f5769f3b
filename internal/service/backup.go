package service

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/backup"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// This file holds the AdminService handlers of backup and restore
// (ExportTenant, ImportTenant) and of the casbin export.

// Limits of a tenant document in transit.
const (
	exportChunk    = 1 << 20
	maxImportBytes = 256 << 20
)

// ExportTenant implements pb.AdminServiceServer.
func (s *Admin) ExportTenant(req *pb.ExportTenantRequest, stream pb.AdminService_ExportTenantServer) error {
	format := backup.YAML
	switch req.GetFormat() {
	case pb.DocumentFormat_DOCUMENT_FORMAT_UNSPECIFIED, pb.DocumentFormat_DOCUMENT_FORMAT_YAML:
	case pb.DocumentFormat_DOCUMENT_FORMAT_JSON:
		format = backup.JSON
	default:
		return model.Invalid("format", model.ReasonInvalidValue, fmt.Sprintf("unknown document format %d", req.GetFormat()))
	}
	st, _, err := s.read(stream.Context(), req, auth.FunctionSuper, nil)
	if err != nil {
		return err
	}
	doc := backup.FromState(st)
	data, err := doc.Encode(format)
	if err != nil {
		return err
	}
	hash, err := doc.Hash()
	if err != nil {
		return err
	}
	for off := 0; off < len(data) || off == 0; off += exportChunk {
		end := min(off+exportChunk, len(data))
		if err := stream.Send(&pb.ExportTenantResponse{Chunk: data[off:end], Revision: st.Revision, DocumentSha256: hash}); err != nil {
			return err
		}
		if end == len(data) {
			break
		}
	}
	return nil
}

// ImportTenant implements pb.AdminServiceServer.
func (s *Admin) ImportTenant(stream pb.AdminService_ImportTenantServer) error {
	ctx := stream.Context()
	first, err := stream.Recv()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return model.Invalid("tenant_id", model.ReasonMissingField, "send the tenant and the document")
		}
		return err
	}
	tenant := first.GetTenantId()
	if err := model.ValidateTenantID("tenant_id", tenant); err != nil {
		return err
	}
	actor, err := auth.ActorOf(ctx, first.GetActorId())
	if err != nil {
		return err
	}
	if !first.GetDryRun() {
		if err := model.ValidateText("reason", first.GetReason(), model.MaxReasonLength, true); err != nil {
			return err
		}
	}
	var buf bytes.Buffer
	for msg := first; ; {
		if buf.Len()+len(msg.GetChunk()) > maxImportBytes {
			return model.Invalid("chunk", model.ReasonTooMany, fmt.Sprintf("a document is at most %d bytes", maxImportBytes))
		}
		buf.Write(msg.GetChunk())
		if msg, err = stream.Recv(); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			return err
		}
	}
	doc, err := backup.Decode(buf.Bytes())
	if err != nil {
		return err
	}
	hash, err := doc.Hash()
	if err != nil {
		return err
	}
	next, err := doc.State(s.eng.Catalog(), tenant)
	if err != nil {
		return err
	}
	cur, err := s.store.Tenant(ctx, tenant)
	switch {
	case errors.Is(err, model.ErrTenantNotFound):
		cur = nil
	case err != nil:
		return err
	}
	now := s.now()
	if cur != nil {
		// Checked here for the dry run; the write checks again on the
		// state it changes.
		if err := auth.NewGuard(s.eng.Catalog(), cur, actor, now).Require(auth.FunctionSuper); err != nil {
			return err
		}
	} else if p := auth.FromContext(ctx); !p.Has(auth.ScopePlatform) {
		return &auth.DeniedError{Reason: auth.ReasonMissingScope, Missing: string(auth.ScopePlatform), Tenant: tenant, Actor: actor.ID,
			Message: fmt.Sprintf("tenant %q does not exist; creating it by an import needs the platform scope", tenant)}
	}
	diff := backup.Compare(cur, next)
	out := &pb.ImportTenantResponse{DocumentSha256: hash, Diff: diffToProto(diff)}
	if cur != nil {
		out.Revision = cur.Revision
	}
	if first.GetDryRun() || (cur != nil && noChange(diff)) {
		return stream.SendAndClose(out)
	}
	if cur == nil {
		// A new tenant: created whole, in one write, by the operator.
		op := auth.Operator(ctx)
		w := store.Write{Tenant: tenant, Actor: op.ID, Reason: first.GetReason(), Credential: op.Credential, Source: "document sha256:" + hash}
		created, err := s.store.CreateTenant(ctx, w, next)
		if err != nil {
			return err
		}
		if err := s.eng.Load(created); err != nil {
			return fmt.Errorf("load tenant %q: %w", tenant, err)
		}
		out.Revision, out.Changed, out.Created = created.Revision, true, true
		return stream.SendAndClose(out)
	}
	st, err := s.write(ctx, first, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(auth.FunctionSuper); err != nil {
			return model.Change{}, err
		}
		before := store.TenantSummary(st)
		st.Name, st.Settings = next.Name, next.Settings
		st.Roles, st.Grants, st.Users = next.Roles, next.Grants, next.Users
		st.Departments, st.Members, st.SharingRules, st.RecordShares = next.Departments, next.Members, next.SharingRules, next.RecordShares
		after := store.TenantSummary(st)
		after["document_sha256"] = hash
		return model.Change{Action: "tenant.import", Target: "tenant/" + tenant, Before: before, After: after}, nil
	})
	if err != nil {
		return err
	}
	out.Revision, out.Changed = st.Revision, true
	return stream.SendAndClose(out)
}

func noChange(diff []backup.KindDiff) bool {
	for _, d := range diff {
		if !d.Empty() {
			return false
		}
	}
	return true
}

func diffToProto(diff []backup.KindDiff) []*pb.KindDiff {
	out := make([]*pb.KindDiff, len(diff))
	for i, d := range diff {
		out[i] = &pb.KindDiff{Kind: d.Kind, Added: d.Added, Changed: d.Changed, Removed: d.Removed}
	}
	return out
}

// ExportCasbinPolicy implements pb.AdminServiceServer.
func (s *Admin) ExportCasbinPolicy(ctx context.Context, req *pb.ExportCasbinPolicyRequest) (*pb.ExportCasbinPolicyResponse, error) {
	st, _, err := s.read(ctx, req, fnRoles, nil)
	if err != nil {
		return nil, err
	}
	pol := engine.CompilePolicy(s.eng.Catalog(), st, s.now())
	return &pb.ExportCasbinPolicyResponse{ModelConf: s.bundle.ModelText, PolicyCsv: pol.CSV(), Revision: st.Revision}, nil
}
