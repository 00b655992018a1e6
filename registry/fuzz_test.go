package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
	"unicode/utf8"
)

// Seed corpora live in testdata/fuzz/<FuzzName>/; the seeds added here cover
// the basic shapes. Run a fuzzer with, for example,
//
//	go test -run='^$' -fuzz=FuzzReadNPY -fuzztime=30s ./registry/

func FuzzReadNPY(f *testing.F) {
	f.Add(npy(f, []float32{1, 2, 3, 4, 5, 6}, 2, 3))
	f.Add(npy(f, []int64{0, 1, 3}))
	f.Add(npy(f, []int32{}, 0))
	f.Add(rawNPY(2, "{'descr': '<i4', 'fortran_order': False, 'shape': (1, 1, 1), }", []byte{1, 0, 0, 0}))
	f.Fuzz(func(t *testing.T, file []byte) {
		dtype, shape, data, err := ReadNPY(bytes.NewReader(file), int64(len(file)))
		if err != nil {
			return
		}
		// Whatever was read writes back and reads again the same.
		var buf bytes.Buffer
		if err := WriteNPY(&buf, data, shape...); err != nil {
			t.Fatalf("WriteNPY of what ReadNPY returned (%s %v): %v", dtype, shape, err)
		}
		dtype2, shape2, data2, err := ReadNPY(&buf, int64(buf.Len()))
		if err != nil {
			t.Fatal(err)
		}
		if dtype2 != dtype || !slices.Equal(shape2, shape) || !sameNPYData(data, data2) {
			t.Fatalf("round trip changed %s %v to %s %v", dtype, shape, dtype2, shape2)
		}
	})
}

// sameNPYData compares bit patterns, so that NaNs compare equal.
func sameNPYData(a, b any) bool {
	if af, ok := a.([]float32); ok {
		bf, ok := b.([]float32)
		return ok && slices.EqualFunc(af, bf, func(x, y float32) bool { return math.Float32bits(x) == math.Float32bits(y) })
	}
	return reflect.DeepEqual(a, b)
}

func FuzzLoadManifest(f *testing.F) {
	sum := `"sha256":"` + hex.EncodeToString(make([]byte, 32)) + `"`
	f.Add([]byte(`{"format_version":1,"model":"m","version":"1","dim":4,"metric":"dot","users":2,"items":3,` +
		`"created_at":"2025-01-31T12:00:00Z","metrics":{"recall":0.5},"params":{"k":"v"},"files":{` +
		`"user_ids.txt":{"size":6,` + sum + `},"user_vectors.npy":{"size":160,` + sum + `},` +
		`"items.jsonl":{"size":30,` + sum + `},"item_vectors.npy":{"size":176,` + sum + `}}}`))
	f.Add([]byte(`{"format_version":1,"files":{"../x":{"size":-1,"sha256":"zz"}}}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"users":1e400}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeManifest(data)
		if err != nil {
			return
		}
		if checkManifest(&m, "m", "1") != nil {
			return
		}
		for name := range m.Files {
			if checkName(name) != nil || name == ManifestFile {
				t.Fatalf("accepted file name %q", name)
			}
		}
		// An accepted manifest survives a write and a read.
		out, err := json.Marshal(&m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := decodeManifest(out)
		if err != nil {
			t.Fatalf("re-reading %s: %v", out, err)
		}
		if err := checkManifest(&m2, "m", "1"); err != nil {
			t.Fatalf("re-checking %s: %v", out, err)
		}
		if !maps.Equal(m.Files, m2.Files) || m.Dim != m2.Dim || m.Users != m2.Users || m.Items != m2.Items {
			t.Fatalf("round trip changed %+v to %+v", m, m2)
		}
	})
}

func FuzzDecodeCatalog(f *testing.F) {
	f.Add([]byte(`{"id":"i1","category":"shoes","available":true,"attributes":{"color":"red"}}` + "\n" + `{"id":"i2"}` + "\n"))
	f.Add([]byte(`{"id":"\u00e9","available":false,"category":null}`))
	f.Add([]byte("{\"id\":\"a\"}\n\n"))
	f.Add([]byte(`{"id":"x"} {"id":"y"}`))
	f.Add([]byte(`{"id":"x"}` + "\n" + `{"id":"x"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		items, err := decodeItemsForTest(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := encodeItems(&buf, items); err != nil {
			t.Fatal(err)
		}
		items2, err := decodeItemsForTest(buf.Bytes())
		if err != nil {
			t.Fatalf("re-reading %q: %v", buf.Bytes(), err)
		}
		if !slices.EqualFunc(items, items2, func(a, b Item) bool {
			return a.ID == b.ID && a.Category == b.Category && a.Available == b.Available
		}) {
			t.Fatalf("round trip changed %+v to %+v", items, items2)
		}
	})
}

// decodeItemsForTest decodes items.jsonl with decodeCatalog and returns the
// items it keeps.
func decodeItemsForTest(data []byte) ([]Item, error) {
	rows, c, err := decodeCatalog(bytes.NewReader(data), 0)
	if err != nil {
		return nil, err
	}
	return itemList(rows, c), nil
}

// FuzzCanonicalItem holds the fast reader of encodeItems' lines to
// encoding/json: whatever line it accepts, encoding/json reads the same item.
func FuzzCanonicalItem(f *testing.F) {
	f.Add([]byte(`{"id":"i0775448","category":"cat-08","available":true}`))
	f.Add([]byte(`{"id":"a","available":false}`))
	f.Add([]byte(`{"id":"a\"b","available":false}`))
	f.Add([]byte(`{"id":"é","category":"","available":true} `))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		it, ok := decodeCanonicalItem(b)
		if !ok {
			return
		}
		var l itemLine
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&l); err != nil {
			t.Fatalf("fast reader accepted %q, encoding/json: %v", b, err)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("fast reader accepted %q, encoding/json finds data after the object", b)
		}
		if l.ID != it.ID || l.Category != it.Category || l.Available == nil || *l.Available != it.Available || l.Attributes != nil {
			t.Fatalf("%q: fast reader %+v, encoding/json %+v", b, it, l)
		}
	})
}

