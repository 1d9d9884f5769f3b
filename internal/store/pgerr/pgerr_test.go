package pgerr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// connectError returns the error of a real connection attempt to a port
// nothing listens on.
func connectError(t *testing.T) error {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().(*net.TCPAddr)
	_ = lis.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable&connect_timeout=5", addr.Port))
	if err == nil {
		_ = conn.Close(ctx)
		t.Skip("something answered on a port just freed")
	}
	return err
}

func TestUnavailable(t *testing.T) {
	pg := func(code string) error {
		return &pgconn.PgError{Severity: "FATAL", Code: code, Message: "connection lost"}
	}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"admin shutdown (pg_terminate_backend)", fmt.Errorf("load tenant %q: %w", "acme", pg("57P01")), true},
		{"crash shutdown", pg("57P02"), true},
		{"cannot connect now", pg("57P03"), true},
		{"connection exception", pg("08000"), true},
		{"connection failure", pg("08006"), true},
		{"connection does not exist", pg("08003"), true},
		{"client unable to establish", pg("08001"), true},
		{"protocol violation", pg("08P01"), true},
		{"query cancelled", pg("57014"), false},
		{"unique violation", pg("23505"), false},
		{"serialization failure", pg("40001"), false},
		{"undefined table", pg("42P01"), false},
		{"connect error", connectError(t), true},
		{"dropped in a message", fmt.Errorf("read decisions: %w", io.ErrUnexpectedEOF), true},
		{"closed connection", fmt.Errorf("query: %w", pgconn.ErrConnClosed), true},
		{"closed socket", &net.OpError{Op: "write", Net: "tcp", Err: net.ErrClosed}, true},
		{"reset", fmt.Errorf("query: %w", &net.OpError{Op: "read", Net: "tcp", Err: syscall.ECONNRESET}), true},
		{"cancelled", fmt.Errorf("query: %w", context.Canceled), false},
		{"deadline", fmt.Errorf("query: %w", context.DeadlineExceeded), false},
		{"cancelled while the connection broke", errors.Join(context.Canceled, io.ErrUnexpectedEOF), false},
		{"message text is not read", errors.New("dial tcp 127.0.0.1:5432: connect: connection refused"), false},
		{"plain EOF", io.EOF, false},
		{"domain error", model.TenantNotFound("acme"), false},
		{"store closed", store.ErrClosed, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unavailable(tt.err); got != tt.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
			wrapped := Wrap(tt.err)
			if errors.Is(wrapped, store.ErrUnavailable) != tt.want {
				t.Fatalf("Wrap(%v) = %v: matches ErrUnavailable %v, want %v", tt.err, wrapped, !tt.want, tt.want)
			}
			if !tt.want && wrapped != tt.err { //nolint:errorlint // Wrap must return any other error itself
				t.Fatalf("Wrap changed %v into %v", tt.err, wrapped)
			}
			if tt.err != nil && !errors.Is(wrapped, tt.err) {
				t.Fatalf("Wrap(%v) = %v lost its cause", tt.err, wrapped)
			}
		})
	}
}

func TestWrapKeepsTheCause(t *testing.T) {
	cause := fmt.Errorf("load tenant %q: %w", "acme", &pgconn.PgError{Severity: "FATAL", Code: "57P01"})
	err := Wrap(cause)
	var pgErr *pgconn.PgError
	if !errors.Is(err, store.ErrUnavailable) || !errors.As(err, &pgErr) || pgErr.Code != "57P01" {
		t.Fatalf("Wrap(%v) = %v", cause, err)
	}
	if again := Wrap(err); strings.Count(again.Error(), store.ErrUnavailable.Error()) != 1 {
		t.Errorf("wrapped twice: %v", again)
	}
	if Wrap(nil) != nil {
		t.Error("Wrap(nil) is not nil")
	}
}
