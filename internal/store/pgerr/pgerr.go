// Package pgerr classifies the errors of pgx and PostgreSQL that the
// packages talking to the database share (store/postgres and the audit
// log): by SQLSTATE and by error type, never by message text.
package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crmauthz/crmauthz/internal/store"
)

// SQLSTATEs of a lost or refused connection besides class 08 (connection
// exception).
const (
	sqlstateAdminShutdown = "57P01" // pg_terminate_backend, a fast or smart shutdown
	sqlstateCrashShutdown = "57P02" // another backend crashed: the server restarts
	sqlstateCannotConnect = "57P03" // the server is starting or shutting down
	sqlstateClassConnLost = "08"    // connection_exception and its subclasses
)

// Unavailable reports whether err means that the database could not be
// reached or the connection to it was lost, so the call may succeed when
// retried: SQLSTATE class 08 and 57P01-57P03, a failed connection attempt
// (pgconn.ConnectError), an error pgx raised before it sent anything
// (pgconn.SafeToRetry), a closed connection, a network error, or a
// connection that ended in the middle of a message (io.ErrUnexpectedEOF).
// A call that ended with its own context is not: its cancellation or
// deadline says more.
func Unavailable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return false
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code {
		case sqlstateAdminShutdown, sqlstateCrashShutdown, sqlstateCannotConnect:
			return true
		}
		return strings.HasPrefix(pgErr.Code, sqlstateClassConnLost)
	}
	var netErr net.Error
	return pgconn.SafeToRetry(err) || errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &netErr)
}

// Wrap returns err so that it also matches store.ErrUnavailable when
// Unavailable(err), keeping err wrapped for errors.Is and errors.As; any
// other error, and nil, it returns as is.
func Wrap(err error) error {
	if !Unavailable(err) || errors.Is(err, store.ErrUnavailable) {
		return err
	}
	return fmt.Errorf("%w: %w", store.ErrUnavailable, err)
}
