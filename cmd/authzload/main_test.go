package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/crmauthz/crmauthz/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// runMainEnv makes the test binary run main() instead of the tests: it is
// the no-op server authzload starts from its own executable.
const runMainEnv = "AUTHZLOAD_TEST_RUN_MAIN"

func init() {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
}

// TestLoadTable runs authzload end to end at a small size: it builds the
// real authzd and authzgen, lets authzload make, fill and serve its
// database, and checks that the table holds every run with numbers.
func TestLoadTable(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts authzd")
	}
	bin := t.TempDir()
	build := exec.Command("go", "build", "-o", bin+"/", "../authzd", "../authzgen")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	t.Setenv(runMainEnv, "1")
	url := pgtest.NewDatabase(t)
	prefix := fmt.Sprintf("authzload_test_%d", os.Getpid())
	t.Cleanup(func() {
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Error(err)
			return
		}
		defer func() { _ = conn.Close(context.Background()) }()
		if _, err := conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+prefix+"_3 WITH (FORCE)"); err != nil {
			t.Error(err)
		}
	})
	var out, progress bytes.Buffer
	err := run(context.Background(), []string{"--database-url", url, "--database-prefix", prefix, "--tenants", "3", "--users", "10",
		"--duration", "300ms", "--warmup", "100ms", "--settle", "200ms", "--rounds", "2", "--bin", bin}, func(string) string { return "" }, &out, &progress)
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	table := out.String()
	for _, name := range []string{"check-8", "check-50", "page-8", "batch-8", "mixed-50"} {
		row := regexp.MustCompile(`\| 3 \| ` + name + ` \| ([0-9]+) \|.*\| ([0-9.]+) \| ([0-9.]+) \|\n`).FindStringSubmatch(table)
		if row == nil {
			t.Fatalf("no row for %s in\n%s", name, table)
		}
		if rate, _ := strconv.Atoi(row[1]); rate <= 0 {
			t.Errorf("%s: rate %s", name, row[1])
		}
		if ratio, _ := strconv.ParseFloat(row[2], 64); ratio <= 0 || ratio > 10 {
			t.Errorf("%s: throughput ratio %s", name, row[2])
		}
	}
	if !strings.Contains(progress.String(), "3 tenants: settling for 200ms") || !strings.Contains(progress.String(), "check-8 round 2: authzd") {
		t.Errorf("no settling or no second round of check-8 in the progress:\n%s", progress.String())
	}
	if !strings.Contains(table, "3 tenants: start-up to SERVING") || !strings.Contains(table, "mixed-50 writes (20/s offered)") {
		t.Fatalf("no start-up or write line in\n%s", table)
	}
}

// TestRatiosArePaired: a ratio is the median of the rounds' own ratios,
// each of two servers measured back to back, not a ratio of medians taken
// from rounds minutes apart.
func TestRatiosArePaired(t *testing.T) {
	r := &result{}
	for i, rates := range [][2]float64{{10, 20}, {20, 40}, {30, 15}} {
		p99 := time.Duration(i+1) * time.Millisecond
		r.authzd = append(r.authzd, sample{rate: rates[0], p99: 2 * p99})
		r.noop = append(r.noop, sample{rate: rates[1], p99: p99})
	}
	// Medians 20 and 20 would say 1.00; the rounds say 0.5, 0.5 and 2.
	if got, p99 := r.ratios(); got != 0.5 || p99 != 2 {
		t.Fatalf("ratios %.2f and p99 %.2f, want 0.50 and 2.00", got, p99)
	}
}

// TestBadFlags refuses what it cannot measure, before touching a database.
func TestBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--tenants", "0"}, {"--tenants", "ten"}, {"--users", "1"}, {"--rounds", "0"}, {"--duration", "1ms"}, {"--settle", "-1s"},
		{"--connections", "0"}, {"--runs", "check-8,nope"}, {"--bin", t.TempDir()}, {"extra"},
	} {
		var errOut bytes.Buffer
		if err := run(context.Background(), args, func(string) string { return "" }, &bytes.Buffer{}, &errOut); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
}
