package registry

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadCorrupt(t *testing.T) {
	const users, items, dim = 5, 7, 3 // as loadCorrupt publishes
	tests := []struct {
		name     string
		corrupt  func(v versionDir)
		wantFile string // the file the error must name
		wantMsg  string
	}{
		{"truncated vectors", func(v versionDir) {
			v.write(UserVectorsFile, v.read(UserVectorsFile)[:100], false)
		}, UserVectorsFile, "size is 100 bytes"},
		{"truncated vectors, manifest rehashed", func(v versionDir) {
			data := v.read(ItemVectorsFile)
			v.write(ItemVectorsFile, data[:len(data)-4], true)
		}, ItemVectorsFile, "does not fit"},
		{"flipped byte", func(v versionDir) {
			data := v.read(ItemVectorsFile)
			data[len(data)-5] ^= 0x40
			v.write(ItemVectorsFile, data, false)
		}, ItemVectorsFile, "sha256"},
		{"flipped byte in npy header", func(v versionDir) {
			data := v.read(UserVectorsFile)
			data[20] ^= 0x01
			v.write(UserVectorsFile, data, false)
		}, UserVectorsFile, "sha256"},
		{"missing file", func(v versionDir) {
			v.remove(ItemsFile)
		}, ItemsFile, "missing"},
		{"file not listed", func(v versionDir) {
			v.manifest(func(m map[string]any) { delete(m["files"].(map[string]any), UserIDsFile) })
		}, ManifestFile, "required file user_ids.txt is not listed"},
		{"trailing bytes", func(v versionDir) {
			v.write(UserVectorsFile, append(v.read(UserVectorsFile), 0, 0, 0, 0), true)
		}, UserVectorsFile, "4 bytes after the data"},
		{"wrong shape in npy header", func(v versionDir) {
			v.write(UserVectorsFile, npy(t, make([]float32, users*dim), dim, users), true)
		}, UserVectorsFile, "shape is (3, 5), want (5, 3)"},
		{"wrong dtype", func(v versionDir) {
			v.write(ItemVectorsFile, npy(t, make([]int32, items*dim), items, dim), true)
		}, ItemVectorsFile, "dtype is <i4, want <f4"},
		{"manifest dim inconsistent", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["dim"] = dim + 1 })
		}, UserVectorsFile, "want (5, 4)"},
		{"manifest users inconsistent", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["users"] = users - 1 })
		}, UserVectorsFile, "want (4, 3)"}, // the first file read that disagrees
		{"manifest items inconsistent", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["items"] = items + 1 })
		}, ItemVectorsFile, "want (8, 3)"},
		{"an id short", func(v versionDir) {
			lines := strings.SplitAfter(string(v.read(UserIDsFile)), "\n")
			v.write(UserIDsFile, []byte(strings.Join(lines[1:], "")), true)
		}, UserIDsFile, "has 4 ids, the manifest says users=5"},
		{"an item short", func(v versionDir) {
			lines := strings.SplitAfter(string(v.read(ItemsFile)), "\n")
			v.write(ItemsFile, []byte(strings.Join(lines[1:], "")), true)
		}, ItemsFile, "has 6 items, the manifest says items=7"},
		{"bad JSON line", func(v versionDir) {
			lines := strings.Split(string(v.read(ItemsFile)), "\n")
			lines[1] = `{"id": "x", "available": tru}`
			v.write(ItemsFile, []byte(strings.Join(lines, "\n")), true)
		}, ItemsFile, "line 2: bad JSON"},
		{"unknown key in items", func(v versionDir) {
			lines := strings.Split(string(v.read(ItemsFile)), "\n")
			lines[2] = `{"id": "x", "availabel": false}`
			v.write(ItemsFile, []byte(strings.Join(lines, "\n")), true)
		}, ItemsFile, `line 3: bad JSON: json: unknown field "availabel"`},
		{"blank line in items", func(v versionDir) {
			v.write(ItemsFile, append(v.read(ItemsFile), '\n'), true)
		}, ItemsFile, "line 8: empty line"},
		{"duplicate user ids", func(v versionDir) {
			lines := strings.Split(string(v.read(UserIDsFile)), "\n")
			lines[3] = lines[1]
			v.write(UserIDsFile, []byte(strings.Join(lines, "\n")), true)
		}, UserIDsFile, "row 3: duplicate id"},
		{"duplicate item ids", func(v versionDir) {
			lines := strings.Split(string(v.read(ItemsFile)), "\n")
			lines[6] = lines[0]
			v.write(ItemsFile, []byte(strings.Join(lines, "\n")), true)
		}, ItemsFile, "row 6: duplicate id"},
		{"CRLF user ids", func(v versionDir) {
			v.write(UserIDsFile, bytes.ReplaceAll(v.read(UserIDsFile), []byte("\n"), []byte("\r\n")), true)
		}, UserIDsFile, "line 1"},
		{"empty user id", func(v versionDir) {
			v.write(UserIDsFile, append([]byte("\n"), v.read(UserIDsFile)...), true)
		}, UserIDsFile, "line 1: empty id"},
		{"CSR item out of range", func(v versionDir) {
			b := newBundle(users, items, dim, true)
			b.SeenItems[len(b.SeenItems)-1] = items
			v.write(SeenItemsFile, npy(t, b.SeenItems), true)
		}, SeenItemsFile, "out of range [0, 7)"},
		{"CSR offsets decrease", func(v versionDir) {
			v.write(SeenOffsetsFile, npy(t, []int64{0, 3, 2, 4, 5, 6}), true)
		}, SeenOffsetsFile, "user row 1 ends at 2, before it starts at 3"},
		{"CSR offsets past the items", func(v versionDir) {
			b := newBundle(users, items, dim, true)
			b.SeenOffsets[users]++
			v.write(SeenOffsetsFile, npy(t, b.SeenOffsets), true)
		}, SeenItemsFile, "entries, but seen_offsets.npy ends at"},
		{"CSR offsets wrong length", func(v versionDir) {
			v.write(SeenOffsetsFile, npy(t, []int64{0, 0}), true)
		}, SeenOffsetsFile, "shape is (2,), want (6,)"},
		{"CSR half listed", func(v versionDir) {
			v.manifest(func(m map[string]any) { delete(m["files"].(map[string]any), SeenItemsFile) })
		}, ManifestFile, "seen_offsets.npy and seen_items.npy must be listed together"},
		{"NaN in user vectors", func(v versionDir) {
			vec := newBundle(users, items, dim, true).UserVectors
			vec[7] = float32(math.NaN())
			v.write(UserVectorsFile, npy(t, vec, users, dim), true)
		}, UserVectorsFile, "row 2 column 1 is NaN"},
		{"Inf in item vectors", func(v versionDir) {
			vec := newBundle(users, items, dim, true).ItemVectors
			vec[0] = float32(math.Inf(1))
			v.write(ItemVectorsFile, npy(t, vec, items, dim), true)
		}, ItemVectorsFile, "row 0 column 0 is +Inf"},
		{"manifest bad JSON", func(v versionDir) {
			v.b.put(v.key(ManifestFile), []byte(`{"format_version": 1,`))
		}, ManifestFile, "bad JSON"},
		{"manifest unknown key", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["dims"] = 3 })
		}, ManifestFile, `unknown field "dims"`},
		{"manifest format version", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["format_version"] = 2 })
		}, ManifestFile, "format_version is 2"},
		{"manifest of another version", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["version"] = "2" })
		}, ManifestFile, `version is "2", want "1"`},
		{"manifest of another model", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["model"] = "other" })
		}, ManifestFile, `model is "other"`},
		{"manifest metric", func(v versionDir) {
			v.manifest(func(m map[string]any) { m["metric"] = "cosine" })
		}, ManifestFile, "metric"},
		{"manifest file name escapes", func(v versionDir) {
			v.manifest(func(m map[string]any) {
				m["files"].(map[string]any)["../../../etc/passwd"] = map[string]any{"size": 1, "sha256": strings.Repeat("0", 64)}
			})
		}, ManifestFile, "bad file name"},
		{"manifest bad checksum syntax", func(v versionDir) {
			v.manifest(func(m map[string]any) {
				m["files"].(map[string]any)[UserIDsFile].(map[string]any)["sha256"] = "xyz"
			})
		}, ManifestFile, "not 64 hex digits"},
		{"manifest without created_at", func(v versionDir) {
			v.manifest(func(m map[string]any) { delete(m, "created_at") })
		}, ManifestFile, "created_at"},
		{"extra listed file missing", func(v versionDir) {
			v.manifest(func(m map[string]any) {
				m["files"].(map[string]any)["notes.txt"] = map[string]any{"size": 0, "sha256": strings.Repeat("0", 64)}
			})
		}, "notes.txt", "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			forEachBackend(t, func(t *testing.T, r backend) {
				loadCorrupt(t, r, tt.corrupt, tt.wantFile, tt.wantMsg)
			})
		})
	}
}

