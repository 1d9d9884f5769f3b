package app_test

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/test/bufconn"

	"github.com/crmauthz/crmauthz/internal/app"
)

// TestRunStoppedBeforeStart: Run with its context already ended (a stop
// requested between New and Run) returns cleanly, on PostgreSQL too, where
// starting the decision log needs the database, and closes the store.
func TestRunStoppedBeforeStart(t *testing.T) {
	cfg := pgConfig(t)
	ignore := goleak.IgnoreCurrent()
	a, err := app.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx, bufconn.Listen(1<<20)); err != nil {
		t.Fatalf("run stopped before it started: %v, want a clean stop", err)
	}
	goleak.VerifyNone(t, ignore)
}

// TestCloseWithoutRun: an App that is never run (the listener could not be
// opened) is released by Close; Close after Run, or twice, does nothing.
func TestCloseWithoutRun(t *testing.T) {
	cfg := pgConfig(t)
	ignore := goleak.IgnoreCurrent()
	a, err := app.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	a.Close()
	a.Close()
	goleak.VerifyNone(t, ignore)

	b, err := app.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Run(ctx, bufconn.Listen(1<<20)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	goleak.VerifyNone(t, ignore)
}

// failingListener is a bufconn listener whose Accept fails once fail is
// closed.
type failingListener struct {
	*bufconn.Listener
	fail chan struct{}
}

func (l *failingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	select {
	case <-l.fail:
		if c != nil {
			_ = c.Close()
		}
		return nil, errors.New("accept failed")
	default:
		return c, err
	}
}

// TestServeFailureStopsServer: when serving fails (Accept fails), Run
// returns the error having stopped the server: the connections already
// open are not served any more by a process whose store is closed.
func TestServeFailureStopsServer(t *testing.T) {
	cfg := cfgDefault()
	ignore := goleak.IgnoreCurrent()
	a, err := app.New(context.Background(), cfg, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	lis := &failingListener{Listener: bufconn.Listen(1 << 20), fail: make(chan struct{})}
	done := make(chan error, 1)
	go func() { done <- a.Run(context.Background(), lis) }()
	conn, err := grpc.NewClient("passthrough:///authzd",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = conn.Close() }()
	waitServing(t, conn)

	close(lis.fail)
	if c, err := lis.Dial(); err == nil { // wakes Accept, which fails
		defer func() { _ = c.Close() }()
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("run: nil after a failed Accept")
		}
	case <-time.After(20 * time.Second):
		t.Fatal("run did not return after a failed Accept")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err == nil {
		t.Fatalf("served after Run returned: %v", resp)
	}
	_ = conn.Close()
	goleak.VerifyNone(t, ignore)
}
