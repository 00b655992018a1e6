// Package le reads and writes slices of fixed-size numbers as little-endian
// bytes, the encoding of recserve's files (.npy arrays, HNSW graphs). On a
// little-endian host the bytes are the slice's own memory, read and written in
// place; elsewhere they are byte-swapped on the way.
package le

import (
	"encoding/binary"
	"io"
	"slices"
	"unsafe"
)

// Number is a fixed-size number type.
type Number interface {
	~int32 | ~uint32 | ~int64 | ~float32
}

// chunk bounds the bytes read, written or swapped per call, so that a reader
// or writer that hashes what passes (a sha256, a CRC) never runs for long in
// one call the Go scheduler cannot preempt. A multiple of every Number's size.
const chunk = 64 << 10

// native is whether this host is little-endian; tests take the other path.
var native = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// Native reports whether this host is little-endian: whether a slice's own
// memory is its encoding, and the encoding's bytes can serve as the slice.
func Native() bool { return native }

// ReadFull fills s with len(s) little-endian numbers read from r; errors are
// io.ReadFull's.
func ReadFull[T Number](r io.Reader, s []T) error {
	raw, size := bytesOf(s)
	for len(raw) > 0 {
		k := min(len(raw), chunk)
		if _, err := io.ReadFull(r, raw[:k]); err != nil {
			return err
		}
		if !native {
			swap(raw[:k], size)
		}
		raw = raw[k:]
	}
	return nil
}

// Write writes s to w as little-endian numbers.
func Write[T Number](w io.Writer, s []T) error {
	raw, size := bytesOf(s)
	var buf []byte
	for len(raw) > 0 {
		part := raw[:min(len(raw), chunk)]
		raw = raw[len(part):]
		if !native {
			buf = append(buf[:0], part...)
			swap(buf, size)
			part = buf
		}
		if _, err := w.Write(part); err != nil {
			return err
		}
	}
	return nil
}

// bytesOf returns the memory of s and the size of one element.
func bytesOf[T Number](s []T) ([]byte, int) {
	size := int(unsafe.Sizeof(*new(T)))
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(s))), len(s)*size), size
}

// swap reverses the bytes of each size-byte element of b.
func swap(b []byte, size int) {
	for i := 0; i < len(b); i += size {
		slices.Reverse(b[i : i+size])
	}
}
