package service

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// This file holds the AdminService handlers of a tenant's organisation
// (departments, memberships and managers, settings) and sharing (sharing
// rules, record shares), with their conversions between the API and the
// model. Like the role handlers they check the request's syntax, then
// apply one model mutation through s.write, which checks it against the
// tenant inside the store's transaction.

// CreateDepartment implements pb.AdminServiceServer.
func (s *Admin) CreateDepartment(ctx context.Context, req *pb.CreateDepartmentRequest) (*pb.CreateDepartmentResponse, error) {
	if req.GetDepartment() == nil {
		return nil, model.Invalid("department", model.ReasonMissingField, "is required")
	}
	d := departmentFromProto(req.GetDepartment())
	if err := model.ValidateDepartment(d); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		return st.CreateDepartment(d)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CreateDepartmentResponse{Department: departmentToProto(st.Departments[d.ID]), Revision: st.Revision}, nil
}

// UpdateDepartment implements pb.AdminServiceServer.
func (s *Admin) UpdateDepartment(ctx context.Context, req *pb.UpdateDepartmentRequest) (*pb.UpdateDepartmentResponse, error) {
	if req.GetDepartment() == nil {
		return nil, model.Invalid("department", model.ReasonMissingField, "is required")
	}
	d := departmentFromProto(req.GetDepartment())
	if err := model.ValidateDepartment(d); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := g.DepartmentMove(d.ID, d.Parent); err != nil {
			return model.Change{}, err
		}
		return st.UpdateDepartment(d)
	})
	if err != nil {
		return nil, err
	}
	return &pb.UpdateDepartmentResponse{Department: departmentToProto(st.Departments[d.ID]), Revision: st.Revision}, nil
}

// DeleteDepartment implements pb.AdminServiceServer.
func (s *Admin) DeleteDepartment(ctx context.Context, req *pb.DeleteDepartmentRequest) (*pb.DeleteDepartmentResponse, error) {
	if err := model.ValidateName("department_id", req.GetDepartmentId()); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		return st.DeleteDepartment(req.GetDepartmentId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteDepartmentResponse{Revision: st.Revision}, nil
}

// ListDepartments implements pb.AdminServiceServer.
func (s *Admin) ListDepartments(ctx context.Context, req *pb.ListDepartmentsRequest) (*pb.ListDepartmentsResponse, error) {
	st, _, err := s.read(ctx, req, fnSettings, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListDepartmentsResponse{Revision: st.Revision}
	for _, d := range st.SortedDepartments() {
		out.Departments = append(out.Departments, departmentToProto(d))
	}
	return out, nil
}

// SetMembership implements pb.AdminServiceServer.
func (s *Admin) SetMembership(ctx context.Context, req *pb.SetMembershipRequest) (*pb.SetMembershipResponse, error) {
	if req.GetMembership() == nil {
		return nil, model.Invalid("membership", model.ReasonMissingField, "is required")
	}
	m := membershipFromProto(req.GetMembership())
	if err := model.ValidateMembership(m); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := g.Membership(m.UserID, m.Manager, append([]string{m.Primary}, m.Others...)...); err != nil {
			return model.Change{}, err
		}
		return st.SetMembership(m)
	})
	if err != nil {
		return nil, err
	}
	return &pb.SetMembershipResponse{Membership: membershipToProto(st.Members[m.UserID]), Revision: st.Revision}, nil
}

