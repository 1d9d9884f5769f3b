package audit

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/pgtest"
)

// BenchmarkPostgresWrite measures what the async decision log costs
// PostgreSQL: decisions of the size a Check's are, of 10 or 10,000
// tenants, written in batches of the default size (2,000) or of 1,000 (the
// default before). It reports the CPU the server's backends used per
// decision, read from /proc (so the server must run on this machine), and
// the bytes the decision log's tables hold per decision: with the batches'
// data stored uncompressed as before migration 0016, and lz4-compressed as
// after; at 10,000 tenants with the shared rows' tenant lists compressed
// with pglz as before migration 0017, and with lz4 as after. Use
// -benchtime 100000x or more: /proc counts in 10 ms ticks.
func BenchmarkPostgresWrite(b *testing.B) {
	for _, tc := range []struct {
		tenants, batch int
		storage, sql   string
	}{
		{10, 0, "external", "ALTER TABLE decision_batches ALTER COLUMN data SET STORAGE EXTERNAL"},
		{10, 1000, "lz4", ""},
		{10, 0, "lz4", ""},
		{10000, 1000, "lz4", ""},
		{10000, 0, "lz4", ""},
		{10000, 0, "lz4-tenants-pglz", `DO $$ DECLARE part regclass; BEGIN
			ALTER TABLE decision_batches ALTER COLUMN tenants SET COMPRESSION pglz;
			FOR part IN SELECT inhrelid::regclass FROM pg_inherits WHERE inhparent = 'decision_batches'::regclass LOOP
				EXECUTE format('ALTER TABLE %s ALTER COLUMN tenants SET COMPRESSION pglz', part);
			END LOOP; END $$`},
	} {
		batch := "default"
		if tc.batch != 0 {
			batch = strconv.Itoa(tc.batch)
		}
		b.Run(fmt.Sprintf("tenants=%d/storage=%s/batch=%s", tc.tenants, tc.storage, batch), func(b *testing.B) {
			ctx := context.Background()
			pool := pgtest.NewPool(b)
			l, err := NewPostgres(pool, Options{BatchSize: tc.batch, FlushInterval: 50 * time.Millisecond})
			if err != nil {
				b.Fatal(err)
			}
			if err := l.Start(ctx); err != nil {
				b.Fatal(err)
			}
			if tc.sql != "" {
				if _, err := pool.Exec(ctx, tc.sql); err != nil {
					b.Fatal(err)
				}
			}
			pids := backends(b, pool)
			before := backendCPU(b, pids)
			b.ResetTimer()
			d := Decision{Method: MethodCheck, Caller: "7f3c2a10-5b6e-4c1d-9a8f-2e4b6c8d0f12", Perm: model.ModulePerm("account", "read"),
				Permission: "account.read", Module: "account", Result: "allowed", Allowed: true, Revision: 41,
				Reasons: []string{"role sales_rep grants account.read"}}
			for i := 0; b.Loop(); i++ {
				d.Time, d.Latency = time.Now(), 3*time.Microsecond
				d.RequestID = fmt.Sprintf("4f1c9e2a%016x", i)
				d.Tenant, d.Subject = fmt.Sprintf("load-%05d", (i*7919)%tc.tenants), fmt.Sprintf("user-%03d", i%100)
				if _, err := l.Record(ctx, d); err != nil {
					b.Fatal(err)
				}
			}
			if err := l.Close(ctx); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			cpu := backendCPU(b, pids) - before
			var size int64
			if err := pool.QueryRow(ctx, `SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)
				FROM pg_inherits WHERE inhparent = 'decision_batches'::regclass`).Scan(&size); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "pg-cpu-µs/decision")
			b.ReportMetric(float64(size)/float64(b.N), "stored-B/decision")
		})
	}
}

// backends opens every connection of pool and returns their server
// processes.
func backends(b *testing.B, pool *pgxpool.Pool) []int {
	ctx := context.Background()
	var conns []*pgxpool.Conn
	for range pool.Config().MaxConns {
		c, err := pool.Acquire(ctx)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	var pids []int
	for _, c := range conns {
		var pid int
		if err := c.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&pid); err != nil {
			b.Fatal(err)
		}
		pids = append(pids, pid)
		c.Release()
	}
	return pids
}

// backendCPU returns the CPU time the processes pids used, from /proc.
func backendCPU(b *testing.B, pids []int) time.Duration {
	var ticks int64
	for _, pid := range pids {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Skipf("the server's processes are not readable here: %v", err)
		}
		// The fields after the command, which is in parentheses: utime
		// and stime are the 12th and 13th.
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		for _, s := range f[11:13] {
			n, err := strconv.ParseInt(s, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			ticks += n
		}
	}
	return time.Duration(ticks) * 10 * time.Millisecond
}
