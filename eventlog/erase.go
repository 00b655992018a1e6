package eventlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/recserve/recserve/internal/fsutil"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// erasure is one line of erased.jsonl: the user's events with a timestamp not
// after Time are erased. A user erased more than once keeps the latest time.
type erasure struct {
	UserID string    `json:"user_id"`
	Time   time.Time `json:"erased_at"`
}

// tempPattern names the temporary file of a rewrite; Open removes leftovers.
const tempPattern = "." + FileName + ".tmp-*"

// EraseUsers erases users' events: for each user id, every stored event of
// that user whose timestamp is not after the given time (an event without a
// timestamp included) is removed from the file, and the erasure is remembered,
// durably, in erased.jsonl in the log directory, so that Append does not store
// such events when they are delivered again (a redelivery, a replay of the
// topic); events of the user with a later timestamp are stored as usual. It
// returns how many stored events it removed.
//
// The erasure is recorded (fsynced) first; the file is then rewritten to a
// temporary file, fsynced and renamed over events.log. A crash in between
// leaves the erased events in the file, and the next Open removes them. Append,
// Dataset and Each go on while the file is rewritten (Append waits only for
// the final copy of what was appended meanwhile and the rename); a Dataset or
// Each that started before the rename reads the old file whole. Erasing a user
// again with the same or an earlier time changes nothing and costs no rewrite.
//
// User ids must not be empty (ErrInvalid). On an error the erasure may be
// recorded without the events being removed yet; calling EraseUsers again, or
// reopening the log, finishes it.
func (l *Log) EraseUsers(users map[string]time.Time) (removed int, err error) {
	for u := range users {
		if u == "" {
			return 0, fmt.Errorf("%w: erasure of an empty user id", ErrInvalid)
		}
	}
	l.eraseMu.Lock()
	defer l.eraseMu.Unlock()
	l.mu.Lock()
	switch {
	case l.f == nil:
		l.mu.Unlock()
		return 0, ErrClosed
	case l.err != nil:
		l.mu.Unlock()
		return 0, l.err
	}
	var fresh []erasure
	for u, t := range users {
		if cur, ok := l.erased[u]; ok && !t.After(cur) {
			continue
		}
		fresh = append(fresh, erasure{UserID: u, Time: t.UTC()})
	}
	l.mu.Unlock()
	if len(fresh) == 0 && !l.needPurge {
		return 0, nil
	}
	slices.SortFunc(fresh, func(a, b erasure) int { return cmpString(a.UserID, b.UserID) })
	if err := appendErasures(l.dir, fresh); err != nil {
		return 0, err
	}
	l.mu.Lock()
	for _, e := range fresh {
		l.erased[e.UserID] = e.Time
	}
	l.needPurge = true
	l.mu.Unlock()
	return l.purge()
}

// Erased returns the time up to which user's events are erased, if they are.
func (l *Log) Erased(user string) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	t, ok := l.erased[user]
	return t, ok
}

