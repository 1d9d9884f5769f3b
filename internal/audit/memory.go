package audit

import (
	"context"
	"fmt"
	"sort"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/store"
)

// NewMemory returns a decision log kept in process memory, for the memory
// store: at most opts.MemoryEntries entries (the oldest are evicted, and
// the chain then verifies from the last evicted link), lost on restart. It
// says so at start and in its status. The change log is read from st.
func NewMemory(st store.Store, opts Options) (*Log, error) {
	opts.defaults()
	m := &memoryBackend{st: st, keys: opts.Keys, capacity: opts.MemoryEntries, firstKey: 1, chains: map[string]*chainHead{},
		chunks: make([][]Decision, (opts.MemoryEntries+chunkSize-1)/chunkSize)}
	l, err := newLog(m, opts)
	if err != nil {
		return nil, err
	}
	if opts.Mode != ModeOff {
		l.log.Warn("the decision log is kept in memory only: bounded, and lost on restart; configure a database for a durable log",
			zap.Int("entries", opts.MemoryEntries))
	}
	return l, nil
}

// memoryBackend keeps entries in a ring. Entries are numbered in insertion
// order (their listing key, from 1); the ring holds the keys firstKey to
// nextKey()-1.
type memoryBackend struct {
	st       store.Store
	keys     *chain.Keyring
	capacity int

	mu        sync.RWMutex
	chunks    [][]Decision // the ring's slots, chunkSize each, allocated as they fill
	n         int          // entries held
	firstKey  uint64
	evicted   int64
	evictedTo time.Time // the latest decision time among the evicted entries
	chains    map[string]*chainHead
	startedAt time.Time
}

// chunkSize is the number of ring slots allocated at once: the ring grows
// without copying what it holds.
const chunkSize = 1024

var _ backend = (*memoryBackend)(nil)

func (m *memoryBackend) kind() string { return storageMemory }

func (m *memoryBackend) maintain(context.Context, time.Time) error { return nil }

func (m *memoryBackend) startChain(_ context.Context, chain string, at time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.chains[chain] = &chainHead{id: chain}
	if m.startedAt.IsZero() {
		m.startedAt = at
	}
	return nil
}

func (m *memoryBackend) evictedCount() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.evicted
}

// slot returns the ring slot of listing key k, allocating its chunk.
func (m *memoryBackend) slot(k uint64) *Decision {
	i := int((k - 1) % uint64(m.capacity))
	c := i / chunkSize
	if m.chunks[c] == nil {
		m.chunks[c] = make([]Decision, chunkSize)
	}
	return &m.chunks[c][i%chunkSize]
}

// at returns the entry with listing key k, which must be held.
func (m *memoryBackend) at(k uint64) *Decision { return m.slot(k) }

func (m *memoryBackend) nextKey() uint64 { return m.firstKey + uint64(m.n) }

func (m *memoryBackend) write(_ context.Context, chain string, batch []item, h head, _ bool, _ *[][]byte) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for i := range batch {
		k := m.nextKey()
		sl := m.slot(k)
		if m.n == m.capacity {
			if c := m.chains[sl.Chain]; c != nil {
				c.anchorPos, c.anchorHash = sl.Position, sl.Hash
			}
			m.evictedTo = maxTime(m.evictedTo, sl.Time)
			m.firstKey++
			m.evicted++
		} else {
			m.n++
		}
		*sl = batch[i].d
		sl.Perm = model.Permission{}
		sl.key = [2]uint64{k, 0}
	}
	c := m.chains[chain]
	c.lastPos, c.lastHash = h.pos, h.hash
	return nil
}

// identity names the process's memory: a spool is never shipped to it.
func (m *memoryBackend) identity(context.Context) (string, error) {
	return fmt.Sprintf("memory/%p", m), nil
}

// gone judges no other database.
func (m *memoryBackend) gone(context.Context, string) (bool, error) { return false, nil }

// readChain reports no chain: memory holds nothing from an earlier process.
func (m *memoryBackend) readChain(context.Context, string) (head, bool, error) {
	return head{}, false, nil
}

func (m *memoryBackend) horizon(context.Context) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.nextKey(), nil
}

