package registry

import (
	"errors"
	"fmt"
	"strconv"
)

// FormatVersion is the version of the on-disk format this package reads and
// writes, recorded in every manifest.
const FormatVersion = 1

// MetricDot is the only similarity metric of format version 1: the score of a
// user and an item is the dot product of their vectors.
const MetricDot = "dot"

// Errors returned by this package wrap one of these; test with errors.Is.
var (
	// ErrNotFound: the model, or a complete version of it, does not exist.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: a stored version does not match its manifest or the format.
	ErrCorrupt = errors.New("corrupt")
	// ErrInvalid: a name or a bundle given by the caller is not valid.
	ErrInvalid = errors.New("invalid")
)

// Names of the files in a version directory.
const (
	ManifestFile    = "manifest.json"
	UserIDsFile     = "user_ids.txt"
	UserVectorsFile = "user_vectors.npy"
	ItemsFile       = "items.jsonl"
	ItemVectorsFile = "item_vectors.npy"
	SeenOffsetsFile = "seen_offsets.npy"
	SeenItemsFile   = "seen_items.npy"
	// IndexFile, optional, is a retrieval index prebuilt over the item
	// vectors, so that servers load it instead of building it (the
	// encoding of index.HNSW.WriteTo; opaque to the registry).
	IndexFile = "index.hnsw"
)

const maxNameLen = 64

// checkName reports whether s may be used as a model name or as a file name in
// a manifest: 1 to 64 of [a-zA-Z0-9._-], not starting with '.'. Such a name
// has no path separator and is never "." or "..".
func checkName(s string) error {
	if s == "" || len(s) > maxNameLen {
		return fmt.Errorf("must be 1 to %d characters long", maxNameLen)
	}
	if s[0] == '.' {
		return errors.New("must not start with '.'")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("has %q at byte %d; allowed are [a-zA-Z0-9._-]", c, i)
		}
	}
	return nil
}

// checkModel validates a model name coming from outside.
func checkModel(model string) error {
	if err := checkName(model); err != nil {
		return fmt.Errorf("registry: model name %q: %w: %v", model, ErrInvalid, err)
	}
	return nil
}

// parseVersion parses a version name: a positive decimal integer without sign
// or leading zeros that fits in an int64.
func parseVersion(v string) (int64, bool) {
	if v == "" || len(v) > 19 || v[0] < '1' || v[0] > '9' {
		return 0, false
	}
	for i := 1; i < len(v); i++ {
		if v[i] < '0' || v[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// checkVersion validates a version name coming from outside.
func checkVersion(model, version string) error {
	if _, ok := parseVersion(version); !ok {
		return fmt.Errorf("registry: model %s version %q: %w: a version is a positive decimal integer without leading zeros", model, version, ErrInvalid)
	}
	return nil
}

// corrupt wraps err as a problem with one file of a stored version.
func corrupt(model, version, file string, err error) error {
	return fmt.Errorf("registry: model %s version %s: %s: %w: %v", model, version, file, ErrCorrupt, err)
}
