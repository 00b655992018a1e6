package catalog

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

func openFile(t *testing.T, dir string) *File {
	t.Helper()
	f, err := OpenFile(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func load(t *testing.T, f *File) []Item {
	t.Helper()
	items, err := f.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return items
}

// save applies recs to s and saves the changed items to f, as a consumer does.
func save(t *testing.T, f *File, s *State, recs ...*recservev1.CatalogRecord) {
	t.Helper()
	if err := f.Save(context.Background(), s.Apply(recs)); err != nil {
		t.Fatal(err)
	}
}

// fileRecords counts the whole records in the file of dir.
func fileRecords(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	_, n, err := readRecords(f, func(*recservev1.CatalogRecord) {})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestFileReopen: what Save wrote is what a reopened File loads.
func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir)
	if len(load(t, f)) != 0 {
		t.Fatal("new file not empty")
	}
	s := NewState()
	save(t, f, s, upsert("a", "books", nil, map[string]string{"p": "1"}, 1), avail("b", false, 2), del("c", 3))
	save(t, f, s, avail("a", false, 4), upsert("c", "toys", nil, nil, 5))
	save(t, f, s) // nothing
	want := s.Items()
	if got := load(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("Load %v, want %v", got, want)
	}
	f.Close()
	if err := f.Save(context.Background(), want); err == nil {
		t.Fatal("Save after Close succeeded")
	}
	f2 := openFile(t, dir)
	if got := load(t, f2); !reflect.DeepEqual(got, want) {
		t.Fatalf("reopened: Load %v, want %v", got, want)
	}
	if it, _ := s.Get("a"); !it.Upserted || it.Available || it.Category != "books" {
		t.Fatalf("a: %+v", it)
	}
	// An older state saved later does not win on reopen either.
	if err := f2.Save(context.Background(), []Item{{ID: "a", Upserted: true, Category: "old", Available: true, Time: at(0)}}); err != nil {
		t.Fatal(err)
	}
	f2.Close()
	if got := load(t, openFile(t, dir)); !reflect.DeepEqual(got, want) {
		t.Fatalf("after saving an older state: Load %v, want %v", got, want)
	}
}

// TestFileTornTail: a record cut short by a crash is cut away at Open, and
// the file takes appends after it.
func TestFileTornTail(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir)
	s := NewState()
	save(t, f, s, upsert("a", "books", nil, nil, 1), avail("b", false, 2))
	f.Close()
	path := filepath.Join(dir, FileName)
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	good := st.Size()
	rec, err := appendRecord(nil, del("a", 3))
	if err != nil {
		t.Fatal(err)
	}
	for _, torn := range [][]byte{rec[:5], rec[:len(rec)-1], append(append([]byte{}, rec[:8]...), make([]byte, len(rec)-8)...)} {
		if err := os.Truncate(path, good); err != nil {
			t.Fatal(err)
		}
		fh, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := fh.Write(torn); err != nil {
			t.Fatal(err)
		}
		fh.Close()
		f := openFile(t, dir)
		if got := load(t, f); !reflect.DeepEqual(got, s.Items()) {
			t.Fatalf("torn %d bytes: Load %v, want %v", len(torn), got, s.Items())
		}
		if st, _ := os.Stat(path); st.Size() != good {
			t.Fatalf("torn %d bytes: file is %d bytes, want %d", len(torn), st.Size(), good)
		}
		f.Close()
	}
	// Appends after the cut are read back.
	f = openFile(t, dir)
	save(t, f, s, upsert("c", "new", nil, nil, 4))
	f.Close()
	if got := load(t, openFile(t, dir)); !reflect.DeepEqual(got, s.Items()) || len(got) != 3 {
		t.Fatalf("after an append: Load %v, want %v", got, s.Items())
	}
}

// TestFileCompaction: many saves of few items are compacted (by Save and by
// Open) to one record per item, keeping the state.
func TestFileCompaction(t *testing.T) {
	dir := t.TempDir()
	f := openFile(t, dir)
	f.slack = 1000
	s := NewState()
	for i := range 1100 {
		save(t, f, s, avail("a", i%2 == 0, 2*i), upsert("b", "c", ptr(i%3 == 0), nil, 2*i+1))
	}
	save(t, f, s, del("z", 5000))
	want := s.Items()
	if n := fileRecords(t, dir); n > 2*len(want)+1000 || n < len(want) {
		t.Fatalf("file holds %d records of %d items after 2201 saves", n, len(want))
	}
	if got := load(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("after compaction: Load %v, want %v", got, want)
	}
	f.Close()
	f = openFile(t, dir)
	if got := load(t, f); !reflect.DeepEqual(got, want) {
		t.Fatalf("reopened after compaction: Load %v, want %v", got, want)
	}
	// Still appendable after the compaction replaced the file.
	save(t, f, s, avail("a", false, 9000))
	f.Close()
	if got := load(t, openFile(t, dir)); !reflect.DeepEqual(got, s.Items()) {
		t.Fatalf("append after compaction: Load %v, want %v", got, s.Items())
	}

	// A file that grew past the limit without compaction (written by hand
	// here) is compacted at Open.
	dir2 := t.TempDir()
	var buf []byte
	for i := range 1500 {
		var err error
		if buf, err = appendRecord(buf, avail("x", i%2 == 0, i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir2, FileName), buf, 0o644); err != nil {
		t.Fatal(err)
	}
	f2 := openFile(t, dir2)
	if n := fileRecords(t, dir2); n != 1 {
		t.Fatalf("Open left %d records of one item", n)
	}
	if it := load(t, f2); len(it) != 1 || it[0].Available != false || !it[0].AvailableTime.Equal(at(1499)) {
		t.Fatalf("compacted at Open: %v", it)
	}
}
