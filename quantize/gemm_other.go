//go:build !amd64 || purego

package quantize

// haveKernel is false: sgemm uses gonum.
const haveKernel = false

func kernel6x16(int, *float32, *float32, int, *float32, int, bool) {
	panic("quantize: kernel6x16 without its assembly")
}
