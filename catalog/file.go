package catalog

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/recserve/recserve/internal/fsutil"
	recservev1 "github.com/recserve/recserve/proto/recserve/v1"
)

// FileName is the file a File keeps in its directory.
const FileName = "catalog.log"

// File persists the state in a local append-only file: each Save appends the
// changed items' states (Item.Records) and syncs the file before it returns. A record is a
// little-endian uint32 payload length, the payload's CRC-32C and the payload,
// one marshaled CatalogRecord. Open reads the file back, cutting a torn last
// record away, and rewrites it compacted when it holds more than twice as many
// records as items.
type File struct {
	path string

	mu      sync.Mutex
	f       *os.File
	records int // in the file
	base    int // records in the file after it was last compacted
	slack   int // records beyond twice base that trigger a compaction
}

// compactSlack is how many records beyond twice its compacted size the file
// grows by before it is compacted again (reading it back costs about 0.5 µs
// a record).
const compactSlack = 100_000

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// OpenFile opens (creating it as needed) the catalog file in dir.
func OpenFile(dir string) (*File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c := &File{path: filepath.Join(dir, FileName), slack: compactSlack}
	state := NewState()
	f, err := os.OpenFile(c.path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	good, n, err := readRecords(f, func(r *recservev1.CatalogRecord) { state.Apply([]*recservev1.CatalogRecord{r}) })
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("catalog: read %s: %w", c.path, err)
	}
	if err := f.Truncate(good); err != nil { // a torn tail from a crash
		f.Close()
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("catalog: %w", err)
	}
	c.f, c.records = f, n
	if c.records > 2*state.Len()+1000 {
		if err := c.compact(state); err != nil {
			c.f.Close()
			return nil, err
		}
	}
	c.base = c.records
	return c, nil
}

// readRecords calls fn with every whole record of f and returns the offset
// after the last one and how many there were.
func readRecords(f *os.File, fn func(*recservev1.CatalogRecord)) (int64, int, error) {
	br := bufio.NewReader(f)
	var off int64
	n := 0
	var hdr [8]byte
	for {
		if _, err := io.ReadFull(br, hdr[:]); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return off, n, nil
			}
			return off, n, err
		}
		size := binary.LittleEndian.Uint32(hdr[:4])
		if size == 0 || size > 1<<20 {
			return off, n, nil // a torn header
		}
		payload := make([]byte, size)
		if _, err := io.ReadFull(br, payload); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return off, n, nil
			}
			return off, n, err
		}
		r := new(recservev1.CatalogRecord)
		if crc32.Checksum(payload, castagnoli) != binary.LittleEndian.Uint32(hdr[4:]) || proto.Unmarshal(payload, r) != nil {
			return off, n, nil
		}
		fn(r)
		off += int64(len(hdr)) + int64(size)
		n++
	}
}

func appendRecord(buf []byte, r *recservev1.CatalogRecord) ([]byte, error) {
	start := len(buf)
	buf = append(buf, make([]byte, 8)...)
	buf, err := proto.MarshalOptions{Deterministic: true}.MarshalAppend(buf, r)
	if err != nil {
		return buf[:start], err
	}
	payload := buf[start+8:]
	binary.LittleEndian.PutUint32(buf[start:], uint32(len(payload)))
	binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(payload, castagnoli))
	return buf, nil
}

// encode returns the records of items (Item.Records), framed for the file,
// and how many there are.
func encode(items []Item) (buf []byte, n int, err error) {
	for _, it := range items {
		for _, r := range it.Records() {
			if buf, err = appendRecord(buf, r); err != nil {
				return nil, 0, fmt.Errorf("catalog: encode %q: %w", it.ID, err)
			}
			n++
		}
	}
	return buf, n, nil
}

// Load reads the items the file holds.
func (c *File) Load(context.Context) ([]Item, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	state, err := c.read()
	if err != nil {
		return nil, err
	}
	return state.Items(), nil
}

// read reads the whole file back (c.mu held) and leaves the offset at its end.
func (c *File) read() (*State, error) {
	if c.f == nil {
		return nil, errors.New("catalog: file closed")
	}
	state := NewState()
	if _, err := c.f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	if _, _, err := readRecords(c.f, func(r *recservev1.CatalogRecord) { state.Apply([]*recservev1.CatalogRecord{r}) }); err != nil {
		return nil, fmt.Errorf("catalog: read %s: %w", c.path, err)
	}
	if _, err := c.f.Seek(0, io.SeekEnd); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return state, nil
}

// Save appends the states of items and syncs the file.
func (c *File) Save(_ context.Context, items []Item) error {
	if len(items) == 0 {
		return nil
	}
	buf, n, err := encode(items)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return errors.New("catalog: file closed")
	}
	if _, err := c.f.Write(buf); err != nil {
		return fmt.Errorf("catalog: write: %w", err)
	}
	if err := c.f.Sync(); err != nil {
		return fmt.Errorf("catalog: sync: %w", err)
	}
	c.records += n
	if c.records > 2*c.base+c.slack {
		return c.recompact()
	}
	return nil
}

// recompact reads the file back and compacts it (c.mu held).
func (c *File) recompact() error {
	state, err := c.read()
	if err != nil {
		return err
	}
	if err := c.compact(state); err != nil {
		return err
	}
	c.base = c.records
	return nil
}

// compact rewrites the file with the records of state's items (c.mu held or
// not yet shared).
func (c *File) compact(state *State) error {
	buf, n, err := encode(state.Items())
	if err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	if err := fsutil.WriteFileAtomic(c.path, buf); err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	f, err := os.OpenFile(c.path, os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("catalog: compact: %w", err)
	}
	c.f.Close()
	c.f, c.records = f, n
	return nil
}

// Close closes the file.
func (c *File) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.f == nil {
		return nil
	}
	err := c.f.Close()
	c.f = nil
	return err
}
