// Package spool is a bounded, append-only log of records on local disk: the
// decision log writes every answered decision here before the answer
// leaves, and ships it to PostgreSQL from here, so neither a process crash
// nor a database outage loses or delays it.
//
// A spool is one directory, held by one process at a time (an exclusive
// flock on its lock file). Records go into segment files named by the
// offset of their first byte; each record is framed with its length and a
// CRC-32C, so a write torn by a machine crash is found, and cut, when the
// spool is opened again. The segment being written is mapped into memory
// (a shared mapping of the file): an append is a copy into the operating
// system's page cache, with no system call, and a process crash (kill -9,
// a panic, an OOM kill) loses nothing that was appended. The page cache is
// synced to disk every SyncEvery, which bounds what a machine crash can
// lose.
//
// Offsets count bytes from the spool's creation and never go back. A
// reader reads from an offset to the end written so far; Release drops
// whole segments that lie before an offset, once what they hold is shipped.
package spool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Errors.
var (
	// ErrFull is returned by Append when the record would take the spool
	// past MaxBytes.
	ErrFull = errors.New("spool: full")
	// ErrLocked is returned by Open when another process holds the spool.
	ErrLocked = errors.New("spool: held by another process")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("spool: closed")
	// ErrTooLarge is returned by Append for a record over MaxRecordBytes.
	ErrTooLarge = errors.New("spool: record too large")
)

// MaxRecordBytes bounds one record.
const MaxRecordBytes = 1 << 20

// Framed is what a record of n bytes takes in the spool, its frame
// included: what it counts against MaxBytes.
func Framed(n int) int64 { return int64(frameHeader + n) }

const (
	frameHeader = 8 // length, CRC-32C
	suffix      = ".spool"
	lockName    = "lock"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Options configures a spool.
type Options struct {
	// SegmentBytes is the size of a segment file (by default a sixteenth
	// of MaxBytes, at most 64 MiB); a larger record gets a segment of its
	// own size.
	SegmentBytes int64
	// MaxBytes bounds the bytes the spool holds (1 GiB by default). The
	// shipped records of the segment being written count until it is full.
	MaxBytes int64
	// SyncEvery is how often written records are synced to disk (1s by
	// default); negative never syncs but on Close.
	SyncEvery time.Duration
}

func (o *Options) defaults() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = 1 << 30
	}
	if o.SegmentBytes <= 0 {
		// Shipped records stay until their segment is released, so a
		// segment is a small part of the bound.
		o.SegmentBytes = min(64<<20, max(o.MaxBytes/16, 4<<10))
	}
	if o.SyncEvery == 0 {
		o.SyncEvery = time.Second
	}
}

// Spool is an open spool. Append is safe for concurrent use; a spool has
// any number of readers.
type Spool struct {
	dir  string
	opts Options
	lock *os.File

	mu     sync.Mutex
	segs   []int64 // start offsets of the segment files, ascending
	cur    *segment
	full   []*segment // segments written full and not yet synced and unmapped
	buf    []byte     // the record being appended
	dirty  bool
	closed bool

	start    atomic.Int64 // offset of the first byte held
	end      atomic.Int64 // offset after the last complete record
	released atomic.Int64 // offset up to which the records are shipped

	// ahead wakes populateLoop, which maps the pages after the last
	// record before appends reach them (populate.go).
	ahead        chan struct{}
	noPopulate   bool // the system cannot populate; guarded by mu
	stop         chan struct{}
	done         chan struct{}
	populateDone chan struct{} // closed when populateLoop has returned
}

// segment is a segment file mapped for writing.
type segment struct {
	f      *os.File
	data   []byte // the whole file, mapped
	start  int64  // its offset
	size   int64  // bytes written
	synced bool   // fsynced once, with its size and directory entry
	// populated is the length of data populateLoop has mapped or is
	// mapping; guarded by the spool's mu.
	populated int64
	// mapping is held for reading while data is populated, and for
	// writing while it is unmapped.
	mapping sync.RWMutex
}

// openSegment opens, or creates, the segment file at start, sized and
// mapped for writing.
func openSegment(path string, start, size int64) (*segment, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // under the operator's spool directory
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := f.Truncate(size); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool: size a segment: %w", err)
	}
	if err := reserveSpace(f, size); err != nil {
		// What a failed reservation allocated is given back with the
		// size the file had.
		_ = f.Truncate(fi.Size())
		_ = f.Close()
		return nil, fmt.Errorf("spool: reserve a segment's disk space: %w", err)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_SHARED)
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("spool: map a segment: %w", err)
	}
	return &segment{f: f, data: data, start: start}, nil
}

