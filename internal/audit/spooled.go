package audit

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/crmauthz/crmauthz/internal/audit/chain"
	"github.com/crmauthz/crmauthz/internal/model"
	"github.com/crmauthz/crmauthz/internal/spool"
)

// The decision spool.
//
// On PostgreSQL in the async mode, Record appends each decision to a spool
// on local disk (package spool) before it returns the decision's id, and a
// shipper goroutine writes the spool to PostgreSQL in batches, in order,
// and releases what it wrote. A process crash loses nothing: the next
// process takes the spool over and ships what is left, continuing the dead
// process's chain from the head PostgreSQL holds and skipping what it
// already wrote (the head's last_seq). A database outage delays nothing:
// decisions pile up in the spool, bounded by SpoolMaxBytes, and ship when
// the database returns. Only a full spool makes the overflow policy apply.
//
// The spool directory holds slots (slot-0, slot-1, ...), one per process
// on the host; each is bound to the database it ships to (the file
// "database"). A starting process takes the first free slot of its
// database, or an empty one, and ships the other free slots of its
// database that hold entries (processes that stopped and did not come
// back) beside its own.

const (
	spoolTag     = "crmauthz.decision-spool.v1"
	slotPrefix   = "slot-"
	slotDatabase = "database"
	maxSlots     = 64
	seqBytes     = 8
)

// spoolShipper ships one spool.
type spoolShipper struct {
	sp      *spool.Spool
	dir     string
	own     bool // this process appends to it
	w       writer
	chains  map[string]*chainState
	shipped atomic.Int64 // the offset written to the database
	entries atomic.Int64 // entries in the spool not yet written

	// The drop markers in the own spool not yet written, in spool order:
	// denied decisions may use the room they take beyond the reserve, so
	// that a marker never costs a denied decision its place.
	markerMu   sync.Mutex
	markers    []spooledMarker
	markerRoom atomic.Int64
}

// spooledMarker is a drop marker in a spool: where it ends, and the room
// it takes.
type spooledMarker struct{ end, room int64 }

// markersShipped gives back the room of the markers written up to the
// spool offset end.
func (s *spoolShipper) markersShipped(end int64) {
	if s.markerRoom.Load() == 0 {
		return
	}
	s.markerMu.Lock()
	defer s.markerMu.Unlock()
	n := 0
	for _, m := range s.markers {
		if m.end > end {
			break
		}
		s.markerRoom.Add(-m.room)
		n++
	}
	s.markers = s.markers[n:]
}

// encodeSpooled appends d to b as the body of a spool record: the
// canonical encoding of package chain (which decodes it). The record ends
// with the entry's number (appendSeq), given in spool order. It runs on
// the caller's goroutine, deep in a gRPC handler's stack, so it keeps its
// own frame small: a stack that grows is copied.
func encodeSpooled(b []byte, d *Decision) []byte {
	b = appendString(b, spoolTag)
	b = appendString(b, d.Chain)
	b = appendTime(b, d.Time)
	b = appendString(b, d.Method)
	b = appendString(b, d.Caller)
	b = appendString(b, d.RequestID)
	b = appendString(b, d.Tenant)
	b = appendString(b, d.Subject)
	p := &d.Perm
	b = binary.AppendVarint(b, int64(p.Kind))
	b = appendString(b, p.Module)
	b = appendString(b, p.Verb)
	b = appendString(b, p.Function)
	b = appendString(b, p.Field)
	b = appendBool(b, p.Write)
	b = appendBool(b, p.Record != nil)
	if r := p.Record; r != nil {
		b = appendString(b, r.ID)
		b = appendString(b, r.Owner)
		b = appendString(b, r.Department)
	}
	b = appendString(b, d.Permission)
	b = appendString(b, d.Module)
	b = appendString(b, d.Result)
	b = appendBool(b, d.Allowed)
	b = binary.AppendUvarint(b, uint64(len(d.Reasons)))
	for _, r := range d.Reasons {
		b = appendString(b, r)
	}
	b = binary.AppendVarint(b, d.Revision)
	b = binary.AppendVarint(b, int64(d.Latency))
	return append(b, 0) // an empty Raw: keeps the decoder's field count fixed
}

// putSpoolBody returns a buffer to spoolBodies unless an unusually large
// decision grew it.
func putSpoolBody(b *[]byte) {
	if cap(*b) <= 64<<10 {
		spoolBodies.Put(b)
	}
}

// appendSeq ends a spool record with its entry number.
func appendSeq(b []byte, seq uint64) []byte { return binary.BigEndian.AppendUint64(b, seq) }

