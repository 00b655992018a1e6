package index

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"unsafe"
)

// encode returns h's encoding.
func encode(t testing.TB, h *HNSW) []byte {
	t.Helper()
	var buf bytes.Buffer
	n, err := h.WriteTo(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) {
		t.Fatalf("WriteTo returned %d, wrote %d bytes", n, buf.Len())
	}
	return buf.Bytes()
}

// fixChecksums recomputes the vectors checksum and the trailing checksum
// of an encoding edited in place, so that only structural checks can
// refuse it.
func fixChecksums(b []byte, vecs []float32) {
	if len(b) >= headerSize {
		binary.LittleEndian.PutUint32(b[40:], vectorsCRC(vecs))
	}
	if len(b) >= 4 {
		binary.LittleEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	}
}

// readers are the two ways to load an encoding: from a reader and from
// memory.
var readers = []struct {
	name string
	read func(b []byte, vecs []float32, dim int) (*HNSW, error)
}{
	{"ReadHNSW", func(b []byte, vecs []float32, dim int) (*HNSW, error) {
		return ReadHNSW(bytes.NewReader(b), vecs, dim)
	}},
	{"LoadHNSW", LoadHNSW},
}

func TestHNSWSaveLoadIdenticalSearch(t *testing.T) {
	for _, rd := range readers {
		t.Run(rd.name, func(t *testing.T) { testSaveLoad(t, rd.read) })
	}
}

func testSaveLoad(t *testing.T, read func([]byte, []float32, int) (*HNSW, error)) {
	d := mixture(21, 3000, 200, 16, 30, 1.0, true)
	h, err := NewHNSW(d.vecs, d.dim, Options{M: 8, EfSearch: 24})
	if err != nil {
		t.Fatal(err)
	}
	b := encode(t, h)
	g, err := read(b, d.vecs, d.dim)
	if err != nil {
		t.Fatal(err)
	}
	if g.efSearch != 24 || g.m != 8 || g.entry != h.entry || g.topLevel != h.topLevel ||
		!slices.Equal(g.levels, h.levels) || !slices.Equal(g.upperOff, h.upperOff) ||
		!slices.Equal(g.links0, h.links0) || !slices.Equal(g.upper, h.upper) {
		t.Fatal("loaded graph differs from the saved one")
	}
	f := subset(3, d.n(), 0.5)
	for i, q := range d.queries {
		for _, ff := range []Filter{nil, f} {
			// searchGraph: Search would scan this small catalog.
			want, got := h.searchGraph(q, 10, 24, ff), g.searchGraph(q, 10, 24, ff)
			if !slices.Equal(got, want) {
				t.Fatalf("query %d: loaded graph returned %v, original %v", i, got, want)
			}
		}
		if !slices.Equal(g.Search(q, 10, nil), h.Search(q, 10, nil)) {
			t.Fatalf("query %d: Search differs after loading", i)
		}
	}
	if again := encode(t, g); !bytes.Equal(again, b) {
		t.Error("re-encoding the loaded graph gives different bytes")
	}
}

func TestHNSWSaveLoadTinyIndexes(t *testing.T) {
	for _, n := range []int{0, 1, 2} {
		d := mixture(int64(n), n, 1, 4, 1, 1.0, false)
		h, err := NewHNSW(d.vecs, d.dim, Options{})
		if err != nil {
			t.Fatal(err)
		}
		for _, rd := range readers {
			g, err := rd.read(encode(t, h), d.vecs, d.dim)
			if err != nil {
				t.Fatalf("%s n=%d: %v", rd.name, n, err)
			}
			if got, want := g.Search(d.queries[0], 5, nil), h.Search(d.queries[0], 5, nil); !slices.Equal(got, want) || len(got) != n {
				t.Errorf("%s n=%d: loaded Search = %v, original %v", rd.name, n, got, want)
			}
		}
	}
}

// TestLoadHNSWUsesTheEncodingsMemory checks that LoadHNSW keeps the links
// in the encoding's memory where they start 4-byte aligned and copies them
// where they do not, with the same graph either way.
func TestLoadHNSWUsesTheEncodingsMemory(t *testing.T) {
	for _, n := range []int{400, 401} {
		d := mixture(int64(n), n, 0, 8, 4, 1.0, false)
		h, err := NewHNSW(d.vecs, d.dim, Options{M: 4})
		if err != nil {
			t.Fatal(err)
		}
		b := encode(t, h)
		for off := range 4 { // b placed off bytes past an aligned address
			data := append(make([]byte, off, len(b)+off), b...)[off:]
			g, err := LoadHNSW(data, d.vecs, d.dim)
			if err != nil {
				t.Fatalf("n=%d, offset %d: %v", n, off, err)
			}
			if !slices.Equal(g.links0, h.links0) || !slices.Equal(g.upper, h.upper) || !slices.Equal(g.levels, h.levels) {
				t.Fatalf("n=%d, offset %d: loaded graph differs from the saved one", n, off)
			}
			if inside, want := within(g.links0, data), (off+headerSize+n)%4 == 0; inside != want {
				t.Errorf("n=%d, offset %d: links in the encoding's memory: %v, want %v", n, off, inside, want)
			}
		}
	}
}

