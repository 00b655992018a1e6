package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"google.golang.org/protobuf/types/known/timestamppb"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// at is a click of user on item at t0+h hours.
func at(id, user, item string, h int) *recservev1.Event {
	e := ev(id, user, item, recservev1.EventType_EVENT_TYPE_CLICK, 0)
	e.Timestamp = timestamppb.New(t0.Add(time.Duration(h) * time.Hour))
	return e
}

// users returns the users of d and their items, as "user:item" pairs, sorted.
func pairs(t *testing.T, l *Log) []string {
	t.Helper()
	d, err := l.Dataset()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for u, id := range d.UserIDs {
		for _, i := range d.UserItems(u) {
			out = append(out, id+":"+d.ItemIDs[i])
		}
	}
	slices.Sort(out)
	return out
}

func eraseOK(t *testing.T, l *Log, users map[string]time.Time, want int) {
	t.Helper()
	n, err := l.EraseUsers(users)
	if err != nil || n != want {
		t.Fatalf("EraseUsers(%v) = %d, %v; want %d, nil", users, n, err, want)
	}
}

// TestEraseUsers erases two users' events up to a time each and checks what
// stays, in the log, after a reopen, and against events delivered again.
func TestEraseUsers(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	appendOK(t, l, []*recservev1.Event{
		at("a1", "A", "x", 0), at("b1", "B", "x", 0), at("a2", "A", "y", 1),
		at("c1", "C", "x", 1), at("b2", "B", "z", 2), at("c2", "C", "y", 3),
	}, 6)
	// A up to t0+1h (its event at exactly that time included), C up to t0+2h
	// (its event at t0+3h stays), and a user with no events.
	eraseOK(t, l, map[string]time.Time{"A": t0.Add(time.Hour), "C": t0.Add(2 * time.Hour), "N": t0}, 3)

	check := func(what string, l *Log) {
		t.Helper()
		if got, want := stored(t, l), []string{"b1", "b2", "c2"}; !slices.Equal(got, want) {
			t.Fatalf("%s: stored %v, want %v", what, got, want)
		}
		if got, want := pairs(t, l), []string{"B:x", "B:z", "C:y"}; !slices.Equal(got, want) {
			t.Fatalf("%s: dataset %v, want %v", what, got, want)
		}
		if l.Len() != 3 {
			t.Fatalf("%s: Len %d, want 3", what, l.Len())
		}
		if et, ok := l.Erased("A"); !ok || !et.Equal(t0.Add(time.Hour)) {
			t.Fatalf("%s: Erased(A) = %v, %v", what, et, ok)
		}
		if _, ok := l.Erased("B"); ok {
			t.Fatalf("%s: B erased", what)
		}
	}
	check("after the erasure", l)

	// Delivered again: the same events, the same ids; new ids with old
	// timestamps; an event without a timestamp. None is stored.
	appendOK(t, l, []*recservev1.Event{at("a1", "A", "x", 0), at("a2", "A", "y", 1), at("c1", "C", "x", 1)}, 0)
	noTime := at("a4", "A", "w", 0)
	noTime.Timestamp = nil
	appendOK(t, l, []*recservev1.Event{at("a3", "A", "z", -5), at("c3", "C", "z", 2), noTime}, 0)
	check("after redelivery", l)
	// The same erasure again, or an earlier one: nothing to do.
	eraseOK(t, l, map[string]time.Time{"A": t0.Add(time.Hour), "C": t0}, 0)

	// The file is the rewritten one, with nothing else in the directory.
	names, err := filepath.Glob(filepath.Join(dir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	hidden, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(hidden) != 0 || len(names) != 3 { // events.log, erased.jsonl, LOCK
		t.Fatalf("directory holds %v %v", names, hidden)
	}

	l.Close()
	l = openLog(t, dir)
	check("after reopen", l)
	appendOK(t, l, []*recservev1.Event{at("a1", "A", "x", 0), at("a5", "A", "v", 1), at("c1", "C", "x", 1)}, 0)
	// A comes back: events after the erasure are stored, dedup still works.
	appendOK(t, l, []*recservev1.Event{at("a6", "A", "q", 2), at("b1", "B", "x", 0), at("a6", "A", "q", 2)}, 1)
	if got, want := pairs(t, l), []string{"A:q", "B:x", "B:z", "C:y"}; !slices.Equal(got, want) {
		t.Fatalf("after A came back: dataset %v, want %v", got, want)
	}
	// A later erasure of A takes the new event too.
	eraseOK(t, l, map[string]time.Time{"A": t0.Add(2 * time.Hour)}, 1)
	l.Close()
	l = openLog(t, dir)
	if got, want := stored(t, l), []string{"b1", "b2", "c2"}; !slices.Equal(got, want) {
		t.Fatalf("after the second erasure: stored %v, want %v", got, want)
	}
	if _, err := l.EraseUsers(map[string]time.Time{"": t0}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("erasing an empty user id: %v, want ErrInvalid", err)
	}
}

// TestEraseInterrupted recovers from a crash after the erasure was recorded
// and before the file was replaced: Open removes the erased events and the
// leftover temporary file.
func TestEraseInterrupted(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	appendOK(t, l, []*recservev1.Event{at("a1", "A", "x", 0), at("b1", "B", "x", 0), at("a2", "A", "y", 0)}, 3)
	l.Close()
	if err := appendErasures(dir, []erasure{{UserID: "A", Time: t0}}); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "."+FileName+".tmp-123")
	if err := os.WriteFile(tmp, []byte("half a rewrite"), 0o644); err != nil {
		t.Fatal(err)
	}
	l = openLog(t, dir)
	if got := stored(t, l); !slices.Equal(got, []string{"b1"}) || l.Len() != 1 {
		t.Fatalf("after recovery: stored %v (Len %d), want [b1]", got, l.Len())
	}
	if _, err := os.Stat(tmp); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("temporary file left: %v", err)
	}
	appendOK(t, l, []*recservev1.Event{at("a1", "A", "x", 0)}, 0)
}

