//go:build !amd64 || purego

package engine

// Kernels with no SIMD version off amd64 yet: the callers' Go loops run instead.

func requantAsm(*requantChannels, []byte, []int32, int, []int32) int { return 0 }

func dwPixelsAsm([]int32, []byte, []int, []int, []int32, int, int32, bool, int, int) int {
	return 0
}

func addQ8Asm(*addQ8, []byte, []byte, []byte, bool) int { return 0 }
