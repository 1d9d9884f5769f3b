package service

import (
	"context"
	"fmt"
	"time"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/bundle"
	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// Admin implements pb.AdminServiceServer. Writes go to the store as one
// atomic mutation each; the resulting state is loaded into the engine before
// the call returns, so the next check on this replica sees it.
type Admin struct {
	pb.UnimplementedAdminServiceServer
	eng    *engine.Engine
	store  store.Store
	bundle *bundle.Bundle
	now    func() time.Time
}

var _ pb.AdminServiceServer = (*Admin)(nil)

// NewAdmin returns the handlers of AdminService.
func NewAdmin(eng *engine.Engine, st store.Store, b *bundle.Bundle, now func() time.Time) *Admin {
	return &Admin{eng: eng, store: st, bundle: b, now: now}
}

// writeRequest is what every write request carries.
type writeRequest interface {
	GetTenantId() string
	GetActorId() string
	GetReason() string
}

// mutation is one admin write: it checks what the actor may do with the
// guard, then changes the tenant's state and describes the change.
type mutation func(g *auth.Guard, st *model.TenantState) (model.Change, error)

// write validates the common fields of a write, resolves its actor and
// applies fn inside the store's transaction, where the guard judges the
// actor on the tenant's state as it is then; a write that would leave the
// tenant without a super-administrator is refused. The engine applies the
// write before the store lets the tenant's next write in, so writes reach
// it in revision order; write returns the rows the write changed
// (written).
func (s *Admin) write(ctx context.Context, req writeRequest, fn mutation) (*model.TenantState, error) {
	tenant := req.GetTenantId()
	if err := model.ValidateTenantID("tenant_id", tenant); err != nil {
		return nil, err
	}
	actor, err := auth.ActorOf(ctx, req.GetActorId())
	if err != nil {
		return nil, err
	}
	if err := model.ValidateText("reason", req.GetReason(), model.MaxReasonLength, true); err != nil {
		return nil, err
	}
	now := s.now()
	var view *model.TenantState
	w := store.Write{Tenant: tenant, Actor: actor.ID, Reason: req.GetReason(), Credential: actor.Credential,
		Applied: func(st *model.TenantState, d model.Delta) error {
			view = written(st, d)
			return s.eng.Apply(st, d)
		}}
	rev, err := s.store.Update(ctx, w, func(st *model.TenantState) (model.Change, error) {
		g := auth.NewWriteGuard(s.eng.Catalog(), st, actor, now)
		c, err := fn(g, st)
		if err != nil {
			return c, err
		}
		return c, g.KeepSuperAdmin(st)
	})
	if err != nil {
		if rev != 0 {
			// The write is durable; the engine catches up on the next load.
			return nil, fmt.Errorf("load tenant %q at revision %d: %w", tenant, rev, err)
		}
		return nil, err
	}
	return view, nil
}

// written is what a write's response is made of: the rows the write
// changed, with the users of the grants among them, at the new revision.
// The state itself stays the store's, which the next write changes.
func written(st *model.TenantState, d model.Delta) *model.TenantState {
	v := st.Partial(d)
	for _, k := range d.Grants {
		if u, ok := st.Users[k.UserID]; ok {
			v.Users[k.UserID] = u
		}
	}
	return v
}

// readRequest is what every admin read names: the tenant, the acting
// user, and the revision the caller has seen (at_least_revision).
type readRequest interface {
	GetTenantId() string
	GetActorId() string
	GetAtLeastRevision() int64
}

// read loads a tenant for a read and checks that the actor holds fn,
// unless self says the read concerns only the actor. Reads come from the
// store, which every write reaches before it returns its revision, so any
// replica answers at_least_revision at once.
func (s *Admin) read(ctx context.Context, req readRequest, fn string, self func(actor string) bool) (*model.TenantState, *auth.Guard, error) {
	if err := model.ValidateTenantID("tenant_id", req.GetTenantId()); err != nil {
		return nil, nil, err
	}
	actor, err := auth.ActorOf(ctx, req.GetActorId())
	if err != nil {
		return nil, nil, err
	}
	st, err := s.store.Tenant(ctx, req.GetTenantId())
	if err != nil {
		return nil, nil, err
	}
	if err := stored("at_least_revision", st, req.GetAtLeastRevision()); err != nil {
		return nil, nil, err
	}
	g := auth.NewGuard(s.eng.Catalog(), st, actor, s.now())
	if self == nil || !self(actor.ID) {
		if err := g.Require(fn); err != nil {
			return nil, nil, err
		}
	}
	return st, g, nil
}

// Functions the admin calls need (the permission table of admin.proto).
const (
	fnRoles    = "admin.roles.manage"
	fnUsers    = "admin.users.manage"
	fnSettings = "admin.settings.manage"
	fnSharing  = "admin.sharing.manage"
)

// CreateRole implements pb.AdminServiceServer.
func (s *Admin) CreateRole(ctx context.Context, req *pb.CreateRoleRequest) (*pb.CreateRoleResponse, error) {
	r := model.Role{ID: req.GetRoleId(), DisplayName: req.GetDisplayName(), Description: req.GetDescription(), Inherits: req.GetInherits()}
	if id := req.GetTemplateId(); id != "" {
		if err := model.ValidateName("template_id", id); err != nil {
			return nil, err
		}
		t, ok := s.bundle.FromTemplate(id)
		if !ok {
			return nil, model.Invalid("template_id", model.ReasonUnknownTemplate, fmt.Sprintf("unknown role template %q", id))
		}
		r.Template, r.Permissions = t.Template, t.Permissions
		if r.DisplayName == "" {
			r.DisplayName = t.DisplayName
		}
		if r.Description == "" {
			r.Description = t.Description
		}
	} else if req.GetPermissions() == nil {
		return nil, model.Invalid("permissions", model.ReasonMissingField, "is required unless template_id is set")
	}
	if req.GetPermissions() != nil {
		r.Permissions = rolePermissions(req.GetPermissions())
	}
	if err := model.ValidateRoleFields(s.eng.Catalog(), r); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnRoles); err != nil {
			return model.Change{}, err
		}
		if err := g.Within(fmt.Sprintf("role %q", r.ID), r); err != nil {
			return model.Change{}, err
		}
		return st.CreateRole(r)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CreateRoleResponse{Role: roleToProto(st.Roles[r.ID]), Revision: st.Revision}, nil
}

