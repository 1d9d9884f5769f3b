package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
	"github.com/crmauthz/crmauthz/internal/store/pgerr"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		code     codes.Code
		reason   string
		field    string
		internal bool
	}{
		{"invalid", fmt.Errorf("items[2]: %w", model.Invalid("items[2].subject_id", model.ReasonInvalidIdentifier, "must not be empty")),
			codes.InvalidArgument, model.ReasonInvalidIdentifier, "items[2].subject_id", false},
		{"tenant not found", model.TenantNotFound("acme"), codes.NotFound, model.ReasonTenantNotFound, "", false},
		{"role not found", fmt.Errorf("update: %w", model.RoleNotFound("acme", "x")), codes.NotFound, model.ReasonRoleNotFound, "", false},
		{"exists", &model.ConflictError{Reason: model.ReasonRoleExists, Message: "role exists", Exists: true}, codes.AlreadyExists, model.ReasonRoleExists, "", false},
		{"precondition", &model.ConflictError{Reason: model.ReasonRoleInUse, Message: "role in use"}, codes.FailedPrecondition, model.ReasonRoleInUse, "", false},
		{"cancelled", fmt.Errorf("load tenant %q: %w", "acme", context.Canceled), codes.Canceled, "", "", false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), codes.DeadlineExceeded, "", "", false},
		{"status passes", status.Error(codes.Unavailable, "policy is still loading"), codes.Unavailable, "", "", false},
		{"store closed", fmt.Errorf("write tenant %q: %w", "acme", store.ErrClosed), codes.Unavailable, "", "", false},
		{"decision log closed", fmt.Errorf("record: %w", audit.ErrClosed), codes.Unavailable, "", "", false},
		{"denied", fmt.Errorf("write: %w", &auth.DeniedError{Reason: auth.ReasonEscalation, Missing: "function admin.super", Message: "no"}),
			codes.PermissionDenied, auth.ReasonEscalation, "", false},
		{"unauthenticated", &auth.UnauthenticatedError{Reason: "INVALID_CREDENTIAL", Message: "invalid credential"}, codes.Unauthenticated, "INVALID_CREDENTIAL", "", false},
		{"database unavailable", fmt.Errorf("load tenant %q: %w", "acme", pgerr.Wrap(&pgconn.PgError{Severity: "FATAL", Code: "57P01"})),
			codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"database connection lost", pgerr.Wrap(fmt.Errorf("read decisions: %w", io.ErrUnexpectedEOF)), codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"database connection closed", pgerr.Wrap(fmt.Errorf("list tenants: %w", pgconn.ErrConnClosed)), codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"database refuses connections", pgerr.Wrap(&pgconn.PgError{Severity: "FATAL", Code: "57P03"}), codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"database connection exception", pgerr.Wrap(&pgconn.PgError{Severity: "FATAL", Code: "08006"}), codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"sentinel", store.ErrUnavailable, codes.Unavailable, ReasonDatabaseUnavailable, "", false},
		{"cancelled while the database went away", pgerr.Wrap(errors.Join(context.Canceled, io.ErrUnexpectedEOF)), codes.Canceled, "", "", false},
		{"other database error", pgerr.Wrap(fmt.Errorf("write tenant %q: %w", "acme", &pgconn.PgError{Code: "23505"})), codes.Internal, "", "", true},
		{"internal", errors.New("dial tcp 10.0.0.7:5432: connection refused"), codes.Internal, "", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, internal := ToStatus(tt.err)
			if st.Code() != tt.code || internal != tt.internal {
				t.Fatalf("ToStatus(%v) = %v internal=%v, want %v internal=%v", tt.err, st.Code(), internal, tt.code, tt.internal)
			}
			var reason, field string
			for _, d := range st.Details() {
				if info, ok := d.(*errdetails.ErrorInfo); ok {
					reason, field = info.GetReason(), info.GetMetadata()["field"]
					if info.GetDomain() != ErrorDomain {
						t.Errorf("domain %q", info.GetDomain())
					}
				}
			}
			if reason != tt.reason || field != tt.field {
				t.Errorf("reason %q field %q, want %q %q", reason, field, tt.reason, tt.field)
			}
			if internal && st.Message() != "internal error" {
				t.Errorf("internal cause sent: %q", st.Message())
			}
			if tt.reason == ReasonDatabaseUnavailable && st.Message() != "the database is unavailable; retry" {
				t.Errorf("database cause sent: %q", st.Message())
			}
		})
	}
}
