package service

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// mayAuditAll checks a call over every tenant's logs: it needs a credential
// for every tenant that is not bound to a user (whose audit.view is
// granted per tenant).
func (s *Audit) mayAuditAll(ctx context.Context, what string) error {
	p := auth.FromContext(ctx)
	if p.Tenants != nil {
		return &auth.DeniedError{Reason: auth.ReasonTenantNotAllowed, Missing: "*",
			Message: fmt.Sprintf("%s covers every tenant; this credential is limited to %s", what, strings.Join(p.Tenants, ", "))}
	}
	if p.User != "" {
		return &auth.DeniedError{Reason: auth.ReasonMissingPermission, Missing: fnAuditView, Actor: p.User,
			Message: fmt.Sprintf("%s covers every tenant; it needs an audit credential not bound to a user, not one bound to %q", what, p.User)}
	}
	return nil
}

// CreateCheckpoint implements pb.AuditServiceServer.
func (s *Audit) CreateCheckpoint(ctx context.Context, _ *pb.CreateCheckpointRequest) (*pb.CreateCheckpointResponse, error) {
	if err := s.mayAuditAll(ctx, "a checkpoint"); err != nil {
		return nil, err
	}
	cp, id, err := s.log.Checkpoint(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.CreateCheckpointResponse{Checkpoint: s.checkpointToProto(id, cp)}, nil
}

// checkpointToken opens the page tokens of ListCheckpoints.
const checkpointToken = "cp1:"

// ListCheckpoints implements pb.AuditServiceServer.
func (s *Audit) ListCheckpoints(ctx context.Context, req *pb.ListCheckpointsRequest) (*pb.ListCheckpointsResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	var before int64
	if t := req.GetPageToken(); t != "" {
		n, err := strconv.ParseInt(strings.TrimPrefix(t, checkpointToken), 10, 64)
		if !strings.HasPrefix(t, checkpointToken) || err != nil || n <= 0 {
			return nil, model.Invalid("page_token", model.ReasonInvalidValue, "is not a token ListCheckpoints issued")
		}
		before = n
	}
	if err := s.mayAuditAll(ctx, "listing checkpoints"); err != nil {
		return nil, err
	}
	cps, err := s.log.Checkpoints(ctx, before, size+1)
	if err != nil {
		return nil, err
	}
	out := &pb.ListCheckpointsResponse{}
	for i, c := range cps {
		if i == size {
			out.NextPageToken = checkpointToken + strconv.FormatInt(cps[i-1].ID, 10)
			break
		}
		out.Checkpoints = append(out.Checkpoints, s.checkpointToProto(c.ID, c.Checkpoint))
	}
	return out, nil
}

func (s *Audit) checkpointToProto(id int64, cp *chain.Checkpoint) *pb.Checkpoint {
	out := &pb.Checkpoint{Id: id, KeyId: cp.KeyID, Content: cp.Content, Signature: cp.Signature}
	if !cp.Issued.IsZero() {
		out.IssuedTime = timestamppb.New(cp.Issued)
	}
	if pub, ok := s.log.PublicKey(cp.KeyID); ok {
		out.PublicKey = pub
	}
	heads := func(hs []chain.Head) []*pb.ChainHead {
		out := make([]*pb.ChainHead, len(hs))
		for i, h := range hs {
			out[i] = &pb.ChainHead{ChainId: h.Chain, Position: h.Position, Hash: hex.EncodeToString(h.Hash)}
		}
		return out
	}
	out.DecisionChains, out.Tenants = heads(cp.Decisions), heads(cp.Changes)
	return out
}

// openCheckpoint reads the checkpoint of a VerifyLog request: nil when
// none is given.
func (s *Audit) openCheckpoint(req *pb.VerifyLogRequest) (*chain.Checkpoint, error) {
	c := req.GetCheckpoint()
	if c == nil {
		return nil, nil
	}
	if len(c.GetContent()) == 0 || len(c.GetSignature()) == 0 {
		return nil, model.Invalid("checkpoint", model.ReasonMissingField, "needs content and signature, as CreateCheckpoint returned them")
	}
	cp, err := s.log.OpenCheckpoint(c.GetContent(), c.GetSignature())
	if errors.Is(err, audit.ErrBadCheckpoint) {
		return nil, model.Invalid("checkpoint.signature", model.ReasonInvalidValue, err.Error())
	}
	return cp, err
}

// mergeCheckpoint folds the comparison with a checkpoint into the chains'
// reports: a chain intact by its own links can still be one the checkpoint
// saw longer or different; a chain the checkpoint names and the log lacks
// is added.
func mergeCheckpoint(reports, compared []audit.ChainReport) []audit.ChainReport {
	type key struct {
		changes bool
		chain   string
	}
	at := map[key]int{}
	for i, r := range reports {
		if r.Chain != "" {
			at[key{r.Changes, r.Chain}] = i
		}
	}
	for _, c := range compared {
		i, ok := at[key{c.Changes, c.Chain}]
		switch {
		case !ok && c.Broken != nil:
			reports = append(reports, c)
		case ok && reports[i].Broken == nil && c.Broken != nil:
			reports[i].Broken = c.Broken
		}
	}
	return reports
}
