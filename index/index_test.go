package index

import (
	"errors"
	"slices"
	"testing"
)

func TestBuildErrors(t *testing.T) {
	vecs := make([]float32, 12)
	tests := []struct {
		name string
		vecs []float32
		dim  int
		opts Options
		want error
	}{
		{"zero dim", vecs, 0, Options{}, ErrInvalidDim},
		{"negative dim", vecs, -4, Options{}, ErrInvalidDim},
		{"ragged", vecs, 5, Options{}, ErrVectorsLength},
		{"ragged exact", vecs, 5, Options{Kind: KindExact}, ErrVectorsLength},
		{"ragged coder", vecs, 5, Options{Kind: KindCoder}, ErrVectorsLength},
		{"unknown kind", vecs, 4, Options{Kind: "faiss"}, ErrUnknownKind},
		{"M of 1", vecs, 4, Options{M: 1}, ErrInvalidOptions},
		{"negative M", vecs, 4, Options{M: -2}, ErrInvalidOptions},
		{"negative EfSearch", vecs, 4, Options{EfSearch: -1}, ErrInvalidOptions},
		{"negative Workers", vecs, 4, Options{Workers: -1, Kind: KindCoder}, ErrInvalidOptions},
	}
	for _, tt := range tests {
		idx, err := Build(tt.vecs, tt.dim, tt.opts)
		if !errors.Is(err, tt.want) || idx != nil {
			t.Errorf("%s: Build = %v, %v; want nil, %v", tt.name, idx, err, tt.want)
		}
	}
	if _, err := NewHNSW(vecs, 0, Options{}); !errors.Is(err, ErrInvalidDim) {
		t.Errorf("NewHNSW with dim 0: err = %v, want %v", err, ErrInvalidDim)
	}
	if _, err := NewCoder(vecs, 5, Options{}); !errors.Is(err, ErrVectorsLength) {
		t.Errorf("NewCoder with ragged vectors: err = %v, want %v", err, ErrVectorsLength)
	}
}

func TestNewExactPanicsOnBadShape(t *testing.T) {
	defer func() {
		if err, _ := recover().(error); !errors.Is(err, ErrVectorsLength) {
			t.Errorf("recovered %v, want %v", err, ErrVectorsLength)
		}
	}()
	NewExact(make([]float32, 7), 2)
}

func TestDefaults(t *testing.T) {
	o, err := Options{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Kind != KindHNSW || o.M != DefaultM || o.EfConstruction != DefaultEfConstruction ||
		o.EfSearch != DefaultEfSearch || o.Workers < 1 {
		t.Errorf("defaults = %+v", o)
	}
}

// TestSmallIndexes covers empty, single-row and tiny catalogs on every
// backend against the brute-force reference.
func TestSmallIndexes(t *testing.T) {
	for _, kind := range []Kind{KindExact, KindHNSW, KindCoder} {
		for _, n := range []int{0, 1, 2, 50} {
			d := mixture(int64(n), n, 5, 8, 3, 1.0, true)
			idx, err := Build(d.vecs, d.dim, Options{Kind: kind, Seed: 1})
			if err != nil {
				t.Fatalf("%s n=%d: %v", kind, n, err)
			}
			if idx.Len() != n {
				t.Errorf("%s n=%d: Len() = %d", kind, n, idx.Len())
			}
			odd := func(id int32) bool { return id%2 == 1 }
			for _, q := range d.queries {
				for _, f := range []Filter{nil, odd} {
					got := idx.Search(q, 10, f)
					want := bruteTopK(d.vecs, d.dim, q, 10, f)
					if !slices.Equal(got, want) {
						t.Errorf("%s n=%d: got %v, want %v", kind, n, got, want)
					}
				}
			}
		}
	}
}