// TestErasedFile checks erased.jsonl's torn last line (truncated), a bad line
// in the middle (ErrCorrupt) and compaction of repeated users.
func TestErasedFile(t *testing.T) {
	line := func(u string, h int) string {
		return fmt.Sprintf(`{"user_id":%q,"erased_at":%q}`+"\n", u, t0.Add(time.Duration(h)*time.Hour).Format(time.RFC3339Nano))
	}
	for _, tc := range []struct {
		name, content string
		err           error
		users         int
		after         string // the file's content after Open, when not content
	}{
		{name: "torn", content: line("A", 1) + `{"user_id":"B","era`, users: 1, after: line("A", 1)},
		{name: "torn after newline", content: line("A", 1) + "\x00\x00\x00\n", users: 1, after: line("A", 1)},
		{name: "middle", content: line("A", 1) + "garbage\n" + line("B", 1), err: ErrCorrupt},
		{name: "latest wins", content: line("A", 3) + line("A", 1) + line("B", 0), users: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, ErasedName)
			if err := os.WriteFile(path, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			l, err := Open(dir)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("Open = %v, want %v", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if len(l.erased) != tc.users {
				t.Fatalf("%d users erased, want %d", len(l.erased), tc.users)
			}
			if et, _ := l.Erased("A"); tc.name == "latest wins" && !et.Equal(t0.Add(3*time.Hour)) {
				t.Fatalf("A erased up to %v, want the latest time", et)
			}
			b, _ := os.ReadFile(path)
			if want := cmp(tc.after, tc.content); string(b) != want {
				t.Fatalf("file after Open: %q, want %q", b, want)
			}
		})
	}

	// Many erasures of the same users are compacted at Open.
	dir := t.TempDir()
	var sb strings.Builder
	for i := range 3000 {
		sb.WriteString(line(fmt.Sprint("u", i%3), i))
	}
	path := filepath.Join(dir, ErasedName)
	if err := os.WriteFile(path, []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	l := openLog(t, dir)
	b, _ := os.ReadFile(path)
	if n := strings.Count(string(b), "\n"); n != 3 {
		t.Fatalf("compacted file has %d lines, want 3", n)
	}
	if et, _ := l.Erased("u2"); !et.Equal(t0.Add(2999 * time.Hour)) {
		t.Fatalf("u2 erased up to %v after compaction", et)
	}
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// TestEraseConcurrent erases users while events are appended and datasets
// read; run with -race. Every kept event stays, no erased one does.
func TestEraseConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	const batches = 40
	var wg sync.WaitGroup
	wg.Go(func() {
		for b := range batches {
			evs := make([]*recservev1.Event, 0, 15)
			for i := range 10 {
				evs = append(evs, at(fmt.Sprintf("k%d-%d", b, i), fmt.Sprint("keep", i), fmt.Sprint("i", b), 0))
			}
			for i := range 5 {
				evs = append(evs, at(fmt.Sprintf("g%d-%d", b, i), fmt.Sprint("gone", b%8), fmt.Sprint("i", i), 0))
			}
			if _, err := l.Append(evs); err != nil {
				t.Error(err)
				return
			}
		}
	})
	wg.Go(func() {
		for k := range 8 {
			if _, err := l.EraseUsers(map[string]time.Time{fmt.Sprint("gone", k): t0}); err != nil {
				t.Error(err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	})
	for range 20 {
		if _, err := l.Dataset(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	all := map[string]time.Time{}
	for k := range 8 {
		all[fmt.Sprint("gone", k)] = t0
	}
	if _, err := l.EraseUsers(all); err != nil { // nothing new: must find nothing left
		t.Fatal(err)
	}
	check := func(l *Log) {
		t.Helper()
		kept := 0
		if err := l.Each(func(e *recservev1.Event) error {
			if strings.HasPrefix(e.UserId, "gone") {
				return fmt.Errorf("erased event %s stored", e.EventId)
			}
			kept++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if kept != batches*10 || l.Len() != kept {
			t.Fatalf("%d events kept (Len %d), want %d", kept, l.Len(), batches*10)
		}
	}
	check(l)
	l.Close()
	check(openLog(t, dir))
}