// TestLoadDirectoryAsFile: on a filesystem, a data file that is a directory
// is refused.
func TestLoadDirectoryAsFile(t *testing.T) {
	r := newFSBackend(t)
	loadCorrupt(t, r, func(v versionDir) {
		path := filepath.Join(r.Store.(*FS).Root(), v.key(UserIDsFile))
		os.Remove(path)
		os.Mkdir(path, 0o755)
	}, UserIDsFile, "not a regular file")
}

// loadCorrupt publishes a version, corrupts it and checks that Load refuses
// it with an error naming the model, version and file.
func loadCorrupt(t *testing.T, r backend, corrupt func(v versionDir), wantFile, wantMsg string) {
	const users, items, dim = 5, 7, 3
	v := publish(t, r, newBundle(users, items, dim, true))
	corrupt(versionDir{t, r, "m/" + v})
	b, err := r.Load("m", v)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Load = %v, %v, want ErrCorrupt", b, err)
	}
	msg := err.Error()
	if !strings.Contains(msg, wantFile+": corrupt") || !strings.Contains(msg, wantMsg) {
		t.Errorf("Load error = %q, want it to name %s and contain %q", msg, wantFile, wantMsg)
	}
	if !strings.Contains(msg, "model m version 1") {
		t.Errorf("Load error = %q, want it to name the model and version", msg)
	}
}