// reserveSpace is reserve; tests make it fail as a full disk does.
var reserveSpace = reserve

// close unmaps the segment and cuts the file to what was written.
func (g *segment) close() error {
	return errors.Join(g.unmap(), g.f.Truncate(g.size), g.f.Close())
}

// unmap unmaps the segment, once no populate is under way in it.
func (g *segment) unmap() error {
	g.mapping.Lock()
	defer g.mapping.Unlock()
	return syscall.Munmap(g.data)
}

// Open opens, or creates, the spool in dir. A torn record at the end of
// the last segment (a machine crash in the middle of a write) is cut off.
func Open(dir string, opts Options) (*Spool, error) {
	opts.defaults()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, lockName), os.O_CREATE|os.O_RDWR, 0o600) //nolint:gosec // the directory is the operator's configuration
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		_ = lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%w: %s", ErrLocked, dir)
		}
		return nil, fmt.Errorf("spool: lock %s: %w", dir, err)
	}
	s := &Spool{dir: dir, opts: opts, lock: lock, ahead: make(chan struct{}, 1),
		stop: make(chan struct{}), done: make(chan struct{}), populateDone: make(chan struct{})}
	if err := s.recover(); err != nil {
		_ = lock.Close()
		return nil, err
	}
	go s.syncLoop()
	go s.populateLoop()
	return s, nil
}

// recover finds the segments, checks the last one and maps it for writing.
func (s *Spool) recover() error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok {
			continue
		}
		off, err := strconv.ParseInt(name, 10, 64)
		if err != nil || off < 0 {
			continue
		}
		s.segs = append(s.segs, off)
	}
	slices.Sort(s.segs)
	if len(s.segs) == 0 {
		s.segs = []int64{0}
	}
	last := s.segs[len(s.segs)-1]
	f, err := os.OpenFile(s.segPath(last), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	size, err := validLength(f)
	_ = f.Close()
	if err != nil {
		return err
	}
	seg, err := openSegment(s.segPath(last), last, max(s.opts.SegmentBytes, size))
	if err != nil {
		return err
	}
	// Clear a torn record after the intact ones (appends are serialised,
	// so only the last can be torn; zeros follow it), so that what is
	// appended next is not followed by its remains.
	torn := seg.data[size:min(int64(len(seg.data)), size+frameHeader+MaxRecordBytes)]
	if n := lastNonZero(torn); n >= 0 {
		clear(torn[:n+1]) // only what was written: clearing zeros would write them
	}
	seg.size = size
	s.cur = seg
	s.start.Store(s.segs[0])
	s.end.Store(last + size)
	return nil
}

// lastNonZero returns the index of b's last byte that is not zero, or -1.
func lastNonZero(b []byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] != 0 {
			return i
		}
	}
	return -1
}

// validLength returns the length of the segment's complete, intact records.
func validLength(f *os.File) (int64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("spool: %w", err)
	}
	r := frameReader{r: bufio.NewReaderSize(io.NewSectionReader(f, 0, st.Size()), 256<<10)}
	var n int64
	for {
		rec, err := r.next()
		if err != nil {
			return n, nil //nolint:nilerr // a torn or corrupt tail, or unwritten zeros, ends the valid part
		}
		n += int64(frameHeader + len(rec))
	}
}

func (s *Spool) segPath(start int64) string {
	return filepath.Join(s.dir, fmt.Sprintf("%020d%s", start, suffix))
}

