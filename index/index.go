package index

import (
	"errors"
	"fmt"
	"math"
	"runtime"
)

// Result is one retrieved item: its row number in the vectors matrix and its
// inner-product score.
type Result struct {
	ID    int32
	Score float32
}

// Filter reports whether item id may be returned. A nil Filter allows every
// item. It is called from the searching goroutine and must be safe for
// concurrent use if the index is searched concurrently.
type Filter func(id int32) bool

// Index is top-K maximum-inner-product retrieval over a fixed set of row
// vectors. Safe for concurrent Search.
type Index interface {
	// Search returns up to k allowed items with the highest q·v, best first
	// (ties by lower ID). It returns nil if k <= 0 or len(q) is not the
	// index's dimension.
	Search(q []float32, k int, f Filter) []Result
	// Len returns the number of indexed rows.
	Len() int
}

// Kind selects an index backend.
type Kind string

// Index backends.
const (
	KindHNSW  Kind = "hnsw"  // our HNSW graph, the default
	KindExact Kind = "exact" // brute-force scan
	KindCoder Kind = "coder" // github.com/coder/hnsw v0.6.1
)

// Defaults applied to zero-valued Options fields.
const (
	DefaultM              = 16
	DefaultEfConstruction = 200
	// DefaultEfSearch gives recall@10 ~0.997 on the package's acceptance
	// data (10k x 32 Gaussian mixture) with the other defaults; 0.95 is
	// reached near 16, and the margin is for larger, harder catalogs.
	DefaultEfSearch = 64
)

// maxRows is the largest number of rows an index can hold: IDs are int32.
const maxRows = math.MaxInt32

// Errors returned by Build and the New functions (wrapped with details).
var (
	ErrInvalidDim     = errors.New("index: dimension must be positive")
	ErrVectorsLength  = errors.New("index: len(vectors) is not a multiple of dim")
	ErrTooManyRows    = errors.New("index: too many rows")
	ErrUnknownKind    = errors.New("index: unknown kind")
	ErrInvalidOptions = errors.New("index: invalid options")
)

// Options configures Build. The zero value selects the defaults documented
// on each field.
type Options struct {
	// Kind is the backend; default KindHNSW.
	Kind Kind
	// M is the number of links per node on the upper graph layers; layer 0
	// keeps 2*M. Default DefaultM (16). Must be 0 or >= 2.
	M int
	// EfConstruction is the candidate list size while building; default
	// DefaultEfConstruction (200).
	EfConstruction int
	// EfSearch is the candidate list size while searching; a search uses
	// max(EfSearch, k). Default DefaultEfSearch.
	EfSearch int
	// Workers is the build parallelism of KindHNSW; default
	// runtime.GOMAXPROCS(0). With Workers = 1 the graph is deterministic.
	Workers int
	// Seed seeds the random level draw of the graph backends.
	Seed int64
}

// withDefaults validates o and fills in zero fields.
func (o Options) withDefaults() (Options, error) {
	if o.Kind == "" {
		o.Kind = KindHNSW
	}
	switch o.Kind {
	case KindHNSW, KindExact, KindCoder:
	default:
		return o, fmt.Errorf("%w: %q", ErrUnknownKind, o.Kind)
	}
	if o.M < 0 || o.M == 1 || o.M > math.MaxInt32/4 {
		return o, fmt.Errorf("%w: M = %d, want 0 or 2..", ErrInvalidOptions, o.M)
	}
	if o.EfConstruction < 0 || o.EfSearch < 0 || o.Workers < 0 {
		return o, fmt.Errorf("%w: negative EfConstruction, EfSearch or Workers", ErrInvalidOptions)
	}
	if o.M == 0 {
		o.M = DefaultM
	}
	if o.EfConstruction == 0 {
		o.EfConstruction = DefaultEfConstruction
	}
	if o.EfSearch == 0 {
		o.EfSearch = DefaultEfSearch
	}
	if o.Workers == 0 {
		o.Workers = runtime.GOMAXPROCS(0)
	}
	return o, nil
}

// checkShape validates the vectors matrix and returns its row count.
func checkShape(vectors []float32, dim int) (int, error) {
	if dim <= 0 {
		return 0, fmt.Errorf("%w: got %d", ErrInvalidDim, dim)
	}
	if len(vectors)%dim != 0 {
		return 0, fmt.Errorf("%w: %d %% %d = %d", ErrVectorsLength, len(vectors), dim, len(vectors)%dim)
	}
	n := len(vectors) / dim
	if n > maxRows {
		return 0, fmt.Errorf("%w: %d > %d", ErrTooManyRows, n, maxRows)
	}
	return n, nil
}

// Build builds an index of the given kind over vectors (row-major,
// n = len(vectors)/dim rows). Every backend retains the vectors slice
// without copying it and never modifies it; the caller must not modify it
// while the index is in use.
func Build(vectors []float32, dim int, opts Options) (Index, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	switch opts.Kind {
	case KindExact:
		if _, err := checkShape(vectors, dim); err != nil {
			return nil, err
		}
		return NewExact(vectors, dim), nil
	case KindCoder:
		c, err := NewCoder(vectors, dim, opts)
		if err != nil {
			return nil, err // not a nil *Coder in a non-nil Index
		}
		return c, nil
	default:
		h, err := NewHNSW(vectors, dim, opts)
		if err != nil {
			return nil, err
		}
		return h, nil
	}
}

var (
	_ Index = (*Exact)(nil)
	_ Index = (*HNSW)(nil)
	_ Index = (*Coder)(nil)
)