// isErased reports whether e falls under an erasure (l.mu held, or l not yet shared).
func (l *Log) isErased(e *recservev1.Event) bool {
	t, ok := l.erased[e.GetUserId()]
	return ok && !e.GetTimestamp().AsTime().After(t)
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// purge rewrites the file without the erased events and returns how many it
// removed. l.eraseMu is held (or l is not shared yet); l.mu is taken to
// snapshot the file and, at the end, to copy what was appended meanwhile and
// swap the files. Appends after the snapshot were filtered by the erasures
// already, so that tail is copied as it is.
func (l *Log) purge() (removed int, err error) {
	l.mu.Lock()
	if l.f == nil {
		l.mu.Unlock()
		return 0, ErrClosed
	}
	size := l.size
	src, err := os.Open(l.path)
	l.mu.Unlock()
	if err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	defer src.Close()

	tmp, err := os.CreateTemp(l.dir, tempPattern)
	if err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	keepTmp := false
	defer func() {
		if !keepTmp {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o644); err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	w := bufio.NewWriterSize(tmp, 1<<20)
	var (
		gone    []string
		written int64
		buf     []byte
	)
	r := bufio.NewReaderSize(io.NewSectionReader(src, 0, size), 1<<20)
	_, err = scan(r, size, func(e *recservev1.Event, _ int64) error {
		if l.isErased(e) {
			gone = append(gone, e.GetEventId())
			return nil
		}
		var err error
		if buf, err = appendRecord(buf[:0], e); err != nil {
			return err
		}
		n, err := w.Write(buf)
		written += int64(n)
		return err
	})
	if errors.Is(err, errBadRecord) {
		return 0, fmt.Errorf("%w: %s: %v", ErrCorrupt, l.path, err)
	}
	if err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	if len(gone) == 0 {
		l.mu.Lock()
		l.needPurge = false
		l.mu.Unlock()
		return 0, nil
	}

	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.f == nil:
		return 0, ErrClosed
	case l.err != nil:
		return 0, l.err
	}
	if tail := l.size - size; tail > 0 {
		n, err := io.Copy(w, io.NewSectionReader(l.f, size, tail))
		written += n
		if err != nil {
			return 0, fmt.Errorf("eventlog: erase: copy the tail: %w", err)
		}
	}
	if err := w.Flush(); err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	if err := os.Rename(tmp.Name(), l.path); err != nil {
		return 0, fmt.Errorf("eventlog: erase: %w", err)
	}
	// The temporary file is events.log now: keep its descriptor as the log's.
	keepTmp = true
	old := l.f
	l.f, l.size = tmp, written
	old.Close()
	for _, id := range gone {
		delete(l.ids, id)
	}
	if err := fsutil.SyncDir(l.dir); err != nil {
		// The rename may not be durable: the next Open removes the events again.
		return len(gone), fmt.Errorf("eventlog: erase: %w", err)
	}
	l.needPurge = false
	return len(gone), nil
}

// appendErasures appends erasures to erased.jsonl and syncs it.
func appendErasures(dir string, es []erasure) error {
	if len(es) == 0 {
		return nil
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	for _, e := range es {
		if err := enc.Encode(e); err != nil {
			return fmt.Errorf("eventlog: erase: %w", err)
		}
	}
	path := filepath.Join(dir, ErasedName)
	_, statErr := os.Stat(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("eventlog: erase: %w", err)
	}
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && errors.Is(statErr, os.ErrNotExist) {
		err = fsutil.SyncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("eventlog: erase: record the erasure: %w", err)
	}
	return nil
}

// readErased reads erased.jsonl. A bad last line (an append cut short by a
// crash, not acknowledged) is truncated away; a bad line followed by a good
// one is ErrCorrupt. A file with many repeated users is rewritten compacted.
func readErased(dir string) (map[string]time.Time, error) {
	path := filepath.Join(dir, ErasedName)
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("eventlog: %w", err)
	}
	erased := map[string]time.Time{}
	lines := 0
	good := -1 // offset after the last good line, if a bad one came before
	var bad error
	for off := 0; off < len(data); {
		end := bytes.IndexByte(data[off:], '\n')
		var e erasure
		var perr error
		if end < 0 {
			perr, end = errors.New("no line end"), len(data)
		} else {
			end += off
			if perr = json.Unmarshal(data[off:end], &e); perr == nil && e.UserID == "" {
				perr = errors.New("no user id")
			}
		}
		switch {
		case perr != nil && bad == nil:
			bad, good = fmt.Errorf("line at offset %d: %v", off, perr), off
		case perr == nil && bad != nil:
			return nil, fmt.Errorf("%w: %s: %v", ErrCorrupt, path, bad)
		case perr == nil:
			lines++
			if cur, ok := erased[e.UserID]; !ok || e.Time.After(cur) {
				erased[e.UserID] = e.Time
			}
		}
		off = end + 1
	}
	if bad != nil {
		if err := truncateSync(path, int64(good)); err != nil {
			return nil, fmt.Errorf("eventlog: truncate the torn end of %s: %w", path, err)
		}
	}
	if lines > 2*len(erased)+1000 {
		if err := writeErased(path, erased); err != nil {
			return nil, err
		}
	}
	return erased, nil
}

func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// writeErased replaces erased.jsonl with one line per user, atomically.
func writeErased(path string, erased map[string]time.Time) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	users := make([]string, 0, len(erased))
	for u := range erased {
		users = append(users, u)
	}
	slices.Sort(users)
	for _, u := range users {
		if err := enc.Encode(erasure{UserID: u, Time: erased[u]}); err != nil {
			return fmt.Errorf("eventlog: compact %s: %w", path, err)
		}
	}
	if err := fsutil.WriteFileAtomic(path, buf.Bytes()); err != nil {
		return fmt.Errorf("eventlog: compact %s: %w", path, err)
	}
	return nil
}

// removeTemps removes the temporary files of rewrites a crash interrupted.
func removeTemps(dir string) {
	names, _ := filepath.Glob(filepath.Join(dir, tempPattern))
	for _, n := range names {
		os.Remove(n)
	}
}