// spoolBodies holds the buffers decisions are encoded into before they
// are appended.
var spoolBodies = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

// appendString, appendTime and appendBool write as chain.Encoder does.
//
//go:noinline
func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return binary.AppendVarint(b, 0)
	}
	return binary.AppendVarint(b, t.UnixMicro())
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// spoolSize bounds the size of d's spool record.
func spoolSize(d *Decision) int {
	n := 128 + len(d.Chain) + len(d.Method) + len(d.Caller) + len(d.RequestID) + len(d.Tenant) + len(d.Subject) +
		len(d.Perm.Module) + len(d.Perm.Verb) + len(d.Perm.Function) + len(d.Perm.Field) + len(d.Permission) + len(d.Module) + len(d.Result)
	if r := d.Perm.Record; r != nil {
		n += 30 + len(r.ID) + len(r.Owner) + len(r.Department)
	}
	for _, r := range d.Reasons {
		n += 10 + len(r)
	}
	return n
}

// decodeSpooled reads a spool record. It leaves ID unset: storage keeps
// the chain and the sequence number, which make it.
func decodeSpooled(rec []byte) (Decision, error) {
	if len(rec) < seqBytes {
		return Decision{}, chain.ErrMalformed
	}
	// One copy of the record holds every string of the decision.
	dec := chain.NewStringDecoder(rec[:len(rec)-seqBytes], spoolTag)
	var d Decision
	d.Chain = dec.String()
	d.Time = dec.Time()
	d.Method = dec.String()
	d.Caller = dec.String()
	d.RequestID = dec.String()
	d.Tenant = dec.String()
	d.Subject = dec.String()
	d.Perm.Kind = model.Kind(dec.Int())
	d.Perm.Module = dec.String()
	d.Perm.Verb = dec.String()
	d.Perm.Function = dec.String()
	d.Perm.Field = dec.String()
	d.Perm.Write = dec.Bool()
	if dec.Bool() {
		// Straight into the columns complete fills from Perm.Record: the
		// log needs nothing else of it.
		d.RecordID, d.RecordOwner, d.RecordDepartment = dec.String(), dec.String(), dec.String()
	}
	d.Permission = dec.String()
	d.Module = dec.String()
	d.Result = dec.String()
	d.Allowed = dec.Bool()
	d.Reasons = dec.Strings()
	d.Revision = dec.Int()
	d.Latency = time.Duration(dec.Int())
	dec.Raw()
	if err := dec.Err(); err != nil {
		return Decision{}, err
	}
	d.Seq = binary.BigEndian.Uint64(rec[len(rec)-seqBytes:])
	return d, nil
}

// openSpools takes this process's slot under the spool directory and the
// free slots of the same database that hold entries.
func (l *Log) openSpools(ctx context.Context, database string) ([]*spoolShipper, error) {
	root := l.opts.SpoolDir
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("decision spool: %w", err)
	}
	opts := spool.Options{MaxBytes: l.opts.SpoolMaxBytes, SyncEvery: l.opts.SpoolSyncEvery}
	var (
		out []*spoolShipper
		own *spoolShipper
	)
	closeAll := func() {
		for _, s := range out {
			_ = s.sp.Close()
		}
	}
	for i := range maxSlots {
		dir := filepath.Join(root, slotPrefix+strconv.Itoa(i))
		if owner, ok := foreign(dir, database); ok {
			if !l.reclaim(ctx, dir, owner) {
				continue // not even opened: opening cuts a torn tail
			}
		}
		sp, err := spool.Open(dir, opts)
		if errors.Is(err, spool.ErrLocked) {
			continue
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("decision spool: %w", err)
		}
		owner, err := os.ReadFile(filepath.Join(dir, slotDatabase)) //nolint:gosec // under the operator's spool directory
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			_ = sp.Close()
			closeAll()
			return nil, fmt.Errorf("decision spool: %w", err)
		}
		empty := sp.Size() == 0
		switch {
		case string(owner) == database && !empty:
			// Entries an earlier process left: ship them.
		case own == nil && (string(owner) == database || empty):
			if err := os.WriteFile(filepath.Join(dir, slotDatabase), []byte(database), 0o600); err != nil {
				_ = sp.Close()
				closeAll()
				return nil, fmt.Errorf("decision spool: %w", err)
			}
		default:
			// Another database's entries, or a free empty slot: not ours.
			_ = sp.Close()
			continue
		}
		s := &spoolShipper{sp: sp, dir: dir, chains: map[string]*chainState{}}
		s.shipped.Store(sp.Start())
		n, err := countRecords(sp)
		if err != nil {
			l.log.Error("decision spool unreadable; it stays for an operator to inspect", zap.String("dir", dir), zap.Error(err))
			_ = sp.Close()
			continue
		}
		s.entries.Store(n)
		if own == nil && (string(owner) == database || empty) {
			own, s.own = s, true
			s.chains[l.chain] = l.own
		}
		out = append(out, s)
	}
	if own == nil {
		closeAll()
		return nil, fmt.Errorf("decision spool: all %d slots of %s are held by other processes", maxSlots, root)
	}
	return out, nil
}