// DeleteMembership implements pb.AdminServiceServer.
func (s *Admin) DeleteMembership(ctx context.Context, req *pb.DeleteMembershipRequest) (*pb.DeleteMembershipResponse, error) {
	if err := model.ValidateSubjectID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := g.Membership(req.GetUserId(), ""); err != nil {
			return model.Change{}, err
		}
		return st.DeleteMembership(req.GetUserId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteMembershipResponse{Revision: st.Revision}, nil
}

// ListMemberships implements pb.AdminServiceServer.
func (s *Admin) ListMemberships(ctx context.Context, req *pb.ListMembershipsRequest) (*pb.ListMembershipsResponse, error) {
	var match func(model.Membership) bool
	var dept string
	switch f := req.GetFilter().(type) {
	case *pb.ListMembershipsRequest_UserId:
		if err := model.ValidateSubjectID("user_id", f.UserId); err != nil {
			return nil, err
		}
		match = func(m model.Membership) bool { return m.UserID == f.UserId }
	case *pb.ListMembershipsRequest_DepartmentId:
		if err := model.ValidateName("department_id", f.DepartmentId); err != nil {
			return nil, err
		}
		dept = f.DepartmentId
		match = func(m model.Membership) bool { return m.Primary == dept || slices.Contains(m.Others, dept) }
	default:
		return nil, model.Invalid("filter", model.ReasonMissingField, "set user_id or department_id")
	}
	own := func(actor string) bool { return req.GetUserId() != "" && req.GetUserId() == actor }
	st, _, err := s.read(ctx, req, fnSettings, own)
	if err != nil {
		return nil, err
	}
	if _, ok := st.Departments[dept]; dept != "" && !ok {
		return nil, model.DepartmentNotFound(st.ID, dept)
	}
	out := &pb.ListMembershipsResponse{Revision: st.Revision}
	for _, m := range st.SortedMembers() {
		if match(m) {
			out.Memberships = append(out.Memberships, membershipToProto(m))
		}
	}
	return out, nil
}

// UpdateTenantSettings implements pb.AdminServiceServer.
func (s *Admin) UpdateTenantSettings(ctx context.Context, req *pb.UpdateTenantSettingsRequest) (*pb.UpdateTenantSettingsResponse, error) {
	depth := int(req.GetManagerDepth())
	if err := model.ValidateManagerDepth(depth); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := g.ManagerDepth(depth); err != nil {
			return model.Change{}, err
		}
		return st.SetManagerDepth(depth)
	})
	if err != nil {
		return nil, err
	}
	return &pb.UpdateTenantSettingsResponse{ManagerDepth: int32(st.Settings.ManagerDepth), Revision: st.Revision}, nil
}

// SetActionAlias implements pb.AdminServiceServer.
func (s *Admin) SetActionAlias(ctx context.Context, req *pb.SetActionAliasRequest) (*pb.SetActionAliasResponse, error) {
	a := req.GetAlias()
	if a == nil {
		return nil, model.Invalid("alias", model.ReasonMissingField, "is required")
	}
	cat := s.eng.Catalog()
	target, err := model.ValidateActionAlias(cat, "alias.alias", a.GetAlias(), "alias.action", a.GetAction())
	if err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := g.Names("the alias "+a.GetAlias(), target); err != nil {
			return model.Change{}, err
		}
		if err := s.namesBefore(g, st, a.GetAlias()); err != nil {
			return model.Change{}, err
		}
		return st.SetActionAlias(a.GetAlias(), a.GetAction())
	})
	if err != nil {
		return nil, err
	}
	return &pb.SetActionAliasResponse{Revision: st.Revision}, nil
}

// DeleteActionAlias implements pb.AdminServiceServer.
func (s *Admin) DeleteActionAlias(ctx context.Context, req *pb.DeleteActionAliasRequest) (*pb.DeleteActionAliasResponse, error) {
	if req.GetAlias() == "" {
		return nil, model.Invalid("alias", model.ReasonMissingField, "is required")
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSettings); err != nil {
			return model.Change{}, err
		}
		if err := s.namesBefore(g, st, req.GetAlias()); err != nil {
			return model.Change{}, err
		}
		return st.DeleteActionAlias(req.GetAlias())
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteActionAliasResponse{Revision: st.Revision}, nil
}

// namesBefore refuses to repoint or remove an alias standing for what
// the actor does not hold (Guard.Names). An alias whose target the
// catalog no longer has stands for nothing, and anyone may repoint it.
func (s *Admin) namesBefore(g *auth.Guard, st *model.TenantState, alias string) error {
	before, ok := st.Settings.ActionAliases[alias]
	if !ok {
		return nil
	}
	p, err := model.ParseActionTarget(s.eng.Catalog(), "alias.action", before)
	if err != nil {
		return nil //nolint:nilerr // a target the catalog dropped stands for nothing
	}
	return g.Names("changing the alias "+alias, p)
}

