package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// median returns the median of xs (the lower middle of an even count).
func median[T int64 | float64 | time.Duration](xs []T) T {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

func field[T any](ss []sample, f func(sample) T) []T {
	out := make([]T, len(ss))
	for i, s := range ss {
		out[i] = f(s)
	}
	return out
}

func us(d time.Duration) string { return fmt.Sprintf("%.0f", float64(d)/float64(time.Microsecond)) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

// ratios returns the medians of the rounds' throughput and p99 ratios of
// authzd to the no-op. Each round measures the two servers back to back,
// so a ratio within a round cancels what drifts over minutes on a shared
// machine (other tenants' load, the clock), where a ratio of the two
// servers' medians would pair rounds measured minutes apart.
func (r *result) ratios() (throughput, p99 float64) {
	var t, p []float64
	for i := range min(len(r.authzd), len(r.noop)) {
		t = append(t, r.authzd[i].rate/r.noop[i].rate)
		p = append(p, float64(r.authzd[i].p99)/float64(r.noop[i].p99))
	}
	return median(t), median(p)
}

// printTable prints what every tenant count measured, as a Markdown table.
func printTable(w io.Writer, c config, reports []*report) error {
	var b strings.Builder
	fmt.Fprintf(&b, "authzd against a no-op gRPC server: medians of %d rounds of %s each, %d connections; rates are checks/s; CPU is the server process's, per call; the ratios are the medians of each round's ratio, whose two servers ran back to back\n\n", c.rounds, c.duration, c.connections)
	b.WriteString("| tenants | run | authzd /s | p50 ms | p99 ms | CPU µs/call | no-op /s | p50 ms | p99 ms | CPU µs/call | throughput ratio | p99 ratio |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range reports {
		for _, run := range r.runs {
			rate, p50, p99 := median(field(run.authzd, func(s sample) float64 { return s.rate })),
				median(field(run.authzd, func(s sample) time.Duration { return s.p50 })),
				median(field(run.authzd, func(s sample) time.Duration { return s.p99 }))
			nrate, np50, np99 := median(field(run.noop, func(s sample) float64 { return s.rate })),
				median(field(run.noop, func(s sample) time.Duration { return s.p50 })),
				median(field(run.noop, func(s sample) time.Duration { return s.p99 }))
			cpu := median(field(run.authzd, func(s sample) time.Duration { return s.cpu }))
			ncpu := median(field(run.noop, func(s sample) time.Duration { return s.cpu }))
			ratio, p99Ratio := run.ratios()
			fmt.Fprintf(&b, "| %d | %s | %.0f | %s | %s | %s | %.0f | %s | %s | %s | %.2f | %.2f |\n",
				r.tenants, run.name, rate, ms(p50), ms(p99), us(cpu), nrate, ms(np50), ms(np99), us(ncpu), ratio, p99Ratio)
		}
	}
	b.WriteString("\n")
	for _, r := range reports {
		fmt.Fprintf(&b, "%d tenants: start-up to SERVING %.1f s; resident size %.0f MiB after start, %.0f MiB after the runs",
			r.tenants, r.startup.Seconds(), r.rssStart, r.rssEnd)
		for _, run := range r.runs {
			if len(run.writes) > 0 {
				s := slices.Clone(run.writes)
				slices.Sort(s)
				fmt.Fprintf(&b, "; %s writes (20/s offered): %d, p50 %s ms, p99 %s ms", run.name, len(s), ms(s[len(s)/2]), ms(s[len(s)*99/100]))
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}