func FuzzDecodeUserIDs(f *testing.F) {
	f.Add([]byte("u1\nu2\n"))
	f.Add([]byte("u1\r\nu2"))
	f.Add([]byte("\xef\xbb\xbfu1\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ids, err := decodeUserIDsForTest(data)
		if err != nil {
			return
		}
		var buf bytes.Buffer
		if err := encodeUserIDs(&buf, ids); err != nil {
			t.Fatal(err)
		}
		ids2, err := decodeUserIDsForTest(buf.Bytes())
		if err != nil || !slices.Equal(ids, ids2) {
			t.Fatalf("round trip changed %q to %q, %v", ids, ids2, err)
		}
	})
}

// decodeUserIDsForTest decodes a copy of user_ids.txt with decodeUserRows
// and returns its ids.
func decodeUserIDsForTest(data []byte) ([]string, error) {
	rows, err := decodeUserRows(bytes.Clone(data))
	if err != nil {
		return nil, err
	}
	return idList(rows), nil
}

// FuzzLoad replaces one data file of a valid version, updating the manifest's
// checksum so that decoding and validation are reached, and loads it: Load
// must fail cleanly or return a valid bundle.
func FuzzLoad(f *testing.F) {
	names := []string{UserIDsFile, UserVectorsFile, ItemsFile, ItemVectorsFile, SeenOffsetsFile, SeenItemsFile}
	src, err := Open(f.TempDir())
	if err != nil {
		f.Fatal(err)
	}
	v, err := src.Publish(newBundle(3, 4, 2, true))
	if err != nil {
		f.Fatal(err)
	}
	base := map[string][]byte{}
	for _, name := range append(names, ManifestFile) {
		if base[name], err = os.ReadFile(filepath.Join(src.Root(), "m", v, name)); err != nil {
			f.Fatal(err)
		}
	}
	var m Manifest
	if err := json.Unmarshal(base[ManifestFile], &m); err != nil {
		f.Fatal(err)
	}
	for i, name := range names {
		f.Add(i, base[name])
	}
	f.Add(4, npy(f, []int64{0, 1, 1, 9}))
	f.Add(5, npy(f, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8}))
	f.Fuzz(func(t *testing.T, which int, data []byte) {
		if which < 0 || which >= len(names) {
			return
		}
		r, err := Open(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		dir := filepath.Join(r.Root(), "m", "1")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		mm := m
		mm.Files = maps.Clone(m.Files)
		for _, name := range names {
			content := base[name]
			if name == names[which] {
				content = data
				sum := sha256.Sum256(data)
				mm.Files[name] = File{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
			}
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		manifest, err := json.Marshal(&mm)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, ManifestFile), manifest, 0o644); err != nil {
			t.Fatal(err)
		}
		b, err := r.Load("m", "1")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Load error %v is not ErrCorrupt", err)
			}
			return
		}
		if err := b.Validate(); err != nil {
			t.Fatalf("Load returned an invalid bundle: %v", err)
		}
	})
}

// TestCanonicalItemLines checks that the lines encodeItems writes for items
// without attributes or escaped characters take the fast reader, and that
// decodeCatalog numbers each category once.
func TestCanonicalItemLines(t *testing.T) {
	items := []Item{{ID: "i1", Category: "shoes", Available: true}, {ID: "i2", Available: false}, {ID: "é", Category: "shoes"}}
	var buf bytes.Buffer
	if err := encodeItems(&buf, items); err != nil {
		t.Fatal(err)
	}
	for line := range bytes.Lines(buf.Bytes()) {
		if _, ok := decodeCanonicalItem(bytes.TrimSuffix(line, []byte("\n"))); !ok {
			t.Errorf("fast reader refused %q", line)
		}
	}
	rows, c, err := decodeCatalog(&buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got := itemList(rows, c); !reflect.DeepEqual(got, items) {
		t.Fatalf("decodeCatalog keeps %+v; want %+v", got, items)
	}
	if c.Categories() != 2 || c.Category(0) != c.Category(2) {
		t.Errorf("%d categories, items 0 and 2 in %d and %d; want 2, the same one", c.Categories(), c.Category(0), c.Category(2))
	}
	for _, line := range []string{`{"id":"a\"b","available":true}`, `{"id":"a","available":true,"attributes":{"k":"v"}}`, `{ "id":"a","available":true}`, `{"id":"a"}`} {
		if _, ok := decodeCanonicalItem([]byte(line)); ok {
			t.Errorf("fast reader took %q", line)
		}
	}
}
