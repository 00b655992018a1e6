package registry

import "testing"

// BenchmarkLoad loads a version of 100k users and 100k items (without
// attributes, as the trainer writes them) at 16 dimensions.
func BenchmarkLoad(b *testing.B) {
	bundle := newBundle(100_000, 100_000, 16, true)
	for i := range bundle.Items {
		bundle.Items[i].Attributes = nil
	}
	r, err := Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	v, err := r.Publish(bundle)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Load("m", v); err != nil {
			b.Fatal(err)
		}
	}
}
