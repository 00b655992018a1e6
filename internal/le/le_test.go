package le

import (
	"bytes"
	"encoding/binary"
	"math"
	"slices"
	"testing"
)

// Both paths, in place (little-endian hosts) and byte-swapped (the others),
// across several chunks. The path that matches the host must produce the
// little-endian encoding; the other one, run on the same host, the big-endian
// encoding (the swap that corrects the other kind of host).
func TestRoundTripBothPaths(t *testing.T) {
	host := native
	defer func(v bool) { native = v }(native)
	ints := make([]int32, chunk/4*2+5)
	for i := range ints {
		ints[i] = int32(i*2654435761) ^ -7
	}
	floats := []float32{0, -1.5, float32(math.Inf(1)), math.SmallestNonzeroFloat32, 3e38}
	longs := []int64{0, -1, math.MaxInt64, math.MinInt64, 1 << 40}
	for _, n := range []bool{true, false} {
		native = n
		var order binary.AppendByteOrder = binary.LittleEndian
		if n != host {
			order = binary.BigEndian
		}
		check(t, n, ints, func(b []byte, x int32) []byte { return order.AppendUint32(b, uint32(x)) })
		check(t, n, floats, func(b []byte, x float32) []byte { return order.AppendUint32(b, math.Float32bits(x)) })
		check(t, n, longs, func(b []byte, x int64) []byte { return order.AppendUint64(b, uint64(x)) })
	}
}

func check[T Number](t *testing.T, native bool, s []T, put func([]byte, T) []byte) {
	t.Helper()
	var want []byte
	for _, x := range s {
		want = put(want, x)
	}
	orig := slices.Clone(s)
	var buf bytes.Buffer
	if err := Write(&buf, s); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(buf.Bytes(), want) {
		t.Fatalf("native=%v: Write of %T wrote other bytes than expected", native, s)
	}
	if !slices.Equal(s, orig) {
		t.Fatalf("native=%v: Write changed its input", native)
	}
	got := make([]T, len(s))
	if err := ReadFull(&buf, got); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, orig) {
		t.Fatalf("native=%v: ReadFull of %T read other values than were written", native, s)
	}
	if err := ReadFull(bytes.NewReader(want[:len(want)-1]), got); err == nil {
		t.Fatalf("native=%v: ReadFull of a short input succeeded", native)
	}
}
