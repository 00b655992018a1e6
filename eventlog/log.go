// Package eventlog is the trainer's training set: an append-only file of the
// events it consumed, durable on every Append and deduplicated by event id, so
// that an event delivered twice (a consumer crash between storing a batch and
// committing its offsets) is stored once.
//
// The file, events.log in the log directory, is a sequence of records: a
// little-endian uint32 payload length, the payload's CRC-32C, and the payload,
// one proto-marshaled recserve.v1.Event. Every Append is fsynced before it
// returns, so a crash can only damage the bytes of the last Append; Open
// truncates such a torn tail away (and reports a bad record followed by good
// ones as ErrCorrupt).
//
// Erasure (EraseUsers): a user's events up to a time are removed by rewriting
// the file without them (a temporary file, fsynced, renamed over events.log),
// and the erasure is remembered in erased.jsonl, so that the user's old events
// are not stored again when they are delivered again (a Kafka redelivery, a
// replay of the topic). See erase.go.
package eventlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/recserve/recserve/internal/fsutil"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/proto"
)

// Names of the files in a log directory.
const (
	FileName   = "events.log"
	LockName   = "LOCK"
	ErasedName = "erased.jsonl"
)

// Errors returned by this package wrap one of these; test with errors.Is.
var (
	// ErrCorrupt: the file has a bad record before its end, which a crash
	// while appending cannot cause.
	ErrCorrupt = errors.New("eventlog: corrupt")
	// ErrLocked: another Log has the directory open.
	ErrLocked = errors.New("eventlog: directory in use by another process")
	// ErrInvalid: an appended event has no id or cannot be marshaled.
	ErrInvalid = errors.New("eventlog: invalid event")
	// ErrClosed: the Log was closed.
	ErrClosed = errors.New("eventlog: closed")
)

// Log is an append-only, deduplicated event file. It is safe for concurrent
// use: Dataset and Each read a snapshot while Append goes on.
type Log struct {
	dir  string
	path string
	lock *os.File
	torn int64

	// eraseMu serializes EraseUsers (and the purge of Open); erased and
	// needPurge change only under both eraseMu and mu.
	eraseMu   sync.Mutex
	needPurge bool // the file may hold erased events: a purge did not finish

	mu     sync.Mutex
	f      *os.File // nil when closed
	size   int64    // bytes of whole, synced records
	ids    map[string]struct{}
	erased map[string]time.Time // user id -> erased up to this time (inclusive)
	err    error                // sticky write error: the file's state is unknown
	buf    []byte
}

// Open opens the log in dir, creating dir and the file as needed. It reads the
// file to learn the event ids it holds, truncating a torn last record away.
// Only one Log at a time may have dir open (ErrLocked).
func Open(dir string) (*Log, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, LockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if err := lockFile(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("eventlog: lock %s: %w", dir, err)
	}
	l, err := open(dir)
	if err != nil {
		lock.Close()
		return nil, err
	}
	l.lock = lock
	return l, nil
}

func open(dir string) (*Log, error) {
	path := filepath.Join(dir, FileName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if err := fsutil.SyncDir(dir); err != nil {
			f.Close()
			return nil, fmt.Errorf("eventlog: %w", err)
		}
	}
	l := &Log{dir: dir, path: path, f: f, ids: map[string]struct{}{}}
	removeTemps(dir)
	if l.erased, err = readErased(dir); err != nil {
		f.Close()
		return nil, err
	}
	if err := l.load(); err != nil {
		f.Close()
		return nil, err
	}
	if l.needPurge { // erased events a crash kept from being removed
		if _, err := l.purge(); err != nil {
			l.f.Close()
			return nil, err
		}
	}
	return l, nil
}

// load reads the ids of the file's records and truncates a torn tail.
func (l *Log) load() error {
	st, err := l.f.Stat()
	if err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	size := st.Size()
	r := bufio.NewReaderSize(io.NewSectionReader(l.f, 0, size), 1<<20)
	good, err := scan(r, size, func(e *recservev1.Event, _ int64) error {
		if l.isErased(e) {
			l.needPurge = true
			return nil
		}
		l.ids[e.GetEventId()] = struct{}{}
		return nil
	})
	switch {
	case err == nil:
		l.size = size
		return nil
	case !errors.Is(err, errBadRecord):
		return fmt.Errorf("eventlog: read %s: %w", l.path, err)
	}
	torn, terr := tornTail(l.f, good, size)
	if terr != nil {
		return fmt.Errorf("eventlog: read %s: %w", l.path, terr)
	}
	if !torn {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, l.path, err)
	}
	if err := l.f.Truncate(good); err != nil {
		return fmt.Errorf("eventlog: truncate torn tail: %w", err)
	}
	if err := l.f.Sync(); err != nil {
		return fmt.Errorf("eventlog: truncate torn tail: %w", err)
	}
	l.size, l.torn = good, size-good
	return nil
}

