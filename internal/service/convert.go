package service

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/crmauthz/crmauthz/internal/engine"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// permission converts and validates a requested permission; prefix is its
// request path.
func permission(cat *model.Catalog, p *pb.Permission, prefix string) (model.Permission, error) {
	var mp model.Permission
	switch k := p.GetKind().(type) {
	case *pb.Permission_Module:
		mp = model.ModulePerm(k.Module.GetModule(), k.Module.GetVerb())
		mp.Record = record(k.Module.GetRecord())
	case *pb.Permission_Function:
		mp = model.FunctionPerm(k.Function.GetFunction())
	case *pb.Permission_Field:
		switch k.Field.GetAccess() {
		case pb.FieldAccessMode_FIELD_ACCESS_MODE_UNSPECIFIED, pb.FieldAccessMode_FIELD_ACCESS_MODE_READ, pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE:
		default:
			return mp, model.Invalid(prefix+".field.access", model.ReasonInvalidValue, "unknown access mode")
		}
		mp = model.FieldPerm(k.Field.GetModule(), k.Field.GetField(), k.Field.GetAccess() == pb.FieldAccessMode_FIELD_ACCESS_MODE_WRITE)
	default:
		return mp, model.Invalid(prefix, model.ReasonMissingField, "is required: set one of module, function or field")
	}
	return mp, mp.Validate(cat, prefix)
}

// record converts a record from a request; Record.Validate checks it.
func record(r *pb.Record) *model.Record {
	if r == nil {
		return nil
	}
	return &model.Record{ID: r.GetId(), Owner: r.GetOwnerId(), Department: r.GetDepartmentId()}
}

var scopes = map[model.Scope]pb.DataScope{
	model.ScopeNone:     pb.DataScope_DATA_SCOPE_NONE,
	model.ScopeSelf:     pb.DataScope_DATA_SCOPE_SELF,
	model.ScopeDept:     pb.DataScope_DATA_SCOPE_DEPT,
	model.ScopeDeptTree: pb.DataScope_DATA_SCOPE_DEPT_TREE,
	model.ScopeOrg:      pb.DataScope_DATA_SCOPE_ORG,
}

// scopeFromProto converts a scope; unknown values become an invalid scope
// that Permissions.Validate reports.
func scopeFromProto(s pb.DataScope) model.Scope {
	if s == pb.DataScope_DATA_SCOPE_UNSPECIFIED {
		return ""
	}
	for m, p := range scopes {
		if p == s {
			return m
		}
	}
	return model.Scope(s.String())
}

func scopeToProto(s model.Scope) pb.DataScope {
	if s == "" {
		return pb.DataScope_DATA_SCOPE_ORG
	}
	return scopes[s]
}

// subject validates the tenant and subject of a read request.
func subject(tenantField, tenant, subjectField, subject string) error {
	if err := model.ValidateTenantID(tenantField, tenant); err != nil {
		return err
	}
	return model.ValidateSubjectID(subjectField, subject)
}

var reasonKinds = map[engine.ReasonKind]pb.ReasonKind{
	engine.AllowedByRole:       pb.ReasonKind_REASON_KIND_ALLOWED_BY_ROLE,
	engine.DeniedByRole:        pb.ReasonKind_REASON_KIND_DENIED_BY_ROLE,
	engine.NotGranted:          pb.ReasonKind_REASON_KIND_NOT_GRANTED,
	engine.ModuleAccessMissing: pb.ReasonKind_REASON_KIND_MODULE_ACCESS_MISSING,
	engine.GrantExpired:        pb.ReasonKind_REASON_KIND_GRANT_EXPIRED,
	engine.InScope:             pb.ReasonKind_REASON_KIND_IN_SCOPE,
	engine.Manager:             pb.ReasonKind_REASON_KIND_MANAGER,
	engine.SharingRule:         pb.ReasonKind_REASON_KIND_SHARING_RULE,
	engine.RecordShare:         pb.ReasonKind_REASON_KIND_RECORD_SHARE,
	engine.OutOfScope:          pb.ReasonKind_REASON_KIND_OUT_OF_SCOPE,
	engine.UserInactive:        pb.ReasonKind_REASON_KIND_USER_INACTIVE,
}

func reasonsToProto(rs []engine.Reason) []*pb.Reason {
	if len(rs) == 0 {
		return nil
	}
	out := make([]*pb.Reason, len(rs))
	for i, r := range rs {
		out[i] = &pb.Reason{Kind: reasonKinds[r.Kind], RoleId: r.Role, Rule: r.Rule, Message: r.Message, GrantExpiresAt: timestamp(r.ExpiresAt)}
	}
	return out
}

