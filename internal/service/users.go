package service

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	pb "github.com/crmauthz/crmauthz/proto/crmauthz/v1"
)

// This file holds the AdminService handlers of a tenant's users: who the
// service knows, where they sit, and whether they are active.

// UpsertUser implements pb.AdminServiceServer.
func (s *Admin) UpsertUser(ctx context.Context, req *pb.UpsertUserRequest) (*pb.UpsertUserResponse, error) {
	pu := req.GetUser()
	if pu == nil {
		return nil, model.Invalid("user", model.ReasonMissingField, "is required")
	}
	u := model.User{ID: pu.GetUserId(), Name: pu.GetDisplayName()}
	switch pu.GetStatus() {
	case pb.UserStatus_USER_STATUS_ACTIVE:
		u.Status = model.UserActive
	case pb.UserStatus_USER_STATUS_INACTIVE:
		u.Status = model.UserInactive
	case pb.UserStatus_USER_STATUS_UNSPECIFIED:
	default:
		return nil, model.Invalid("user.status", model.ReasonInvalidValue, fmt.Sprintf("unknown user status %d", pu.GetStatus()))
	}
	if err := model.ValidateUser(u); err != nil {
		return nil, err
	}
	var m *model.Membership
	if pu.GetPrimaryDepartmentId() != "" {
		m = &model.Membership{UserID: u.ID, Primary: pu.GetPrimaryDepartmentId(), Others: pu.GetOtherDepartmentIds(), Manager: pu.GetManagerId()}
		if err := model.ValidateMembership(*m); err != nil {
			return nil, fieldsUnder("user", err)
		}
	} else if len(pu.GetOtherDepartmentIds()) > 0 || pu.GetManagerId() != "" {
		return nil, model.Invalid("user.primary_department_id", model.ReasonMissingField, "is required with other departments or a manager")
	}
	st, err := s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		before := st.Record(u.ID)
		if before == nil || !reflect.DeepEqual(before.Membership, m) {
			var depts []string
			manager := ""
			if m != nil {
				depts, manager = append([]string{m.Primary}, m.Others...), m.Manager
			}
			if err := g.Membership(u.ID, manager, depts...); err != nil {
				return model.Change{}, err
			}
		}
		if before != nil && u.Status != "" && u.Status != before.Status {
			if err := g.WithinUser(fmt.Sprintf("changing the status of user %q", u.ID), u.ID); err != nil {
				return model.Change{}, err
			}
		}
		c, err := st.UpsertUserRecord(u, m)
		return c, fieldsUnder("user", err)
	})
	if err != nil {
		return nil, err
	}
	return &pb.UpsertUserResponse{User: userToProto(st, u.ID), Revision: st.Revision}, nil
}

// fieldsUnder moves a membership validation error's field under the user
// message: membership.x becomes user.x.
func fieldsUnder(prefix string, err error) error {
	var inv *model.InvalidError
	if !errors.As(err, &inv) {
		return err
	}
	out := *inv
	if rest, ok := strings.CutPrefix(inv.Field, "membership."); ok {
		out.Field = prefix + "." + rest
	}
	return &out
}

// GetUser implements pb.AdminServiceServer.
func (s *Admin) GetUser(ctx context.Context, req *pb.GetUserRequest) (*pb.GetUserResponse, error) {
	if err := model.ValidateSubjectID("user_id", req.GetUserId()); err != nil {
		return nil, err
	}
	self := func(actor string) bool { return actor == req.GetUserId() }
	st, _, err := s.read(ctx, req, fnUsers, self)
	if err != nil {
		return nil, err
	}
	if !st.KnowsUser(req.GetUserId()) {
		return nil, model.UserNotFound(st.ID, req.GetUserId())
	}
	return &pb.GetUserResponse{User: userToProto(st, req.GetUserId()), Revision: st.Revision}, nil
}

// ListUsers implements pb.AdminServiceServer.
func (s *Admin) ListUsers(ctx context.Context, req *pb.ListUsersRequest) (*pb.ListUsersResponse, error) {
	var status model.UserStatus
	switch req.GetStatus() {
	case pb.UserStatus_USER_STATUS_UNSPECIFIED:
	case pb.UserStatus_USER_STATUS_ACTIVE:
		status = model.UserActive
	case pb.UserStatus_USER_STATUS_INACTIVE:
		status = model.UserInactive
	default:
		return nil, model.Invalid("status", model.ReasonInvalidValue, fmt.Sprintf("unknown user status %d", req.GetStatus()))
	}
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, err
	}
	after, err := decodeUserToken(req.GetPageToken())
	if err != nil {
		return nil, err
	}
	st, _, err := s.read(ctx, req, fnUsers, nil)
	if err != nil {
		return nil, err
	}
	out := &pb.ListUsersResponse{Revision: st.Revision}
	for _, u := range st.SortedUsers() {
		if u.ID <= after || (status != "" && u.Status != status) {
			continue
		}
		if len(out.Users) == size {
			out.NextPageToken = encodeToken(usersToken, out.Users[size-1].GetUserId())
			break
		}
		out.Users = append(out.Users, userToProto(st, u.ID))
	}
	return out, nil
}

// DeactivateUser implements pb.AdminServiceServer.
func (s *Admin) DeactivateUser(ctx context.Context, req *pb.DeactivateUserRequest) (*pb.DeactivateUserResponse, error) {
	st, err := s.setUserStatus(ctx, req, req.GetUserId(), model.UserInactive)
	if err != nil {
		return nil, err
	}
	return &pb.DeactivateUserResponse{User: userToProto(st, req.GetUserId()), Revision: st.Revision}, nil
}

// ReactivateUser implements pb.AdminServiceServer.
func (s *Admin) ReactivateUser(ctx context.Context, req *pb.ReactivateUserRequest) (*pb.ReactivateUserResponse, error) {
	st, err := s.setUserStatus(ctx, req, req.GetUserId(), model.UserActive)
	if err != nil {
		return nil, err
	}
	return &pb.ReactivateUserResponse{User: userToProto(st, req.GetUserId()), Revision: st.Revision}, nil
}

// setUserStatus offboards or brings back a user: admin.users.manage, and,
// without admin.super, only a user whose rights lie within the actor's.
func (s *Admin) setUserStatus(ctx context.Context, req writeRequest, user string, status model.UserStatus) (*model.TenantState, error) {
	if err := model.ValidateSubjectID("user_id", user); err != nil {
		return nil, err
	}
	return s.write(ctx, req, func(g *auth.Guard, st *model.TenantState) (model.Change, error) {
		if err := g.Require(fnUsers); err != nil {
			return model.Change{}, err
		}
		if !st.KnowsUser(user) {
			return model.Change{}, model.UserNotFound(st.ID, user)
		}
		if err := g.WithinUser(fmt.Sprintf("changing the status of user %q", user), user); err != nil {
			return model.Change{}, err
		}
		return st.SetUserStatus(user, status)
	})
}

func userToProto(st *model.TenantState, id string) *pb.User {
	u := st.Users[id]
	out := &pb.User{UserId: u.ID, DisplayName: u.Name, Status: userStatusToProto(u.Status)}
	if m, ok := st.Members[id]; ok {
		out.PrimaryDepartmentId, out.OtherDepartmentIds, out.ManagerId = m.Primary, m.Others, m.Manager
	}
	return out
}

func userStatusToProto(s model.UserStatus) pb.UserStatus {
	if s == model.UserInactive {
		return pb.UserStatus_USER_STATUS_INACTIVE
	}
	return pb.UserStatus_USER_STATUS_ACTIVE
}
