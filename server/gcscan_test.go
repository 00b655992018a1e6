package server

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
)

// TestSnapshotHasNoPointerPerID: a loaded version must not hold a pointer per
// user or item id, or every collection cycle marks them all (35–49 ms per
// cycle with 1M users and 1M items). The heap the collector scans may grow by
// a small constant per version, not with its ids.
func TestSnapshotHasNoPointerPerID(t *testing.T) {
	const users, items = 10_000, 10_000
	reg, err := registry.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	v, err := reg.Publish(testBundle("m", users, items, 4, 1))
	if err != nil {
		t.Fatal(err)
	}
	before := scannableHeap()
	b, err := reg.Load("m", v)
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSnapshot(context.Background(), b, index.Options{Kind: index.KindExact})
	if err != nil {
		t.Fatal(err)
	}
	b = nil
	grown := scannableHeap() - before
	t.Logf("scannable heap grew by %d bytes", grown)
	runtime.KeepAlive(s)
	// A []string of the user ids alone would be 16 bytes per id.
	if limit := int64(users+items) * 16 / 10; grown > limit {
		t.Errorf("a loaded version of %d users and %d items grew the scannable heap by %d bytes, want under %d", users, items, grown, limit)
	}
}

// scannableHeap collects and returns the bytes of heap the collector scans.
func scannableHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