// foreign reports whether a slot holds another database's entries, and
// whose.
func foreign(dir, database string) (string, bool) {
	owner, err := os.ReadFile(filepath.Join(dir, slotDatabase)) //nolint:gosec // under the operator's spool directory
	if err != nil || string(owner) == database {
		return "", false
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
	return string(owner), len(segs) > 0
}

// reclaim empties a slot whose entries belong to a database of this server
// that was dropped: they can never ship, and the slot would stay taken
// forever. It reports whether the slot is free now.
func (l *Log) reclaim(ctx context.Context, dir, owner string) bool {
	gone, err := l.be.gone(ctx, owner)
	if err != nil || !gone {
		if err == nil {
			l.log.Info("a spool slot holds another database's decisions; left for a process of that database", zap.String("dir", dir),
				zap.String("database", owner))
		}
		return false
	}
	sp, err := spool.Open(dir, spool.Options{})
	if err != nil {
		return false // held by a process after all
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "*.spool"))
	for _, seg := range segs {
		if err := os.Remove(seg); err != nil {
			_ = sp.Close()
			return false
		}
	}
	_ = os.Remove(filepath.Join(dir, slotDatabase))
	_ = sp.Close()
	l.log.Warn("emptied a spool slot whose database was dropped: its decisions can never ship", zap.String("dir", dir),
		zap.String("database", owner))
	return true
}

// countRecords counts the records a spool holds.
func countRecords(sp *spool.Spool) (int64, error) {
	r := sp.NewReader(sp.Start())
	defer r.Close()
	var n int64
	for {
		_, _, err := r.Next()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		n++
	}
}

// recordSpooled appends d to the spool and returns its id once the spool
// holds it. When the spool is full the overflow policy applies: block waits
// for the shipper to free room, drop_denies_last drops allowed decisions
// and lets denied ones use the room kept for them.
func (l *Log) recordSpooled(ctx context.Context, d *Decision) (string, error) {
	d.Chain = l.chain
	s := l.spools[0]
	var headroom int64
	if l.opts.Overflow == OverflowDropDeniesLast && !d.Allowed {
		headroom = l.spoolReserve() + s.markerRoom.Load()
	}
	// The entry is encoded before the spool's lock is taken, which then
	// covers only its number (numbers go in spool order) and a copy.
	body := spoolBodies.Get().(*[]byte)
	*body = encodeSpooled((*body)[:0], d)
	defer putSpoolBody(body)
	var seq uint64
	fill := func(dst []byte) []byte {
		seq = l.seq.Add(1)
		return appendSeq(append(dst, *body...), seq)
	}
	est := len(*body) + seqBytes
	waited := false
	for {
		_, err := s.sp.Append(est, headroom, fill)
		if err == nil {
			break
		}
		if !errors.Is(err, spool.ErrFull) {
			l.spoolFailing(err)
		}
		if l.opts.Overflow == OverflowDropDeniesLast {
			l.drop(d)
			return "", nil
		}
		if !waited {
			waited = true
			l.waited.Add(1)
		}
		// A call that gives up here took no number (numbers are taken in
		// the append), so it is not counted abandoned: Status derives
		// Recorded from the numbers taken.
		room := l.room.Load()
		select {
		case <-*room:
		case <-time.After(100 * time.Millisecond): // a failing disk, or a release missed
		case <-ctx.Done():
			return "", ctx.Err()
		case <-l.closing:
			return "", ErrClosed
		}
	}
	s.entries.Add(1)
	var buf [48]byte
	id := string(strconv.AppendUint(append(buf[:0], l.prefix...), seq, 10))
	// Wake the shipper for the first entry and once a batch is waiting;
	// the count holds the entries the shipper read and waits with.
	if n := l.unread.Add(1); n == 1 || n == int64(l.opts.BatchSize) {
		select {
		case l.full <- struct{}{}:
		default:
		}
	}
	return id, nil
}

