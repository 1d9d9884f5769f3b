package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/crmauthz/crmauthz/internal/auth"
)

// database returns the URL of the load database of n tenants, making it
// first when it does not exist: created, migrated and filled by authzgen
// (which skips the tenants it finds, so an interrupted fill resumes).
func database(ctx context.Context, c config, n int, progress io.Writer) (string, error) {
	name := fmt.Sprintf("%s_%d", c.prefix, n)
	conn, err := pgx.Connect(ctx, c.databaseURL)
	if err != nil {
		return "", fmt.Errorf("connect to %s (PostgreSQL is needed; see README): %w", redact(c.databaseURL), err)
	}
	defer func() { _ = conn.Close(context.Background()) }()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return "", err
	}
	if !exists {
		if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
			return "", fmt.Errorf("create database %s: %w", name, err)
		}
	}
	dbURL, err := withDatabase(c.databaseURL, name)
	if err != nil {
		return "", err
	}
	if err := runTool(ctx, progress, filepath.Join(c.bin, "authzd"), "migrate", "--database-url", dbURL, "--log-level", "warn"); err != nil {
		return "", err
	}
	_, _ = fmt.Fprintf(progress, "authzload: %s: generating %d tenants of %d users (skipped when present)\n", name, n, c.users)
	err = runTool(ctx, progress, filepath.Join(c.bin, "authzgen"), "--database-url", dbURL,
		"--tenants", strconv.Itoa(n), "--users", strconv.Itoa(c.users), "--prefix", "load")
	return dbURL, err
}

// withDatabase returns the URL u naming database name instead.
func withDatabase(u, name string) (string, error) {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "postgres" && p.Scheme != "postgresql") {
		return "", fmt.Errorf("--database-url must be a postgres:// URL, got %q", redact(u))
	}
	p.Path = "/" + name
	return p.String(), nil
}

func redact(u string) string {
	if p, err := url.Parse(u); err == nil {
		return p.Redacted()
	}
	return "(unparsable URL)"
}

// runTool runs a tool to its end, its output going to progress.
func runTool(ctx context.Context, progress io.Writer, name string, args ...string) error {
	cmd := exec.CommandContext(ctx, name, args...) //nolint:gosec // authzd or authzgen from --bin, the operator's own
	cmd.Stdout, cmd.Stderr = progress, progress
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w", filepath.Base(name), args[0], err)
	}
	return nil
}

// platformKey creates a key of the platform scope in the database and
// returns it (authzd keys create prints it alone on its last line).
func platformKey(ctx context.Context, c config, dbURL string) (string, error) {
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, filepath.Join(c.bin, "authzd"), "keys", "create", "--database-url", dbURL, //nolint:gosec // authzd from --bin
		"--name", "authzload "+time.Now().UTC().Format(time.RFC3339), "--scopes", "check,admin,platform", "--expires", "24h")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("authzd keys create: %w: %s", err, out.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	return strings.TrimSpace(lines[len(lines)-1]), nil
}

// server is a process serving gRPC on addr.
type server struct {
	cmd  *exec.Cmd
	addr string
	done chan struct{} // closed when the process has exited, with err set
	err  error
}

// wait waits for the process in the background.
func (s *server) wait(after func()) {
	s.done = make(chan struct{})
	go func() {
		s.err = s.cmd.Wait()
		if after != nil {
			after()
		}
		close(s.done)
	}()
}

// startAuthzd starts authzd on the database with its defaults, on a free
// loopback port, and returns once it reports SERVING, with the time that
// took.
func startAuthzd(ctx context.Context, c config, dbURL, key, logFile string) (*server, time.Duration, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, 0, err
	}
	spool, err := os.MkdirTemp("", "authzload-spool-")
	if err != nil {
		return nil, 0, err
	}
	log, err := os.Create(logFile) //nolint:gosec // a file in the temporary directory
	if err != nil {
		return nil, 0, err
	}
	began := time.Now()
	cmd := exec.Command(filepath.Join(c.bin, "authzd"), "serve", "--database-url", dbURL, "--listen-addr", addr, //nolint:gosec // authzd from --bin
		"--seed-demo=false", "--decision-spool-dir", spool)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		_ = log.Close()
		_ = os.RemoveAll(spool)
		return nil, 0, err
	}
	s := &server{cmd: cmd, addr: addr}
	s.wait(func() {
		_ = log.Close()
		_ = os.RemoveAll(spool)
	})
	if err := s.waitServing(ctx, key, 5*time.Minute); err != nil {
		s.stop()
		return nil, 0, fmt.Errorf("authzd did not start (its log: %s): %w", logFile, err)
	}
	return s, time.Since(began), nil
}

// startNoop starts authzload's own no-op server.
func startNoop() (*server, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "noop") //nolint:gosec // authzload itself
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("the no-op server printed no address: %w", err)
	}
	s := &server{cmd: cmd, addr: strings.TrimSpace(line)}
	s.wait(nil)
	return s, nil
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	return addr, l.Close()
}

// waitServing polls the server's health until it reports SERVING.
func (s *server) waitServing(ctx context.Context, key string, limit time.Duration) error {
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithPerRPCCredentials(auth.Bearer(key, true)))
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	h := healthpb.NewHealthClient(conn)
	deadline := time.Now().Add(limit)
	for {
		select {
		case <-s.done:
			return fmt.Errorf("exited: %w", s.err)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		r, err := h.Check(cctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && r.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return errors.New("not SERVING within " + limit.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// cpu returns the CPU time the server process has used so far.
func (s *server) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses: utime
	// and stime are the 12th and 13th, in clock ticks (100 a second).
	_, rest, _ := strings.Cut(string(b), ") ")
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

// rssMiB returns the server's resident size.
func (s *server) rssMiB() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			return kb / 1024
		}
	}
	return 0
}

// stop ends the server gracefully, then for good.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.done:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}
