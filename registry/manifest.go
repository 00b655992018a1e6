package registry

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
)

// maxManifestSize bounds manifest.json; real ones are a few kilobytes.
const maxManifestSize = 4 << 20

// decodeManifest parses manifest.json strictly: one JSON object with no
// unknown fields.
func decodeManifest(data []byte) (Manifest, error) {
	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return Manifest{}, fmt.Errorf("bad JSON: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Manifest{}, errors.New("bad JSON: data after the object")
	}
	return m, nil
}

// checkManifest checks a stored manifest of model and version: its fields, and
// that the files it lists are well named and include every required file.
func checkManifest(m *Manifest, model, version string) error {
	switch {
	case m.FormatVersion != FormatVersion:
		return fmt.Errorf("format_version is %d, this reader supports %d", m.FormatVersion, FormatVersion)
	case m.Model != model:
		return fmt.Errorf("model is %q, want %q (the directory name)", m.Model, model)
	case m.Version != version:
		return fmt.Errorf("version is %q, want %q (the directory name)", m.Version, version)
	case m.Dim < 1:
		return fmt.Errorf("dim is %d, want at least 1", m.Dim)
	case m.Metric != MetricDot:
		return fmt.Errorf("metric is %q, want %q", m.Metric, MetricDot)
	case m.Users < 0:
		return fmt.Errorf("users is %d", m.Users)
	case m.Items < 0:
		return fmt.Errorf("items is %d", m.Items)
	case m.CreatedAt.IsZero():
		return errors.New("created_at is missing")
	}
	for _, name := range slices.Sorted(maps.Keys(m.Files)) {
		f := m.Files[name]
		if err := checkName(name); err != nil || name == ManifestFile {
			return fmt.Errorf("files: bad file name %q", name)
		}
		if f.Size < 0 {
			return fmt.Errorf("files: %s: size is %d", name, f.Size)
		}
		if len(f.SHA256) != 64 {
			return fmt.Errorf("files: %s: sha256 %q is not 64 hex digits", name, f.SHA256)
		}
		if _, err := hex.DecodeString(f.SHA256); err != nil {
			return fmt.Errorf("files: %s: sha256 %q is not 64 hex digits", name, f.SHA256)
		}
	}
	for _, name := range []string{UserIDsFile, UserVectorsFile, ItemsFile, ItemVectorsFile} {
		if _, ok := m.Files[name]; !ok {
			return fmt.Errorf("files: required file %s is not listed", name)
		}
	}
	_, off := m.Files[SeenOffsetsFile]
	_, seen := m.Files[SeenItemsFile]
	if off != seen {
		return fmt.Errorf("files: %s and %s must be listed together or not at all", SeenOffsetsFile, SeenItemsFile)
	}
	return nil
}
