package index

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"unsafe"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
	"github.com/recserve/recserve/internal/le"
)

// Saving and loading a built HNSW graph.
//
// The encoding stores the graph, not the vectors: the caller keeps the
// vectors matrix (as for NewHNSW) and passes it to ReadHNSW. All integers
// are little-endian:
//
//	offset  size  field
//	0       8     magic "RSHNSWGR"
//	8       4     format version, 1
//	12      4     dim
//	16      4     n, the number of rows
//	20      4     M (layer 0 keeps 2*M links)
//	24      4     default efSearch
//	28      4     entry point node
//	32      4     top level (the entry point's level)
//	36      4     length of the upper-layer link array
//	40      4     CRC-32C of the vectors, as little-endian float32 bits
//	44      n     level of each node, one byte each
//	        4*n*(2M+1)   layer-0 link blocks: count, then 2M IDs (int32)
//	        4*upper      upper-layer link blocks of M+1 int32 each, per
//	                     node with level > 0 in ID order, levels 1..level
//	end     4     CRC-32C (Castagnoli) of every preceding byte
//
// ReadHNSW verifies the checksums and every structural invariant a search
// relies on (IDs in range, link counts within capacity, links only to
// nodes present on the layer), so a corrupt, truncated or mismatched
// encoding is refused with an error wrapping ErrCorruptGraph or
// ErrVectorsMismatch rather than causing a panic later.

const (
	graphMagic   = "RSHNSWGR"
	graphVersion = 1
	headerSize   = 44
	// maxReadM bounds M when reading, so a corrupt header cannot request
	// enormous link arrays; NewHNSW's defaults are far below it.
	maxReadM = 1 << 16
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Errors returned by ReadHNSW (wrapped with details).
var (
	ErrCorruptGraph    = errors.New("index: corrupt or truncated HNSW graph encoding")
	ErrVectorsMismatch = errors.New("index: vectors do not match the saved HNSW graph")
)

// WriteTo writes the graph (not the vectors) to w in the format described
// above and returns the number of bytes written. It implements io.WriterTo.
func (h *HNSW) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	bw := bufio.NewWriterSize(cw, 1<<16)
	crc := crc32.New(castagnoli)
	out := io.MultiWriter(bw, crc)

	hdr := make([]byte, headerSize)
	copy(hdr, graphMagic)
	for i, v := range []uint32{graphVersion, uint32(h.dim), uint32(h.n), uint32(h.m), uint32(h.efSearch),
		uint32(h.entry), uint32(h.topLevel), uint32(len(h.upper)), vectorsCRC(h.vecs)} {
		binary.LittleEndian.PutUint32(hdr[8+4*i:], v)
	}
	out.Write(hdr)
	out.Write(h.levels)
	le.Write(out, h.links0) // errors are bw's, reported by Flush
	le.Write(out, h.upper)
	bw.Write(binary.LittleEndian.AppendUint32(nil, crc.Sum32()))
	err := bw.Flush()
	return cw.n, err
}

// ReadHNSW reads a graph written by WriteTo and attaches it to vectors,
// which must be the matrix the graph was built over (row-major, dim
// columns; retained without copying, as by NewHNSW). It buffers, so it may
// read past the end of the encoding unless r is a *bufio.Reader, from which
// it reads exactly the encoding.
func ReadHNSW(r io.Reader, vectors []float32, dim int) (*HNSW, error) {
	n, err := checkShape(vectors, dim)
	if err != nil {
		return nil, err
	}
	crc := crc32.New(castagnoli)
	br, ok := r.(*bufio.Reader) // then do not read past the encoding
	if !ok {
		br = bufio.NewReaderSize(r, 1<<16)
	}
	in := io.TeeReader(br, crc)

	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(in, hdr); err != nil {
		return nil, corrupt("header: %v", err)
	}
	h, upperLen, err := fromHeader(hdr, vectors, dim, n)
	if err != nil {
		return nil, err
	}
	if h.levels, err = readBytes(in, n); err != nil {
		return nil, corrupt("levels: %v", err)
	}
	total, err := h.placeUpper(upperLen)
	if err != nil {
		return nil, err
	}
	// Link arrays up to twice the size of the vectors the caller holds are
	// allocated at once; larger (implausible) ones only as the input delivers.
	prealloc := 2*int64(len(vectors)) + readChunk
	if h.links0, err = readInt32s(in, int64(n)*int64(h.m0+1), prealloc); err != nil {
		return nil, corrupt("layer 0: %v", err)
	}
	if h.upper, err = readInt32s(in, total, prealloc); err != nil {
		return nil, corrupt("upper layers: %v", err)
	}
	sum := crc.Sum32()
	var tail [4]byte
	if _, err := io.ReadFull(br, tail[:]); err != nil { // not hashed
		return nil, corrupt("checksum: %v", err)
	}
	if binary.LittleEndian.Uint32(tail[:]) != sum {
		return nil, corrupt("checksum mismatch")
	}
	return h.finishLoad()
}