// ListActionAliases implements pb.AdminServiceServer.
func (s *Admin) ListActionAliases(ctx context.Context, req *pb.ListActionAliasesRequest) (*pb.ListActionAliasesResponse, error) {
	st, _, err := s.read(ctx, req, fnSettings, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListActionAliasesResponse{Revision: st.Revision}
	for _, name := range slices.Sorted(maps.Keys(st.Settings.ActionAliases)) {
		out.Aliases = append(out.Aliases, &pb.ActionAlias{Alias: name, Action: st.Settings.ActionAliases[name]})
	}
	return out, nil
}

// CreateSharingRule implements pb.AdminServiceServer.
func (s *Admin) CreateSharingRule(ctx context.Context, req *pb.CreateSharingRuleRequest) (*pb.CreateSharingRuleResponse, error) {
	pr := req.GetRule()
	if pr == nil {
		return nil, model.Invalid("rule", model.ReasonMissingField, "is required")
	}
	access, err := recordAccess("rule.access", pr.GetAccess())
	if err != nil {
		return nil, err
	}
	r := model.SharingRule{
		ID: pr.GetRuleId(), Module: pr.GetModule(),
		OwnedBy: principalFromProto(pr.GetOwnedBy()), SharedWith: principalFromProto(pr.GetSharedWith()), Access: access,
	}
	if err := model.ValidateSharingRule(s.eng.Catalog(), r); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSharing); err != nil {
			return model.Change{}, err
		}
		if err := g.SharingRule(r); err != nil {
			return model.Change{}, err
		}
		return st.CreateSharingRule(r)
	})
	if err != nil {
		return nil, err
	}
	return &pb.CreateSharingRuleResponse{Rule: sharingRuleToProto(st.SharingRules[r.ID]), Revision: st.Revision}, nil
}

// DeleteSharingRule implements pb.AdminServiceServer.
func (s *Admin) DeleteSharingRule(ctx context.Context, req *pb.DeleteSharingRuleRequest) (*pb.DeleteSharingRuleResponse, error) {
	if err := model.ValidateName("rule_id", req.GetRuleId()); err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnSharing); err != nil {
			return model.Change{}, err
		}
		if r, ok := st.SharingRules[req.GetRuleId()]; ok {
			if err := g.SharingRule(r); err != nil {
				return model.Change{}, err
			}
		}
		return st.DeleteSharingRule(req.GetRuleId())
	})
	if err != nil {
		return nil, err
	}
	return &pb.DeleteSharingRuleResponse{Revision: st.Revision}, nil
}

// ListSharingRules implements pb.AdminServiceServer.
func (s *Admin) ListSharingRules(ctx context.Context, req *pb.ListSharingRulesRequest) (*pb.ListSharingRulesResponse, error) {
	st, _, err := s.read(ctx, req, fnSharing, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListSharingRulesResponse{Revision: st.Revision}
	for _, r := range st.SortedSharingRules() {
		out.Rules = append(out.Rules, sharingRuleToProto(r))
	}
	return out, nil
}

// ShareRecord implements pb.AdminServiceServer.
func (s *Admin) ShareRecord(ctx context.Context, req *pb.ShareRecordRequest) (*pb.ShareRecordResponse, error) {
	ps := req.GetShare()
	if ps == nil {
		return nil, model.Invalid("share", model.ReasonMissingField, "is required")
	}
	access, err := recordAccess("share.access", ps.GetAccess())
	if err != nil {
		return nil, err
	}
	now := s.now()
	sh := model.RecordShare{
		Module: ps.GetModule(), RecordID: ps.GetRecordId(), Principal: principalFromProto(ps.GetPrincipal()), Access: access,
		SharedAt: now.UTC(),
	}
	if err := model.ValidateRecordShare(s.eng.Catalog(), sh); err != nil {
		return nil, err
	}
	exp, err := expiry("share.expires_at", ps.GetExpiresAt(), now)
	if err != nil {
		return nil, err
	}
	sh.ExpiresAt = exp
	rec, err := sharedRecord(sh.RecordID, req.GetRecordOwnerId(), req.GetRecordDepartmentId())
	if err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := s.mayShare(g, st, sh.Module, rec, sh.Access); err != nil {
			return model.Change{}, err
		}
		sh.SharedBy = g.Actor().ID
		return st.ShareRecord(sh, now)
	})
	if err != nil {
		return nil, err
	}
	return &pb.ShareRecordResponse{Share: recordShareToProto(st.RecordShares[sh.Key()], now), Revision: st.Revision}, nil
}

