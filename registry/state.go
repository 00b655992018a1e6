package registry

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/recserve/recserve/internal/fsutil"
)

// StateFile holds a model's rollout state (labels, traffic, policy) next to its
// versions: <root>/<model>/rollout.json. The registry stores it opaquely.
const StateFile = "rollout.json"

// maxStateSize bounds a state file.
const maxStateSize = 1 << 20

// ReadState returns a model's stored rollout state, or nil and no error when none
// was written.
func (r *FS) ReadState(model string) ([]byte, error) {
	if err := checkModel(model); err != nil {
		return nil, err
	}
	path := filepath.Join(r.root, model, StateFile)
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if st.Size() > maxStateSize {
		return nil, fmt.Errorf("registry: %s: %w: larger than %d bytes", path, ErrCorrupt, maxStateSize)
	}
	return os.ReadFile(path)
}

// WriteState replaces a model's rollout state atomically: write a temporary file,
// sync, rename over the old one, sync the directory.
func (r *FS) WriteState(model string, data []byte) error {
	if err := checkModel(model); err != nil {
		return err
	}
	if len(data) > maxStateSize {
		return fmt.Errorf("registry: state of %s: %w: larger than %d bytes", model, ErrInvalid, maxStateSize)
	}
	dir := filepath.Join(r.root, model)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, StateFile), data)
}