// fromHeader checks a graph's header against the vectors (n rows of dim)
// and returns the graph it describes, without levels or links yet, and the
// length of its upper-layer link array.
func fromHeader(hdr []byte, vectors []float32, dim, n int) (*HNSW, uint32, error) {
	if string(hdr[:8]) != graphMagic {
		return nil, 0, corrupt("bad magic %q", hdr[:8])
	}
	field := func(i int) uint32 { return binary.LittleEndian.Uint32(hdr[8+4*i:]) }
	version, gDim, gN, m, efSearch := field(0), field(1), field(2), field(3), field(4)
	entry, top, upperLen, vcrc := field(5), field(6), field(7), field(8)
	switch {
	case version != graphVersion:
		return nil, 0, corrupt("unsupported version %d, want %d", version, graphVersion)
	case int64(gDim) != int64(dim) || int64(gN) != int64(n):
		return nil, 0, fmt.Errorf("%w: graph is %d x %d, vectors are %d x %d", ErrVectorsMismatch, gN, gDim, n, dim)
	case m < 2 || m > maxReadM:
		return nil, 0, corrupt("M = %d", m)
	case efSearch == 0 || efSearch > 1<<30:
		return nil, 0, corrupt("efSearch = %d", efSearch)
	case top > maxLevel || (n == 0 && (entry != 0 || top != 0)) || (n > 0 && int64(entry) >= int64(n)):
		return nil, 0, corrupt("entry point %d at level %d", entry, top)
	}
	if vectorsCRC(vectors) != vcrc {
		return nil, 0, fmt.Errorf("%w: checksum differs", ErrVectorsMismatch)
	}
	h := &HNSW{vecs: vectors, dim: dim, n: n, m: int(m), m0: 2 * int(m), efSearch: int(efSearch),
		entry: int32(entry), topLevel: int(top)}
	return h, upperLen, nil
}

// placeUpper checks h's levels and sets where each node's upper-layer links
// start; it returns the length of the upper-layer array they need, which
// must be upperLen.
func (h *HNSW) placeUpper(upperLen uint32) (int64, error) {
	h.upperOff = make([]int32, h.n)
	total := int64(0)
	for i, l := range h.levels {
		if int(l) > h.topLevel {
			return 0, corrupt("node %d has level %d above the top level %d", i, l, h.topLevel)
		}
		h.upperOff[i] = -1
		if l > 0 {
			h.upperOff[i] = int32(total)
			total += int64(l) * int64(h.m+1)
			if total > int64(upperLen) {
				return 0, corrupt("upper layers need more than the %d links stored", upperLen)
			}
		}
	}
	if total != int64(upperLen) {
		return 0, corrupt("upper layers need %d links, %d stored", total, upperLen)
	}
	if h.n > 0 && int(h.levels[h.entry]) != h.topLevel {
		return 0, corrupt("entry point %d has level %d, not the top level %d", h.entry, h.levels[h.entry], h.topLevel)
	}
	return total, nil
}

