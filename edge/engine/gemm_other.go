//go:build (!amd64 && !arm64) || purego

package engine

func (k gemmKernel) available() bool { return k == kernGo }

func bestKernel() gemmKernel { return kernGo }

// panelAsm reports that this architecture has no SIMD GEMM kernel: panelGo runs instead.
func panelAsm(gemmKernel, []int32, int, []int8, int, int, []int8, int, []int32) bool {
	return false
}