// GetRole implements pb.AdminServiceServer.
func (s *Admin) GetRole(ctx context.Context, req *pb.GetRoleRequest) (*pb.GetRoleResponse, error) {
	if err := model.ValidateName("role_id", req.GetRoleId()); err != nil {
		return nil, err
	}
	st, _, err := s.read(ctx, req, fnRoles, nil)
	if err != nil {
		return nil, err
	}
	r, ok := st.Roles[req.GetRoleId()]
	if !ok {
		return nil, model.RoleNotFound(st.ID, req.GetRoleId())
	}
	return &pb.GetRoleResponse{Role: roleToProto(r), Revision: st.Revision}, nil
}

// ListRoles implements pb.AdminServiceServer.
func (s *Admin) ListRoles(ctx context.Context, req *pb.ListRolesRequest) (*pb.ListRolesResponse, error) {
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeRoleToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	st, _, err := s.read(ctx, req, fnRoles, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListRolesResponse{Revision: st.Revision}
	for _, r := range st.SortedRoles() {
		if r.ID <= after {
			continue
		}
		if len(out.Roles) == size {
			out.NextPageToken = roleToken(out.Roles[size-1].RoleId)
			break
		}
		out.Roles = append(out.Roles, roleToProto(r))
	}
	return out, nil
}

// UpdateRolePermissions implements pb.AdminServiceServer.
func (s *Admin) UpdateRolePermissions(ctx context.Context, req *pb.UpdateRolePermissionsRequest) (*pb.UpdateRolePermissionsResponse, error) {
	if req.GetPermissions() == nil {
		return nil, model.Invalid("permissions", model.ReasonMissingField, "is required")
	}
	update := model.Role{ID: req.GetRoleId(), Inherits: req.GetInherits(), Permissions: rolePermissions(req.GetPermissions())}
	if err := model.ValidateRoleFields(s.eng.Catalog(), update); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnRoles); err != nil {
			return model.Change{}, err
		}
		r, ok := st.Roles[update.ID]
		if !ok {
			return model.Change{}, model.RoleNotFound(st.ID, update.ID)
		}
		// Both what the role carried and what it is to carry must be the
		// actor's: nobody edits a role wider than themselves.
		if err := g.Within(fmt.Sprintf("editing role %q", r.ID), r); err != nil {
			return model.Change{}, err
		}
		r.Inherits, r.Permissions = update.Inherits, update.Permissions
		if err := g.Within(fmt.Sprintf("role %q as edited", r.ID), r); err != nil {
			return model.Change{}, err
		}
		return st.ReplaceRole(r)
	})
	if err != nil {
		return nil, err
	}
	return &pb.UpdateRolePermissionsResponse{Role: roleToProto(st.Roles[update.ID]), Revision: st.Revision}, nil
}