// UnshareRecord implements pb.AdminServiceServer.
func (s *Admin) UnshareRecord(ctx context.Context, req *pb.UnshareRecordRequest) (*pb.UnshareRecordResponse, error) {
	k := model.ShareKey{Module: req.GetModule(), RecordID: req.GetRecordId(), Principal: principalFromProto(req.GetPrincipal())}
	if err := recordRef(s.eng.Catalog(), k.Module, k.RecordID); err != nil {
		return nil, err
	}
	if err := model.ValidatePrincipal("principal", k.Principal); err != nil {
		return nil, err
	}
	rec, err := sharedRecord(k.RecordID, req.GetRecordOwnerId(), req.GetRecordDepartmentId())
	if err != nil {
		return nil, err
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := s.mayShare(g, st, k.Module, rec, ""); err != nil {
			return model.Change{}, err
		}
		return st.UnshareRecord(k)
	})
	if err != nil {
		return nil, err
	}
	return &pb.UnshareRecordResponse{Revision: st.Revision}, nil
}

// ListRecordShares implements pb.AdminServiceServer.
func (s *Admin) ListRecordShares(ctx context.Context, req *pb.ListRecordSharesRequest) (*pb.ListRecordSharesResponse, error) {
	if err := recordRef(s.eng.Catalog(), req.GetModule(), req.GetRecordId()); err != nil {
		return nil, err
	}
	// Whoever may share the module's records, or manages sharing, may see
	// a record's shares.
	st, g, err := s.read(ctx, req, "", func(string) bool { return true })
	if err != nil {
		return nil, err
	}
	if _, ok := g.Rights().Module(req.GetModule(), verbShare); !ok {
		if err := g.Require(fnSharing); err != nil {
			return nil, err
		}
	}
	now := s.now()
	out := &pb.ListRecordSharesResponse{Revision: st.Revision}
	for _, sh := range st.SortedRecordShares() {
		if sh.Module != req.GetModule() || sh.RecordID != req.GetRecordId() || (!req.GetIncludeExpired() && !sh.ActiveAt(now)) {
			continue
		}
		out.Shares = append(out.Shares, recordShareToProto(sh, now))
	}
	return out, nil
}

// verbShare is the module verb a record share needs.
const verbShare = "share"

// sharedRecord is the record a share names, with the owner and department
// the actor's right to share it is decided on; nil when no owner is given.
func sharedRecord(id, owner, dept string) (*model.Record, error) {
	if owner == "" {
		if dept != "" {
			return nil, model.Invalid("record_owner_id", model.ReasonMissingField, "is required with record_department_id")
		}
		return nil, nil
	}
	rec := &model.Record{ID: id, Owner: owner, Department: dept}
	if err := model.ValidateSubjectID("record_owner_id", owner); err != nil {
		return nil, err
	}
	if dept != "" {
		if err := model.ValidateName("record_department_id", dept); err != nil {
			return nil, err
		}
	}
	return rec, nil
}

// mayShare refuses, unless the actor is super, a record share or unshare
// by an actor who may not use the verb share on the record, and a share
// at an access the actor does not have on it (read, or read and update).
// The record decisions are the engine's, as a record Check would answer.
func (s *Admin) mayShare(g *auth.Guard, st *model.TenantState, module string, rec *model.Record, access model.Access) error {
	if g.Super() {
		return nil
	}
	if rec == nil {
		return model.Invalid("record_owner_id", model.ReasonMissingField, "is required: the right to share a record is decided on its owner")
	}
	verbs := []string{verbShare}
	switch access {
	case model.AccessRead:
		verbs = append(verbs, model.VerbRead)
	case model.AccessReadWrite:
		verbs = append(verbs, model.VerbRead, model.VerbUpdate)
	}
	for _, v := range verbs {
		p := model.Permission{Kind: model.KindModule, Module: module, Verb: v, Record: rec}
		d, err := s.eng.Check(st.ID, g.Actor().ID, p, false)
		if err != nil {
			return err
		}
		if !d.Allowed {
			reason := auth.ReasonEscalation
			if v == verbShare {
				reason = auth.ReasonMissingPermission
			}
			return &auth.DeniedError{Reason: reason, Missing: p.String(), Tenant: st.ID, Actor: g.Actor().ID,
				Message: fmt.Sprintf("user %q may not %s record %s of module %s", g.Actor().ID, v, rec.ID, module)}
		}
	}
	return nil
}

