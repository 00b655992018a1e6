package eventlog

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func ev(id, user, item string, typ recservev1.EventType, w float64) *recservev1.Event {
	return &recservev1.Event{
		EventId: id, UserId: user, ItemId: item, Type: typ, Weight: w,
		Timestamp: timestamppb.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)),
	}
}

func click(id string) *recservev1.Event {
	return ev(id, "u-"+id, "i-"+id, recservev1.EventType_EVENT_TYPE_CLICK, 0)
}

func clicks(ids ...string) []*recservev1.Event {
	evs := make([]*recservev1.Event, len(ids))
	for i, id := range ids {
		evs[i] = click(id)
	}
	return evs
}

func openLog(t *testing.T, dir string) *Log {
	t.Helper()
	l, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func appendOK(t *testing.T, l *Log, evs []*recservev1.Event, want int) {
	t.Helper()
	n, err := l.Append(evs)
	if err != nil || n != want {
		t.Fatalf("Append = %d, %v; want %d, nil", n, err, want)
	}
}

// stored returns the stored events' ids, in order.
func stored(t *testing.T, l *Log) []string {
	t.Helper()
	var ids []string
	if err := l.Each(func(e *recservev1.Event) error {
		ids = append(ids, e.EventId)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

func TestAppendDedupeReopen(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	if l.Len() != 0 || len(stored(t, l)) != 0 {
		t.Fatal("new log not empty")
	}
	appendOK(t, l, clicks("a", "b", "a", "c"), 3) // a twice in one batch
	appendOK(t, l, clicks("c", "d", "b"), 1)
	appendOK(t, l, clicks("a"), 0)
	appendOK(t, l, nil, 0)
	want := []string{"a", "b", "c", "d"}
	if got := stored(t, l); !slices.Equal(got, want) || l.Len() != 4 {
		t.Fatalf("stored %v (Len %d), want %v", got, l.Len(), want)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(clicks("e")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close = %v, want ErrClosed", err)
	}

	l = openLog(t, dir)
	if l.Len() != 4 || l.TornBytes() != 0 {
		t.Fatalf("reopened: Len %d, TornBytes %d", l.Len(), l.TornBytes())
	}
	appendOK(t, l, clicks("d", "a", "e"), 1)
	if got := stored(t, l); !slices.Equal(got, append(want, "e")) {
		t.Fatalf("stored %v", got)
	}
	// Events come back as they went in.
	var back *recservev1.Event
	l.Each(func(e *recservev1.Event) error {
		if e.EventId == "e" {
			back = e
		}
		return nil
	})
	if !proto.Equal(back, click("e")) {
		t.Fatalf("read back %v, want %v", back, click("e"))
	}
}

func TestLocked(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	l.Close()
	l2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	l2.Close()
}

func TestAppendInvalid(t *testing.T) {
	l := openLog(t, t.TempDir())
	appendOK(t, l, clicks("a"), 1)
	for _, evs := range [][]*recservev1.Event{
		{click("b"), {UserId: "u", ItemId: "i", Type: 1}},
		{click("b"), nil},
		{click("b"), ev("c", "bad\xff", "i", 1, 0)}, // invalid UTF-8 does not marshal
	} {
		if n, err := l.Append(evs); !errors.Is(err, ErrInvalid) || n != 0 {
			t.Fatalf("Append = %d, %v; want ErrInvalid", n, err)
		}
	}
	if got := stored(t, l); !slices.Equal(got, []string{"a"}) || l.Len() != 1 {
		t.Fatalf("after rejected appends: %v", got)
	}
}

func TestTornTail(t *testing.T) {
	rec, err := appendRecord(nil, click("torn"))
	if err != nil {
		t.Fatal(err)
	}
	garbled := slices.Clone(rec)
	garbled[len(garbled)-1] ^= 0xff
	tests := []struct {
		name string
		tail []byte
	}{
		{"part of a header", rec[:3]},
		{"header only", rec[:headerLen]},
		{"part of a payload", rec[:len(rec)-2]},
		{"garbled last record", garbled},
		{"zeros", make([]byte, 5000)},
		{"record then zeros", append(slices.Clone(rec[:len(rec)-1]), make([]byte, 100)...)},
		{"zeros then part of a record", append(make([]byte, 4096), rec[:len(rec)-3]...)},
		{"garbage", []byte("\x05\x00\x00\x00garbage, not a record")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			l := openLog(t, dir)
			appendOK(t, l, clicks("a", "b", "c"), 3)
			l.Close()
			path := filepath.Join(dir, FileName)
			st, _ := os.Stat(path)
			good := st.Size()
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.Write(tt.tail)
			f.Close()

			l = openLog(t, dir)
			if l.Len() != 3 || l.TornBytes() != int64(len(tt.tail)) {
				t.Fatalf("Len %d, TornBytes %d; want 3, %d", l.Len(), l.TornBytes(), len(tt.tail))
			}
			if st, _ := os.Stat(path); st.Size() != good {
				t.Fatalf("file is %d bytes, want %d", st.Size(), good)
			}
			appendOK(t, l, clicks("torn", "d"), 2)
			l.Close()
			l = openLog(t, dir)
			if got := stored(t, l); !slices.Equal(got, []string{"a", "b", "c", "torn", "d"}) || l.TornBytes() != 0 {
				t.Fatalf("after recovery: %v, TornBytes %d", got, l.TornBytes())
			}
		})
	}
}

func TestCorruptMiddle(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	appendOK(t, l, clicks("a", "b", "c"), 3)
	l.Close()
	path := filepath.Join(dir, FileName)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := appendRecord(nil, click("a"))
	data[len(rec)+headerLen+2] ^= 0x01 // a payload byte of the second record
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open = %v, want ErrCorrupt", err)
	}
	// The failed Open released the directory.
	os.WriteFile(path, nil, 0o644)
	openLog(t, dir)
}

func TestDataset(t *testing.T) {
	const (
		view     = recservev1.EventType_EVENT_TYPE_VIEW
		click    = recservev1.EventType_EVENT_TYPE_CLICK
		cart     = recservev1.EventType_EVENT_TYPE_ADD_TO_CART
		purchase = recservev1.EventType_EVENT_TYPE_PURCHASE
		rating   = recservev1.EventType_EVENT_TYPE_RATING
		shown    = recservev1.EventType_EVENT_TYPE_IMPRESSION
	)
	l := openLog(t, t.TempDir())
	appendOK(t, l, []*recservev1.Event{
		ev("1", "u1", "i1", view, 0),      // 1
		ev("2", "u1", "i1", click, 0),     // +2
		ev("3", "u1", "i2", shown, 0),     // impression: no interaction
		ev("4", "u2", "i1", purchase, 0),  // 5
		ev("5", "u2", "i3", rating, 4),    // 4
		ev("6", "u2", "i3", cart, 0.5),    // +0.5 (explicit weight wins)
		ev("7", "u3", "i2", shown, 0),     // a user with impressions only
		ev("8", "u1", "i4", 99, 1),        // unknown type
		ev("9", "u1", "i4", rating, 0),    // rating without weight
		ev("10", "u1", "i4", click, -1),   // negative weight from a foreign producer
		ev("11", "u4", "i1", 0, 1),        // unspecified type
		ev("12", "u4", "i5", cart, 1e300), // beyond float32
	}, 12)
	appendOK(t, l, []*recservev1.Event{ev("2", "u1", "i1", click, 0)}, 0) // redelivery
	d, err := l.Dataset()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float32{}
	for u, user := range d.UserIDs {
		ws := d.UserWeights(u)
		for j, i := range d.UserItems(u) {
			got[user+"/"+d.ItemIDs[i]] = ws[j]
		}
	}
	want := map[string]float32{"u1/i1": 3, "u2/i1": 5, "u2/i3": 4.5}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Dataset interactions %v, want %v", got, want)
	}
	if d.NumUsers() != 2 || d.NumItems() != 2 || d.NumInteractions() != 3 {
		t.Fatalf("Dataset has %d users, %d items, %d interactions; want 2, 2, 3", d.NumUsers(), d.NumItems(), d.NumInteractions())
	}
}

// TestConcurrent appends while reading datasets; run with -race.
func TestConcurrent(t *testing.T) {
	dir := t.TempDir()
	l := openLog(t, dir)
	var wg sync.WaitGroup
	wg.Go(func() {
		for b := range 50 {
			evs := make([]*recservev1.Event, 20)
			for i := range evs {
				evs[i] = click(fmt.Sprintf("%d-%d", b, i%15)) // 15 distinct per batch
			}
			if _, err := l.Append(evs); err != nil {
				t.Error(err)
				return
			}
		}
	})
	for range 20 {
		d, err := l.Dataset()
		if err != nil {
			t.Fatal(err)
		}
		if n := d.NumInteractions(); n > 50*15 || n%15 != 0 {
			t.Fatalf("dataset of %d interactions: not whole batches", n)
		}
	}
	wg.Wait()
	if l.Len() != 50*15 {
		t.Fatalf("Len %d, want %d", l.Len(), 50*15)
	}
}

// FuzzOpen checks that any file content either opens (keeping a prefix of
// whole records, and appendable after) or fails with ErrCorrupt, never panics.
func FuzzOpen(f *testing.F) {
	a, _ := appendRecord(nil, click("a"))
	b, _ := appendRecord(nil, click("b"))
	f.Add(append(slices.Clone(a), b...))
	f.Add(append(slices.Clone(a), b[:5]...))
	f.Add([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, FileName), data, 0o644); err != nil {
			t.Fatal(err)
		}
		l, err := Open(dir)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Open = %v, want nil or ErrCorrupt", err)
			}
			return
		}
		defer l.Close()
		n := l.Len()
		added, err := l.Append(clicks("fuzz-new-id"))
		if err != nil {
			t.Fatal(err)
		}
		n += added
		l.Close()
		l2, err := Open(dir)
		if err != nil {
			t.Fatalf("reopen after append: %v", err)
		}
		defer l2.Close()
		if l2.Len() != n || l2.TornBytes() != 0 {
			t.Fatalf("reopened Len %d (TornBytes %d), want %d", l2.Len(), l2.TornBytes(), n)
		}
	})
}