func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

var fieldStates = map[model.FieldState]pb.FieldState{
	model.FieldHidden:    pb.FieldState_FIELD_STATE_HIDDEN,
	model.FieldReadOnly:  pb.FieldState_FIELD_STATE_READ_ONLY,
	model.FieldReadWrite: pb.FieldState_FIELD_STATE_READ_WRITE,
}

func roleToProto(r model.Role) *pb.Role {
	p := r.Permissions
	out := &pb.Role{
		RoleId: r.ID, DisplayName: r.DisplayName, Description: r.Description, TemplateId: r.Template, Inherits: r.Inherits,
		RequestPolicy: requestPolicyToProto(r.Request),
		Permissions: &pb.RolePermissions{
			Modules: moduleGrantsToProto(p.Modules, true), Functions: p.Functions,
			DenyModules: moduleGrantsToProto(p.DenyModules, false), DenyFunctions: p.DenyFunctions,
		},
	}
	for _, f := range p.Fields {
		out.Permissions.Fields = append(out.Permissions.Fields, &pb.FieldRule{Module: f.Module, Field: f.Field, State: fieldStates[f.State]})
	}
	return out
}

// moduleGrantsToProto converts module grants; scoped grants carry their
// scope (org when unset), denies none.
func moduleGrantsToProto(gs []model.ModuleGrant, scoped bool) []*pb.ModuleVerbs {
	out := make([]*pb.ModuleVerbs, len(gs))
	for i, g := range gs {
		out[i] = &pb.ModuleVerbs{Module: g.Module, Verbs: g.Verbs}
		if scoped {
			out[i].Scope = scopeToProto(g.Scope)
		}
	}
	return out
}

// rolePermissions converts permissions from a request; Permissions.Validate
// checks them afterwards.
func rolePermissions(p *pb.RolePermissions) model.Permissions {
	out := model.Permissions{
		Modules: moduleGrants(p.GetModules()), Functions: p.GetFunctions(),
		DenyModules: moduleGrants(p.GetDenyModules()), DenyFunctions: p.GetDenyFunctions(),
	}
	for _, f := range p.GetFields() {
		var state model.FieldState
		for s, ps := range fieldStates {
			if ps == f.GetState() {
				state = s
			}
		}
		out.Fields = append(out.Fields, model.FieldRule{Module: f.GetModule(), Field: f.GetField(), State: state})
	}
	return out
}

func moduleGrants(ms []*pb.ModuleVerbs) []model.ModuleGrant {
	var out []model.ModuleGrant
	for _, m := range ms {
		out = append(out, model.ModuleGrant{Module: m.GetModule(), Verbs: m.GetVerbs(), Scope: scopeFromProto(m.GetScope())})
	}
	return out
}

// grantToProto converts a grant of st: in force when not expired and its
// user active.
func grantToProto(st *model.TenantState, g model.Grant, now time.Time) *pb.Grant {
	inactive := st.Inactive(g.UserID)
	status := pb.UserStatus_USER_STATUS_ACTIVE
	if inactive {
		status = pb.UserStatus_USER_STATUS_INACTIVE
	}
	return &pb.Grant{
		UserId: g.UserID, RoleId: g.RoleID, ExpiresAt: timestamp(g.ExpiresAt),
		GrantedBy: g.GrantedBy, GrantedAt: timestamp(g.GrantedAt), Active: g.ActiveAt(now) && !inactive, UserStatus: status,
	}
}

// pageSize validates a page size: 0 means the default.
func pageSize(n int32) (int, error) {
	const def, maxSize = 100, 1000
	switch {
	case n == 0:
		return def, nil
	case n < 0 || n > maxSize:
		return 0, model.Invalid("page_size", model.ReasonInvalidValue, "must be between 1 and 1000")
	}
	return int(n), nil
}

// expiry reads an optional expiry: unset means never. A set time must be
// valid and lie after now; that also refuses the zero time (year 1), which
// would otherwise read as never expiring.
func expiry(field string, ts *timestamppb.Timestamp, now time.Time) (time.Time, error) {
	if ts == nil {
		return time.Time{}, nil
	}
	if err := ts.CheckValid(); err != nil {
		return time.Time{}, model.Invalid(field, model.ReasonInvalidValue, err.Error())
	}
	t := ts.AsTime().UTC()
	if !t.After(now) {
		return time.Time{}, model.Invalid(field, model.ReasonExpiryInPast, fmt.Sprintf("must lie in the future, got %s", t.Format(time.RFC3339Nano)))
	}
	return t, nil
}