// spoolReserve is the room past the spool's bound that denied decisions may
// use under drop_denies_last: a tenth of the bound.
func (l *Log) spoolReserve() int64 { return l.opts.SpoolMaxBytes / 10 }

// freeRoom wakes the calls waiting for room in a full spool.
func (l *Log) freeRoom() {
	next := make(chan struct{})
	close(*l.room.Swap(&next))
}

// ship writes a spool to the database until Close, or, for a spool of
// earlier processes, until it is empty.
func (l *Log) ship(ctx context.Context, s *spoolShipper) {
	r := s.sp.NewReader(s.sp.Start())
	defer r.Close()
	batch := make([]item, 0, l.opts.BatchSize)
	var pending *item // read, but of another chain than the batch
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		if s.own {
			l.spoolMarkers(s)
		}
		cs, end, skipped, next, err := l.readBatch(ctx, s, r, &batch, pending)
		pending = next
		if err == nil && len(batch) > 0 && len(batch) < cap(batch) && pending == nil && s.own && !l.isClosing() {
			// Wait until a batch can fill or the interval ends, rather
			// than writing a batch per decision.
			timer.Reset(l.opts.FlushInterval)
			select {
			case <-timer.C:
			case <-l.full:
			case <-l.closing:
			}
			timer.Stop()
			var more int
			more, pending, end, err = l.readInto(ctx, s, r, cs, &batch, end)
			skipped += more
		}
		if err != nil {
			if ctx.Err() == nil {
				l.log.Error("decision spool unreadable; it stays for an operator to inspect", zap.String("dir", s.dir), zap.Error(err))
			}
			return
		}
		if len(batch) == 0 && skipped == 0 {
			switch {
			case !s.own:
				l.finishSpool(s)
				return
			case l.spoolIdle(s):
				return
			case l.isClosing():
				time.Sleep(50 * time.Microsecond) // calls in flight still append
			default:
				select {
				case <-l.full:
				case <-l.closing:
				}
			}
			continue
		}
		if len(batch) > 0 && !l.flush(ctx, &s.w, cs, batch) {
			return // closed with the database away: the rest stays spooled
		}
		s.entries.Add(-int64(len(batch) + skipped))
		if s.own {
			l.unread.Add(-int64(len(batch) + skipped))
		}
		s.shipped.Store(end)
		s.markersShipped(end)
		if err := s.sp.Release(end); err != nil {
			l.log.Warn("release shipped spool segments", zap.String("dir", s.dir), zap.Error(err))
		}
		l.freeRoom()
		batch = resetBatch(batch)
	}
}

// readBatch reads up to a batch of one chain's entries from the spool into
// batch: it starts with pending, if any, and stops before an entry of
// another chain, which it returns as next. Entries the database holds
// already (an earlier process wrote them before it stopped) are skipped and
// counted. end is the offset after the last entry read.
func (l *Log) readBatch(ctx context.Context, s *spoolShipper, r *spool.Reader, batch *[]item, pending *item) (cs *chainState, end int64, skipped int, next *item, err error) {
	end = r.Offset()
	if pending != nil {
		if cs, err = l.chainOf(ctx, s, pending.d.Chain, pending.d.Time); err != nil {
			return nil, end, 0, pending, err
		}
		*batch = append(*batch, *pending)
	}
	skipped, next, end, err = l.readInto(ctx, s, r, cs, batch, end)
	if cs == nil && len(*batch) > 0 {
		cs = s.chains[(*batch)[0].d.Chain]
	}
	return cs, end, skipped, next, err
}

// readInto reads entries into batch until it is full, the spool has no
// more, or an entry of another chain than cs's comes (returned as next).
// A nil cs takes the chain of the first entry.
func (l *Log) readInto(ctx context.Context, s *spoolShipper, r *spool.Reader, cs *chainState, batch *[]item, end int64) (skipped int, next *item, _ int64, err error) {
	for len(*batch) < cap(*batch) {
		rec, after, err := r.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return skipped, nil, end, err
		}
		d, err := decodeSpooled(rec)
		if err != nil {
			return skipped, nil, end, fmt.Errorf("decode the entry at offset %d: %w", end, err)
		}
		if cs == nil {
			if cs, err = l.chainOf(ctx, s, d.Chain, d.Time); err != nil {
				return skipped, nil, end, err
			}
		}
		if d.Chain != cs.id {
			return skipped, &item{d: d}, end, nil
		}
		end = after
		if d.Seq <= cs.lastSeq {
			skipped++ // written before the process that spooled it stopped
			continue
		}
		*batch = append(*batch, item{d: d})
	}
	return skipped, nil, end, nil
}

