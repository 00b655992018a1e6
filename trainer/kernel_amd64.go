//go:build !purego

package trainer

import "golang.org/x/sys/cpu"

var haveAVX2 = cpu.X86.HasAVX2 && cpu.X86.HasFMA

//go:noescape
func score4x3F32(x, y *float32, steps, triples int, s *float32, lds int)

//go:noescape
func score4x3F64(x, y *float64, steps, triples int, s *float64, lds int)

//go:noescape
func dotAxpyF64(out, v, y *float64, n int, c float64)
