package registry

// Store is what every registry backend offers: the local filesystem ([FS])
// and S3-compatible object storage ([S3]). Both keep the same layout,
// <model>/<version>/<file>, follow the same rules (a version is complete once
// its manifest.json exists; FORMAT.md) and verify loads with the same code.
type Store interface {
	// Location names the registry for logs: a directory or an s3:// URL.
	Location() string
	// Models returns every model with a complete version, and its complete
	// versions in ascending order.
	Models() (map[string][]string, error)
	// Versions returns the complete versions of model in ascending order, or
	// ErrNotFound when the model does not exist.
	Versions(model string) ([]string, error)
	// Latest returns the highest complete version of model, or ErrNotFound.
	Latest(model string) (string, error)
	// Load reads, verifies and decodes a complete version.
	Load(model, version string) (*Bundle, error)
	// Publish stores b as the next version of its model and returns it.
	Publish(b *Bundle) (string, error)
	// ReadState returns a model's rollout state, nil when none was written.
	ReadState(model string) ([]byte, error)
	// WriteState replaces a model's rollout state atomically.
	WriteState(model string, data []byte) error
	// Close releases connections; the store is not used after.
	Close() error
}

var (
	_ Store = (*FS)(nil)
	_ Store = (*S3)(nil)
)

// Location returns the registry's root directory, as Root does.
func (r *FS) Location() string { return r.root }

// Close does nothing: a filesystem registry holds no open files.
func (r *FS) Close() error { return nil }
