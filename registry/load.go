package registry

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/recserve/recserve/internal/background"
	"github.com/recserve/recserve/internal/hugepage"
)

// Load reads, verifies and decodes a complete version of model. Each file is
// read once, checksummed as it is decoded; its size and SHA-256 must match
// the manifest. A version without manifest.json is ErrNotFound; any mismatch
// with the manifest or the format is ErrCorrupt naming the file. Load never
// allocates much more than the sizes of the files it reads. The ids and items
// are decoded into tables without a pointer per id (see Bundle): a load
// beside a serving server gives the garbage collector nothing new to mark.
func (r *FS) Load(model, version string) (*Bundle, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	if err := checkVersion(model, version); err != nil {
		return nil, err
	}
	return load(fsVersion(filepath.Join(r.root, model, version)), model, version)
}

// versionFiles reads the files of one stored version by name; each backend
// has one, and [load] does the rest, the same for all.
type versionFiles interface {
	// open opens the named file of the version and returns its size. A
	// missing file is an error wrapping fs.ErrNotExist; something that is not
	// a regular file, one wrapping errNotRegular.
	open(name string) (io.ReadCloser, int64, error)
	// exists reports whether anything is stored under the version's name,
	// to explain a missing manifest.
	exists() bool
}

// errNotRegular: a version's file is a directory or a special file.
var errNotRegular = errors.New("not a regular file")

// fsVersion is the directory of a version on the local filesystem.
type fsVersion string

func (d fsVersion) open(name string) (io.ReadCloser, int64, error) {
	f, err := os.Open(filepath.Join(string(d), name))
	if err != nil {
		return nil, 0, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, 0, errNotRegular
	}
	return f, st.Size(), nil
}

func (d fsVersion) exists() bool {
	_, err := os.Stat(string(d))
	return err == nil
}

