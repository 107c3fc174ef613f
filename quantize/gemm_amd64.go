//go:build amd64 && !purego

package quantize

import "golang.org/x/sys/cpu"

// haveKernel: kernel6x16 needs AVX2 and FMA (Haswell and later).
var haveKernel = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// kernel6x16 computes the 6×16 product of a packed A panel (k columns of 6 values) and k rows
// of 16 values of B (ldb floats apart: 16 when packed) and stores it into c (row-major, ldc
// floats between rows), or adds it to c when add is set.
//
//go:noescape
func kernel6x16(k int, a, b *float32, ldb int, c *float32, ldc int, add bool)
