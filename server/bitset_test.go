package server

import "testing"

func TestBitset(t *testing.T) {
	const n = 200
	b := newBitset(n)
	in := func(i int32) bool { return i%7 == 3 || i == 63 || i == 64 || i == n-1 }
	for i := range int32(n) {
		if in(i) {
			b.add(i)
		}
	}
	for i := range int32(n) {
		if b.contains(i) != in(i) {
			t.Errorf("contains(%d) = %v, want %v", i, b.contains(i), in(i))
		}
	}
}
