package trainer

import (
	"bytes"
	"compress/gzip"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// pairs returns d's interactions as "user item weight" strings.
func pairs(d *Dataset) []string {
	var out []string
	for u := range d.NumUsers() {
		w := d.UserWeights(u)
		for j, i := range d.UserItems(u) {
			out = append(out, d.UserIDs[u]+" "+d.ItemIDs[i]+" "+ftoa(w[j]))
		}
	}
	return out
}

func ftoa(f float32) string { return strconv.FormatFloat(float64(f), 'g', -1, 32) }

func TestReadLightGCN(t *testing.T) {
	d := NewDataset()
	if err := ReadFile("testdata/lightgcn.txt", d); err != nil {
		t.Fatal(err)
	}
	want := []string{"0 0 1", "0 1 1", "0 2 1", "1 2 1", "1 3 1", "1 4 1", "2 1 1"}
	if got := pairs(d); !slices.Equal(got, want) {
		t.Fatalf("pairs = %q, want %q", got, want)
	}
	if d.NumUsers() != 4 {
		t.Fatalf("users = %v, want 4 (user 3 has no items)", d.UserIDs)
	}
}

func TestReadJSONL(t *testing.T) {
	d := NewDataset()
	if err := ReadFile("testdata/events.jsonl", d); err != nil {
		t.Fatal(err)
	}
	// purchase 5 + view 1 accumulate; explicit weights win over types.
	want := []string{"u1 i9 6", "u1 i2 0.5", "u2 i2 3", "u2 i7 4", "u3 i9 1"}
	if got := pairs(d); !slices.Equal(got, want) {
		t.Fatalf("pairs = %q, want %q", got, want)
	}
}

func TestEventWeight(t *testing.T) {
	for typ, want := range map[string]float32{"view": 1, "click": 2, "add_to_cart": 3, "purchase": 5} {
		if w, ok := EventWeight(typ); !ok || w != want {
			t.Errorf("EventWeight(%q) = %v, %v; want %v", typ, w, ok, want)
		}
	}
	if _, ok := EventWeight("rating"); ok {
		t.Error("rating has a default weight")
	}
}

func TestReadErrorsNameLine(t *testing.T) {
	tests := []struct {
		name, input, wantLine string
		read                  func(r *strings.Reader, d *Dataset) error
	}{
		{"lightgcn non-integer item", "0 1 2\n1 x\n", "line 2", lightgcn},
		{"lightgcn negative uid", "0 1\n\n-1 2\n", "line 3", lightgcn},
		{"jsonl syntax", `{"user_id":"u","item_id":"i","type":"view"}` + "\n{\n", "line 2", jsonl},
		{"jsonl missing user", `{"item_id":"i","type":"view"}`, "line 1", jsonl},
		{"jsonl missing item", "\n" + `{"user_id":"u","type":"view"}`, "line 2", jsonl},
		{"jsonl rating without weight", `{"user_id":"u","item_id":"i","type":"rating"}`, "line 1", jsonl},
		{"jsonl unknown type", `{"user_id":"u","item_id":"i","type":"like"}`, "line 1", jsonl},
		{"jsonl negative weight", `{"user_id":"u","item_id":"i","type":"view","weight":-1}`, "line 1", jsonl},
		{"jsonl bad timestamp", `{"user_id":"u","item_id":"i","type":"view","timestamp":"yesterday"}`, "line 1", jsonl},
		{"jsonl weight not a number", `{"user_id":"u","item_id":"i","weight":"1"}`, "line 1", jsonl},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.read(strings.NewReader(tt.input), NewDataset())
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("err = %v, want ErrFormat", err)
			}
			if !strings.Contains(err.Error(), tt.wantLine+":") {
				t.Fatalf("err = %q, want it to name %q", err, tt.wantLine)
			}
		})
	}
}

func lightgcn(r *strings.Reader, d *Dataset) error { return ReadLightGCN(r, d) }
func jsonl(r *strings.Reader, d *Dataset) error    { return ReadJSONL(r, d) }

func TestReadFileGzip(t *testing.T) {
	dir := t.TempDir()
	for _, src := range []string{"testdata/lightgcn.txt", "testdata/events.jsonl"} {
		raw, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		if _, err := zw.Write(raw); err != nil {
			t.Fatal(err)
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		gz := filepath.Join(dir, filepath.Base(src)+".gz")
		if err := os.WriteFile(gz, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		plain, zipped := NewDataset(), NewDataset()
		if err := ReadFile(src, plain); err != nil {
			t.Fatal(err)
		}
		if err := ReadFile(gz, zipped); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(pairs(plain), pairs(zipped)) {
			t.Fatalf("%s: gz read %q, plain %q", src, pairs(zipped), pairs(plain))
		}
	}
	// A corrupt gzip stream is an error naming the file.
	bad := filepath.Join(dir, "bad.txt.gz")
	if err := os.WriteFile(bad, []byte("not gzip"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ReadFile(bad, NewDataset()); err == nil || !strings.Contains(err.Error(), bad) {
		t.Fatalf("ReadFile(corrupt gz) = %v", err)
	}
	if err := ReadFile(filepath.Join(dir, "missing.txt"), NewDataset()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("ReadFile(missing) = %v", err)
	}
}

func TestReadAppendsSharedIDs(t *testing.T) {
	train := NewDataset()
	if err := ReadLightGCN(strings.NewReader("0 5 6\n1 6\n"), train); err != nil {
		t.Fatal(err)
	}
	test := NewHeldOut(train)
	if err := ReadLightGCN(strings.NewReader("1 5\n0 7\n"), test); err != nil {
		t.Fatal(err)
	}
	if got := test.UserItems(1); !slices.Equal(got, []int32{0}) { // item "5" has train row 0
		t.Fatalf("test items of user 1 = %v", got)
	}
	if got := test.UserItems(0); !slices.Equal(got, []int32{2}) { // item "7" is new: row 2
		t.Fatalf("test items of user 0 = %v", got)
	}
}
