//go:build !purego

#include "textflag.h"

// Both kernels compute a dot product of n floats (n a multiple of 8) with
// the same instruction sequence: four 8-lane FMA accumulators over 32
// floats per step, then one accumulator over 8 floats per step, then a
// fixed reduction. So dotsAVX2 gives bit-identical results to dotAVX2.

// func dotAVX2(a, b *float32, n int) float32
TEXT ·dotAVX2(SB), NOSPLIT, $0-28
	MOVQ a+0(FP), SI
	MOVQ b+8(FP), DI
	MOVQ n+16(FP), CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
one32:
	CMPQ CX, $32
	JLT one8
	VMOVUPS 0(SI), Y4
	VMOVUPS 32(SI), Y5
	VMOVUPS 64(SI), Y6
	VMOVUPS 96(SI), Y7
	VFMADD231PS 0(DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, SI
	ADDQ $128, DI
	SUBQ $32, CX
	JMP one32
one8:
	CMPQ CX, $8
	JLT onesum
	VMOVUPS 0(SI), Y4
	VFMADD231PS 0(DI), Y4, Y0
	ADDQ $32, SI
	ADDQ $32, DI
	SUBQ $8, CX
	JMP one8
onesum:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVHLPS X0, X0, X1
	VADDPS X1, X0, X0
	VMOVSHDUP X0, X1
	VADDSS X1, X0, X0
	VZEROUPPER
	MOVSS X0, ret+24(FP)
	RET

// func dotsAVX2(q, base *float32, dim int, ids *int32, n int, out *float32)
//
// out[i] = dot(q, row ids[i] of base) for i < n; rows are dim floats.
TEXT ·dotsAVX2(SB), NOSPLIT, $0-48
	MOVQ q+0(FP), SI
	MOVQ base+8(FP), R8
	MOVQ dim+16(FP), R9
	MOVQ ids+24(FP), R10
	MOVQ n+32(FP), R11
	MOVQ out+40(FP), R12
	MOVQ R9, R13
	SHLQ $2, R13 // row bytes
	TESTQ R11, R11
	JEQ done
	XORQ BX, BX
row:
	MOVLQSX (R10)(BX*4), DI
	IMULQ R13, DI
	ADDQ R8, DI
	MOVQ SI, AX
	MOVQ R9, CX
	VXORPS Y0, Y0, Y0
	VXORPS Y1, Y1, Y1
	VXORPS Y2, Y2, Y2
	VXORPS Y3, Y3, Y3
many32:
	CMPQ CX, $32
	JLT many8
	VMOVUPS 0(AX), Y4
	VMOVUPS 32(AX), Y5
	VMOVUPS 64(AX), Y6
	VMOVUPS 96(AX), Y7
	VFMADD231PS 0(DI), Y4, Y0
	VFMADD231PS 32(DI), Y5, Y1
	VFMADD231PS 64(DI), Y6, Y2
	VFMADD231PS 96(DI), Y7, Y3
	ADDQ $128, AX
	ADDQ $128, DI
	SUBQ $32, CX
	JMP many32
many8:
	CMPQ CX, $8
	JLT manysum
	VMOVUPS 0(AX), Y4
	VFMADD231PS 0(DI), Y4, Y0
	ADDQ $32, AX
	ADDQ $32, DI
	SUBQ $8, CX
	JMP many8
manysum:
	VADDPS Y1, Y0, Y0
	VADDPS Y3, Y2, Y2
	VADDPS Y2, Y0, Y0
	VEXTRACTF128 $1, Y0, X1
	VADDPS X1, X0, X0
	VMOVHLPS X0, X0, X1
	VADDPS X1, X0, X0
	VMOVSHDUP X0, X1
	VADDSS X1, X0, X0
	MOVSS X0, (R12)(BX*4)
	INCQ BX
	CMPQ BX, R11
	JLT row
done:
	VZEROUPPER
	RET

// func prefetch(p *int32, n int)
//
// Prefetches the cache lines holding the n int32s at p.
TEXT ·prefetch(SB), NOSPLIT, $0-16
	MOVQ p+0(FP), AX
	MOVQ n+8(FP), CX
	SHLQ $2, CX
	ADDQ AX, CX // end
	ANDQ $-64, AX
line:
	PREFETCHT0 (AX)
	ADDQ $64, AX
	CMPQ AX, CX
	JLT line
	RET

// func dotsI8AVX2(q *int16, base *int8, n, stride int, ids *int32, count int, out *int32)
//
// out[i] = the int32 dot product of the n int16s at q with the n int8s at
// base + ids[i]*stride, for i < count; n is a multiple of 16.
TEXT ·dotsI8AVX2(SB), NOSPLIT, $0-56
	MOVQ q+0(FP), SI
	MOVQ base+8(FP), R8
	MOVQ n+16(FP), R9
	MOVQ stride+24(FP), R13
	MOVQ ids+32(FP), R10
	MOVQ count+40(FP), R11
	MOVQ out+48(FP), R12
	TESTQ R11, R11
	JEQ i8done
	XORQ BX, BX
i8row:
	MOVLQSX (R10)(BX*4), DI
	IMULQ R13, DI
	ADDQ R8, DI
	MOVQ SI, AX
	MOVQ R9, CX
	VPXOR Y0, Y0, Y0
	VPXOR Y1, Y1, Y1
i8many32:
	CMPQ CX, $32
	JLT i8many16
	VPMOVSXBW 0(DI), Y4
	VPMOVSXBW 16(DI), Y5
	VPMADDWD 0(AX), Y4, Y4
	VPMADDWD 32(AX), Y5, Y5
	VPADDD Y4, Y0, Y0
	VPADDD Y5, Y1, Y1
	ADDQ $32, DI
	ADDQ $64, AX
	SUBQ $32, CX
	JMP i8many32
i8many16:
	CMPQ CX, $16
	JLT i8sum
	VPMOVSXBW 0(DI), Y4
	VPMADDWD 0(AX), Y4, Y4
	VPADDD Y4, Y0, Y0
	ADDQ $16, DI
	ADDQ $32, AX
	SUBQ $16, CX
	JMP i8many16
i8sum:
	VPADDD Y1, Y0, Y0
	VEXTRACTI128 $1, Y0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0x4E, X0, X1
	VPADDD X1, X0, X0
	VPSHUFD $0xB1, X0, X1
	VPADDD X1, X0, X0
	VMOVD X0, (R12)(BX*4)
	INCQ BX
	CMPQ BX, R11
	JLT i8row
i8done:
	VZEROUPPER
	RET

// func prefetchRows(base unsafe.Pointer, stride, size int, ids *int32, n int)
//
// Prefetches the size bytes at base + ids[i]*stride for i < n, every row
// before any is used, so that their cache misses overlap.
TEXT ·prefetchRows(SB), NOSPLIT, $0-40
	MOVQ base+0(FP), R8
	MOVQ stride+8(FP), R13
	MOVQ size+16(FP), R9
	MOVQ ids+24(FP), R10
	MOVQ n+32(FP), R11
	TESTQ R11, R11
	JEQ rowsDone
	XORQ BX, BX
rowsRow:
	MOVLQSX (R10)(BX*4), AX
	IMULQ R13, AX
	ADDQ R8, AX
	MOVQ R9, DX
rowsLine:
	PREFETCHT0 (AX)
	ADDQ $64, AX
	SUBQ $64, DX
	JGT rowsLine
	INCQ BX
	CMPQ BX, R11
	JLT rowsRow
rowsDone:
	RET