// chainOf returns where a chain stands: this process's own, or one an
// earlier process left in the spool, read from the database (registered
// first when that process never wrote it).
func (l *Log) chainOf(ctx context.Context, s *spoolShipper, id string, at time.Time) (*chainState, error) {
	if cs := s.chains[id]; cs != nil {
		return cs, nil
	}
	var (
		h     head
		found bool
	)
	err := retryWrite(ctx, func(int) error {
		var err error
		if h, found, err = l.be.readChain(ctx, id); err != nil || found {
			return err
		}
		return l.be.startChain(ctx, id, at)
	}, func(err error, attempt int, retryIn time.Duration) {
		l.writeFailing(err)
		if attempt&(attempt-1) == 0 {
			l.log.Warn("read a spooled chain's head; retrying", zap.String("chain_id", id), zap.Error(err), zap.Duration("retry_in", retryIn))
		}
	})
	if err != nil {
		return nil, err
	}
	cs := &chainState{id: id, pos: h.pos, prev: h.hash, lastLogged: h.loggedAt, lastSeq: h.seq}
	s.chains[id] = cs
	l.log.Info("shipping decisions an earlier process left in the spool", zap.String("chain_id", id), zap.String("dir", s.dir),
		zap.Int64("written_up_to_position", h.pos))
	return cs, nil
}

// spoolMarkers appends the markers of the decisions dropped since the last
// batch to the spool, past its bound: a marker is never dropped. Each
// takes its sequence number as it is written, so the spool stays in
// sequence order.
func (l *Log) spoolMarkers(s *spoolShipper) {
	for _, it := range l.appendMarkers(nil, false) {
		d := it.d
		var room int64
		end, err := s.sp.Append(spoolSize(&d), 1<<40, func(dst []byte) []byte {
			l.markers.Add(1)
			rec := appendSeq(encodeSpooled(dst, &d), l.seq.Add(1))
			room = spool.Framed(len(rec) - len(dst))
			return rec
		})
		if err != nil {
			l.spoolFailing(err)
			continue
		}
		s.markerMu.Lock()
		s.markers = append(s.markers, spooledMarker{end: end, room: room})
		s.markerRoom.Add(room)
		s.markerMu.Unlock()
		s.entries.Add(1)
		l.unread.Add(1)
	}
}

// spoolIdle reports whether the own spool's shipper is done: the log is
// closing, no call is in flight and everything spooled is shipped.
func (l *Log) spoolIdle(s *spoolShipper) bool {
	if !l.isClosing() || l.inflight.Load() > 0 || l.dropPending.Load() {
		return false
	}
	return s.shipped.Load() >= s.sp.End()
}

func (l *Log) isClosing() bool {
	select {
	case <-l.closing:
		return true
	default:
		return false
	}
}

// finishSpool closes a spool of earlier processes shipped whole.
func (l *Log) finishSpool(s *spoolShipper) {
	if err := s.sp.Close(); err != nil {
		l.log.Warn("close a shipped spool", zap.String("dir", s.dir), zap.Error(err))
	}
	l.log.Info("shipped the decisions an earlier process left in the spool", zap.String("dir", s.dir))
}

// spoolFailing records that the disk refused a spool write.
func (l *Log) spoolFailing(err error) {
	l.spoolErrors.Add(1)
	l.writeFailing(fmt.Errorf("spool: %w", err))
}

// writeFailing marks the log degraded: writes to the database (or the
// spool) fail.
func (l *Log) writeFailing(err error) {
	msg := err.Error()
	l.lastError.Store(&msg)
	// The change and its report happen under one lock: the writers of two
	// spools must not report a failure and a recovery in the other order.
	l.degradedMu.Lock()
	defer l.degradedMu.Unlock()
	if l.degradedSince.CompareAndSwap(0, l.opts.Now().UnixNano()) {
		l.log.Error("decision log degraded: writes fail; decisions are kept in the spool (or the queue) meanwhile", zap.Error(err))
		l.opts.OnDegraded(true)
	}
}

// writeRecovered marks the log healthy again after a write succeeded.
func (l *Log) writeRecovered() {
	if l.degradedSince.Load() == 0 {
		return // healthy: the common case takes no lock
	}
	l.degradedMu.Lock()
	defer l.degradedMu.Unlock()
	if since := l.degradedSince.Swap(0); since != 0 {
		l.log.Info("decision log recovered: writes succeed again", zap.Duration("degraded_for", l.opts.Now().Sub(time.Unix(0, since))))
		l.opts.OnDegraded(false)
	}
}