// TestLoadExternalWriter writes a version by hand, in place, the way FORMAT.md
// tells a Python author, and loads it.
func TestLoadExternalWriter(t *testing.T) {
	forEachBackend(t, testLoadExternalWriter)
}

func testLoadExternalWriter(t *testing.T, r backend) {
	files := map[string]File{}
	put := func(name string, data []byte) {
		r.put("als/1/"+name, data)
		sum := sha256.Sum256(data)
		files[name] = File{Size: int64(len(data)), SHA256: hex.EncodeToString(sum[:])}
	}
	// user_ids.txt without the final LF, as "\n".join(ids) writes it.
	put(UserIDsFile, []byte("u1\nu2\nü3"))
	// user_vectors.npy as NumPy 2 writes it: version 1.0, header padded for
	// growth, then to 64 bytes.
	uv := []float32{1, 0, 0.5, -1, 2, 3}
	put(UserVectorsFile, rawNPY(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 2), }"+strings.Repeat(" ", 20), f32bytes(uv)))
	// items.jsonl by json.dumps: defaults left out, escapes, no final LF.
	put(ItemsFile, []byte(`{"id":"i1","category":"shoes","available":true,"attributes":{"color":"red"}}`+"\n"+
		`{"id":"i2"}`+"\n"+
		`{"id":"\u00efi3", "available": false, "category": null}`))
	iv := []float32{0.25, 0.5, 1, 2, -3, 4}
	put(ItemVectorsFile, npy(t, iv, 3, 2))
	// The seen CSR in npy format 2.0 (NumPy uses it for huge headers).
	put(SeenOffsetsFile, rawNPY(2, "{'descr': '<i8', 'fortran_order': False, 'shape': (4,), }", npy(t, []int64{0, 2, 2, 3})[128:]))
	put(SeenItemsFile, npy(t, []int32{0, 2, 1}))
	put("training_log.txt", []byte("epoch 1 loss 0.5\n")) // extra files are verified, not decoded

	if _, err := r.Latest("als"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Latest before the manifest is written = %v, want ErrNotFound", err)
	}
	filesJSON := []string{}
	for _, name := range slices.Sorted(maps.Keys(files)) {
		filesJSON = append(filesJSON, fmt.Sprintf("%q: {\"size\": %d, \"sha256\": %q}", name, files[name].Size, files[name].SHA256))
	}
	manifest := `{
  "format_version": 1, "model": "als", "version": "1", "dim": 2, "metric": "dot",
  "users": 3, "items": 3, "created_at": "2025-01-31T12:00:00+00:00",
  "metrics": {"recall@10": 0.21, "ndcg@10": 1e-1}, "params": {"factors": "2"},
  "files": {` + strings.Join(filesJSON, ",\n    ") + `}
}`
	r.put("als/1/"+ManifestFile, []byte(manifest))

	v, err := r.Latest("als")
	if err != nil || v != "1" {
		t.Fatalf("Latest = %q, %v, want 1", v, err)
	}
	got, err := r.Load("als", v)
	if err != nil {
		t.Fatal(err)
	}
	want := &Bundle{
		Manifest: Manifest{
			FormatVersion: 1, Model: "als", Version: "1", Dim: 2, Metric: "dot", Users: 3, Items: 3,
			CreatedAt: time.Date(2025, 1, 31, 12, 0, 0, 0, time.UTC),
			Metrics:   map[string]float64{"recall@10": 0.21, "ndcg@10": 0.1},
			Params:    map[string]string{"factors": "2"},
			Files:     files,
		},
		UserIDs:     []string{"u1", "u2", "ü3"},
		UserVectors: uv,
		Items: []Item{
			{ID: "i1", Category: "shoes", Available: true, Attributes: map[string]string{"color": "red"}},
			{ID: "i2", Available: true},
			{ID: "ïi3"},
		},
		ItemVectors: iv,
		SeenOffsets: []int64{0, 2, 2, 3},
		SeenItems:   []int32{0, 2, 1},
	}
	checkSameBundle(t, got, want)
	if s := got.Seen(0); !slices.Equal(s, []int32{0, 2}) {
		t.Errorf("Seen(0) = %v", s)
	}
}

func f32bytes(v []float32) []byte {
	var b []byte
	for _, x := range v {
		b = append(b, byte(math.Float32bits(x)), byte(math.Float32bits(x)>>8), byte(math.Float32bits(x)>>16), byte(math.Float32bits(x)>>24))
	}
	return b
}

func TestLoadNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, r backend) {
		publish(t, r, newBundle(2, 2, 2, false))
		for _, v := range []string{"2", "10"} {
			if _, err := r.Load("m", v); !errors.Is(err, ErrNotFound) {
				t.Errorf("Load(m, %s) = %v, want ErrNotFound", v, err)
			}
		}
	})
}
