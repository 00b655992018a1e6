package registry

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// FS is a registry rooted at a directory of the local filesystem.
type FS struct {
	root string
}

// Open opens the registry at root, creating the directory if needed.
func Open(root string) (*FS, error) {
	if root == "" {
		return nil, fmt.Errorf("registry: root: %w: empty path", ErrInvalid)
	}
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	return &FS{root: filepath.Clean(root)}, nil
}

// Root returns the registry's root directory.
func (r *FS) Root() string { return r.root }

// Models returns every model with at least one complete version, and its
// complete versions in ascending order (as Versions lists them).
func (r *FS) Models() (map[string][]string, error) {
	entries, err := os.ReadDir(r.root)
	if err != nil {
		return nil, fmt.Errorf("registry: %w", err)
	}
	models := map[string][]string{}
	for _, e := range entries {
		name := e.Name()
		if checkName(name) != nil {
			continue
		}
		if st, err := os.Stat(filepath.Join(r.root, name)); err != nil || !st.IsDir() {
			continue
		}
		vs, err := r.Versions(name)
		if err != nil {
			if errors.Is(err, ErrNotFound) { // removed meanwhile
				continue
			}
			return nil, err
		}
		if len(vs) > 0 {
			models[name] = vs
		}
	}
	return models, nil
}

// Versions returns the complete versions of model in ascending numeric order.
// Directories without a manifest.json (being written, or abandoned), temporary
// directories and names that are not versions are left out. It returns
// ErrNotFound when the model does not exist.
func (r *FS) Versions(model string) ([]string, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.root, model)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("registry: model %s: %w", model, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("registry: model %s: %w", model, err)
	}
	type version struct {
		n    int64
		name string
	}
	var vs []version
	for _, e := range entries {
		n, ok := parseVersion(e.Name())
		if !ok {
			continue
		}
		st, err := os.Stat(filepath.Join(dir, e.Name(), ManifestFile))
		if err != nil || !st.Mode().IsRegular() {
			continue
		}
		vs = append(vs, version{n, e.Name()})
	}
	slices.SortFunc(vs, func(a, b version) int { return cmp.Compare(a.n, b.n) })
	names := make([]string, len(vs))
	for i, v := range vs {
		names[i] = v.name
	}
	return names, nil
}

// Latest returns the highest complete version of model, or ErrNotFound.
func (r *FS) Latest(model string) (string, error) { return latest(r, model) }

// latest returns the highest complete version of model in st, or ErrNotFound.
func latest(st Store, model string) (string, error) {
	vs, err := st.Versions(model)
	if err != nil {
		return "", err
	}
	if len(vs) == 0 {
		return "", fmt.Errorf("registry: model %s: %w: no complete version", model, ErrNotFound)
	}
	return vs[len(vs)-1], nil
}