// recordRef validates the module and record id fields of a request naming
// one record.
func recordRef(cat *model.Catalog, module, record string) error {
	if err := cat.CheckModule("module", module); err != nil {
		return err
	}
	return model.ValidateSubjectID("record_id", record)
}

func departmentFromProto(d *pb.Department) model.Department {
	return model.Department{ID: d.GetDepartmentId(), Name: d.GetName(), Parent: d.GetParentId()}
}

func departmentToProto(d model.Department) *pb.Department {
	return &pb.Department{DepartmentId: d.ID, Name: d.Name, ParentId: d.Parent}
}

func membershipFromProto(m *pb.Membership) model.Membership {
	return model.Membership{UserID: m.GetUserId(), Primary: m.GetPrimaryDepartmentId(), Others: m.GetOtherDepartmentIds(), Manager: m.GetManagerId()}
}

func membershipToProto(m model.Membership) *pb.Membership {
	return &pb.Membership{UserId: m.UserID, PrimaryDepartmentId: m.Primary, OtherDepartmentIds: m.Others, ManagerId: m.Manager}
}

// principalFromProto converts a principal from a request; a principal with
// none of its kinds set converts to one without a kind, which
// model.ValidatePrincipal reports as missing.
func principalFromProto(p *pb.Principal) model.Principal {
	var out model.Principal
	switch k := p.GetKind().(type) {
	case *pb.Principal_UserId:
		out = model.Principal{Kind: model.PrincipalUser, ID: k.UserId}
	case *pb.Principal_DepartmentId:
		out = model.Principal{Kind: model.PrincipalDepartment, ID: k.DepartmentId}
	case *pb.Principal_RoleId:
		out = model.Principal{Kind: model.PrincipalRole, ID: k.RoleId}
	}
	out.IncludeSubs = p.GetIncludeSubdepartments()
	return out
}

func principalToProto(p model.Principal) *pb.Principal {
	out := &pb.Principal{IncludeSubdepartments: p.IncludeSubs}
	switch p.Kind {
	case model.PrincipalUser:
		out.Kind = &pb.Principal_UserId{UserId: p.ID}
	case model.PrincipalDepartment:
		out.Kind = &pb.Principal_DepartmentId{DepartmentId: p.ID}
	case model.PrincipalRole:
		out.Kind = &pb.Principal_RoleId{RoleId: p.ID}
	}
	return out
}

// recordAccess converts the access level of a request; it is required.
func recordAccess(field string, a pb.RecordAccess) (model.Access, error) {
	switch a {
	case pb.RecordAccess_RECORD_ACCESS_READ:
		return model.AccessRead, nil
	case pb.RecordAccess_RECORD_ACCESS_READ_WRITE:
		return model.AccessReadWrite, nil
	case pb.RecordAccess_RECORD_ACCESS_UNSPECIFIED:
		return "", model.Invalid(field, model.ReasonMissingField, "is required: RECORD_ACCESS_READ or RECORD_ACCESS_READ_WRITE")
	}
	return "", model.Invalid(field, model.ReasonInvalidValue, fmt.Sprintf("unknown record access %d", a))
}

func recordAccessToProto(a model.Access) pb.RecordAccess {
	switch a {
	case model.AccessRead:
		return pb.RecordAccess_RECORD_ACCESS_READ
	case model.AccessReadWrite:
		return pb.RecordAccess_RECORD_ACCESS_READ_WRITE
	}
	return pb.RecordAccess_RECORD_ACCESS_UNSPECIFIED
}

func sharingRuleToProto(r model.SharingRule) *pb.SharingRule {
	return &pb.SharingRule{
		RuleId: r.ID, Module: r.Module, OwnedBy: principalToProto(r.OwnedBy), SharedWith: principalToProto(r.SharedWith),
		Access: recordAccessToProto(r.Access),
	}
}

func recordShareToProto(sh model.RecordShare, now time.Time) *pb.RecordShare {
	return &pb.RecordShare{
		Module: sh.Module, RecordId: sh.RecordID, Principal: principalToProto(sh.Principal), Access: recordAccessToProto(sh.Access),
		ExpiresAt: timestamp(sh.ExpiresAt), SharedBy: sh.SharedBy, Active: sh.ActiveAt(now),
	}
}
