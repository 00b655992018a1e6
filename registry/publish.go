package registry

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/recserve/recserve/internal/fsutil"
)

const (
	tmpPrefix       = ".tmp-"
	maxPublishTries = 100
)

// Publish stores b as the next version of model b.Manifest.Model and returns
// the version. It sets FormatVersion (when 0), Metric (when empty), Users and
// Items from the data, CreatedAt (when zero) and Files, validates the bundle,
// writes and syncs the data files in a temporary directory <model>/.tmp-*,
// writes the manifest last and renames the directory to the version, one more
// than the highest version directory present, complete or not. When another
// writer takes that number first, Publish moves on to the next.
//
// On success b.Manifest is replaced with the stored manifest; on failure b is
// unchanged. Do not publish one Bundle from several goroutines at once.
func (r *FS) Publish(b *Bundle) (string, error) {
	nb, err := preparePublish(b)
	if err != nil {
		return "", err
	}
	m := nb.Manifest

	modelDir := filepath.Join(r.root, m.Model)
	if err := os.Mkdir(modelDir, 0o755); err == nil {
		if err := fsutil.SyncDir(r.root); err != nil {
			return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
		}
	} else if !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
	}
	tmp, err := os.MkdirTemp(modelDir, tmpPrefix)
	if err != nil {
		return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
	}
	defer func() {
		if tmp != "" {
			os.RemoveAll(tmp)
		}
	}()
	if m.Files, err = writeData(tmp, nb); err != nil {
		return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
	}
	if err := os.Chmod(tmp, 0o755); err != nil { // MkdirTemp made it 0700
		return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
	}

	for range maxPublishTries {
		next, err := nextVersion(modelDir)
		if err != nil {
			return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
		}
		// os.Rename refuses to replace a directory, even an empty one that an
		// external writer has just made, so the first rename to a number wins.
		m.Version = next
		if err := writeManifest(tmp, &m); err != nil {
			return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
		}
		final := filepath.Join(modelDir, next)
		if err := os.Rename(tmp, final); errors.Is(err, fs.ErrExist) {
			continue
		} else if err != nil {
			return "", fmt.Errorf("registry: publish %s: %w", m.Model, err)
		}
		tmp = ""
		if err := fsutil.SyncDir(modelDir); err != nil {
			return "", fmt.Errorf("registry: publish %s version %s: %w", m.Model, next, err)
		}
		b.Manifest = m
		return next, nil
	}
	return "", fmt.Errorf("registry: publish %s: no free version number after %d tries", m.Model, maxPublishTries)
}

// preparePublish returns a copy of b with the manifest fields that Publish
// sets filled in, validated.
func preparePublish(b *Bundle) (*Bundle, error) {
	if b == nil {
		return nil, fmt.Errorf("registry: publish: %w: nil bundle", ErrInvalid)
	}
	if b.userRows != nil || b.itemRows != nil {
		return nil, fmt.Errorf("registry: publish: %w: a bundle Load returned has no UserIDs or Items to write", ErrInvalid)
	}
	m := b.Manifest
	if m.FormatVersion == 0 {
		m.FormatVersion = FormatVersion
	}
	if m.Metric == "" {
		m.Metric = MetricDot
	}
	m.Version = ""
	m.Users, m.Items = len(b.UserIDs), len(b.Items)
	if m.CreatedAt.IsZero() {
		m.CreatedAt = time.Now().UTC().Truncate(time.Second)
	}
	m.Files = nil
	nb := *b
	nb.Manifest = m
	if err := nb.Validate(); err != nil {
		return nil, err
	}
	return &nb, nil
}

// nextVersion returns one more than the highest version name in modelDir,
// counting incomplete versions, which an external writer may still be
// writing.
func nextVersion(modelDir string) (string, error) {
	entries, err := os.ReadDir(modelDir)
	if err != nil {
		return "", err
	}
	var top int64
	for _, e := range entries {
		if n, ok := parseVersion(e.Name()); ok && n > top {
			top = n
		}
	}
	if _, ok := parseVersion(fmt.Sprint(top + 1)); !ok {
		return "", errors.New("version numbers exhausted")
	}
	return fmt.Sprint(top + 1), nil
}

// writeData writes the data files of b into dir and returns their sizes and
// checksums.
func writeData(dir string, b *Bundle) (map[string]File, error) {
	files := dataFiles(b)
	out := make(map[string]File, len(files))
	for _, f := range files {
		var err error
		if out[f.name], err = writeFile(filepath.Join(dir, f.name), f.write); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// dataFile is a data file of a version and how to encode it.
type dataFile struct {
	name  string
	write func(w io.Writer) error
}

// dataFiles returns the data files of b, in the order they are written.
func dataFiles(b *Bundle) []dataFile {
	m := &b.Manifest
	type file = dataFile
	files := []file{
		{UserIDsFile, func(w io.Writer) error { return encodeUserIDs(w, b.UserIDs) }},
		{UserVectorsFile, func(w io.Writer) error { return WriteNPY(w, b.UserVectors, m.Users, m.Dim) }},
		{ItemsFile, func(w io.Writer) error { return encodeItems(w, b.Items) }},
		{ItemVectorsFile, func(w io.Writer) error { return WriteNPY(w, b.ItemVectors, m.Items, m.Dim) }},
	}
	if b.SeenOffsets != nil {
		files = append(files,
			file{SeenOffsetsFile, func(w io.Writer) error { return WriteNPY(w, b.SeenOffsets) }},
			file{SeenItemsFile, func(w io.Writer) error { return WriteNPY(w, b.SeenItems) }},
		)
	}
	if len(b.Index) > 0 {
		files = append(files, file{IndexFile, func(w io.Writer) error { _, err := w.Write(b.Index); return err }})
	}
	return files
}

// writeFile creates path, writes it with write and syncs it, returning its
// size and checksum.
func writeFile(path string, write func(w io.Writer) error) (File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return File{}, err
	}
	defer f.Close()
	file, err := encode(f, write)
	if err != nil {
		return File{}, err
	}
	if err := f.Sync(); err != nil {
		return File{}, err
	}
	if err := f.Close(); err != nil {
		return File{}, err
	}
	return file, nil
}

// encode runs write into w through a buffer and returns the size and SHA-256
// of what it wrote, as the manifest lists them.
func encode(w io.Writer, write func(w io.Writer) error) (File, error) {
	h := sha256.New()
	var n countWriter
	bw := bufio.NewWriterSize(io.MultiWriter(w, h, &n), 256<<10)
	if err := write(bw); err != nil {
		return File{}, err
	}
	if err := bw.Flush(); err != nil {
		return File{}, err
	}
	return File{Size: int64(n), SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) {
	*c += countWriter(len(p))
	return len(p), nil
}

// writeManifest writes m as dir/manifest.json and syncs the file and dir.
func writeManifest(dir string, m *Manifest) error {
	data, err := manifestJSON(m)
	if err != nil {
		return err
	}
	_, err = writeFile(filepath.Join(dir, ManifestFile), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
	if err != nil {
		return err
	}
	return fsutil.SyncDir(dir)
}

// manifestJSON encodes m as manifest.json holds it.
func manifestJSON(m *Manifest) ([]byte, error) {
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(data, '\n'), nil
}
