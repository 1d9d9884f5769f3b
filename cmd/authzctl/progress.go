package main

import (
	"fmt"
	"io"
	"os"
	"time"
)

// progress tells a person at a terminal how far a long command has come:
// the bytes a stream moved, or the entries the pages of a listing read. It
// writes to standard error, and only when that is a terminal, so that
// scripts and pipes see the command's output alone. A line is redrawn at
// most every progressEvery, and not at all for a command that ends sooner.
type progress struct {
	w     io.Writer // nil: nothing is shown
	what  string    // "exported", "decisions read"
	bytes bool      // n counts bytes (shown in MiB), else entries
	n     int
	start time.Time
	shown time.Time // when the line was last drawn; zero before
}

// progressEvery is how often the line is redrawn, and how long a command
// runs before it is first drawn.
var progressEvery = 250 * time.Millisecond

// progressTo is where progress is drawn: standard error when it is a
// terminal, else nowhere. Tests replace it.
var progressTo = func() io.Writer {
	if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
		return os.Stderr
	}
	return nil
}

func newProgress(what string, bytes bool) *progress {
	return &progress{w: progressTo(), what: what, bytes: bytes, start: time.Now()}
}

// add counts n more bytes or entries.
func (p *progress) add(n int) {
	p.n += n
	if p.w == nil {
		return
	}
	if now := time.Now(); now.Sub(p.start) >= progressEvery && now.Sub(p.shown) >= progressEvery {
		p.shown = now
		_, _ = fmt.Fprintf(p.w, "\r%s %s", p.what, p.amount()) // a terminal that fails to draw is no reason to fail
	}
}

// done ends the line, if one was drawn.
func (p *progress) done() {
	if p.w != nil && !p.shown.IsZero() {
		_, _ = fmt.Fprintf(p.w, "\r%s %s in %s\n", p.what, p.amount(), time.Since(p.start).Round(time.Millisecond))
	}
}

func (p *progress) amount() string {
	if p.bytes {
		return fmt.Sprintf("%.1f MiB", float64(p.n)/(1<<20))
	}
	return fmt.Sprint(p.n)
}
