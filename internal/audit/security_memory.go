package audit

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// NewMemorySecurityLog returns a security event log kept in process memory,
// for the memory store: at most opts.MemoryEvents events (the oldest are
// evicted and counted), lost on restart. It says so when built and in its
// status.
func NewMemorySecurityLog(opts SecurityOptions) *SecurityLog {
	opts.defaults()
	s := newSecurityLog(&securityMemory{capacity: opts.MemoryEvents, next: 1}, opts)
	s.log.Warn("security events are kept in memory only: bounded, and lost on restart; configure a database to keep them",
		zap.Int("events", opts.MemoryEvents))
	return s
}

// securityMemory keeps events in a ring. Ids run without gaps from 1, so
// the ring holds the ids next-len(ring) to next-1, the oldest at head.
type securityMemory struct {
	capacity int

	mu      sync.RWMutex
	ring    []SecurityEvent // grows to capacity, then wraps
	head    int
	next    int64
	evicted int64
}

var _ securityBackend = (*securityMemory)(nil)

func (m *securityMemory) kind() string { return storageMemory }

func (m *securityMemory) evictedCount() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.evicted
}

func (m *securityMemory) write(_ context.Context, batch []SecurityEvent, _ *writeAttempt) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ev := range batch {
		ev.ID = m.next
		m.next++
		if len(m.ring) < m.capacity {
			m.ring = append(m.ring, ev)
			continue
		}
		m.ring[m.head] = ev
		m.head = (m.head + 1) % m.capacity
		m.evicted++
	}
	return nil
}

// at returns the event with id, which the ring must hold.
func (m *securityMemory) at(id int64) *SecurityEvent {
	first := m.next - int64(len(m.ring))
	return &m.ring[(m.head+int(id-first))%len(m.ring)]
}

func (m *securityMemory) scan(_ context.Context, tenants []string, after int64, desc bool, limit int) ([]SecurityEvent, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var in map[string]bool
	if tenants != nil {
		in = make(map[string]bool, len(tenants))
		for _, t := range tenants {
			in[t] = true
		}
	}
	first, last := m.next-int64(len(m.ring)), m.next-1
	var out []SecurityEvent
	keep := func(id int64) {
		if ev := m.at(id); tenants == nil || in[ev.Tenant] {
			out = append(out, *ev)
		}
	}
	if !desc {
		for id := max(after+1, first); id <= last && len(out) < limit; id++ {
			keep(id)
		}
		return out, nil
	}
	if after != 0 {
		last = min(last, after-1)
	}
	for id := last; id >= first && len(out) < limit; id-- {
		keep(id)
	}
	return out, nil
}