// Append writes one record and returns the offset after it, once the
// record is in the operating system's page cache: a copy into the mapped
// segment, under the spool's lock, in the caller's goroutine. fill
// appends the record to dst and returns it; it is called under the lock,
// so records are written in the order fill is called, and numbers assigned
// in fill follow the spool. est is what the record may take at most, for
// the bound: the spool may go past MaxBytes by up to headroom for it (room
// kept for records that matter more); fill is not called when it would not
// fit.
func (s *Spool) Append(est int, headroom int64, fill func(dst []byte) []byte) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	end := s.end.Load()
	if end-s.start.Load()+int64(frameHeader+est) > s.opts.MaxBytes+headroom {
		return 0, ErrFull
	}
	s.buf = fill(s.buf[:0])
	rec := s.buf
	if len(rec) > MaxRecordBytes {
		return 0, ErrTooLarge
	}
	if len(rec) == 0 {
		return 0, errors.New("spool: empty record")
	}
	n := int64(frameHeader + len(rec))
	if s.cur.size+n > int64(len(s.cur.data)) {
		if err := s.rotate(end, n); err != nil {
			return 0, err
		}
	}
	at := s.cur.data[s.cur.size:]
	binary.LittleEndian.PutUint32(at, uint32(len(rec)))
	binary.LittleEndian.PutUint32(at[4:], crc32.Checksum(rec, castagnoli))
	copy(at[frameHeader:], rec)
	s.cur.size += n
	s.dirty = true
	s.end.Store(end + n)
	// A segment populated to its end needs no more: waking the populator
	// for each of its last appends would only take the lock from them.
	if g := s.cur; g.populated < int64(len(g.data)) && g.size > g.populated-lookahead/2 && !s.noPopulate {
		select {
		case s.ahead <- struct{}{}:
		default: // populateLoop is awake already
		}
	}
	return end + n, nil
}

// rotate starts a new segment at offset start. The full one is synced,
// unmapped and closed by the sync loop: an fsync of a whole segment would
// hold every Append up.
func (s *Spool) rotate(start, need int64) error {
	if s.cur.size == 0 {
		// An empty segment too small for the record: map it larger,
		// keeping the old mapping until the new one stands (the disk may
		// have no room for it).
		seg, err := openSegment(s.segPath(start), start, max(s.opts.SegmentBytes, need))
		if err != nil {
			return err
		}
		if err := s.cur.unmap(); err != nil {
			_ = seg.close()
			return fmt.Errorf("spool: %w", err)
		}
		_ = s.cur.f.Close()
		s.cur = seg
		return nil
	}
	seg, err := openSegment(s.segPath(start), start, max(s.opts.SegmentBytes, need))
	if err != nil {
		return err
	}
	s.full = append(s.full, s.cur)
	s.cur, s.dirty = seg, false
	s.segs = append(s.segs, start)
	return nil
}

// Start returns the offset of the first byte the spool holds.
func (s *Spool) Start() int64 { return s.start.Load() }

// End returns the offset after the last record written.
func (s *Spool) End() int64 { return s.end.Load() }

// Size returns the bytes the spool holds.
func (s *Spool) Size() int64 { return s.end.Load() - s.start.Load() }

// MaxBytes returns the spool's bound.
func (s *Spool) MaxBytes() int64 { return s.opts.MaxBytes }

// Release drops the segments that lie wholly before offset, once what they
// hold is shipped. The segment being written stays.
func (s *Spool) Release(offset int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if offset > s.released.Load() {
		s.released.Store(offset)
	}
	var err error
	for len(s.segs) > 1 && s.segs[1] <= offset {
		if rerr := os.Remove(s.segPath(s.segs[0])); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("spool: release: %w", rerr)
			break
		}
		s.segs = s.segs[1:]
	}
	s.start.Store(s.segs[0])
	return err
}

// Sync writes the records appended so far to disk, except those shipped
// already (Release): what has reached its destination needs no second
// copy on disk, and a consumer that keeps up leaves little to write.
func (s *Spool) Sync() error {
	s.mu.Lock()
	full := s.full
	s.full = nil
	var (
		cur  *segment
		size int64
	)
	if s.cur != nil && s.dirty {
		cur, size, s.dirty = s.cur, s.cur.size, false
	}
	s.mu.Unlock()
	// Synced outside the lock, so appends go on meanwhile; an append
	// after this point is synced by the next call.
	released := s.released.Load()
	var errs []error
	for _, g := range full {
		errs = append(errs, g.sync(g.size, released), g.close())
	}
	if cur != nil {
		errs = append(errs, cur.sync(size, released))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("spool: sync: %w", err)
	}
	return nil
}

// sync writes the segment's first size bytes to disk, less those before
// the offset released. The first sync of a segment is a whole fsync of the
// file and of its directory, so that the file, its size and its name
// survive a machine crash; later ones write the mapped pages not yet
// shipped (msync of that range).
func (g *segment) sync(size, released int64) error {
	if !g.synced {
		g.synced = true
		d, err := os.Open(filepath.Dir(g.f.Name()))
		if err != nil {
			return err
		}
		return errors.Join(g.f.Sync(), d.Sync(), d.Close())
	}
	from := max(released-g.start, 0)
	if from >= size {
		return nil // shipped whole
	}
	page := int64(os.Getpagesize())
	from -= from % page
	return unix.Msync(g.data[from:size], unix.MS_SYNC)
}