// LoadHNSW is ReadHNSW for an encoding already in memory. On a little-endian
// host, where the links start 4-byte aligned in data (n a multiple of 4 in an
// aligned data), the graph keeps its levels and links in data's own memory:
// a 1M-item graph then writes 137 MB less fresh memory as it loads. data must
// not change afterwards.
func LoadHNSW(data []byte, vectors []float32, dim int) (*HNSW, error) {
	n, err := checkShape(vectors, dim)
	if err != nil {
		return nil, err
	}
	if !le.Native() || len(data) < headerSize+n || uintptr(unsafe.Pointer(unsafe.SliceData(data[headerSize+n:])))%4 != 0 {
		return ReadHNSW(bytes.NewReader(data), vectors, dim)
	}
	h, upperLen, err := fromHeader(data[:headerSize], vectors, dim, n)
	if err != nil {
		return nil, err
	}
	if len(data) < headerSize+n+4 {
		return nil, corrupt("levels: %d bytes for %d nodes", len(data)-headerSize, n)
	}
	body, tail := data[:len(data)-4], data[len(data)-4:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(tail) {
		return nil, corrupt("checksum mismatch")
	}
	h.levels = body[headerSize : headerSize+n]
	total, err := h.placeUpper(upperLen)
	if err != nil {
		return nil, err
	}
	links := body[headerSize+n:]
	if want := (int64(n)*int64(h.m0+1) + total) * 4; int64(len(links)) != want {
		return nil, corrupt("%d bytes of links, want %d", len(links), want)
	}
	all := unsafe.Slice((*int32)(unsafe.Pointer(unsafe.SliceData(links))), len(links)/4)
	split := n * (h.m0 + 1)
	h.links0, h.upper = all[:split:split], all[split:]
	return h.finishLoad()
}

// finishLoad checks the links of a graph just read and makes it searchable.
func (h *HNSW) finishLoad() (*HNSW, error) {
	if err := h.checkLinks(); err != nil {
		return nil, err
	}
	h.codes = quantize(h.vecs, h.dim)
	return h, nil
}

// checkLinks verifies every link list: counts within capacity, IDs in
// range, no self-links, and links on layer l only to nodes of level >= l.
func (h *HNSW) checkLinks() error {
	for id := range int32(h.n) {
		if id%4096 == 0 {
			background.Pace()
		}
		for l := 0; l <= int(h.levels[id]); l++ {
			blk := h.block(id, l)
			if blk[0] < 0 || int(blk[0]) > h.maxLinks(l) {
				return corrupt("node %d layer %d: %d links", id, l, blk[0])
			}
			for _, nb := range blk[1 : 1+blk[0]] {
				if nb < 0 || int(nb) >= h.n || nb == id || int(h.levels[nb]) < l {
					return corrupt("node %d layer %d: bad link %d", id, l, nb)
				}
			}
		}
	}
	return nil
}

func corrupt(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorruptGraph, fmt.Sprintf(format, args...))
}

// vectorsCRC is the CRC-32C of vecs as little-endian float32 bits.
func vectorsCRC(vecs []float32) uint32 {
	crc := crc32.New(castagnoli)
	for len(vecs) > 0 {
		background.Pace()
		part := vecs[:min(len(vecs), readChunk)]
		le.Write(crc, part) // a hash's Write never fails
		vecs = vecs[len(part):]
	}
	return crc.Sum32()
}

// readChunk is how many elements the readers below allocate at a time, so
// a header claiming a huge array cannot make them allocate more than about
// the input actually holds.
const readChunk = 1 << 16

// readInt32s reads count little-endian int32s. It allocates the whole
// array up front only if count <= prealloc, and otherwise grows it as data
// arrives.
func readInt32s(r io.Reader, count, prealloc int64) ([]int32, error) {
	var out []int32
	if count <= prealloc {
		out = hugepage.Make[int32](int(count))[:0]
	}
	for int64(len(out)) < count {
		background.Pace()
		c := int(min(count-int64(len(out)), readChunk))
		out = slices.Grow(out, c)
		if err := le.ReadFull(r, out[len(out):len(out)+c]); err != nil {
			return nil, err
		}
		out = out[:len(out)+c]
	}
	return out, nil
}

// readBytes reads count bytes.
func readBytes(r io.Reader, count int) ([]byte, error) {
	var out []byte
	for len(out) < count {
		c := min(count-len(out), 4*readChunk)
		out = append(out, make([]byte, c)...)
		if _, err := io.ReadFull(r, out[len(out)-c:]); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// countingWriter counts the bytes written to w.
type countingWriter struct {
	w io.Writer
	n int64
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.w.Write(p)
	cw.n += int64(n)
	return n, err
}