// DeleteRole implements pb.AdminServiceServer.
func (s *Admin) DeleteRole(ctx context.Context, req *pb.DeleteRoleRequest) (*pb.DeleteRoleResponse, error) {
	if err := model.ValidateName("role_id", req.GetRoleId()); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnRoles); err != nil {
			return model.Change{}, err
		}
		if err := g.WithinRole(fmt.Sprintf("deleting role %q", req.GetRoleId()), req.GetRoleId()); err != nil {
			return model.Change{}, err
		}
		return st.DeleteRole(req.GetRoleId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteRoleResponse{Revision: st.Revision}, nil
}

// ListRoleTemplates implements pb.AdminServiceServer.
func (s *Admin) ListRoleTemplates(context.Context, *pb.ListRoleTemplatesRequest) (*pb.ListRoleTemplatesResponse, error) {
	out := &pb.ListRoleTemplatesResponse{}
	for _, t := range s.bundle.SortedTemplates() {
		out.Templates = append(out.Templates, roleToProto(t))
	}
	return out, nil
}

// GrantRole implements pb.AdminServiceServer.
func (s *Admin) GrantRole(ctx context.Context, req *pb.GrantRoleRequest) (*pb.GrantRoleResponse, error) {
	gr := model.Grant{UserID: req.GetUserId(), RoleID: req.GetRoleId()}
	if err := model.ValidateSubjectID("user_id", gr.UserID); err != nil {
		return nil, err
	}
	if err := model.ValidateName("role_id", gr.RoleID); err != nil {
		return nil, err
	}
	now := s.now()
	exp, err := expiry("expires_at", req.GetExpiresAt(), now)
	if err != nil {
		return nil, err
	}
	gr.ExpiresAt, gr.GrantedAt = exp, now.UTC()
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		if err := g.WithinRole(fmt.Sprintf("granting role %q", gr.RoleID), gr.RoleID); err != nil {
			return model.Change{}, err
		}
		gr.GrantedBy = g.Actor().ID
		return st.GrantRole(gr, now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.GrantRoleResponse{Grant: grantToProto(st, st.Grants[model.GrantKey{UserID: gr.UserID, RoleID: gr.RoleID}], now), Revision: st.Revision}, nil
}

// RevokeRole implements pb.AdminServiceServer.
func (s *Admin) RevokeRole(ctx context.Context, req *pb.RevokeRoleRequest) (*pb.RevokeRoleResponse, error) {
	if err := model.ValidateSubjectID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	if err := model.ValidateName("role_id", req.GetRoleId()); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		if err := g.WithinRole(fmt.Sprintf("revoking role %q", req.GetRoleId()), req.GetRoleId()); err != nil {
			return model.Change{}, err
		}
		return st.RevokeRole(req.GetUserId(), req.GetRoleId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.RevokeRoleResponse{Revision: st.Revision}, nil
}

// ListGrants implements pb.AdminServiceServer.
func (s *Admin) ListGrants(ctx context.Context, req *pb.ListGrantsRequest) (*pb.ListGrantsResponse, error) {
	match, err := grantFilter(req)
	if err != nil {
		return nil, err
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeGrantToken(grantsToken, req.GetPageToken())
	if err != nil {
		return nil, err
	}
	own := func(actor string) bool { return req.GetUserId() != "" && req.GetUserId() == actor }
	st, _, err := s.read(ctx, req, fnUsers, own)
	if err != nil {
		return nil, err
	}
	if id := req.GetRoleId(); id != "" {
		if _, ok := st.Roles[id]; !ok {
			return nil, model.RoleNotFound(st.ID, id)
		}
	}
	now := s.now()
	out := &pb.ListGrantsResponse{Revision: st.Revision}
	for _, g := range st.SortedGrants() {
		if !match(g) || (!req.GetIncludeExpired() && !g.ActiveAt(now)) || (after != "" && grantKey(g.UserID, g.RoleID) <= after) {
			continue
		}
		if len(out.Grants) == size {
			last := out.Grants[size-1]
			out.NextPageToken = grantToken(grantsToken, last.UserId, last.RoleId)
			break
		}
		out.Grants = append(out.Grants, grantToProto(st, g, now))
	}
	return out, nil
}

func grantFilter(req *pb.ListGrantsRequest) (func(model.Grant) bool, error) {
	switch f := req.GetFilter().(type) {
	case *pb.ListGrantsRequest_UserId:
		if err := model.ValidateSubjectID("user_id", f.UserId); err != nil {
			return nil, err
		}
		return func(g model.Grant) bool { return g.UserID == f.UserId }, nil
	case *pb.ListGrantsRequest_RoleId:
		if err := model.ValidateName("role_id", f.RoleId); err != nil {
			return nil, err
		}
		return func(g model.Grant) bool { return g.RoleID == f.RoleId }, nil
	}
	return nil, model.Invalid("filter", model.ReasonMissingField, "set user_id or role_id")
}