func (m *memoryBackend) list(_ context.Context, q *Query, c cursor, horizon uint64, limit int) ([]Decision, [2]uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	end := min(m.nextKey(), horizon)
	var out []Decision
	if !c.desc {
		for k := max(c.key[0]+1, m.firstKey); k < end && len(out) < limit; k++ {
			if d := m.at(k); q.matches(d) {
				out = append(out, *d)
			}
		}
		return out, [2]uint64{}, nil
	}
	if c.key[0] != 0 {
		end = min(end, c.key[0])
	}
	for k := end; k > m.firstKey && len(out) < limit; k-- {
		if d := m.at(k - 1); q.matches(d) {
			out = append(out, *d)
		}
	}
	return out, [2]uint64{}, nil
}

func (m *memoryBackend) get(_ context.Context, tenant, chain string, seq uint64) (Decision, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k := m.firstKey; k < m.nextKey(); k++ {
		if d := m.at(k); d.Seq == seq && d.Chain == chain && d.Tenant == tenant {
			return *d, true, nil
		}
	}
	return Decision{}, false, nil
}

func (m *memoryBackend) used(_ context.Context, tenant string, since time.Time) (map[[2]string]time.Time, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := map[[2]string]time.Time{}
	for k := m.firstKey; k < m.nextKey(); k++ {
		d := m.at(k)
		if d.Tenant != tenant || !d.Allowed || d.Time.Before(since) {
			continue
		}
		latest(out, [2]string{d.Subject, d.Permission}, d.Time)
	}
	return out, nil
}

// latest keeps in m the later of k's time and t.
func latest(m map[[2]string]time.Time, k [2]string, t time.Time) {
	if cur, ok := m[k]; !ok || t.After(cur) {
		m[k] = t
	}
}

func (m *memoryBackend) evidenceSince(context.Context) (time.Time, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.evicted > 0 {
		// Times are nearly, not strictly, ordered: an entry held can be
		// older than one evicted. Every decision after the latest evicted
		// one is held (times are kept in microseconds).
		return maxTime(m.startedAt, m.evictedTo.Add(time.Microsecond)), nil
	}
	return m.startedAt, nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// changes scans the store's change log, which the memory store keeps
// without hashes.
func (m *memoryBackend) changes(ctx context.Context, q *ChangeQuery, after int64, limit int) ([]Change, error) {
	const chunk = 1000
	var out []Change
	for len(out) < limit {
		es, err := m.st.Changes(ctx, q.Tenant, after, chunk)
		if err != nil {
			return nil, err
		}
		for i := range es {
			if q.matches(&es[i]) && len(out) < limit {
				out = append(out, Change{ChangeEntry: es[i]})
			}
		}
		if len(es) < chunk {
			break
		}
		after = es[len(es)-1].Revision
	}
	return out, nil
}

func (m *memoryBackend) verifyDecisions(ctx context.Context, chain string, from, to int64) ([]ChainReport, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var heads []chainHead
	for id, h := range m.chains {
		if chain == "" || chain == id {
			heads = append(heads, *h)
		}
	}
	if chain != "" && len(heads) == 0 {
		return nil, errChainNotFound(chain)
	}
	sort.Slice(heads, func(i, j int) bool { return heads[i].id < heads[j].id })
	var out []ChainReport
	for _, h := range heads {
		r, err := verifyChain(ctx, m.keys, memorySource{m}, h, from, to)
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

func (m *memoryBackend) verifyChanges(context.Context, string, int64, int64) (ChainReport, error) {
	return ChainReport{}, errNoChangeHashes()
}

// memorySource reads the ring; the caller holds the read lock. Entries of
// one chain are in position order in the ring, as the single batcher wrote
// them.
type memorySource struct{ m *memoryBackend }

func (s memorySource) entries(_ context.Context, chain string, after, to int64) ([]Decision, error) {
	const chunk = 1000
	var out []Decision
	for k := s.m.firstKey; k < s.m.nextKey() && len(out) < chunk; k++ {
		d := s.m.at(k)
		if d.Chain == chain && d.Position > after && (to == 0 || d.Position <= to) {
			out = append(out, *d)
		}
	}
	return out, nil
}

func (s memorySource) hashAt(_ context.Context, chain string, pos int64) ([]byte, bool, error) {
	for k := s.m.firstKey; k < s.m.nextKey(); k++ {
		if d := s.m.at(k); d.Chain == chain && d.Position == pos {
			return d.Hash, true, nil
		}
	}
	return nil, false, nil
}

// ReasonChainNotFound is the reason of a verification naming an unknown
// chain.
const ReasonChainNotFound = "CHAIN_NOT_FOUND"

func errChainNotFound(chain string) error {
	return &model.NotFoundError{Reason: ReasonChainNotFound, What: fmt.Sprintf("decision log chain %q", chain)}
}
