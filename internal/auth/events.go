package auth

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit"
)

// Recorder keeps security events for auditors (audit.SecurityLog).
type Recorder interface {
	Record(ev audit.SecurityEvent)
}

// refusals records refused authentications, rate-limited: in each second
// the first refusalBurst are logged and recorded one by one; the rest are
// counted and recorded as one summary when the second ends, so that a
// flood of bad credentials costs neither the log nor the database more
// than a few lines a second, and nothing goes uncounted.
type refusals struct {
	rec Recorder
	log *zap.Logger
	now func() time.Time

	mu         sync.Mutex
	window     time.Time // start of the current second
	inWindow   int
	suppressed int64
	timer      *time.Timer
}

const refusalBurst = 10

func newRefusals(rec Recorder, log *zap.Logger, now func() time.Time) *refusals {
	return &refusals{rec: rec, log: log, now: now}
}

// add records one refusal (never with the secret: ev holds none).
func (r *refusals) add(ev audit.SecurityEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	if now.Sub(r.window) >= time.Second {
		r.flushLocked()
		r.window, r.inWindow = now, 0
	}
	if r.inWindow < refusalBurst {
		r.inWindow++
		r.log.Warn("refused authentication", zap.String("reason", ev.Reason), zap.String("credential", ev.Credential),
			zap.String("method", ev.Method), zap.String("peer", ev.Peer), zap.String("request_id", ev.RequestID))
		ev.Count = 1
		r.emit(ev)
		return
	}
	r.suppressed++
	if r.timer == nil {
		r.timer = time.AfterFunc(time.Second, r.flush)
	}
}

func (r *refusals) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.flushLocked()
}

func (r *refusals) flushLocked() {
	if r.timer != nil {
		r.timer.Stop()
		r.timer = nil
	}
	if r.suppressed == 0 {
		return
	}
	n := r.suppressed
	r.suppressed = 0
	r.log.Warn("refused authentications beyond the logging rate", zap.Int64("count", n))
	r.emit(audit.SecurityEvent{Kind: audit.EventAuthnRefused, Reason: "RATE_LIMITED",
		Message: "refused authentications beyond the logging rate, counted here", Count: n})
}

func (r *refusals) emit(ev audit.SecurityEvent) {
	if r.rec == nil {
		return
	}
	if ev.Time.IsZero() {
		ev.Time = r.now()
	}
	r.rec.Record(ev)
}