// load reads, verifies and decodes a version as [FS.Load] describes, from
// any backend.
func load(src versionFiles, model, version string) (*Bundle, error) {
	m, err := readManifest(src, model, version)
	if err != nil {
		return nil, err
	}
	b := &Bundle{Manifest: m}
	l := loader{model: model, version: version, src: src, files: m.Files, done: map[string]bool{}}

	if b.UserVectors, err = l.readMatrix(UserVectorsFile, m.Users, m.Dim); err != nil {
		return nil, err
	}
	if b.ItemVectors, err = l.readMatrix(ItemVectorsFile, m.Items, m.Dim); err != nil {
		return nil, err
	}
	if _, ok := m.Files[SeenOffsetsFile]; ok {
		err = l.read(SeenOffsetsFile, func(r io.Reader, size int64) error {
			off, err := readNPYAs[int64](r, size, DTypeInt64, m.Users+1)
			if err != nil {
				return err
			}
			b.SeenOffsets = off
			return checkSeenOffsets(off, m.Users)
		})
		if err != nil {
			return nil, err
		}
		err = l.read(SeenItemsFile, func(r io.Reader, size int64) error {
			total := b.SeenOffsets[m.Users]
			seen, err := readNPYAs[int32](r, size, DTypeInt32, -1)
			if err != nil {
				return err
			}
			b.SeenItems = seen
			if int64(len(seen)) != total {
				return fmt.Errorf("has %d entries, but %s ends at %d", len(seen), SeenOffsetsFile, total)
			}
			return checkSeenItems(seen, total, m.Items)
		})
		if err != nil {
			return nil, err
		}
	}
	if _, ok := m.Files[IndexFile]; ok {
		err = l.read(IndexFile, func(r io.Reader, size int64) error {
			b.Index = hugepage.Make[byte](int(size)) // the graph's links stay in it
			_, err := io.ReadFull(r, b.Index)
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	err = l.read(UserIDsFile, func(r io.Reader, size int64) error {
		text := hugepage.Make[byte](int(size))
		if _, err := io.ReadFull(r, text); err != nil {
			return err
		}
		rows, err := decodeUserRows(text)
		if err != nil {
			return err
		}
		if rows.Rows() != m.Users {
			return fmt.Errorf("has %d ids, the manifest says users=%d", rows.Rows(), m.Users)
		}
		b.userRows = rows
		return nil
	})
	if err != nil {
		return nil, err
	}
	err = l.read(ItemsFile, func(r io.Reader, size int64) error {
		// Room for the items the manifest promises, as far as the file can hold
		// them (a line takes at least 8 bytes).
		rows, catalog, err := decodeCatalog(r, int(min(int64(m.Items), size/8)))
		if err != nil {
			return err
		}
		if rows.Rows() != m.Items {
			return fmt.Errorf("has %d items, the manifest says items=%d", rows.Rows(), m.Items)
		}
		b.itemRows, b.catalog = rows, catalog
		return nil
	})
	if err != nil {
		return nil, err
	}
	// Files the format does not use are verified, not decoded.
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		if l.done[name] {
			continue
		}
		if err := l.read(name, nil); err != nil {
			return nil, err
		}
	}
	// Everything Validate checks was checked above, file by file (FuzzLoad
	// holds Load to that); validating again would double the cost of a load.
	return b, nil
}

// readManifest reads and checks the manifest of a version.
func readManifest(src versionFiles, model, version string) (Manifest, error) {
	f, _, err := src.open(ManifestFile)
	if errors.Is(err, fs.ErrNotExist) {
		why := "no such version"
		if src.exists() {
			why = "no " + ManifestFile + " (being written or abandoned)"
		}
		return Manifest{}, fmt.Errorf("registry: model %s version %s: %w: %s", model, version, ErrNotFound, why)
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("registry: model %s version %s: %w", model, version, err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxManifestSize+1))
	if err != nil {
		return Manifest{}, fmt.Errorf("registry: model %s version %s: %w", model, version, err)
	}
	if len(data) > maxManifestSize {
		return Manifest{}, corrupt(model, version, ManifestFile, fmt.Errorf("larger than %d bytes", maxManifestSize))
	}
	m, err := decodeManifest(data)
	if err == nil {
		err = checkManifest(&m, model, version)
	}
	if err != nil {
		return Manifest{}, corrupt(model, version, ManifestFile, err)
	}
	return m, nil
}

// loader reads the files of one version.
type loader struct {
	model, version string
	src            versionFiles
	files          map[string]File
	done           map[string]bool
}

// read opens file name, checks its size against the manifest and hands a
// reader of its content to decode (which may be nil). Whatever decode leaves
// unread is read too, so that the checksum covers the whole file; a checksum
// mismatch is reported in preference to a decoding error, being its likely
// cause. Unread trailing bytes are an error.
func (l *loader) read(name string, decode func(r io.Reader, size int64) error) error {
	l.done[name] = true
	fail := func(err error) error { return corrupt(l.model, l.version, name, err) }
	want, ok := l.files[name]
	if !ok {
		return fail(errors.New("not listed in " + ManifestFile))
	}
	f, size, err := l.src.open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(errors.New("file is missing"))
	}
	if errors.Is(err, errNotRegular) {
		return fail(errNotRegular)
	}
	if err != nil {
		return fmt.Errorf("registry: model %s version %s: %w", l.model, l.version, err)
	}
	defer f.Close()
	if size != want.Size {
		return fail(fmt.Errorf("size is %d bytes, the manifest says %d", size, want.Size))
	}
	h := sha256.New()
	br := bufio.NewReaderSize(io.TeeReader(io.LimitReader(pacedReader{f}, want.Size), h), 256<<10)
	var derr error
	if decode != nil {
		derr = decode(br, want.Size)
	}
	rest, err := io.Copy(io.Discard, br)
	if err != nil {
		return fmt.Errorf("registry: model %s version %s: %s: %w", l.model, l.version, name, err)
	}
	wantSum, _ := hex.DecodeString(want.SHA256) // checked by checkManifest
	if sum := h.Sum(nil); !bytes.Equal(sum, wantSum) {
		return fail(fmt.Errorf("sha256 is %x, the manifest says %s", sum, want.SHA256))
	}
	if derr != nil {
		return fail(derr)
	}
	if rest != 0 && decode != nil {
		return fail(fmt.Errorf("%d bytes after the data", rest))
	}
	return nil
}

// readMatrix reads a rows×dim float32 .npy file.
func (l *loader) readMatrix(name string, rows, dim int) ([]float32, error) {
	var v []float32
	err := l.read(name, func(r io.Reader, size int64) error {
		var err error
		v, err = readNPYAs[float32](r, size, DTypeFloat32, rows, dim)
		if err != nil {
			return err
		}
		return checkVectors(v, rows, dim)
	})
	return v, err
}

// readNPYAs reads a .npy array of the given dtype and shape; a dimension of
// -1 matches any length.
func readNPYAs[T any](r io.Reader, size int64, dtype string, shape ...int) ([]T, error) {
	got, gotShape, data, err := ReadNPY(r, size)
	if err != nil {
		return nil, err
	}
	if got != dtype {
		return nil, fmt.Errorf("dtype is %s, want %s", got, dtype)
	}
	ok := len(gotShape) == len(shape)
	for i := 0; ok && i < len(shape); i++ {
		ok = shape[i] == -1 || shape[i] == gotShape[i]
	}
	if !ok {
		return nil, fmt.Errorf("shape is %s, want %s", formatShape(gotShape), formatShape(shape))
	}
	return data.([]T), nil
}

// pacedReader paces a version's load (background.Pace) between reads of at
// most maxRead bytes.
type pacedReader struct{ r io.Reader }

// maxRead bounds one read. Decoders read big arrays in one call, which
// bufio passes straight to the file: one read of up to 256 MB, copied by the
// kernel into fresh memory, where a kernel without preemption gives way to no
// waking thread of the server, SCHED_IDLE or not, and Pace is not reached.
const maxRead = 256 << 10

func (p pacedReader) Read(b []byte) (int, error) {
	background.Pace()
	return p.r.Read(b[:min(len(b), maxRead)])
}