func (s *Spool) syncLoop() {
	defer close(s.done)
	if s.opts.SyncEvery < 0 {
		<-s.stop
		return
	}
	t := time.NewTicker(s.opts.SyncEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			_ = s.Sync() // a failure shows on the next sync, or at Close
		}
	}
}

// Close syncs what was written and releases the spool to the next process.
func (s *Spool) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	close(s.stop)
	<-s.done
	<-s.populateDone
	serr := s.Sync()
	s.mu.Lock()
	cerr := errors.Join(s.cur.sync(s.cur.size, s.released.Load()), s.cur.close())
	s.cur = nil
	s.mu.Unlock()
	lerr := s.lock.Close() // closing the file releases the flock
	return errors.Join(serr, cerr, lerr)
}

// Reader reads records in order from an offset. It is not safe for
// concurrent use; a spool may have several.
type Reader struct {
	s   *Spool
	off int64 // offset of the next record
	seg int64 // start of the segment open in f
	f   *os.File
	br  *bufio.Reader
	fr  frameReader
	lim int64 // offset up to which fr may read
}

// NewReader returns a reader from offset, which must be the start of a
// record (an offset Append or Reader.Next returned, or Start).
func (s *Spool) NewReader(offset int64) *Reader {
	return &Reader{s: s, off: offset, seg: -1}
}

// Offset returns the offset of the next record.
func (r *Reader) Offset() int64 { return r.off }

// Next returns the next record and the offset after it, or io.EOF when it
// has read everything written so far. The record is valid until the next
// call.
func (r *Reader) Next() ([]byte, int64, error) {
	end := r.s.end.Load()
	if r.off >= end {
		return nil, r.off, io.EOF
	}
	if r.f == nil || r.off >= r.lim {
		if err := r.position(end); err != nil {
			return nil, r.off, err
		}
	}
	rec, err := r.fr.next()
	if err != nil {
		return nil, r.off, fmt.Errorf("spool: read at offset %d: %w", r.off, err)
	}
	r.off += int64(frameHeader + len(rec))
	return rec, r.off, nil
}

// position opens the segment holding r.off and reads from r.off up to the
// segment's end or end, whichever comes first.
func (r *Reader) position(end int64) error {
	r.s.mu.Lock()
	i, found := slices.BinarySearch(r.s.segs, r.off)
	if !found {
		i--
	}
	var start, lim int64 = -1, end
	if i >= 0 {
		start = r.s.segs[i]
		if i+1 < len(r.s.segs) {
			lim = r.s.segs[i+1]
		}
	}
	r.s.mu.Unlock()
	if start < 0 {
		return fmt.Errorf("spool: offset %d was released", r.off)
	}
	if r.f == nil || r.seg != start {
		r.close()
		f, err := os.Open(r.s.segPath(start))
		if err != nil {
			return fmt.Errorf("spool: %w", err)
		}
		r.f, r.seg = f, start
	}
	sec := io.NewSectionReader(r.f, r.off-start, lim-r.off)
	if r.br == nil {
		r.br = bufio.NewReaderSize(sec, 256<<10)
	} else {
		r.br.Reset(sec)
	}
	r.fr.r, r.lim = r.br, lim
	return nil
}

func (r *Reader) close() {
	if r.f != nil {
		_ = r.f.Close()
		r.f, r.seg = nil, -1
	}
}

// Close closes the reader's file.
func (r *Reader) Close() { r.close() }

// frameReader reads frames from a byte stream.
type frameReader struct {
	r   io.Reader
	hdr [frameHeader]byte
	buf []byte
}

// errCorrupt marks a frame whose length or checksum is wrong.
var errCorrupt = errors.New("corrupt record")

// next returns the next frame's record, io.EOF at a clean end, and
// io.ErrUnexpectedEOF or errCorrupt at a torn or damaged one.
func (fr *frameReader) next() ([]byte, error) {
	if _, err := io.ReadFull(fr.r, fr.hdr[:]); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint32(fr.hdr[:4])
	if n == 0 || n > MaxRecordBytes {
		return nil, errCorrupt // zeros: where a segment was not written
	}
	if cap(fr.buf) < int(n) {
		fr.buf = make([]byte, n)
	}
	rec := fr.buf[:n]
	if _, err := io.ReadFull(fr.r, rec); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	if crc32.Checksum(rec, castagnoli) != binary.LittleEndian.Uint32(fr.hdr[4:]) {
		return nil, errCorrupt
	}
	return rec, nil
}
