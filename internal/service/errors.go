package service

import (
	"context"
	"errors"
	"strconv"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"

	"github.com/crmauthz/crmauthz/internal/audit"
	"github.com/crmauthz/crmauthz/internal/auth"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// ErrorDomain is the domain of every google.rpc.ErrorInfo the service sends.
const ErrorDomain = "crmauthz.dev"

// ReasonDatabaseUnavailable is the google.rpc.ErrorInfo reason of an
// UNAVAILABLE answer to a call that could not reach the database or lost
// its connection to it.
const ReasonDatabaseUnavailable = "DATABASE_UNAVAILABLE"

// ReasonTenantLimit is the reason of a RESOURCE_EXHAUSTED answer to a write
// that would take a tenant beyond one of its limits (model.LimitError);
// its metadata names the limit and its value.
const ReasonTenantLimit = "TENANT_LIMIT"

// ToStatus maps an error from a handler to the gRPC status sent to the
// caller. Domain errors become canonical codes with a google.rpc.ErrorInfo
// reason (and for bad input a google.rpc.BadRequest naming the field);
// anything else becomes INTERNAL with no detail, and internal reports true
// so the caller logs the cause.
func ToStatus(err error) (st *status.Status, internal bool) {
	if s, ok := status.FromError(err); ok {
		return s, false
	}
	var (
		inv      *model.InvalidError
		notFound *model.NotFoundError
		conflict *model.ConflictError
		limit    *model.LimitError
		denied   *auth.DeniedError
		unauth   *auth.UnauthenticatedError
	)
	switch {
	case errors.As(err, &unauth):
		return withDetails(codes.Unauthenticated, unauth.Message, unauth.Reason, nil), false
	case errors.As(err, &denied):
		var meta map[string]string
		if denied.Missing != "" {
			meta = map[string]string{"missing": denied.Missing}
		}
		return withDetails(codes.PermissionDenied, denied.Message, denied.Reason, meta), false
	case errors.As(err, &inv):
		return withDetails(codes.InvalidArgument, inv.Error(), inv.Reason, map[string]string{"field": inv.Field},
			&errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: inv.Field, Description: inv.Message, Reason: inv.Reason}}}), false
	case errors.As(err, &notFound):
		return withDetails(codes.NotFound, notFound.Error(), notFound.Reason, nil), false
	case errors.As(err, &limit):
		return withDetails(codes.ResourceExhausted, limit.Error(), ReasonTenantLimit,
			map[string]string{"limit": limit.What, "max": strconv.Itoa(limit.Max)}), false
	case errors.As(err, &conflict):
		code := codes.FailedPrecondition
		if conflict.Exists {
			code = codes.AlreadyExists
		}
		return withDetails(code, conflict.Error(), conflict.Reason, nil), false
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request cancelled"), false
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded"), false
	case errors.Is(err, store.ErrUnavailable):
		// The database could not be reached or the connection to it was
		// lost (a restart, a failover, a terminated backend): the same call
		// may succeed when retried, here or on another replica. pgx logs
		// the failed query with its cause.
		return withDetails(codes.Unavailable, "the database is unavailable; retry", ReasonDatabaseUnavailable, nil), false
	case errors.Is(err, store.ErrClosed), errors.Is(err, audit.ErrClosed):
		// Only calls cut off by a shutdown meet a closed store or log; the
		// caller should retry on another replica.
		return status.New(codes.Unavailable, "the server is shutting down"), false
	}
	return status.New(codes.Internal, "internal error"), true
}

func withDetails(code codes.Code, msg, reason string, meta map[string]string, more ...*errdetails.BadRequest) *status.Status {
	st := status.New(code, msg)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: reason, Domain: ErrorDomain, Metadata: meta}}
	for _, m := range more {
		details = append(details, m)
	}
	if withInfo, err := st.WithDetails(details...); err == nil {
		return withInfo
	}
	return st
}
