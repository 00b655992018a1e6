package server

import (
	"context"
	"runtime"
	"runtime/metrics"
	"testing"

	"github.com/recserve/recserve/index"
	"github.com/recserve/recserve/registry"
)

// TestSnapshotHasNoPointerPerID: a version, as registry.Load returns it and
// as a snapshot serves it, must not hold a pointer per user or item id, or
// the collections during its load and every cycle after it mark them all
// (35–49 ms per cycle with 1M users and 1M items). The heap the collector
// scans may grow by a small constant per version, not with its ids.
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
	// A []string of the user ids alone would be 16 bytes per id.
	limit := int64(users+items) * 16 / 10
	before := scannableHeap()
	b, err := reg.Load("m", v)
	if err != nil {
		t.Fatal(err)
	}
	if grown := scannableHeap() - before; grown > limit {
		t.Errorf("loading a version of %d users and %d items grew the scannable heap by %d bytes, want under %d", users, items, grown, limit)
	}
	s, err := newSnapshot(context.Background(), b, index.Options{Kind: index.KindExact})
	if err != nil {
		t.Fatal(err)
	}
	b = nil
	grown := scannableHeap() - before
	t.Logf("scannable heap grew by %d bytes", grown)
	runtime.KeepAlive(s)
	if grown > limit {
		t.Errorf("serving a version of %d users and %d items grew the scannable heap by %d bytes, want under %d", users, items, grown, limit)
	}
}

// scannableHeap collects and returns the bytes of heap the collector scans.
func scannableHeap() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/scan/heap:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64())
}
