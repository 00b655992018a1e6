//go:build !amd64 || purego

package trainer

const haveAVX2 = false

func score4x3F32(x, y *float32, steps, triples int, s *float32, lds int) {
	panic("trainer: no assembly kernel")
}

func score4x3F64(x, y *float64, steps, triples int, s *float64, lds int) {
	panic("trainer: no assembly kernel")
}

func dotAxpyF64(out, v, y *float64, n int, c float64) {
	panic("trainer: no assembly kernel")
}