// within reports whether s starts inside b's memory.
func within(s []int32, b []byte) bool {
	p := uintptr(unsafe.Pointer(unsafe.SliceData(s)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	return lo <= p && p < lo+uintptr(len(b))
}

// TestReadHNSWReadsExactlyTheEncoding checks that data following the
// encoding in a bufio.Reader is left unread.
func TestReadHNSWReadsExactlyTheEncoding(t *testing.T) {
	d := mixture(22, 500, 0, 8, 5, 1.0, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{M: 4})
	if err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(bytes.NewReader(append(encode(t, h), "after"...)))
	if _, err := ReadHNSW(r, d.vecs, d.dim); err != nil {
		t.Fatal(err)
	}
	if rest, _ := r.ReadString(0); rest != "after" {
		t.Errorf("left %q after the encoding, want %q", rest, "after")
	}
}

func TestReadHNSWRefusesBadInput(t *testing.T) {
	d := mixture(23, 600, 0, 8, 6, 1.0, false)
	h, err := NewHNSW(d.vecs, d.dim, Options{M: 4, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	good := encode(t, h)
	levelsAt := headerSize
	links0At := levelsAt + h.n
	upperAt := links0At + 4*len(h.links0)
	var upNode int32 = -1 // a node with an upper layer
	for id, l := range h.levels {
		if l > 0 {
			upNode = int32(id)
			break
		}
	}
	if upNode < 0 {
		t.Fatal("no node above layer 0")
	}
	put := func(b []byte, off int, v uint32) { binary.LittleEndian.PutUint32(b[off:], v) }
	edits := []struct {
		name string
		edit func(b []byte) []byte // nil result: edit b in place
		fix  bool                  // recompute the checksums after editing
		want error
	}{
		{"empty", func([]byte) []byte { return []byte{} }, false, ErrCorruptGraph},
		{"bad magic", func(b []byte) []byte { b[0] = 'X'; return nil }, false, ErrCorruptGraph},
		{"future version", func(b []byte) []byte { put(b, 8, 2); return nil }, false, ErrCorruptGraph},
		{"flipped link bit", func(b []byte) []byte { b[links0At+7] ^= 1; return nil }, false, ErrCorruptGraph},
		{"flipped checksum", func(b []byte) []byte { b[len(b)-1] ^= 0x80; return nil }, false, ErrCorruptGraph},
		{"M = 1", func(b []byte) []byte { put(b, 20, 1); return nil }, true, ErrCorruptGraph},
		{"huge M", func(b []byte) []byte { put(b, 20, 1<<30); return nil }, true, ErrCorruptGraph},
		{"efSearch 0", func(b []byte) []byte { put(b, 24, 0); return nil }, true, ErrCorruptGraph},
		{"entry out of range", func(b []byte) []byte { put(b, 28, uint32(h.n)); return nil }, true, ErrCorruptGraph},
		{"top level too high", func(b []byte) []byte { put(b, 32, uint32(h.topLevel+1)); return nil }, true, ErrCorruptGraph},
		{"upper length off by one", func(b []byte) []byte { put(b, 36, uint32(len(h.upper)+1)); return nil }, true, ErrCorruptGraph},
		{"level above top", func(b []byte) []byte { b[levelsAt] = byte(h.topLevel + 1); return nil }, true, ErrCorruptGraph},
		{"link count above capacity", func(b []byte) []byte { put(b, links0At, uint32(h.m0+1)); return nil }, true, ErrCorruptGraph},
		{"negative link count", func(b []byte) []byte { put(b, links0At, 0xffffffff); return nil }, true, ErrCorruptGraph},
		{"link out of range", func(b []byte) []byte { put(b, links0At, 1); put(b, links0At+4, uint32(h.n)); return nil }, true, ErrCorruptGraph},
		{"self link", func(b []byte) []byte { put(b, links0At, 1); put(b, links0At+4, 0); return nil }, true, ErrCorruptGraph},
		{"upper link to a layer-0 node", func(b []byte) []byte {
			low := slices.Index(h.levels, 0)
			off := upperAt + 4*int(h.upperOff[upNode])
			put(b, off, 1)
			put(b, off+4, uint32(low))
			return nil
		}, true, ErrCorruptGraph},
		{"trailing checksum missing", func(b []byte) []byte { return b[:len(b)-4] }, false, ErrCorruptGraph},
		{"wrong dim field", func(b []byte) []byte { put(b, 12, 16); return nil }, false, ErrVectorsMismatch},
		{"wrong n field", func(b []byte) []byte { put(b, 16, uint32(h.n-1)); return nil }, false, ErrVectorsMismatch},
		{"wrong vectors checksum", func(b []byte) []byte { b[40] ^= 1; return nil }, false, ErrVectorsMismatch},
	}
	for _, tt := range edits {
		b := bytes.Clone(good)
		if nb := tt.edit(b); nb != nil {
			b = nb
		}
		if tt.fix {
			fixChecksums(b, d.vecs)
		}
		for _, rd := range readers {
			if _, err := rd.read(b, d.vecs, d.dim); !errors.Is(err, tt.want) {
				t.Errorf("%s %s: err = %v, want %v", rd.name, tt.name, err, tt.want)
			}
		}
	}
	// Truncations are refused: every cut in the header and levels, then
	// every 13th byte.
	for cut := 0; cut < len(good); cut += map[bool]int{true: 1, false: 13}[cut < links0At+8] {
		for _, rd := range readers {
			if _, err := rd.read(good[:cut], d.vecs, d.dim); !errors.Is(err, ErrCorruptGraph) {
				t.Fatalf("%s truncated to %d of %d bytes: err = %v", rd.name, cut, len(good), err)
			}
		}
	}
	// Other vectors of the same shape are refused.
	other := slices.Clone(d.vecs)
	other[len(other)-1] += 0.5
	for _, rd := range readers {
		if _, err := rd.read(good, other, d.dim); !errors.Is(err, ErrVectorsMismatch) {
			t.Errorf("%s other vectors: err = %v, want ErrVectorsMismatch", rd.name, err)
		}
		if _, err := rd.read(good, d.vecs, 0); !errors.Is(err, ErrInvalidDim) {
			t.Errorf("%s dim 0: err = %v, want ErrInvalidDim", rd.name, err)
		}
	}
}

// fuzzData is the small catalog the fuzz target attaches graphs to.
var fuzzData = mixture(24, 60, 4, 4, 3, 1.0, false)

var writeCorpus = flag.Bool("index.writecorpus", false, "rewrite the FuzzReadHNSW seed corpus in testdata/fuzz")

// fuzzSeeds are valid encodings of graphs over fuzzData.
func fuzzSeeds(t testing.TB) [][]byte {
	var seeds [][]byte
	for _, m := range []int{2, 4} {
		h, err := NewHNSW(fuzzData.vecs, fuzzData.dim, Options{M: m, EfConstruction: 16, Workers: 1, Seed: int64(m)})
		if err != nil {
			t.Fatal(err)
		}
		seeds = append(seeds, encode(t, h))
	}
	return seeds
}

// TestWriteFuzzCorpus regenerates the committed seed corpus when run with
// -index.writecorpus (needed only if the format changes).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*writeCorpus {
		t.Skip("run with -index.writecorpus to rewrite the corpus")
	}
	dir := filepath.Join("testdata", "fuzz", "FuzzReadHNSW")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, s := range fuzzSeeds(t) {
		for j, c := range []struct {
			data []byte
			fix  bool
		}{{s, false}, {s, true}, {s[:len(s)/2], false}} {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\nbool(%v)\n", c.data, c.fix)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%d-%d", i, j)), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// FuzzReadHNSW feeds arbitrary bytes to ReadHNSW. With fix set the
// checksums are recomputed first, so mutations reach the structural
// checks. A graph that is accepted must be searchable without panicking
// and return valid results.
func FuzzReadHNSW(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, false)
		f.Add(s, true)
	}
	d := fuzzData
	f.Fuzz(func(t *testing.T, b []byte, fix bool) {
		if fix {
			b = bytes.Clone(b)
			fixChecksums(b, d.vecs)
		}
		h, err := ReadHNSW(bytes.NewReader(b), d.vecs, d.dim)
		g, gerr := LoadHNSW(b, d.vecs, d.dim)
		if gerr != nil && !errors.Is(gerr, ErrCorruptGraph) && !errors.Is(gerr, ErrVectorsMismatch) {
			t.Fatalf("LoadHNSW: unexpected error type: %v", gerr)
		}
		// LoadHNSW takes all of b as the encoding, ReadHNSW ignores what
		// follows it: what LoadHNSW accepts, ReadHNSW accepts as the same graph.
		if gerr == nil && (err != nil || !slices.Equal(g.links0, h.links0) || !slices.Equal(g.upper, h.upper)) {
			t.Fatalf("LoadHNSW accepted what ReadHNSW read differently (%v)", err)
		}
		if err != nil {
			if !errors.Is(err, ErrCorruptGraph) && !errors.Is(err, ErrVectorsMismatch) {
				t.Fatalf("unexpected error type: %v", err)
			}
			return
		}
		for _, q := range d.queries {
			res := h.searchGraph(q, 5, 8, nil)
			for _, r := range res {
				if r.ID < 0 || int(r.ID) >= d.n() {
					t.Fatalf("result ID %d out of range", r.ID)
				}
			}
			if len(h.Search(q, 5, nil)) != 5 {
				t.Fatal("Search returned fewer than 5 results")
			}
		}
	})
}
