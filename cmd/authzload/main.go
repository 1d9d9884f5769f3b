// Command authzload measures authzd the way the specification's targets
// are stated: against a no-op gRPC server, in the same run, on the same
// machine.
//
//	authzload [--database-url URL] [--tenants 10,10000] [--users 100]
//	          [--duration 3s] [--rounds 5] [--settle 5s] [--bin DIR]
//	authzload noop   the no-op server (authzload starts it itself)
//
// For each tenant count it makes (once; later runs reuse it) a PostgreSQL
// database crmauthz_load_<count> (--database-prefix) on the server of --database-url, migrated
// and filled by authzgen with tenants of the small preset and --users
// users; creates a platform key with authzd keys create; starts authzd
// (its defaults: authentication, the async decision log) and the no-op
// server on free loopback ports; loads authzd with check-8 for --settle, so
// that what its start-up leaves behind is not measured; and measures,
// alternating the two servers round by round (each round runs both, back
// to back, and they take turns going first):
//
//   - check-8, check-50: unary Check of a random user of a random tenant,
//     at 8 and 50 callers;
//   - page-8: CheckPage of 500 records of a list page at 8 callers (the
//     rate counts checks: calls × 500);
//   - batch-8: BatchCheck of the same 500 questions as items (the classic
//     shape, tenant and subject in every item);
//   - mixed-50: check-50 while a writer grants and revokes a role 20 times
//     a second (the no-op answers the writes too); the write latency is
//     printed below the table.
//
// It prints one table: throughput, p50 and p99 of each run, the no-op's,
// and the ratios (the median of each round's ratio), with authzd's start-up time to
// SERVING and its resident size. authzd and authzgen are taken from --bin,
// by default the directory authzload itself is in (make load builds all
// three into bin/).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "authzload:", err)
		os.Exit(1)
	}
}

// config is what a run measures.
type config struct {
	databaseURL string
	prefix      string
	tenants     []int
	users       int
	duration    time.Duration
	warmup      time.Duration
	settle      time.Duration
	rounds      int
	bin         string
	connections int
	runs        []string
}

const usage = `Usage: authzload [flags]
       authzload noop

Measures authzd against a no-op gRPC server at each tenant count, on
PostgreSQL databases crmauthz_load_<count> it creates and fills once, and
prints one table of throughput, p50/p99 and the ratios to the no-op.

`

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "noop" {
		return serveNoop(ctx, stdout)
	}
	fs := flag.NewFlagSet("authzload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		_, _ = io.WriteString(stderr, usage)
		fs.PrintDefaults()
	}
	defURL := getenv("AUTHZ_DATABASE_URL")
	if defURL == "" {
		defURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
	}
	self, _ := os.Executable()
	var c config
	var tenants, runs string
	fs.StringVar(&c.databaseURL, "database-url", defURL, "PostgreSQL server to make the load databases on, as a URL of a database its user may create databases from (env AUTHZ_DATABASE_URL)")
	fs.StringVar(&c.prefix, "database-prefix", "crmauthz_load", "the load databases are <prefix>_<tenant count>")
	fs.StringVar(&tenants, "tenants", "10,10000", "comma-separated tenant counts, each measured on its own database")
	fs.IntVar(&c.users, "users", 100, "users per generated tenant")
	fs.DurationVar(&c.duration, "duration", 3*time.Second, "how long each run measures one server in one round")
	fs.DurationVar(&c.warmup, "warmup", time.Second, "how long each server is loaded before its first round")
	fs.DurationVar(&c.settle, "settle", 5*time.Second, "how long authzd is loaded after its start-up, before the first run")
	fs.IntVar(&c.rounds, "rounds", 5, "rounds per run, the servers taking turns to go first; medians are printed")
	fs.StringVar(&c.bin, "bin", filepath.Dir(self), "directory holding authzd and authzgen")
	fs.IntVar(&c.connections, "connections", 2, "client connections to each server")
	fs.StringVar(&runs, "runs", "check-8,check-50,page-8,batch-8,mixed-50", "comma-separated runs to make")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	for _, s := range strings.Split(tenants, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 100000 {
			return fmt.Errorf("--tenants: %q is not a count of 1-100000", s)
		}
		c.tenants = append(c.tenants, n)
	}
	known := map[string]bool{}
	for _, w := range workloads(questions{}) {
		known[w.name] = true
	}
	for _, r := range strings.Split(runs, ",") {
		if r = strings.TrimSpace(r); !known[r] {
			return fmt.Errorf("--runs: unknown run %q", r)
		}
		c.runs = append(c.runs, r)
	}
	switch {
	case c.users < 2 || c.users > 100000:
		return fmt.Errorf("--users must be 2-100000, got %d", c.users)
	case c.rounds < 1 || c.rounds > 20:
		return fmt.Errorf("--rounds must be 1-20, got %d", c.rounds)
	case c.settle < 0:
		return fmt.Errorf("--settle must not be negative, got %s", c.settle)
	case c.duration < 100*time.Millisecond:
		return fmt.Errorf("--duration must be at least 100ms, got %s", c.duration)
	case c.connections < 1 || c.connections > 64:
		return fmt.Errorf("--connections must be 1-64, got %d", c.connections)
	}
	for _, b := range []string{"authzd", "authzgen"} {
		if _, err := os.Stat(filepath.Join(c.bin, b)); err != nil {
			return fmt.Errorf("%s not found in %s (build it, e.g. make load, or pass --bin): %w", b, c.bin, err)
		}
	}
	var reports []*report
	for _, n := range c.tenants {
		r, err := measure(ctx, c, n, stderr)
		if err != nil {
			return fmt.Errorf("%d tenants: %w", n, err)
		}
		reports = append(reports, r)
	}
	return printTable(stdout, c, reports)
}