// maxTorn bounds the bytes a crash can leave unsynced: one Append's worth.
const maxTorn = 64 << 20

// tornTail reports whether the bad record at off can be the remains of the
// last Append, cut short by a crash: the only Append whose bytes may not all
// have reached the disk, in any order of blocks (zeros where data was not
// written yet, old bytes, a partial record). That is when no whole record
// follows it: a valid record after a bad one means the file was damaged in
// the middle, and truncating would drop good events.
func tornTail(f *os.File, off, size int64) (bool, error) {
	if size-off > maxTorn {
		return false, nil
	}
	rest := make([]byte, size-off)
	if _, err := f.ReadAt(rest, off); err != nil {
		return false, err
	}
	for i := 1; i+headerLen < len(rest); i++ {
		if validRecordAt(rest, i) {
			return false, nil
		}
	}
	return true, nil
}

// validRecordAt reports whether b holds a whole record with a matching checksum
// and an event with an id at offset i.
func validRecordAt(b []byte, i int) bool {
	n := int(binary.LittleEndian.Uint32(b[i:]))
	if n == 0 || n > maxRecord || n > len(b)-i-headerLen {
		return false
	}
	payload := b[i+headerLen : i+headerLen+n]
	if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(b[i+4:]) {
		return false
	}
	var e recservev1.Event
	return proto.Unmarshal(payload, &e) == nil && e.GetEventId() != ""
}

// TornBytes returns how many bytes of a torn last record Open truncated away.
func (l *Log) TornBytes() int64 { return l.torn }

// Append stores the events whose ids the log does not hold yet (an id twice in
// evs counts once) and returns how many it stored. Events of an erased user
// whose timestamp is not after the erasure (an event without a timestamp
// included) are not stored either (see EraseUsers). They are on disk (written
// and fsynced) when it returns. Every event must have an event id (ErrInvalid;
// then nothing is stored). After a write error the log refuses further
// appends: reopen it.
func (l *Log) Append(evs []*recservev1.Event) (added int, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.f == nil:
		return 0, ErrClosed
	case l.err != nil:
		return 0, l.err
	}
	for i, e := range evs {
		if e.GetEventId() == "" {
			return 0, fmt.Errorf("%w: events[%d] has no event id", ErrInvalid, i)
		}
	}
	buf := l.buf[:0]
	var fresh []string
	batch := make(map[string]struct{}, len(evs))
	for i, e := range evs {
		id := e.GetEventId()
		if _, ok := l.ids[id]; ok {
			continue
		}
		if _, ok := batch[id]; ok {
			continue
		}
		if l.isErased(e) {
			continue
		}
		if buf, err = appendRecord(buf, e); err != nil {
			return 0, fmt.Errorf("%w: events[%d] (%s): %v", ErrInvalid, i, id, err)
		}
		batch[id] = struct{}{}
		fresh = append(fresh, id)
	}
	if cap(buf) <= 4<<20 {
		l.buf = buf // reuse a buffer of reasonable size for the next batch
	}
	if len(fresh) == 0 {
		return 0, nil
	}
	if _, err := l.f.WriteAt(buf, l.size); err != nil {
		return 0, l.fail(err)
	}
	if err := l.f.Sync(); err != nil {
		return 0, l.fail(err)
	}
	l.size += int64(len(buf))
	for _, id := range fresh {
		l.ids[id] = struct{}{}
	}
	return len(fresh), nil
}

// fail records a write error. What reached the disk is unknown (after a failed
// fsync, even the page cache cannot be trusted), so the log takes no more
// appends; the next Open keeps whatever whole records are there.
func (l *Log) fail(err error) error {
	_ = l.f.Truncate(l.size) // best effort: Open would drop a torn tail anyway
	l.err = fmt.Errorf("eventlog: append: %w", err)
	return l.err
}

// Len returns the number of distinct events stored (erased ones no longer count).
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.ids)
}

// Each calls fn with every stored event, in the order they were appended, up
// to what was stored when Each was called; fn's error stops it and is
// returned. The events are read back from the file.
func (l *Log) Each(fn func(e *recservev1.Event) error) error {
	// Opened under mu, so that the file is the one size is of: an erasure
	// replaces the file, and a reader that opened the old one reads it whole.
	l.mu.Lock()
	if l.f == nil {
		l.mu.Unlock()
		return ErrClosed
	}
	size := l.size
	f, err := os.Open(l.path)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("eventlog: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(io.NewSectionReader(f, 0, size), 1<<20)
	_, err = scan(r, size, func(e *recservev1.Event, _ int64) error { return fn(e) })
	if errors.Is(err, errBadRecord) {
		return fmt.Errorf("%w: %s: %v", ErrCorrupt, l.path, err)
	}
	return err
}

// Close closes the file and releases the directory. Appends are already
// durable, so there is nothing to flush.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	if lerr := l.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("eventlog: close: %w", err)
	}
	return nil
}
