package main

import (
	"encoding/binary"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestWriteNpy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.npy")
	data := []float32{1.5, -2, 0, 3.25, 7, 8}
	if err := writeNpy(path, "<f4", 2, 3, func(i int) uint32 { return math.Float32bits(data[i]) }); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b[:8]) != "\x93NUMPY\x01\x00" {
		t.Fatalf("magic %q", b[:8])
	}
	hlen := int(binary.LittleEndian.Uint16(b[8:]))
	hdr := string(b[10 : 10+hlen])
	if (10+hlen)%64 != 0 || !strings.HasSuffix(hdr, "\n") ||
		!strings.Contains(hdr, "'descr': '<f4'") || !strings.Contains(hdr, "'shape': (2, 3)") {
		t.Fatalf("header %q (data at %d)", hdr, 10+hlen)
	}
	body := b[10+hlen:]
	if len(body) != 4*len(data) {
		t.Fatalf("%d data bytes, want %d", len(body), 4*len(data))
	}
	for i, want := range data {
		if got := math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:])); got != want {
			t.Errorf("element %d = %v, want %v", i, got, want)
		}
	}
}

func TestMixtureDeterministicAndNormalized(t *testing.T) {
	v1, q1 := mixture(5, 300, 10, 16, 7, 1.0)
	v2, q2 := mixture(5, 300, 10, 16, 7, 1.0)
	if !slices.Equal(v1, v2) || !slices.Equal(q1, q2) {
		t.Fatal("same seed, different data")
	}
	if v3, _ := mixture(6, 300, 10, 16, 7, 1.0); slices.Equal(v1, v3) {
		t.Fatal("different seeds, same data")
	}
	for off := 0; off < len(v1); off += 16 {
		var norm float64
		for _, x := range v1[off : off+16] {
			norm += float64(x) * float64(x)
		}
		if math.Abs(norm-1) > 1e-5 {
			t.Fatalf("row %d has squared norm %v", off/16, norm)
		}
	}
}
